"""A DNS server for tests: twisted.names on 127.0.0.1 (UDP and TCP, one
free port), answering from a JSON zone file that a test may rewrite while
it runs (read again on every query), so a test controls SPF, DKIM and
DMARC records and can make names time out.

    python -m zpop.test.dns_server ZONE.json PORTFILE

The zone: ``{"records": {"name": {"TXT": ["v=spf1 -all"], "A": ["192.0.2.1"],
"MX": [[10, "mx.example.org"]]}}, "silent": ["name", ...]}``; a name in
``silent`` is never answered (a resolver's timeout), any other unknown name
is NXDOMAIN. The port is written to PORTFILE once both sockets listen.
Every answer carries TTL 60; "no such name" and "no such record" carry an
SOA, as an authoritative server's do, whose minimum of 5 s lets resolvers
cache them (RFC 2308) but only briefly, so a record a test adds to a name
already asked for is seen within seconds.

``DnsServer`` runs it as a subprocess for a test case.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed

#: Seconds a test waits for the server to listen.
START_TIMEOUT = 20.0


#: Seconds a resolver may cache a negative answer of this server.
NEGATIVE_TTL = 5


def _soa(name: str) -> Any:
    """The SOA record that goes with a negative answer for ``name``."""
    from twisted.names import dns

    return dns.RRHeader(
        name.encode(),
        dns.SOA,
        dns.IN,
        NEGATIVE_TTL,
        dns.Record_SOA(
            b"ns.invalid", b"hostmaster.invalid", minimum=NEGATIVE_TTL, ttl=NEGATIVE_TTL
        ),
        auth=True,
    )


def _answers(zone_path: str, name: str, kind: int) -> Any:
    from twisted.names import dns, error

    with open(zone_path, encoding="utf-8") as f:
        zone = json.load(f)
    name = name.lower().rstrip(".")
    if name in zone.get("silent", []):
        return Deferred()  # never fires: the client times out
    records = zone.get("records", {}).get(name)
    if records is None:
        return fail(error.DomainError(name))
    answers = []
    for type_name, values in records.items():
        code = getattr(dns, type_name)
        if code != kind:
            continue
        for value in values:
            if type_name == "TXT":
                text = value.encode()
                chunks = [text[i : i + 255] for i in range(0, len(text), 255)] or [b""]
                payload: Any = dns.Record_TXT(*chunks, ttl=60)
            elif type_name == "A":
                payload = dns.Record_A(value, ttl=60)
            elif type_name == "AAAA":
                payload = dns.Record_AAAA(value, ttl=60)
            elif type_name == "MX":
                payload = dns.Record_MX(value[0], value[1].encode(), ttl=60)
            elif type_name == "PTR":
                payload = dns.Record_PTR(value.encode(), ttl=60)
            else:
                continue
            answers.append(
                dns.RRHeader(name.encode(), code, dns.IN, 60, payload, auth=True)
            )
    return succeed((answers, [] if answers else [_soa(name)], []))


def main(zone_path: str, port_file: str) -> None:
    from twisted.internet import reactor
    from twisted.names import common, dns, server

    class ZoneResolver(common.ResolverBase):
        def _lookup(self, name: bytes, cls: int, type: int, timeout: Any) -> Any:  # noqa: A002
            return _answers(zone_path, name.decode(), type)

    class ZoneServerFactory(server.DNSServerFactory):
        def gotResolverError(  # noqa: N802 - twisted.names' name
            self, failure: Any, protocol: Any, message: Any, address: Any
        ) -> None:
            if not failure.check(dns.DomainError):
                return super().gotResolverError(failure, protocol, message, address)
            name = message.queries[0].name.name.decode() if message.queries else "."
            response = self._responseFromMessage(
                message=message, rCode=dns.ENAME, authority=[_soa(name)]
            )
            self.sendReply(protocol, response, address)
            return None

    factory = ZoneServerFactory(authorities=[ZoneResolver()])
    tcp = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
    port = tcp.getHost().port
    reactor.listenUDP(  # type: ignore[attr-defined]
        port, dns.DNSDatagramProtocol(factory), interface="127.0.0.1"
    )
    with open(port_file + ".tmp", "w", encoding="ascii") as f:
        f.write(str(port))
    os.rename(port_file + ".tmp", port_file)
    reactor.run()  # type: ignore[attr-defined]


class DnsServer:
    """The server above as a subprocess, its zone in ``directory``."""

    def __init__(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self.zone_path = os.path.join(directory, "zone.json")
        self.records: dict[str, dict[str, list[Any]]] = {}
        self.silent: list[str] = []
        self.write()
        port_file = os.path.join(directory, "dns.port")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "zpop.test.dns_server", self.zone_path, port_file],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(directory, "dns.log"), "wb"),  # noqa: SIM115
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not os.path.exists(port_file):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the test DNS server did not start: {directory}")
            time.sleep(0.05)
        with open(port_file, encoding="ascii") as f:
            self.port = int(f.read())

    @property
    def address(self) -> str:
        """``host:port`` for ``[dns] resolver``."""
        return f"127.0.0.1:{self.port}"

    def add(self, name: str, kind: str, *values: Any) -> None:
        """Publish ``values`` as ``kind`` records of ``name`` (added to any)."""
        entry = self.records.setdefault(name.lower().rstrip("."), {})
        entry.setdefault(kind, []).extend(values)
        self.write()

    def write(self) -> None:
        temporary = self.zone_path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump({"records": self.records, "silent": self.silent}, f)
        os.rename(temporary, self.zone_path)

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
