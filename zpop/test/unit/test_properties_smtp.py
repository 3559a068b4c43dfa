"""Property tests for SMTP command parsing (zpop.smtp.SMTPServer).

The sessions are test_smtp's own (``SMTPTestCase``: a real SQLite store
called synchronously, the real checker, realm and Authenticator, a
StringTransport). Whatever a client sends, in any of the three roles, every
reply is a well-formed RFC 5321 reply (``DDD-`` lines then one ``DDD``
line, one code throughout, from the codes SMTP has, with an RFC 3463
enhanced status code of the same class), exactly one per command, none to
message data, and the session keeps answering until it closes with 421 or
221.
"""

from __future__ import annotations

import base64
import re

from hypothesis import given
from hypothesis import strategies as st

from zpop.test import properties  # noqa: F401 (the hypothesis profile)
from zpop.test.unit import test_smtp
from zpop.test.unit.test_smtp import ALICE, ALICE_PASSWORD

#: Every reply code zpop may send (RFC 5321 4.2.3, 4954, 3207, 1870).
CODES = {
    211, 214, 220, 221, 235, 250, 251, 252, 334, 354, 421, 450, 451, 452,
    454, 455, 500, 501, 502, 503, 504, 530, 534, 535, 538, 550, 551, 552,
    553, 554, 555,
}  # fmt: skip
REPLY_LINE = re.compile(rb"^([2-5][0-5][0-9])([ -])([\x20-\x7e]*)$")
ENHANCED = re.compile(rb"^([245])\.[0-9]{1,3}\.[0-9]{1,3} ")
PYTHON = re.compile(rb"Traceback|[A-Za-z](Error|Exception|Failure)\b|File \"")
LINE_LIMIT = 100  # SMTPTestCase's max_line_length

ROLES = ["smtps", "submission", "mx"]
PLAIN_ALICE = b"AUTH PLAIN " + test_smtp.plain(ALICE, ALICE_PASSWORD)

#: Paths: owned, hosted, unknown, remote, null, postmaster, relay tricks.
paths = st.sampled_from(
    [
        b"<alice@example.com>", b"<al@example.com>", b"<bob@example.com>",
        b"<carol@corp.example>", b"<nobody@example.com>", b"<x@remote.example>",
        b"<>", b"<postmaster>", b"<@a.example:u@example.com>",
        b"<u%remote.example@example.com>", b'<"u@x"@example.com>',
        b"<u@[192.0.2.1]>", b"alice@example.com", b"<unclosed",
    ]
)  # fmt: skip
parameters = st.sampled_from(
    [b"", b" SIZE=10", b" SIZE=99999999", b" BODY=8BITMIME", b" FOO=1", b" SIZE=x"]
)
commands = st.one_of(
    st.sampled_from(
        [
            b"EHLO client.example", b"HELO client.example", b"EHLO", b"EHLO a b",
            b"DATA", b"DATA x", b"RSET", b"NOOP", b"VRFY bob", b"EXPN list",
            b"HELP", b"STARTTLS", b"AUTH PLAIN", b"AUTH LOGIN", b"AUTH CRAM-MD5",
            b"AUTH", PLAIN_ALICE, b"  noop  ", b"ehlo client.example",
        ]
    ),
    st.builds(lambda p, x: b"MAIL FROM:" + p + x, paths, parameters),
    st.builds(lambda p, x: b"RCPT TO:" + p + x, paths, parameters),
)  # fmt: skip
#: Raw lines: anything without a CRLF (bare CR, LF and NUL included).
junk = st.binary(max_size=LINE_LIMIT + 20).map(lambda b: b.replace(b"\r\n", b""))
long_lines = st.builds(
    lambda n, fill: b"NOOP " + fill * (n - 5),
    st.integers(min_value=LINE_LIMIT - 1, max_value=LINE_LIMIT * 2),
    st.sampled_from([b"x", b" ", b"\r", b"\n"]),
)
lines = st.one_of(commands, commands, commands, junk, long_lines).map(
    lambda b: b + b"\r\n"
)
#: Message data lines: headers, dots, junk with bare CR and LF.
data_lines = st.one_of(
    st.sampled_from(
        [b"From: alice@example.com", b"Subject: hi", b"", b"body", b"..dot", b".x"]
    ),
    junk,
).map(lambda b: b + b"\r\n")
#: One mail transaction (MAIL, RCPTs, DATA, data, end) or a garbage line.
transaction_items = st.one_of(
    st.builds(
        lambda rcpts, body: [
            b"MAIL FROM:<alice@example.com>\r\n",
            *(b"RCPT TO:" + r + b"\r\n" for r in rcpts),
            b"DATA\r\n",
            b"From: alice@example.com\r\n",
            *body,
            b".\r\n",
        ],
        st.lists(paths, min_size=1, max_size=3),
        st.lists(data_lines, max_size=5),
    ),
    lines.map(lambda line: [line]),
)


class SMTPChecker:
    """Sends lines one at a time; checks every reply; follows the modes."""

    def __init__(self, test: test_smtp.SMTPTestCase) -> None:
        self.test = test
        self.data = False
        self.sasl = False
        self.closed = False

    def replies(self, out: bytes) -> list[tuple[int, list[bytes]]]:
        """Split output into replies, checking each line's shape."""
        self.test.assertIsNone(PYTHON.search(out), out)
        if not out:
            return []
        self.test.assertTrue(out.endswith(b"\r\n"), out)
        found: list[tuple[int, list[bytes]]] = []
        current: list[bytes] = []
        code = None
        for line in out[:-2].split(b"\r\n"):
            match = REPLY_LINE.match(line)
            self.test.assertIsNotNone(match, line)
            assert match is not None
            this = int(match.group(1))
            if current:
                self.test.assertEqual(this, code, out)
            code = this
            current.append(match.group(3))
            if match.group(2) == b" ":
                self.test.assertIn(code, CODES)
                found.append((code, current))
                current, code = [], None
        self.test.assertEqual(current, [], "unterminated multi-line reply")
        return found

    def send(self, line: bytes) -> list[tuple[int, list[bytes]]]:
        verb = line.split(b" ", 1)[0].strip().upper()
        greeting = not self.sasl and not self.data and verb in (b"EHLO", b"HELO")
        in_data = self.data
        out = self.test.send(line)
        if self.closed:
            self.test.assertEqual(out, b"", "answered after closing")
            return []
        got = self.replies(out)
        if in_data and line != b".\r\n":
            self.test.assertEqual(got, [], "a reply to message data")
            return got
        self.test.assertTrue(got, line)
        if len(got) == 2:
            # An error that used up the session's allowance, then the close.
            self.test.assertEqual(got[1][0], 421)
            self.test.assertTrue(self.test.transport.disconnecting)
        else:
            self.test.assertEqual(len(got), 1, (line, out))
        code, texts = got[0]
        self.data = code == 354
        self.sasl = code == 334
        if code == 334:
            self.test.assertRegex(texts[0], rb"^[A-Za-z0-9+/]*={0,2}$")
        elif not (greeting and code == 250) and code != 354:
            for _, texts in got:
                match = ENHANCED.match(texts[0])
                self.test.assertIsNotNone(match, (line, out))
                assert match is not None
                self.test.assertEqual(match.group(1), str(code)[0].encode())
        if greeting and code == 250:
            self.test.assertTrue(texts[0].startswith(b"smtp.example.test"))
        self.test.assertNotEqual(code, 451, "a server error")
        if self.test.transport.disconnecting:
            self.closed = True
            self.test.assertIn(got[-1][0], (421, 221))
        return got

    def still_answers(self) -> None:
        """Unless it closed itself, the session answers NOOP with 250."""
        if self.closed:
            return
        if self.data:
            self.send(b".\r\n")
        elif self.sasl:
            self.send(b"*\r\n")
        if not self.closed:
            self.test.assertEqual(self.test.send(b"NOOP\r\n"), b"250 2.0.0 OK\r\n")


class CommandProperties(test_smtp.SMTPTestCase):
    def fresh(self, role: str) -> SMTPChecker:
        """A new session (and login throttle) in ``role``."""
        self.role = role
        self.build()
        self.assertRegex(self.greeting, rb"^220 smtp\.example\.test ESMTP")
        return SMTPChecker(self)

    @given(st.sampled_from(ROLES), st.lists(lines, max_size=10))
    def test_any_lines(self, role: str, sent: list[bytes]) -> None:
        """Each command line gets one well-formed reply; NOOP works afterwards."""
        checker = self.fresh(role)
        for line in sent:
            checker.send(line)
        checker.still_answers()
        self.assertEqual(self.flushLoggedErrors(), [])

    @given(st.sampled_from(ROLES), st.lists(transaction_items, max_size=6))
    def test_transactions(self, role: str, items: list[list[bytes]]) -> None:
        """Transactions among garbage: one reply per command, one per end of data."""
        checker = self.fresh(role)
        self.ready()
        checker.closed = False
        ends = 0
        for item in items:
            for line in item:
                was_data = checker.data
                got = checker.send(line)
                if was_data and line == b".\r\n" and got:
                    ends += 1
                    self.assertIn(got[0][0], (250, 552, 554), got)
        checker.still_answers()
        self.assertEqual(self.flushLoggedErrors(), [])

    @given(
        st.sampled_from([b"PLAIN", b"LOGIN"]),
        st.lists(
            st.one_of(
                st.binary(max_size=40).map(lambda b: b.replace(b"\r\n", b"")),
                st.binary(max_size=40).map(base64.b64encode),
            ),
            min_size=1,
            max_size=3,
        ),
        st.booleans(),
    )
    def test_sasl_responses(
        self, mechanism: bytes, responses: list[bytes], initial: bool
    ) -> None:
        """Arbitrary SASL responses get well-formed replies and never log in."""
        checker = self.fresh("smtps")
        checker.send(b"EHLO client.example\r\n")
        first = b" " + responses.pop(0) if initial else b""
        checker.send(b"AUTH " + mechanism + first + b"\r\n")
        for response in responses:
            checker.send(response + b"\r\n")
        self.assertFalse(self.proto.authenticated)
        checker.still_answers()
        self.assertEqual(self.flushLoggedErrors(), [])

    @given(
        st.sampled_from(ROLES),
        st.binary(max_size=300),
        st.lists(st.integers(min_value=1, max_value=40), max_size=8),
    )
    def test_chunking_does_not_matter(
        self, role: str, blob: bytes, cuts: list[int]
    ) -> None:
        """Any bytes give the same replies however the network cuts them."""
        data = b"EHLO client.example\r\n" + blob
        self.fresh(role)
        expected = self.send(data)
        self.fresh(role)
        out = b""
        position = 0
        for cut in cuts:
            out += self.send(data[position : position + cut])
            position += cut
        out += self.send(data[position:])
        self.assertEqual(out, expected)
        SMTPChecker(self).replies(out)
        self.assertEqual(self.flushLoggedErrors(), [])
