"""Property tests for POP3 command parsing (zpop.pop3.POP3Server).

The sessions are test_pop3's own (StringTransport, Clock, in-memory
mailboxes of ``MESSAGES``; ``send`` settles the clock and body producer).
Whatever a client sends, every reply is a ``+OK``, ``-ERR`` or ``+ ``
continuation line (multi-line answers only where RFC 1939 has them, dot-
stuffed and terminated), never a Python exception name or traceback, and
the session keeps answering until it closes with a status line of its own.
"""

from __future__ import annotations

import base64
import re

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from zpop.config import Config, LimitsConfig, ServerConfig
from zpop.test import properties  # noqa: F401 (the hypothesis profile)
from zpop.test.unit import test_pop3
from zpop.test.unit.test_pop3 import MESSAGES

#: Short, so that random input reaches the over-long line handling.
LINE_LIMIT = 64

STATUS = re.compile(rb"^(\+OK( [\x20-\x7e]+)?|-ERR (\[[A-Z][A-Z/-]*\] )?[\x20-\x7e]+)$")
CONTINUATION = re.compile(rb"^\+ [A-Za-z0-9+/]*={0,2}$")
PYTHON = re.compile(rb"Traceback|[A-Za-z](Error|Exception|Failure)\b|File \"")
CAPABILITIES = (
    b"+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
    b"AUTH-RESP-CODE\r\nPIPELINING\r\nUSER\r\nSASL PLAIN LOGIN\r\n"
    b"IMPLEMENTATION zpop\r\n.\r\n"
)

VERBS = [
    b"CAPA", b"USER", b"PASS", b"AUTH", b"STLS", b"STAT", b"LIST", b"RETR",
    b"DELE", b"NOOP", b"RSET", b"TOP", b"UIDL", b"APOP", b"LAST", b"RPOP",
]  # fmt: skip

#: One argument: message numbers in and out of range, SASL words, junk.
arguments = st.one_of(
    st.integers(min_value=1, max_value=3).map(lambda n: str(n).encode()),
    st.integers(min_value=-2, max_value=5).map(lambda n: str(n).encode()),
    st.sampled_from([b"0", b"01", b"+1", b"1.0", b"99999999999", b"\xff", b"*"]),
    st.sampled_from([b"PLAIN", b"login", b"CRAM-MD5", b"=", b"AGFAYgBj"]),
    st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")),
)
commands = st.builds(
    lambda verb, case, seps, args, end: (
        (verb.lower() if case else verb)
        + b"".join(sep + arg for sep, arg in zip(seps, args, strict=False))
        + end
    ),
    st.sampled_from(VERBS) | st.binary(max_size=6).map(lambda b: b.replace(b"\n", b"")),
    st.booleans(),
    st.lists(st.sampled_from([b" ", b" ", b" ", b"  ", b"\t"]), min_size=3, max_size=3),
    st.lists(arguments, max_size=3),
    st.sampled_from([b"\r\n", b"\n", b"\r\r\n"]),
)
#: Garbage lines, including over-long ones.
junk_lines = st.binary(max_size=LINE_LIMIT * 2).map(
    lambda b: b.replace(b"\n", b"") + b"\r\n"
)
#: Lines around the limit: the last allowed length and over-long ones.
long_lines = st.builds(
    lambda n, fill: b"NOOP " + fill * (n - 5) + b"\r\n",
    st.integers(min_value=LINE_LIMIT - 1, max_value=LINE_LIMIT * 3),
    st.sampled_from([b"x", b" ", b"\r"]),
)
lines = st.one_of(commands, commands, commands, junk_lines, long_lines)
#: Transaction commands with message numbers, mostly in range.
transaction_commands = st.builds(
    lambda verb, numbers: b" ".join([verb, *numbers]) + b"\r\n",
    st.sampled_from([b"STAT", b"LIST", b"RETR", b"DELE", b"RSET", b"TOP", b"UIDL"]),
    st.lists(
        st.integers(min_value=0, max_value=4).map(lambda n: str(n).encode()),
        max_size=2,
    ),
)
transaction_lines = st.one_of(transaction_commands, transaction_commands, lines)


def session(asynchronous: bool = False) -> test_pop3.ProtocolMixin:
    """A fresh, connected test_pop3 session (implicit TLS) with a short
    line limit."""
    cls = (
        test_pop3.AsynchronousMailboxTests
        if asynchronous
        else test_pop3.SynchronousMailboxTests
    )
    case = cls("test_greeting")
    case.setUp()
    case.config = Config(
        server=ServerConfig(hostname="example.test"),
        limits=LimitsConfig(line_length=LINE_LIMIT),
    )
    case.connect(implicit_tls=True)
    return case


def unstuff(block: list[bytes]) -> bytes:
    """The body a client reads from a multi-line answer's lines."""
    return b"".join(
        (line[1:] if line[:1] == b"." else line) + b"\r\n" for line in block
    )


class Checker:
    """Sends lines one at a time and checks each answer's shape and content."""

    def __init__(self, test: SynchronousTestCase, pop: test_pop3.ProtocolMixin) -> None:
        self.test = test
        self.pop = pop
        self.sasl = False
        self.logged_in = False
        self.closed = False
        self.deleted: set[int] = set()

    def multiline(self, words: list[bytes]) -> bool:
        """Whether a +OK answer to this command carries a dot-ended block."""
        if self.sasl or not words:
            return False
        verb = words[0].upper()
        n = len(words) - 1
        if verb == b"CAPA":
            return True
        if not self.logged_in:
            return verb == b"AUTH" and n == 0
        return (verb in (b"LIST", b"UIDL") and n == 0) or (verb, n) in (
            (b"RETR", 1),
            (b"TOP", 2),
        )

    def send(self, line: bytes) -> list[bytes]:
        """Send one line; the answer's lines, checked."""
        was_sasl = self.sasl
        words = line.rstrip(b"\r\n").split()
        out = self.pop.send(line)
        if self.closed:
            self.test.assertEqual(out, b"", "answered after closing")
            return []
        self.test.assertIsNone(PYTHON.search(out), out)
        self.test.assertTrue(out.endswith(b"\r\n"), out)
        got = out[:-2].split(b"\r\n")
        first = got[0]
        self.sasl = False
        if CONTINUATION.match(first):
            self.test.assertEqual(len(got), 1, out)
            verb = words[0].upper() if words else b""
            self.test.assertTrue(was_sasl or verb == b"AUTH", (line, out))
            self.sasl = True
        else:
            self.test.assertRegex(first, STATUS)
            if first.startswith(b"+OK") and self.multiline(words):
                self.test.assertEqual(got[-1], b".", out)
                block = got[1:-1]
                self.test.assertNotIn(b".", block)
                self.check_block(words, block)
            else:
                self.test.assertEqual(len(got), 1, (line, out))
            if first.startswith(b"+OK Logged in"):
                self.logged_in = True
            self.note_deletion(words, first)
        self.test.assertNotIn(b"Temporary server error", first)
        if self.pop.transport.disconnecting:
            self.closed = True
        return got

    def note_deletion(self, words: list[bytes], first: bytes) -> None:
        verb = words[0].upper() if words and not self.sasl else b""
        if verb == b"DELE" and first.startswith(b"+OK"):
            self.deleted.add(int(words[1]) - 1)
        elif verb == b"RSET" and first.startswith(b"+OK"):
            self.deleted.clear()

    def check_block(self, words: list[bytes], block: list[bytes]) -> None:
        verb = words[0].upper()
        live = [i for i in range(len(MESSAGES)) if i not in self.deleted]
        if verb == b"CAPA":
            self.test.assertTrue(
                all(re.match(rb"^[A-Z][A-Za-z -]*$", b) for b in block)
            )
        elif verb == b"AUTH":
            self.test.assertEqual(block, [b"PLAIN", b"LOGIN"])
        elif verb == b"LIST":
            self.test.assertEqual(
                block, [b"%d %d" % (i + 1, len(MESSAGES[i])) for i in live]
            )
        elif verb == b"UIDL":
            self.test.assertEqual(block, [b"%d uid-%d" % (i + 1, i + 1) for i in live])
        elif verb == b"RETR":
            self.test.assertEqual(unstuff(block), MESSAGES[int(words[1]) - 1])
        else:
            body = MESSAGES[int(words[1]) - 1]
            header, _, rest = body.partition(b"\r\n\r\n")
            kept = rest.split(b"\r\n")[:-1][: int(words[2])]
            self.test.assertEqual(
                unstuff(block),
                header + b"\r\n\r\n" + b"".join(k + b"\r\n" for k in kept),
            )

    def still_answers(self) -> None:
        """Unless the session closed itself, it answers CAPA (and NOOP) fully."""
        if self.closed:
            return
        self.send(b"\r\n")  # ends any partial or discarded line
        if self.sasl:
            self.send(b"*\r\n")
        if self.closed:
            return
        self.test.assertEqual(self.pop.send(b"CAPA\r\n"), CAPABILITIES)
        noop = b"+OK\r\n" if self.logged_in else b"-ERR Log in first\r\n"
        self.test.assertEqual(self.pop.send(b"NOOP\r\n"), noop)


class AuthorizationProperties(SynchronousTestCase):
    def run_lines(self, sent: list[bytes], asynchronous: bool = False) -> Checker:
        checker = Checker(self, session(asynchronous))
        for line in sent:
            checker.send(line)
        self.assertEqual(self.flushLoggedErrors(), [])
        return checker

    @given(st.lists(lines, max_size=8))
    def test_any_lines(self, sent: list[bytes]) -> None:
        """Before login each line gets one well-formed answer; CAPA still works."""
        checker = self.run_lines(sent)
        self.assertFalse(checker.logged_in)
        checker.still_answers()

    @given(
        st.sampled_from([b"PLAIN", b"LOGIN", b"plain"]),
        st.lists(
            st.one_of(
                st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")),
                st.binary(max_size=30).map(base64.b64encode),
            ),
            min_size=1,
            max_size=3,
        ),
        st.booleans(),
    )
    def test_sasl_responses(
        self, mechanism: bytes, responses: list[bytes], initial: bool
    ) -> None:
        """Arbitrary SASL responses get +/-ERR answers and never log anyone in."""
        first = b" " + responses.pop(0) if initial else b""
        sent = [b"AUTH " + mechanism + first + b"\r\n"]
        sent += [r + b"\r\n" for r in responses]
        checker = self.run_lines(sent)
        self.assertFalse(checker.logged_in)
        checker.still_answers()

    @given(
        st.lists(
            st.sampled_from([b"USER x@y.z", b"CAPA", b"AUTH", b"NOOP"]), max_size=4
        ).map(lambda ls: b"".join(line + b"\r\n" for line in ls)),
        st.binary(max_size=3 * LINE_LIMIT),
        st.lists(st.integers(min_value=1, max_value=20), max_size=6),
    )
    def test_chunking_does_not_matter(
        self, prefix: bytes, blob: bytes, cuts: list[int]
    ) -> None:
        """Any bytes give the same well-formed answers however they are cut."""
        data = prefix + blob
        whole = session()
        expected = whole.send(data)
        pieces = session()
        out = b""
        position = 0
        for cut in cuts:
            out += pieces.send(data[position : position + cut])
            position += cut
        out += pieces.send(data[position:])
        self.assertEqual(out, expected)
        self.assertIsNone(PYTHON.search(out))
        in_block = False
        for line in out.split(b"\r\n")[:-1]:
            if in_block:
                in_block = line != b"."
                self.assertRegex(line, rb"^([A-Z][A-Za-z -]*|\.)$")
            else:
                self.assertTrue(STATUS.match(line) or CONTINUATION.match(line), line)
                in_block = line in (
                    b"+OK Capability list follows",
                    b"+OK Mechanisms follow",
                )
        self.assertEqual(self.flushLoggedErrors(), [])


class TransactionProperties(SynchronousTestCase):
    @given(st.lists(transaction_lines, max_size=10), st.booleans())
    def test_any_lines(self, sent: list[bytes], asynchronous: bool) -> None:
        """Logged in, each line gets one answer; blocks carry the mailbox's data."""
        pop = session(asynchronous)
        pop.login()
        checker = Checker(self, pop)
        checker.logged_in = True
        for line in sent:
            checker.send(line)
        checker.still_answers()
        self.assertEqual(self.flushLoggedErrors(), [])

    @given(
        st.lists(
            st.sampled_from([b"DELE", b"RSET", b"RETR", b"LIST", b"STAT"]).flatmap(
                lambda verb: st.integers(min_value=0, max_value=4).map(
                    lambda n: verb + (b" %d" % n if verb in (b"DELE", b"RETR") else b"")
                )
            ),
            max_size=8,
        ),
        st.booleans(),
    )
    def test_quit_applies_acknowledged_deletions(
        self, sent: list[bytes], asynchronous: bool
    ) -> None:
        """QUIT applies exactly the DELEs answered +OK since the last RSET."""
        pop = session(asynchronous)
        pop.login()
        checker = Checker(self, pop)
        checker.logged_in = True
        for line in sent:
            checker.send(line + b"\r\n")
        deleted = set(checker.deleted)
        got = pop.send(b"QUIT\r\n")
        self.assertEqual(got, b"+OK Bye, %d messages deleted\r\n" % len(deleted))
        mailbox = pop.mailbox
        self.assertEqual(mailbox.synced, [deleted])
        self.assertTrue(pop.transport.disconnecting)
