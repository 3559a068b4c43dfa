"""Tests for zpop.delivery: normalisation, checks, subjects, delivery."""

from __future__ import annotations

import email.header
import email.parser
import email.policy

from twisted.trial.unittest import SynchronousTestCase

from zpop import delivery


def parser_subject(body: bytes) -> str:
    """The email package's answer, which subject_of's fast path must match."""
    end = body.find(b"\r\n\r\n")
    header = body if end < 0 else body[: end + 2]
    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(
        header
    )
    raw = parsed.get("Subject")
    if raw is None:
        return ""
    text = str(email.header.make_header(email.header.decode_header(str(raw))))
    return " ".join(text.split())


class NormalizeTests(SynchronousTestCase):
    def test_line_ends(self) -> None:
        """Bare CR, bare LF, CRLF and mixtures all become CRLF."""
        self.assertEqual(
            delivery.normalize(b"a\rb\nc\r\nd\r\n"), b"a\r\nb\r\nc\r\nd\r\n"
        )
        self.assertEqual(delivery.normalize(b"a\n\rb"), b"a\r\n\r\nb\r\n")

    def test_lf_cr_pairs(self) -> None:
        """LF CR is two line ends, CR CR LF is two, never one merged."""
        self.assertEqual(delivery.normalize(b"a\r\r\nb"), b"a\r\n\r\nb\r\n")

    def test_final_newline(self) -> None:
        """A missing final line end is added; a present one is kept single."""
        self.assertEqual(delivery.normalize(b"a"), b"a\r\n")
        self.assertEqual(delivery.normalize(b"a\r\n"), b"a\r\n")
        self.assertEqual(delivery.normalize(b"a\r"), b"a\r\n")

    def test_empty(self) -> None:
        """Empty input normalises to one empty line (then check refuses it)."""
        self.assertEqual(delivery.normalize(b""), b"\r\n")

    def test_idempotent(self) -> None:
        """Normalising twice changes nothing."""
        once = delivery.normalize(b"x\ry\n\nz")
        self.assertEqual(delivery.normalize(once), once)


class CheckTests(SynchronousTestCase):
    def test_ok(self) -> None:
        """Headers, folded headers and a body pass; so does a header-only message."""
        delivery.check(b"Subject: a\r\n\tb\r\nX: y\r\n\r\nbody\r\n")
        delivery.check(b"Subject: a\r\n")

    def test_empty(self) -> None:
        """Empty or blank messages are refused."""
        for body in (b"\r\n", b"\r\n\r\n", b" \r\n"):
            self.assertRaises(delivery.MalformedMessage, delivery.check, body)

    def test_nul(self) -> None:
        """A NUL anywhere, even in the body, is refused."""
        e = self.assertRaises(
            delivery.MalformedMessage, delivery.check, b"Subject: a\r\n\r\nx\0y\r\n"
        )
        self.assertEqual(str(e), "the message contains a NUL byte")

    def test_non_header_first_line(self) -> None:
        """A first line that is no header field (or a continuation) is refused."""
        for body, line in (
            (b"hello world\r\n\r\nx\r\n", 1),
            (b" folded\r\nSubject: a\r\n\r\n", 1),
            (b"From sender Mon Jan 1\r\nSubject: a\r\n\r\n", 1),
            (b"Subject: a\r\nno colon here\r\n\r\n", 2),
        ):
            e = self.assertRaises(delivery.MalformedMessage, delivery.check, body)
            self.assertTrue(str(e).startswith(f"header line {line} is not"), str(e))

    def test_size_limit(self) -> None:
        """The limit applies to the normalised size."""
        delivery.check(b"S: a\r\n", size_limit=6)
        e = self.assertRaises(
            delivery.MalformedMessage, delivery.check, b"S: ab\r\n", size_limit=6
        )
        self.assertEqual(str(e), "the message is 7 bytes, over the limit of 6")


class SubjectTests(SynchronousTestCase):
    cases = [
        (b"Subject: plain\r\n\r\n", "plain"),
        (b"subject:   spaced    out  \r\n\r\n", "spaced out"),
        (b"SUBJECT: folded\r\n  over\r\n\tlines\r\n\r\n", "folded over lines"),
        (b"To: x\r\nSubject: first\r\nSubject: second\r\n\r\n", "first"),
        (b"To: x\r\n\r\nSubject: in body\r\n", ""),
        (b"X-Subject: no\r\n\r\n", ""),
        (b"Subject:\r\n\r\n", ""),
        (b"Subject: =?utf-8?q?caf=C3=A9?=\r\n\r\n", "café"),
        (b"Subject: =?UTF-8?B?w6l0w6k=?= and more\r\n\r\n", "été and more"),
        (b"Subject: =?iso-8859-1?q?=E9t=E9?=\r\n\r\n", "été"),
        (b"Subject: =?utf-8?q?a?=\r\n =?utf-8?q?b?=\r\n\r\n", "ab"),
        (b"Subject: =?bogus-charset?q?x?=\r\n\r\n", "=?bogus-charset?q?x?="),
        (b"Subject: caf\xc3\xa9 raw\r\n\r\n", None),
        (b"Subject: no blank line\r\n", "no blank line"),
    ]

    def test_subjects(self) -> None:
        """Plain, folded, repeated, missing, encoded and broken subjects."""
        for body, expected in self.cases:
            got = delivery.subject_of(body)
            if expected is None:
                self.assertIsInstance(got, str)
            else:
                self.assertEqual(got, expected, body)

    def test_fast_path_agrees(self) -> None:
        """The fast path gives the email package's answer on valid headers."""
        for body, _ in self.cases:
            if b"bogus" in body or b"\xc3" in body:
                continue
            delivery.check(body)
            self.assertEqual(delivery.subject_of(body), parser_subject(body), body)


class PrepareTests(SynchronousTestCase):
    def test_prepare(self) -> None:
        """prepare normalises and records folder, subject, time and seen."""
        m = delivery.prepare(b"Subject: hi\n\nbody", "Spam", 12.5, True)
        self.assertEqual(
            (m.folder, m.body, m.subject, m.received, m.seen),
            ("Spam", b"Subject: hi\r\n\r\nbody\r\n", "hi", 12.5, True),
        )

    def test_default_time(self) -> None:
        """Without a time, prepare uses now."""
        m = delivery.prepare(b"Subject: hi\n\n")
        self.assertGreater(m.received, 1_600_000_000)
        self.assertFalse(m.seen)

    def test_refusals(self) -> None:
        """Malformed bytes raise MalformedMessage; unknown folders ValueError."""
        self.assertRaises(delivery.MalformedMessage, delivery.prepare, b"")
        self.assertRaises(delivery.MalformedMessage, delivery.prepare, b"x\0: y\n")
        self.assertRaises(
            delivery.MalformedMessage, delivery.prepare, b"S: x\n", size_limit=3
        )
        self.assertRaises(ValueError, delivery.prepare, b"S: x\n", "Archive")


class SMTPHeaderTests(SynchronousTestCase):
    """The header helpers SMTP delivery uses."""

    def test_header_values_unfolded(self) -> None:
        """Values are unfolded, any case, from the header section only."""
        body = b"X-A: one\r\n two\r\nx-a:three\r\n\r\nX-A: body\r\n"
        self.assertEqual(delivery.header_values(body, "X-A"), [b"one two", b"three"])

    def test_spam_flagged(self) -> None:
        """Only X-Spam-Flag: YES (any case) in the header counts."""
        self.assertEqual(
            [
                delivery.spam_flagged(b"X-Spam-Flag: yes\r\n\r\nx\r\n"),
                delivery.spam_flagged(b"X-Spam-Flag: NO\r\n\r\nX-Spam-Flag: YES\r\n"),
            ],
            [True, False],
        )

    def test_from_addresses(self) -> None:
        """From: addresses lower-cased; None without From:; unparsable is ''."""
        self.assertEqual(
            [
                delivery.from_addresses(b"From: A <A@X.example>, b@y\r\n\r\n"),
                delivery.from_addresses(b"Subject: x\r\n\r\n"),
                delivery.from_addresses(b"From: \r\n\r\n"),
            ],
            [["a@x.example", "b@y"], None, [""]],
        )

    def test_submission_fields(self) -> None:
        """Missing From/Date/Message-ID are added at the end of the header."""
        out = delivery.submission_fields(b"Subject: s\r\n\r\nb\r\n", "a@x", "h", 0.0)
        self.assertEqual(
            out.split(b"\r\n")[:3],
            [b"Subject: s", b"From: <a@x>", b"Date: Thu, 01 Jan 1970 00:00:00 +0000"],
        )

    def test_received_field_sanitised(self) -> None:
        """The HELO name cannot break out of the Received: comment."""
        self.assertEqual(
            delivery.received_field(
                "a(b)\u00e9", "192.0.2.1", "smtp.h", "ESMTP", "id1", 0
            ),
            b"Received: from a?b??? ([192.0.2.1])\r\n\tby smtp.h with ESMTP id id1;\r\n"
            b"\tThu, 01 Jan 1970 00:00:00 +0000\r\n",
        )


class SMTPDeliveryTests(SynchronousTestCase):
    def test_route(self) -> None:
        """Accounts and aliases are local, unknown hosted addresses unknown,
        other domains remote."""
        from twisted.internet.task import Clock

        from zpop.config import Config
        from zpop.test.stores import add_account, make_store, result

        store = make_store()
        self.addCleanup(store.close)
        bob = add_account(store, "bob@example.com")
        result(store.add_alias("bob@example.com", "b@example.com"))
        config = Config()
        router = delivery.SMTPDelivery(
            store, config.submission, config.outbound.lifetime, Clock()
        )
        routes = [
            result(router.route(a))
            for a in ("Bob@example.com", "b@example.com", "x@example.com", "x@else.org")
        ]
        self.assertEqual(
            [(r.kind, r.account.id if r.account else None) for r in routes],
            [("local", bob.id), ("local", bob.id), ("unknown", None), ("remote", None)],
        )
