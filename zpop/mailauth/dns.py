"""DNS for mail authentication, through twisted.names: the lookups SPF,
DKIM and DMARC need, off the reactor's critical path, with one timeout.

Answers come back in the shapes pyspf's ``DNSLookup`` returns, so SPF can
run pyspf, a well-kept RFC 7208 implementation, in a thread whose queries
go out here on the reactor (zpop.mailauth.checks): the reactor never waits
for DNS.

Answers are cached for their TTL (at most an hour), as a resolver library
would: an MX sees the same senders' SPF and DMARC records over and over,
and each answer it need not wait for is a message accepted sooner. A "no
such name" or "no such record" is cached only when the reply carries the
zone's SOA (RFC 2308 §5); failures and timeouts are never cached.
"""

from __future__ import annotations

import socket
from collections import OrderedDict
from typing import Any, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import DNSLookupError
from twisted.names import client, dns, error
from twisted.python.failure import Failure

from zpop.config import DnsConfig

#: (name, type) and the data, as pyspf's DNSLookup gives each answer.
Answer = tuple[tuple[str, str], Any]

_TYPES = {
    "A": (dns.A, "lookupAddress"),
    "AAAA": (dns.AAAA, "lookupIPV6Address"),
    "MX": (dns.MX, "lookupMailExchange"),
    "PTR": (dns.PTR, "lookupPointer"),
    "TXT": (dns.TXT, "lookupText"),
    "SPF": (dns.TXT, "lookupText"),
}


#: The longest an answer is cached, whatever its TTL.
MAX_TTL = 3600
#: How many (name, type) answers the cache holds, least recently used out.
CACHE_SIZE = 10_000


class TemporaryDnsError(Exception):
    """No answer in time, or the server failed: try again later (RFC 7208
    temperror, RFC 6376 TEMPFAIL)."""


class Lookup(Protocol):
    """What the checks ask of DNS (``Resolver``, or a fake in unit tests)."""

    def lookup(self, name: str, qtype: str) -> Deferred[list[Answer]]:
        """The answers of type ``qtype`` (A, AAAA, MX, PTR, TXT) for
        ``name``: [] for none or no such name; fails TemporaryDnsError."""

    def cached(self, name: str, qtype: str) -> list[Answer] | None:
        """The answers already known, without asking, or None; callable
        from any thread (SPF's, which then need not wait for the reactor)."""


class Resolver:
    """Lookups through twisted.names to ``[dns] resolver``, or to the
    servers of /etc/resolv.conf."""

    def __init__(self, reactor: Any, config: DnsConfig, upstream: Any = None) -> None:
        self._reactor = reactor
        self._config = config
        # Two tries sharing the timeout: one lost UDP packet is not an error.
        self._timeout = (config.timeout / 2, config.timeout / 2)
        #: A twisted.names IResolver (a fake one in unit tests).
        self._resolver = upstream
        #: (name, qtype) -> (expiry, answers).
        self._cache: OrderedDict[tuple[str, str], tuple[float, list[Answer]]] = (
            OrderedDict()
        )

    def _client(self) -> Any:
        """The twisted.names resolver, made on the first query: reading
        /etc/resolv.conf schedules its re-reading, which needs a running
        reactor, not one that is still being configured."""
        if self._resolver is None:
            if self._config.resolver is not None:
                self._resolver = client.Resolver(
                    servers=[self._config.resolver], reactor=self._reactor
                )
            else:
                self._resolver = client.Resolver(
                    resolv="/etc/resolv.conf", reactor=self._reactor
                )
        return self._resolver

    def cached(self, name: str, qtype: str) -> list[Answer] | None:
        # Only reads: the reactor thread alone changes the cache.
        found = self._cache.get((name.rstrip(".").lower(), qtype))
        if found is None or found[0] <= self._reactor.seconds():
            return None
        return list(found[1])

    def lookup(self, name: str, qtype: str) -> Deferred[list[Answer]]:
        # twisted.names asks again over TCP when a UDP answer is truncated
        # (long SPF or DKIM TXT records).
        _, method = _TYPES[qtype]
        name = name.rstrip(".")
        key = (name.lower(), qtype)
        now = self._reactor.seconds()
        cached = self._cache.get(key)
        if cached is not None:
            if cached[0] > now:
                self._cache.move_to_end(key)
                return succeed(list(cached[1]))
            del self._cache[key]
        d: Deferred[Any] = getattr(self._client(), method)(name, timeout=self._timeout)
        d.addErrback(_no_answer)

        def found(result: Any) -> list[Answer]:
            records, authority, _ = result
            answers = answers_of(records, name, qtype)
            ttl = _ttl(records if answers else authority, bool(answers))
            if ttl > 0:
                self._cache[key] = (now + ttl, answers)
                if len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
            return answers

        d.addCallback(found)
        return d


def _ttl(records: list[Any], positive: bool) -> float:
    """How long the answer may be cached: its records' least TTL, or for
    no answer the SOA's (RFC 2308 §5: the lesser of its TTL and minimum);
    0 when the reply gives no SOA to go by."""
    ttls: list[int] = [r.ttl for r in records]
    if not positive:
        ttls = [min(r.ttl, r.payload.minimum) for r in records if r.type == dns.SOA]
    return float(min(min(ttls), MAX_TTL)) if ttls else 0.0


def _no_answer(failure: Failure) -> tuple[list[Any], list[Any], list[Any]]:
    """No such name: a reply without answers (and with the SOA that says
    how long that holds, when the server gave one); anything else: try
    later."""
    if failure.check(error.DNSNameError):
        args = getattr(failure.value, "args", ())
        authority = list(getattr(args[0] if args else None, "authority", []))
        return [], authority, []
    if failure.check(error.DNSServerError, error.DNSQueryRefusedError):
        raise TemporaryDnsError("the DNS server failed")
    if failure.check(error.DNSQueryTimeoutError, DNSLookupError, TimeoutError):
        raise TemporaryDnsError("no DNS answer in time")
    raise TemporaryDnsError(failure.getErrorMessage() or "DNS failed")


def answers_of(records: list[Any], name: str, qtype: str) -> list[Answer]:
    """The answers of ``qtype`` among ``records`` (a reply's answer
    section), CNAMEs followed by the server, in pyspf's shapes."""
    kind, _ = _TYPES[qtype]
    found: list[Answer] = []
    for record in records:
        if record.type != kind:
            continue
        payload = record.payload
        if kind in (dns.A, dns.AAAA):
            address = payload.dottedQuad() if kind == dns.A else _ipv6(payload)
            found.append(((name, qtype), address))
        elif kind == dns.MX:
            found.append(((name, qtype), (payload.preference, str(payload.name))))
        elif kind == dns.PTR:
            found.append(((name, qtype), str(payload.name)))
        else:
            found.append(((name, qtype), list(payload.data)))
    return found


def _ipv6(payload: Any) -> str:
    return socket.inet_ntop(socket.AF_INET6, payload.address)


def txt_records(answers: list[Answer]) -> list[bytes]:
    """Each TXT record's strings joined (RFC 7208 §3.3, RFC 6376 §3.6.2.2)."""
    return [b"".join(data) for _, data in answers]
