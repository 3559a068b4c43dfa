"""Tests for zpop.imap.envelope: ENVELOPE, written out by hand from RFC
3501 and Dovecot's test vectors (test-imap-envelope.c)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from zpop.imap.envelope import envelope
from zpop.test import imap_corpus as corpus
from zpop.test.imap_corpus import (
    RFC3501_ENVELOPE,
    crlf,
    wire,
)


class EnvelopeTests(SynchronousTestCase):
    def envelope_of(self, *lines: str | bytes) -> bytes:
        return wire(envelope(crlf(*lines, "", "body")))

    def addresses(self, raw: str | bytes) -> bytes:
        """The To member of the envelope of a message with To: ``raw``."""
        value = envelope(
            crlf(b"To: " + (raw.encode() if isinstance(raw, str) else raw), "", "")
        )
        assert isinstance(value, tuple)
        return wire(value[5])

    def test_rfc3501_example(self) -> None:
        self.assertEqual(wire(envelope(corpus.RFC3501_SAMPLE)), RFC3501_ENVELOPE)

    def test_dovecot_vectors(self) -> None:
        """Dovecot's test-imap-envelope.c (copied there from imaptest)."""
        self.assertEqual(
            self.envelope_of(
                "Message-ID: <msg@id>",
                "In-Reply-To: <reply@to.id>",
                "Date: Thu, 15 Feb 2007 01:02:03 +0200",
                "Subject: subject header",
                "From: From Real <fromuser@fromdomain.org>",
                "To: To Real <touser@todomain.org>",
                "Cc: Cc Real <ccuser@ccdomain.org>",
                "Bcc: Bcc Real <bccuser@bccdomain.org>",
                "Sender: Sender Real <senderuser@senderdomain.org>",
                "Reply-To: ReplyTo Real <replytouser@replytodomain.org>",
            ),
            b'("Thu, 15 Feb 2007 01:02:03 +0200" "subject header"'
            b' (("From Real" NIL "fromuser" "fromdomain.org"))'
            b' (("Sender Real" NIL "senderuser" "senderdomain.org"))'
            b' (("ReplyTo Real" NIL "replytouser" "replytodomain.org"))'
            b' (("To Real" NIL "touser" "todomain.org"))'
            b' (("Cc Real" NIL "ccuser" "ccdomain.org"))'
            b' (("Bcc Real" NIL "bccuser" "bccdomain.org"))'
            b' "<reply@to.id>" "<msg@id>")',
        )
        self.assertEqual(
            self.envelope_of(
                "Date: Thu, 15 Feb 2007 01:02:03 +0200", "From: user@domain"
            ),
            b'("Thu, 15 Feb 2007 01:02:03 +0200" NIL ((NIL NIL "user" "domain"))'
            b' ((NIL NIL "user" "domain")) ((NIL NIL "user" "domain"))'
            b" NIL NIL NIL NIL NIL)",
        )
        self.assertEqual(
            self.envelope_of(
                "Date: Thu, 15 Feb 2007 01:02:03 +0200",
                "From: user@domain (Real Name)",
                "To: group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;",
                "Cc: group:;, group2: (foo) ;",
            ),
            b'("Thu, 15 Feb 2007 01:02:03 +0200" NIL'
            b' (("Real Name" NIL "user" "domain")) (("Real Name" NIL "user" "domain"))'
            b' (("Real Name" NIL "user" "domain"))'
            b' ((NIL NIL "group" NIL)(NIL NIL "g1" "d1.org")(NIL NIL "g2" "d2.org")'
            b'(NIL NIL NIL NIL)(NIL NIL "group2" NIL)(NIL NIL "g3" "d3.org")'
            b"(NIL NIL NIL NIL))"
            b' ((NIL NIL "group" NIL)(NIL NIL NIL NIL)(NIL NIL "group2" NIL)'
            b"(NIL NIL NIL NIL)) NIL NIL NIL)",
        )
        self.assertEqual(
            self.envelope_of(
                "Date: Thu, 15 Feb 2007 01:02:03 +0200",
                "From: user@domain (Real Name)",
                "Sender: ",
                "Reply-To: ",
            ),
            b'("Thu, 15 Feb 2007 01:02:03 +0200" NIL'
            b' (("Real Name" NIL "user" "domain")) (("Real Name" NIL "user" "domain"))'
            b' (("Real Name" NIL "user" "domain")) NIL NIL NIL NIL NIL)',
        )
        self.assertEqual(
            self.envelope_of(
                "Date: Thu, 15 Feb 2007 01:02:03 +0200", "From: <@route:user@domain>"
            ),
            b'("Thu, 15 Feb 2007 01:02:03 +0200" NIL ((NIL "@route" "user" "domain"))'
            b' ((NIL "@route" "user" "domain")) ((NIL "@route" "user" "domain"))'
            b" NIL NIL NIL NIL NIL)",
        )

    def test_no_header(self) -> None:
        self.assertEqual(
            wire(envelope(b"")), b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
        )
        self.assertEqual(
            wire(envelope(b"\r\nFrom: in@body\r\n")),
            b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
        )

    def test_raw_strings(self) -> None:
        """Encoded words stay encoded; folding goes; the first field of a
        name counts; an empty Subject is an empty string."""
        self.assertEqual(
            wire(envelope(corpus.ENCODED_WORDS)),
            b'("Wed, 5 Jun 2024 10:30:00 -0400"'
            b' "=?UTF-8?B?UsOpdW5pb24gZGUgbCfDqXF1aXBl?= =?UTF-8?Q?_=E2=80=93_jeudi?="'
            b' (("=?ISO-8859-1?Q?Andr=E9?= Pirard" NIL "PIRARD" "vm1.ulg.ac.be"))'
            b' (("=?ISO-8859-1?Q?Andr=E9?= Pirard" NIL "PIRARD" "vm1.ulg.ac.be"))'
            b' (("=?ISO-8859-1?Q?Andr=E9?= Pirard" NIL "PIRARD" "vm1.ulg.ac.be"))'
            b' (("=?UTF-8?B?8J+Yig==?=" NIL "smile" "example.com")'
            b'("=?utf-8?q?Fran=C3=A7ois?=" NIL "francois" "example.fr"))'
            b' NIL NIL NIL "<CAF=x9Q@mail.example.com>")',
        )
        self.assertEqual(
            wire(envelope(corpus.DUPLICATE_HEADERS)),
            b'(NIL "first subject" ((NIL NIL "first" "example.com"))'
            b' ((NIL NIL "first" "example.com")) ((NIL NIL "first" "example.com"))'
            b" NIL NIL NIL NIL NIL)",
        )
        self.assertEqual(
            self.envelope_of("Subject:", "Date:  \t"),
            b'("" "" NIL NIL NIL NIL NIL NIL NIL NIL)',
        )

    def test_8bit(self) -> None:
        """UTF-8 names and subjects are sent as UTF-8 literals, other 8-bit
        bytes unchanged, NUL as U+FFFD."""
        self.assertEqual(
            wire(envelope(corpus.UTF8_8BIT)),
            b'("Tue, 4 Jun 2024 08:00:00 +0200" {17}\r\nGr\xc3\xbc\xc3\x9fe aus'
            b" K\xc3\xb6ln"
            b' (({13}\r\nJ\xc3\xb6rg M\xc3\xbcller NIL "joerg" "example.de"))'
            b' (({13}\r\nJ\xc3\xb6rg M\xc3\xbcller NIL "joerg" "example.de"))'
            b' (({13}\r\nJ\xc3\xb6rg M\xc3\xbcller NIL "joerg" "example.de"))'
            b' (({15}\r\nZo\xc3\xab \xc3\x85ngstr\xc3\xb6m NIL "zoe" "example.se"))'
            b' NIL NIL NIL "<b1f0c2e4@mail.example.de>")',
        )
        self.assertEqual(
            self.addresses(b"J\xf6rg <j@x.de>"), b'(({4}\r\nJ\xf6rg NIL "j" "x.de"))'
        )
        value = envelope(crlf(b"Subject: a\0b", b""))
        assert isinstance(value, tuple)
        self.assertEqual(value[1], "a\ufffdb")
        self.assertEqual(wire(value[1]), b"{5}\r\na\xef\xbf\xbdb")

    def test_broken_addresses(self) -> None:
        """Best effort, never an error: Dovecot's fillers where RFC 3501
        needs a mailbox or host that the header does not give."""
        missing_domain = b' "MISSING_DOMAIN"))'
        cases = [
            (
                "undisclosed-recipients:;",
                b'((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL))',
            ),
            (
                "Team: a@b.c, d@e.f",
                b'((NIL NIL "Team" NIL)(NIL NIL "a" "b.c")(NIL NIL "d" "e.f")'
                b"(NIL NIL NIL NIL))",
            ),
            ("user", b'((NIL NIL "user"' + missing_domain),
            ("@example.com", b'((NIL NIL "MISSING_MAILBOX" "example.com"))'),
            ("Name <>", b'(("Name" NIL "MISSING_MAILBOX"' + missing_domain),
            ("John <john@example.com", b'(("John" NIL "john" "example.com"))'),
            (
                "a@example.com>, b@example.com",
                b'((NIL NIL "a" "example.com")(NIL NIL "b" "example.com"))',
            ),
            (
                '"Smith, John <john@example.com>',
                b'((NIL NIL "Smith, John <john@example.com>"' + missing_domain,
            ),
            (
                '"Smith, John" <john@example.com>, , ,x@y',
                b'(("Smith, John" NIL "john" "example.com")(NIL NIL "x" "y"))',
            ),
            (
                '"john \\"j\\" doe"@example.com',
                b'((NIL NIL "john \\"j\\" doe" "example.com"))',
            ),
            (
                "John Q. Public <jqp@[192.0.2.1]>",
                b'(("John Q. Public" NIL "jqp" "[192.0.2.1]"))',
            ),
            ("<@a.org,@b.org:x@c.org>", b'((NIL "@a.org,@b.org" "x" "c.org"))'),
            (
                "x @ example . com (c (nested) ment)",
                b'(("c (nested) ment" NIL "x" "example.com"))',
            ),
            ("(only a comment)", b"NIL"),
            ("", b"NIL"),
            (",;:<>@", b'((NIL NIL "MISSING_MAILBOX"' + missing_domain),
            ("a@b\r\n\t, c@d", b'((NIL NIL "a" "b")(NIL NIL "c" "d"))'),
        ]
        for raw, expected in cases:
            self.assertEqual(self.addresses(raw), expected, raw)
