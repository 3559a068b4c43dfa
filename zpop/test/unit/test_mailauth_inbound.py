"""SPF, DKIM and DMARC on the MX (zpop.mailauth): the checks over a DNS
held in a dict, pyspf and dkimpy run on this thread, and the verdicts and
the Authentication-Results field they give."""

from __future__ import annotations

from typing import Any

import dkim
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from zpop.mailauth import dmarc
from zpop.mailauth.checks import DkimResult, DkimVerifier, SpfChecker, SpfResult
from zpop.mailauth.dns import Answer, TemporaryDnsError
from zpop.mailauth.inbound import (
    InboundChecks,
    MailAuthenticator,
    authentication_results,
    from_domain_of,
    remove_our_results,
)
from zpop.mailauth.verdict import InboundMessage, Refused, Verdict
from zpop.test.dkim_keys import rsa_key
from zpop.test.stores import result

HOST = "mx.hosted.test"
CLIENT = "192.0.2.10"


class FakeDns:
    """A Lookup over ``records``: name -> {qtype: [data]}; names in
    ``failing`` fail TemporaryDnsError."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, list[Any]]] = {}
        self.failing: set[str] = set()
        self.asked: list[tuple[str, str]] = []

    def add(self, name: str, qtype: str, *data: Any) -> None:
        self.records.setdefault(name, {}).setdefault(qtype, []).extend(data)

    def txt(self, name: str, text: str) -> None:
        self.add(name, "TXT", [text.encode()])

    def cached(self, name: str, qtype: str) -> list[Answer] | None:
        return None

    def lookup(self, name: str, qtype: str) -> Deferred[list[Answer]]:
        name = name.rstrip(".").lower()
        self.asked.append((name, qtype))
        if name in self.failing:
            return fail(TemporaryDnsError("no DNS answer in time"))
        found = self.records.get(name, {}).get(qtype, [])
        return succeed([((name, qtype), d) for d in found])


def on_this_thread(f: Any) -> Deferred:
    return maybeDeferred(f)


def wait_here(lookup: Any, name: str, qtype: str) -> list[Answer]:
    return result(lookup(name, qtype))  # type: ignore[no-any-return]


PRIVATE, PUBLIC = rsa_key(1024)


def message(sender_domain: str = "example.org", extra: bytes = b"") -> bytes:
    return (
        f"From: Ann <ann@{sender_domain}>\r\nTo: bob@hosted.test\r\n"
        "Subject: hello\r\nMessage-ID: <1@example.org>\r\n".encode()
        + extra
        + b"\r\nbody\r\n"
    )


def signed(body: bytes, domain: str = "example.org", selector: str = "s1") -> bytes:
    signature = dkim.sign(
        body, selector.encode(), domain.encode(), PRIVATE, linesep=b"\r\n"
    )
    return signature + body  # type: ignore[no-any-return]


class Case(SynchronousTestCase):
    def setUp(self) -> None:
        self.dns = FakeDns()
        self.hosted = {"hosted.test"}

        async def is_hosted(domain: str) -> bool:
            return domain in self.hosted

        self.authenticator = MailAuthenticator(
            HOST,
            self.dns,
            SpfChecker(on_this_thread, self.dns, wait_here),
            DkimVerifier(on_this_thread, self.dns),
            is_hosted,
            sample=lambda: 0.0,
        )

    def check(self, body: bytes, sender: str = "ann@example.org") -> Any:
        incoming = InboundMessage(
            sender, ("bob@hosted.test",), CLIENT, "mail.example.org", body
        )
        return Deferred.fromCoroutine(self.authenticator.check(incoming))

    def verdict(self, body: bytes, sender: str = "ann@example.org") -> Any:
        return result(self.check(body, sender))

    def refusal(self, body: bytes, sender: str = "ann@example.org") -> Refused:
        return self.failureResultOf(self.check(body, sender), Refused).value  # type: ignore[no-any-return]


class SpfTests(Case):
    def test_pass_fail_and_softfail(self) -> None:
        """The envelope sender's domain and the HELO name are checked with
        pyspf over the (fake) DNS."""
        self.dns.txt("example.org", "v=spf1 ip4:192.0.2.0/24 -all")
        self.dns.txt("mail.example.org", "v=spf1 ~all")
        _, found = self.verdict(message())
        self.assertEqual((found.spf.result, found.spf.domain), ("pass", "example.org"))
        self.assertEqual(
            (found.helo.result, found.helo.domain), ("softfail", "mail.example.org")
        )
        self.dns.records["example.org"]["TXT"] = [[b"v=spf1 -all"]]
        _, found = self.verdict(message())
        self.assertEqual(found.spf.result, "fail")

    def test_include_and_none(self) -> None:
        """An include is followed; a domain without SPF gives none."""
        self.dns.txt("example.org", "v=spf1 include:_spf.example.net -all")
        self.dns.txt("_spf.example.net", "v=spf1 ip4:192.0.2.10 -all")
        _, found = self.verdict(message())
        self.assertEqual(found.spf.result, "pass")
        _, found = self.verdict(message(), sender="x@nospf.example")
        self.assertEqual(found.spf.result, "none")

    def test_timeout_is_temperror(self) -> None:
        """A DNS timeout is temperror, and (no policy needing it) delivery
        goes on."""
        self.dns.failing.add("example.org")
        verdict, found = self.verdict(message())
        self.assertEqual(found.spf.result, "temperror")
        self.assertIsNone(verdict.folder)

    def test_null_sender_checks_helo(self) -> None:
        """A bounce (null sender) is checked as postmaster@HELO."""
        self.dns.txt("mail.example.org", "v=spf1 ip4:192.0.2.10 -all")
        _, found = self.verdict(message(), sender="")
        self.assertEqual(
            (found.spf.result, found.spf.domain), ("pass", "mail.example.org")
        )


class DkimTests(Case):
    def test_signature_verifies(self) -> None:
        """A good signature passes, naming its domain and selector."""
        self.dns.txt("s1._domainkey.example.org", PUBLIC)
        _, found = self.verdict(signed(message()))
        [signature] = found.dkim
        self.assertEqual(
            (signature.result, signature.domain, signature.selector),
            ("pass", "example.org", "s1"),
        )
        self.assertEqual(len(signature.tag), 8)

    def test_altered_body_fails(self) -> None:
        """A body changed after signing fails."""
        self.dns.txt("s1._domainkey.example.org", PUBLIC)
        body = signed(message()).replace(b"body", b"BODY")
        _, found = self.verdict(body)
        self.assertEqual(found.dkim[0].result, "fail")

    def test_no_key_and_timeout(self) -> None:
        """No key published is permerror; a DNS timeout is temperror."""
        _, found = self.verdict(signed(message()))
        self.assertEqual(found.dkim[0].result, "permerror")
        self.dns.failing.add("s1._domainkey.example.org")
        _, found = self.verdict(signed(message()))
        self.assertEqual(found.dkim[0].result, "temperror")

    def test_garbage_signatures(self) -> None:
        """Unreadable signatures are neutral; only MAX_SIGNATURES are
        looked up."""
        junk = b"DKIM-Signature: v=1; a=rsa-sha256; d=\r\n" * 20
        _, found = self.verdict(message(extra=junk))
        self.assertEqual(len(found.dkim), 20)
        self.assertEqual({r.result for r in found.dkim}, {"neutral"})
        self.assertEqual([q for q in self.dns.asked if "_domainkey" in q[0]], [])


class DmarcTests(Case):
    def test_reject_and_quarantine(self) -> None:
        """A DMARC failure under p=reject is refused 550 5.7.1; under
        p=quarantine it goes to Spam; under p=none it is only recorded."""
        self.dns.txt("example.org", "v=spf1 -all")
        self.dns.txt("_dmarc.example.org", "v=DMARC1; p=reject")
        refused = self.refusal(message())
        self.assertEqual((refused.code, refused.enhanced), (550, "5.7.1"))
        self.assertIn("DMARC policy of example.org", refused.text)
        self.dns.records["_dmarc.example.org"]["TXT"] = [[b"v=DMARC1; p=quarantine"]]
        verdict, found = self.verdict(message())
        self.assertEqual((verdict.folder, found.dmarc.result), ("Spam", "fail"))
        self.dns.records["_dmarc.example.org"]["TXT"] = [[b"v=DMARC1; p=none"]]
        verdict, found = self.verdict(message())
        self.assertEqual((verdict.folder, found.dmarc.disposition), (None, "none"))

    def test_aligned_dkim_passes(self) -> None:
        """An aligned DKIM pass passes DMARC though SPF fails."""
        self.dns.txt("example.org", "v=spf1 -all")
        self.dns.txt("_dmarc.example.org", "v=DMARC1; p=reject")
        self.dns.txt("s1._domainkey.example.org", PUBLIC)
        verdict, found = self.verdict(signed(message()))
        self.assertEqual((verdict.folder, found.dmarc.result), (None, "pass"))

    def test_organizational_domain(self) -> None:
        """A subdomain without a record takes the organizational domain's
        sp=; a relaxed alignment accepts a DKIM d= of the parent."""
        self.dns.txt("_dmarc.example.org", "v=DMARC1; p=none; sp=reject")
        refused = self.refusal(message("news.example.org"), "ann@news.example.org")
        self.assertEqual(refused.code, 550)
        self.dns.txt("s1._domainkey.example.org", PUBLIC)
        _, found = self.verdict(
            signed(message("news.example.org")), "ann@news.example.org"
        )
        self.assertEqual(found.dmarc.result, "pass")

    def test_strict_alignment(self) -> None:
        """adkim=s needs the exact domain."""
        self.dns.txt("_dmarc.news.example.org", "v=DMARC1; p=quarantine; adkim=s")
        self.dns.txt("s1._domainkey.example.org", PUBLIC)
        verdict, found = self.verdict(
            signed(message("news.example.org")), "a@x.example"
        )
        self.assertEqual((verdict.folder, found.dmarc.result), ("Spam", "fail"))

    def test_pct_sampling(self) -> None:
        """pct=0 applies the next weaker policy."""
        self.dns.txt("_dmarc.example.org", "v=DMARC1; p=reject; pct=0")
        verdict, found = self.verdict(message(), "a@x.example")
        self.assertEqual(
            (found.dmarc.disposition, verdict.folder), ("quarantine", "Spam")
        )

    def test_forged_hosted_sender(self) -> None:
        """From: a hosted domain, arriving from outside without DMARC
        passing, is never filed in the Inbox, even with no record."""
        verdict, found = self.verdict(message("hosted.test"), "x@elsewhere.example")
        self.assertEqual((found.dmarc.result, verdict.folder), ("none", "Spam"))

    def test_timeouts_the_policy_needs(self) -> None:
        """A DMARC record that cannot be read, or an aligned check left
        undecided under p=reject, refuses for now: 451 4.4.3; a temporary
        error the outcome does not depend on does not."""
        self.dns.failing.add("_dmarc.example.org")
        self.assertEqual(self.refusal(message()).enhanced, "4.4.3")
        self.dns.failing.clear()
        self.dns.txt("_dmarc.example.org", "v=DMARC1; p=reject")
        self.dns.failing.add("example.org")
        self.assertEqual(self.refusal(message()).enhanced, "4.4.3")
        self.dns.txt("s1._domainkey.example.org", PUBLIC)
        verdict, found = self.verdict(signed(message()))
        self.assertEqual((found.spf.result, found.dmarc.result), ("temperror", "pass"))

    def test_several_from_fields(self) -> None:
        """Two From fields cannot be evaluated: permerror, recorded."""
        body = b"From: a@example.org\r\n" + message()
        _, found = self.verdict(body)
        self.assertEqual(found.dmarc.result, "permerror")


class FieldTests(SynchronousTestCase):
    def test_forged_results_removed(self) -> None:
        """Fields claiming our authserv-id go (folded ones whole); others,
        and the body, stay."""
        body = (
            b"Authentication-Results: MX.hosted.test; spf=pass\r\n\tsmtp.mailfrom=x\r\n"
            b"Authentication-Results: other.example; dkim=pass\r\n"
            b"Subject: s\r\n\r\nAuthentication-Results: mx.hosted.test; in body\r\n"
        )
        self.assertEqual(
            remove_our_results(body, HOST),
            b"Authentication-Results: other.example; dkim=pass\r\n"
            b"Subject: s\r\n\r\nAuthentication-Results: mx.hosted.test; in body\r\n",
        )

    def test_results_field(self) -> None:
        """The field names each result with its properties, values quoted
        when they are not tokens, folded, ending CRLF."""
        from zpop.mailauth.inbound import Authentication

        found = Authentication(
            SpfResult("pass", "mailfrom", "example.org"),
            SpfResult("none", "helo", "bad helo"),
            [DkimResult("fail", "example.org", "s1", "abcdefgh")],
            dmarc.DmarcResult("fail", "example.org", "reject", "reject"),
        )
        self.assertEqual(
            authentication_results(HOST, found),
            b"Authentication-Results: mx.hosted.test;\r\n"
            b"\tspf=pass smtp.mailfrom=example.org;\r\n"
            b'\tspf=none smtp.helo="bad helo";\r\n'
            b"\tdkim=fail header.d=example.org header.s=s1 header.b=abcdefgh;\r\n"
            b"\tdmarc=fail (p=reject dis=reject) header.from=example.org\r\n",
        )

    def test_from_domain(self) -> None:
        self.assertEqual(
            from_domain_of(b"From: A <a@Example.ORG>\r\n\r\n"), ("example.org", "")
        )
        self.assertIsNone(from_domain_of(b"Subject: x\r\n\r\n")[0])
        self.assertIsNone(from_domain_of(b"From: a@x.example, b@y.example\r\n\r\n")[0])


class InboundChecksTests(SynchronousTestCase):
    def test_spam_filter_sees_results_and_cannot_undo_spam(self) -> None:
        """The filter gets the Authentication-Results field; its "Inbox"
        does not take a quarantined message out of Spam; the forged field
        is gone from the body."""
        seen: list[bytes] = []

        class Filter:
            async def check(self, message: InboundMessage, results: bytes) -> Verdict:
                seen.append(results)
                return Verdict("Inbox", b"X-Spam-Status: No\r\n")

        class Auth:
            async def check(self, message: InboundMessage) -> Any:
                return Verdict(
                    "Spam", b"Authentication-Results: mx.hosted.test; x\r\n"
                ), _FakeFound()

        checks = InboundChecks(HOST, Auth(), Filter())  # type: ignore[arg-type]
        body = b"Authentication-Results: mx.hosted.test; spf=pass\r\n\r\nb\r\n"
        verdict = result(
            Deferred.fromCoroutine(
                checks.check(InboundMessage("", ("b@h.test",), CLIENT, "h", body))
            )
        )
        self.assertEqual(verdict.folder, "Spam")
        self.assertEqual(
            verdict.fields,
            b"Authentication-Results: mx.hosted.test; x\r\nX-Spam-Status: No\r\n",
        )
        self.assertEqual(verdict.body, b"\r\nb\r\n")
        self.assertEqual(seen, [b"Authentication-Results: mx.hosted.test; x\r\n"])


class _FakeFound:
    spf = SpfResult("none", "mailfrom", "")
    dkim: list[DkimResult] = []
    dmarc = dmarc.DmarcResult("none", "")
