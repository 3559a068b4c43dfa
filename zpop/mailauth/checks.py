"""SPF (RFC 7208) and DKIM verification (RFC 6376, RFC 8463) of a message
the MX received, with well-kept libraries: pyspf and dkimpy.

Neither may block the reactor. pyspf asks DNS as it evaluates (includes,
redirects, macros), so it runs in a worker thread whose queries go out on
the reactor through ``zpop.mailauth.dns`` (``wait``: the thread waits, the
reactor does not). DKIM needs only each signature's key: the signatures are
parsed in a thread, the keys looked up on the reactor, and the signatures
verified in a thread against the keys found (hashing a large body is CPU).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dkim
import spf
from twisted.internet.defer import Deferred, DeferredList

from zpop.mailauth.dns import Answer, Lookup, TemporaryDnsError, txt_records

#: Runs a function in a worker thread; fires with its result.
InThread = Callable[[Callable[[], Any]], Deferred]
#: From a worker thread: waits for ``lookup(name, qtype)`` made on the reactor.
Wait = Callable[[Callable[..., Deferred], str, str], list[Answer]]

#: Signatures verified per message; more are reported unchecked (a message
#: with thousands of signatures must not cost thousands of DNS queries).
MAX_SIGNATURES = 8

_SPF_RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")

_current = threading.local()


def _dispatch(
    name: str, qtype: str, tcpfallback: bool = True, timeout: float = 30
) -> list[Answer]:
    """pyspf's DNSLookup: the lookup of the check running on this thread."""
    found: list[Answer] = _current.lookup(name, qtype)
    return found


spf.DNSLookup = _dispatch


@dataclass(frozen=True)
class SpfResult:
    """One SPF check: its result, for which identity and domain."""

    #: pass, fail, softfail, neutral, none, temperror or permerror.
    result: str
    #: ``mailfrom`` or ``helo`` (RFC 8601 smtp.mailfrom, smtp.helo).
    identity: str
    #: The domain checked.
    domain: str
    reason: str = ""


@dataclass(frozen=True)
class DkimResult:
    """One DKIM-Signature's outcome (RFC 8601 ``dkim=``)."""

    #: pass, fail, neutral (unusable signature), temperror or permerror.
    result: str
    #: The signing domain (d=) and selector (s=), "" if unreadable.
    domain: str = ""
    selector: str = ""
    #: The first characters of b=, telling signatures apart (RFC 6008).
    tag: str = ""
    reason: str = ""


class SpfChecker:
    """SPF for the envelope sender and for the HELO name."""

    def __init__(self, in_thread: InThread, lookup: Lookup, wait: Wait) -> None:
        self._in_thread = in_thread
        self._lookup = lookup
        self._wait = wait

    def check(
        self, client: str, sender: str, helo: str
    ) -> Deferred[tuple[SpfResult, SpfResult]]:
        """(MAIL FROM result, HELO result). A null sender is checked as
        postmaster@HELO (RFC 7208 §2.4)."""
        return self._in_thread(lambda: self._check(client, sender, helo))

    def _check(
        self, client: str, sender: str, helo: str
    ) -> tuple[SpfResult, SpfResult]:
        _current.lookup = self._query
        try:
            helo_result = _evaluate(client, f"postmaster@{helo}", helo, "helo")
            if not sender:
                mailfrom = SpfResult(
                    helo_result.result,
                    "mailfrom",
                    helo_result.domain,
                    helo_result.reason,
                )
            else:
                mailfrom = _evaluate(client, sender, helo, "mailfrom")
        finally:
            del _current.lookup
        return mailfrom, helo_result

    def _query(self, name: str, qtype: str) -> list[Answer]:
        known = self._lookup.cached(name, qtype)
        if known is not None:
            return known
        try:
            return self._wait(self._lookup.lookup, name, qtype)
        except TemporaryDnsError as e:
            raise spf.TempError(f"DNS {e}") from e


def _evaluate(client: str, sender: str, helo: str, identity: str) -> SpfResult:
    domain = sender.rpartition("@")[2].lower()
    if not domain or not helo and identity == "helo":
        return SpfResult("none", identity, domain, "no domain to check")
    try:
        result, _, explanation = spf.query(
            client, sender, helo or domain, timeout=20
        ).check()
    except Exception as e:  # a library bug must not cost the message
        return SpfResult("temperror", identity, domain, f"SPF check failed: {e}")
    if result not in _SPF_RESULTS:
        result = "permerror"
    return SpfResult(result, identity, domain, str(explanation))


class DkimVerifier:
    """Every DKIM-Signature of a message (up to MAX_SIGNATURES)."""

    def __init__(self, in_thread: InThread, lookup: Lookup) -> None:
        self._in_thread = in_thread
        self._lookup = lookup

    async def check(self, body: bytes) -> list[DkimResult]:
        """One result per signature, in order; [] for none."""
        header = body.partition(b"\r\n\r\n")[0].lower()
        if not header.startswith(b"dkim-signature") and (
            b"\ndkim-signature" not in header
        ):
            return []
        first: tuple[Any, list[tuple[int, DkimResult]], list[DkimResult] | None]
        first = await self._in_thread(lambda: self._from_cache(body))
        message, parsed, done = first
        if done is not None:
            return done
        names = _key_names(parsed)
        found = await DeferredList(
            [self._lookup.lookup(name, "TXT") for name in names], consumeErrors=True
        )
        # A failed lookup (TemporaryDnsError: the Lookup answers [] for no
        # such name) leaves the key unknown: temperror.
        keys: dict[str, list[bytes] | None] = {
            name: txt_records(answer) if ok else None
            for name, (ok, answer) in zip(names, found, strict=True)
        }
        results: list[DkimResult] = await self._in_thread(
            lambda: [_verify(message, i, r, keys) for i, r in parsed]
        )
        return results

    def _from_cache(
        self, body: bytes
    ) -> tuple[Any, list[tuple[int, DkimResult]], list[DkimResult] | None]:
        """In the thread: the signatures, and their results too when every
        key is in the DNS cache (one trip to the thread, not two)."""
        message, parsed = _signatures(body)
        keys: dict[str, list[bytes] | None] = {}
        for name in _key_names(parsed):
            answers = self._lookup.cached(name, "TXT")
            if answers is None:
                return message, parsed, None
            keys[name] = txt_records(answers)
        return message, parsed, [_verify(message, i, r, keys) for i, r in parsed]


def _key_names(parsed: list[tuple[int, DkimResult]]) -> list[str]:
    """The key records the pending signatures need."""
    return sorted(
        {
            f"{r.selector}._domainkey.{r.domain}"
            for _, r in parsed
            if r.result == "pending"
        }
    )


def _signatures(body: bytes) -> tuple[Any, list[tuple[int, DkimResult]]]:
    """The message as dkimpy parsed it (once: its verify takes a signature's
    index), and each signature's d= and s= (result "pending") or why it
    cannot be checked."""
    try:
        message = dkim.DKIM(body)
    except Exception as e:
        return None, [(0, DkimResult("permerror", reason=f"unparseable message: {e}"))]
    count = sum(1 for name, _ in message.headers if name.lower() == b"dkim-signature")
    found: list[tuple[int, DkimResult]] = []
    for index in range(count):
        if index >= MAX_SIGNATURES:
            found.append((index, DkimResult("neutral", reason="too many signatures")))
            continue
        try:
            sig, _, _ = message.verify_headerprep(index)
        except Exception as e:
            found.append((index, DkimResult("neutral", reason=f"bad signature: {e}")))
            continue
        domain = _text(sig.get(b"d", b"")).lower()
        selector = _text(sig.get(b"s", b""))
        tag = _text(sig.get(b"b", b"")[:64])[:8]
        found.append((index, DkimResult("pending", domain, selector, tag)))
    return message, found


def _verify(
    message: Any, index: int, pending: DkimResult, keys: dict[str, list[bytes] | None]
) -> DkimResult:
    if pending.result != "pending":
        return pending
    name = f"{pending.selector}._domainkey.{pending.domain}"
    records = keys.get(name)
    if records is None:
        return _with(pending, "temperror", "no DNS answer for the key in time")
    key = next((r for r in records if b"p=" in r), None)
    if key is None:
        return _with(pending, "permerror", "no key published")

    def from_dns(_name: bytes, timeout: int = 5) -> bytes:
        return key

    try:
        good = message.verify(idx=index, dnsfunc=from_dns)
    except dkim.ValidationError as e:
        if "body hash" in str(e):
            return _with(pending, "fail", "body hash did not verify")
        return _with(pending, "permerror", f"unusable signature: {e}")
    except Exception as e:
        return _with(pending, "permerror", f"unusable key or signature: {e}")
    return _with(
        pending, "pass" if good else "fail", "" if good else "signature did not verify"
    )


def _with(pending: DkimResult, result: str, reason: str) -> DkimResult:
    return DkimResult(result, pending.domain, pending.selector, pending.tag, reason)


def _text(value: bytes) -> str:
    """A tag value as printable ASCII (it goes into a header field)."""
    return "".join(c for c in value.decode("ascii", "replace") if "!" <= c <= "~")
