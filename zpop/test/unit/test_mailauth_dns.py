"""zpop.mailauth.dns: twisted.names answers in pyspf's shapes, the cache
of answers for their TTL, and which failures are temporary. A fake
upstream resolver and a Clock: no sockets."""

from __future__ import annotations

from typing import Any

import dkim
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.names import dns, error
from twisted.trial.unittest import SynchronousTestCase

from zpop.config import DnsConfig
from zpop.mailauth.checks import DkimVerifier, SpfChecker
from zpop.mailauth.dns import CACHE_SIZE, MAX_TTL, Resolver, TemporaryDnsError
from zpop.test.dkim_keys import rsa_key


def txt(name: str, text: str, ttl: int) -> dns.RRHeader:
    return dns.RRHeader(
        name.encode(), dns.TXT, dns.IN, ttl, dns.Record_TXT(text.encode(), ttl=ttl)
    )


def soa(ttl: int, minimum: int) -> dns.RRHeader:
    return dns.RRHeader(
        b"example.org",
        dns.SOA,
        dns.IN,
        ttl,
        dns.Record_SOA(b"ns.example.org", b"root.example.org", minimum=minimum),
    )


class Upstream:
    """Answers lookupText from ``replies`` (name -> a callable making the
    Deferred), counting the queries that reach it."""

    def __init__(self) -> None:
        self.replies: dict[str, Any] = {}
        self.queries: list[str] = []

    def lookupText(self, name: str, timeout: Any = None) -> Deferred[Any]:  # noqa: N802 - twisted.names' name
        self.queries.append(name)
        return self.replies[name]()


class ResolverTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.upstream = Upstream()
        self.resolver = Resolver(self.clock, DnsConfig(), upstream=self.upstream)

    def lookup(self, name: str) -> Any:
        return self.successResultOf(self.resolver.lookup(name, "TXT"))

    def test_answers_cached_for_their_ttl(self) -> None:
        """The least TTL of the answer decides; then the upstream is asked
        again (and sees the name without its final dot)."""
        self.upstream.replies["example.org"] = lambda: succeed(
            (
                [txt("example.org", "v=spf1 -all", 300), txt("example.org", "x", 60)],
                [],
                [],
            )
        )
        expected = [
            (("example.org", "TXT"), [b"v=spf1 -all"]),
            (("example.org", "TXT"), [b"x"]),
        ]
        self.assertEqual(self.lookup("example.org."), expected)
        self.clock.advance(59)
        self.assertEqual(self.lookup("Example.ORG"), expected)
        self.assertEqual(self.upstream.queries, ["example.org"])
        self.clock.advance(1)
        self.assertEqual(self.lookup("example.org"), expected)
        self.assertEqual(len(self.upstream.queries), 2)

    def test_ttl_capped(self) -> None:
        self.upstream.replies["example.org"] = lambda: succeed(
            ([txt("example.org", "v=spf1 -all", 7 * 86400)], [], [])
        )
        self.lookup("example.org")
        self.clock.advance(MAX_TTL)
        self.lookup("example.org")
        self.assertEqual(len(self.upstream.queries), 2)

    def test_no_such_name_cached_by_its_soa(self) -> None:
        """NXDOMAIN with the zone's SOA: no answers, for min(TTL, minimum);
        without an SOA it is not cached at all."""
        message = dns.Message(rCode=dns.ENAME)
        message.authority = [soa(3600, 120)]
        self.upstream.replies["gone.example.org"] = lambda: fail(
            error.DNSNameError(message)
        )
        self.assertEqual(self.lookup("gone.example.org"), [])
        self.clock.advance(119)
        self.assertEqual(self.lookup("gone.example.org"), [])
        self.assertEqual(len(self.upstream.queries), 1)
        self.clock.advance(1)
        self.lookup("gone.example.org")
        self.assertEqual(len(self.upstream.queries), 2)
        self.upstream.replies["bare.example.org"] = lambda: fail(
            error.DNSNameError(dns.Message(rCode=dns.ENAME))
        )
        self.assertEqual(self.lookup("bare.example.org"), [])
        self.assertEqual(self.lookup("bare.example.org"), [])
        self.assertEqual(self.upstream.queries[-2:], ["bare.example.org"] * 2)

    def test_no_record_of_that_type(self) -> None:
        """An answer holding other types only is no answer (cached by the
        SOA in its authority section, when there is one)."""
        other = dns.RRHeader(
            b"example.org", dns.A, dns.IN, 60, dns.Record_A("192.0.2.1")
        )
        self.upstream.replies["example.org"] = lambda: succeed(
            ([other], [soa(30, 60)], [])
        )
        self.assertEqual(self.lookup("example.org"), [])
        self.clock.advance(29)
        self.lookup("example.org")
        self.assertEqual(len(self.upstream.queries), 1)

    def test_failures_temporary_and_not_cached(self) -> None:
        for failure in (
            error.DNSQueryTimeoutError(None),
            error.DNSServerError(dns.Message(rCode=dns.ESERVER)),
            error.DNSQueryRefusedError(dns.Message(rCode=dns.EREFUSED)),
        ):
            self.upstream.replies["slow.example"] = lambda failure=failure: fail(
                failure
            )
            self.failureResultOf(
                self.resolver.lookup("slow.example", "TXT"), TemporaryDnsError
            )
        self.assertEqual(self.upstream.queries, ["slow.example"] * 3)

    def test_cache_bounded(self) -> None:
        """The least recently used answer leaves when the cache is full."""
        self.upstream.replies.update(
            {
                f"d{i}.example": (
                    lambda i=i: succeed(
                        ([txt(f"d{i}.example", "v=spf1 -all", 600)], [], [])
                    )
                )
                for i in range(CACHE_SIZE + 1)
            }
        )
        for i in range(CACHE_SIZE):
            self.lookup(f"d{i}.example")
        self.lookup("d0.example")  # now the most recently used
        self.lookup(f"d{CACHE_SIZE}.example")
        before = len(self.upstream.queries)
        self.lookup("d0.example")
        self.assertEqual(len(self.upstream.queries), before)
        self.lookup("d1.example")
        self.assertEqual(len(self.upstream.queries), before + 1)


class CachedTests(SynchronousTestCase):
    """What is cached is read without the reactor: SPF's thread does not
    wait for it, and a message without signatures costs no thread."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.upstream = Upstream()
        self.upstream.replies["example.org"] = lambda: succeed(
            ([txt("example.org", "v=spf1 ip4:192.0.2.1 -all", 60)], [], [])
        )
        self.resolver = Resolver(self.clock, DnsConfig(), upstream=self.upstream)

    def test_cached(self) -> None:
        self.assertIsNone(self.resolver.cached("example.org", "TXT"))
        self.successResultOf(self.resolver.lookup("example.org", "TXT"))
        self.assertEqual(
            self.resolver.cached("Example.org.", "TXT"),
            [(("example.org", "TXT"), [b"v=spf1 ip4:192.0.2.1 -all"])],
        )
        self.assertIsNone(self.resolver.cached("example.org", "MX"))
        self.clock.advance(60)
        self.assertIsNone(self.resolver.cached("example.org", "TXT"))

    def test_spf_from_the_cache_without_waiting(self) -> None:
        """Once the record is cached, the SPF thread never waits for the
        reactor (``wait`` would fail the check)."""
        self.successResultOf(self.resolver.lookup("example.org", "TXT"))

        def wait(*args: Any) -> Any:
            raise AssertionError(f"waited for the reactor: {args}")

        self.upstream.replies["helo.example.org"] = lambda: succeed(
            ([txt("helo.example.org", "v=spf1 -all", 60)], [], [])
        )
        self.successResultOf(self.resolver.lookup("helo.example.org", "TXT"))
        checker = SpfChecker(lambda f: succeed(f()), self.resolver, wait)
        mailfrom, helo = self.successResultOf(
            checker.check("192.0.2.1", "ann@example.org", "helo.example.org")
        )
        self.assertEqual((mailfrom.result, helo.result), ("pass", "fail"))

    def test_unsigned_message_needs_no_thread(self) -> None:
        def in_thread(f: Any) -> Any:
            raise AssertionError("a thread for a message without signatures")

        verifier = DkimVerifier(in_thread, self.resolver)
        body = b"From: ann@example.org\r\nSubject: x\r\n\r\nDKIM-Signature: no\r\n"
        self.assertEqual(
            self.successResultOf(Deferred.fromCoroutine(verifier.check(body))), []
        )
        self.assertEqual(self.upstream.queries, [])

    def test_cached_keys_one_thread_trip(self) -> None:
        """With the key in the cache, a signed message is parsed and
        verified in one call to the thread."""
        private, record = rsa_key(1024)
        self.upstream.replies["s1._domainkey.example.org"] = lambda: succeed(
            ([txt("s1._domainkey.example.org", record, 60)], [], [])
        )
        body = b"From: ann@example.org\r\nSubject: x\r\n\r\nhello\r\n"
        body = dkim.sign(body, b"s1", b"example.org", private, linesep=b"\r\n") + body
        trips: list[Any] = []

        def in_thread(f: Any) -> Any:
            trips.append(f)
            return succeed(f())

        verifier = DkimVerifier(in_thread, self.resolver)
        for expected_trips in (2, 3):
            [found] = self.successResultOf(Deferred.fromCoroutine(verifier.check(body)))
            self.assertEqual((found.result, len(trips)), ("pass", expected_trips))
        self.assertEqual(self.upstream.queries, ["s1._domainkey.example.org"])
