"""Tests for zpop.imap.framer: IMAP commands out of a byte stream, with
literals, LITERAL+, raw lines, and bounded memory for hostile input."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from zpop.imap.framer import (
    LINE_TOO_LONG,
    LITERAL_TOO_BIG,
    TOO_MANY_LITERALS,
    CommandFramer,
    Complete,
    Continue,
    Event,
    RawLine,
    Refuse,
)
from zpop.test import properties  # noqa: F401 (the hypothesis profile)


def limits(name: bytes) -> int:
    """A big literal for APPEND, a small one for anything else."""
    return 100_000 if name == b"APPEND" else 1000


def make(max_line: int = 256, max_literals: int = 1000) -> CommandFramer:
    return CommandFramer(
        max_literal=limits, max_line=max_line, max_literals=max_literals
    )


def drain(framer: CommandFramer, chunks: list[bytes]) -> list[Event]:
    """Every event of ``chunks``, as a server that reads each command as
    soon as the one before it is done."""
    events: list[Event] = []
    for chunk in chunks:
        got = framer.feed(chunk)
        while got:
            events += got
            got = framer.feed(b"")
    return events


def splits(data: bytes) -> list[list[bytes]]:
    """``data`` cut in two at every index, and cut into single bytes."""
    halves = [[data[:i], data[i:]] for i in range(len(data) + 1)]
    return [*halves, [data[i : i + 1] for i in range(len(data))]]


def framed(data: bytes, **kwargs: int) -> list[Event]:
    return drain(make(**kwargs), [data])


#: Pipelined commands: a synchronizing literal holding CRLF and a marker,
#: a LITERAL+ one, a zero-length one, a bare LF line end, a bare CR that
#: is no line end, and an empty line.
STREAM = (
    b"A1 LOGIN {4}\r\nfr\r\n {5}\r\n{3}\r\n\r\n"
    b"A2 APPEND INBOX (\\Seen) {5+}\r\nhello\r\n"
    b"A3 LOGIN {0}\r\n {1}\r\nx\n"
    b"A4 NO\rOP\r\n"
    b"\r\n"
    b"A5 LOGOUT\n"
)
EVENTS: list[Event] = [
    Continue(),
    Continue(),
    Complete((b"A1 LOGIN {4}", b"fr\r\n", b" {5}", b"{3}\r\n", b"")),
    Complete((b"A2 APPEND INBOX (\\Seen) {5+}", b"hello", b"")),
    Continue(),
    Continue(),
    Complete((b"A3 LOGIN {0}", b"", b" {1}", b"x", b"")),
    Complete((b"A4 NO\rOP",)),
    Complete((b"",)),
    Complete((b"A5 LOGOUT",)),
]


class FramingTests(SynchronousTestCase):
    def test_line(self) -> None:
        """A command without literals is its line, CRLF or LF removed."""
        self.assertEqual(framed(b"A1 NOOP\r\n"), [Complete((b"A1 NOOP",))])
        self.assertEqual(framed(b"A1 NOOP\n"), [Complete((b"A1 NOOP",))])

    def test_no_line_end_yet(self) -> None:
        """Nothing comes out before the line end; a CR alone is none."""
        self.assertEqual(framed(b"A1 NOOP"), [])
        self.assertEqual(framed(b"A1 NOOP\r"), [])
        self.assertEqual(framed(b"A1 NO\rOP\r\n"), [Complete((b"A1 NO\rOP",))])

    def test_stream(self) -> None:
        """Literals, LITERAL+, bare LF, CR inside a line, empty lines."""
        self.assertEqual(framed(STREAM), EVENTS)

    def test_every_split(self) -> None:
        """Cut anywhere, or fed byte by byte, the events are the same."""
        for chunks in splits(STREAM):
            self.assertEqual(drain(make(), chunks), EVENTS, chunks)

    def test_one_command_a_feed(self) -> None:
        """feed stops after a command; the rest waits for feed(b"")."""
        framer = make()
        self.assertEqual(
            framer.feed(b"A1 NOOP\r\nA2 NOOP\r\nA3"), [Complete((b"A1 NOOP",))]
        )
        self.assertEqual(framer.buffered, 11)
        self.assertEqual(framer.feed(b""), [Complete((b"A2 NOOP",))])
        self.assertEqual(framer.feed(b""), [])
        self.assertEqual(framer.feed(b" NOOP\r\n"), [Complete((b"A3 NOOP",))])
        self.assertEqual(framer.buffered, 0)

    def test_continue_then_literal(self) -> None:
        """The Continue comes with the marker line, the command after the
        literal and the rest of the command."""
        framer = make()
        self.assertEqual(framer.feed(b"A1 LOGIN {3}\r\n"), [Continue()])
        self.assertEqual(framer.feed(b"fr"), [])
        self.assertEqual(framer.feed(b"e"), [])
        self.assertEqual(
            framer.feed(b" pw\r\n"), [Complete((b"A1 LOGIN {3}", b"fre", b" pw"))]
        )

    def test_nul_passes(self) -> None:
        """NUL is the parser's to refuse; the framer only frames."""
        self.assertEqual(framed(b"A1 NO\0OP\r\n"), [Complete((b"A1 NO\0OP",))])

    def test_not_markers(self) -> None:
        """Braces that are no literal size stay text for the parser."""
        for line in (
            b"A1 LOGIN {}",
            b"A1 LOGIN {abc}",
            b"A1 LOGIN {-5}",
            b"A1 LOGIN {+5}",
            b"A1 LOGIN { 5}",
            b"A1 LOGIN {5}x",
            b"A1 LOGIN {5++}",
            b"A1 LOGIN {5} ",
        ):
            self.assertEqual(framed(line + b"\r\n"), [Complete((line,))], line)

    def test_marker_before_cr_only(self) -> None:
        """Only one CR goes with the line end: {3}CR CR LF is no marker."""
        self.assertEqual(
            framed(b"A1 LOGIN {3}\r\r\n"), [Complete((b"A1 LOGIN {3}\r",))]
        )

    def test_leading_zeros(self) -> None:
        """A size is digits: leading zeros are allowed, ten at most."""
        self.assertEqual(
            framed(b"A1 LOGIN {0000000003}\r\nabc\r\n"),
            [Continue(), Complete((b"A1 LOGIN {0000000003}", b"abc", b""))],
        )


class LimitTests(SynchronousTestCase):
    def test_name_for_limit(self) -> None:
        """max_literal gets the upper-case word after the tag, once a
        command however many literals it has."""
        names: list[bytes] = []

        def record(name: bytes) -> int:
            names.append(name)
            return 10

        framer = CommandFramer(max_literal=record, max_line=256)
        drain(
            framer,
            [
                b"A1 append INBOX {1}\r\nx\r\n",
                b"A2 uid FETCH {1}\r\nx {1}\r\ny\r\n",
                b"A3 {1}\r\nx\r\n",
                b"{1}\r\nx\r\n",
            ],
        )
        self.assertEqual(names, [b"APPEND", b"UID", b"{1}", b""])

    def test_literal_at_limit(self) -> None:
        """A literal of max_literal octets is taken, one more is not."""
        data = b"A1 LOGIN {1000}\r\n" + b"x" * 1000 + b"\r\n"
        self.assertEqual(
            framed(data),
            [Continue(), Complete((b"A1 LOGIN {1000}", b"x" * 1000, b""))],
        )
        self.assertEqual(
            framed(b"A1 LOGIN {1001}\r\n"),
            [Refuse(b"A1", LITERAL_TOO_BIG, fatal=False, too_big=True)],
        )

    def test_append_limit(self) -> None:
        """APPEND has a limit of its own."""
        self.assertEqual(framed(b"A1 APPEND INBOX {100000}\r\n"), [Continue()])
        self.assertEqual(
            framed(b"A1 APPEND INBOX {100001}\r\n"),
            [Refuse(b"A1", LITERAL_TOO_BIG, fatal=False, too_big=True)],
        )

    def test_huge_synchronizing(self) -> None:
        """A huge synchronizing literal is refused with no Continue, so
        the client never sends it; the next command is read as usual."""
        for size in (b"999999999", b"9999999999", b"99999999999999999999"):
            data = b"A1 APPEND INBOX {" + size + b"}\r\nA2 NOOP\r\n"
            expected = [
                Refuse(b"A1", LITERAL_TOO_BIG, fatal=False, too_big=True),
                Complete((b"A2 NOOP",)),
            ]
            for chunks in splits(data):
                self.assertEqual(drain(make(), chunks), expected, chunks)

    def test_huge_non_synchronizing(self) -> None:
        """A LITERAL+ literal over the limit is on its way: fatal, and the
        framer takes nothing more, its octets least of all."""
        framer = make()
        data = b"A1 LOGIN {1001+}\r\n" + b"A2 DELETE INBOX\r\n" * 10
        self.assertEqual(
            framer.feed(data),
            [Refuse(b"A1", LITERAL_TOO_BIG, fatal=True, too_big=True)],
        )
        self.assertEqual(framer.buffered, 0)
        self.assertEqual(framer.feed(b"A3 NOOP\r\n"), [])
        self.assertEqual(
            framed(b"A1 LOGIN {12345678901+}\r\n"),
            [Refuse(b"A1", LITERAL_TOO_BIG, fatal=True, too_big=True)],
        )

    def test_literals_of_a_command_add_up(self) -> None:
        """max_literal bounds all literals of one command together."""
        data = b"A1 LOGIN {600}\r\n" + b"u" * 600 + b" {401}\r\n"
        self.assertEqual(
            framed(data),
            [
                Continue(),
                Refuse(b"A1", LITERAL_TOO_BIG, fatal=False, too_big=True),
            ],
        )
        data = b"A1 LOGIN {600}\r\n" + b"u" * 600 + b" {400}\r\n" + b"p" * 400
        self.assertEqual(
            framed(data + b"\r\n"),
            [
                Continue(),
                Continue(),
                Complete((b"A1 LOGIN {600}", b"u" * 600, b" {400}", b"p" * 400, b"")),
            ],
        )

    def test_too_many_literals(self) -> None:
        """A command may have max_literals literals, not one more."""
        data = b"A1 X {1}\r\na {1}\r\nb {1}\r\n"
        self.assertEqual(
            framed(data + b"A2 NOOP\r\n", max_literals=2),
            [
                Continue(),
                Continue(),
                Refuse(b"A1", TOO_MANY_LITERALS, fatal=False),
                Complete((b"A2 NOOP",)),
            ],
        )
        self.assertEqual(
            framed(b"A1 X {1+}\r\na {1+}\r\nb\r\n", max_literals=1),
            [Refuse(b"A1", TOO_MANY_LITERALS, fatal=True)],
        )

    def test_max_line_too_small(self) -> None:
        with self.assertRaises(ValueError):
            CommandFramer(max_literal=limits, max_line=100)


class LongLineTests(SynchronousTestCase):
    def test_at_limit(self) -> None:
        """A line of max_line octets is a command; one more is refused,
        cut anywhere."""
        line = b"A1 NOOP " + b"x" * 248
        self.assertEqual(framed(line + b"\r\n"), [Complete((line,))])
        for chunks in splits(line + b"y\r\nA2 NOOP\r\n"):
            self.assertEqual(
                drain(make(), chunks),
                [Refuse(b"A1", LINE_TOO_LONG, fatal=False), Complete((b"A2 NOOP",))],
                chunks,
            )

    def test_not_buffered(self) -> None:
        """A line without end is dropped as it comes, not held."""
        framer = make()
        self.assertEqual(framer.feed(b"A1 LOGIN "), [])
        for _ in range(1000):
            self.assertEqual(framer.feed(b"x" * 1000), [])
            self.assertEqual(framer.buffered, 0)
        self.assertEqual(
            framer.feed(b"\r\nA2 NOOP\r\n"),
            [Refuse(b"A1", LINE_TOO_LONG, fatal=False)],
        )
        self.assertEqual(framer.feed(b""), [Complete((b"A2 NOOP",))])

    def test_buffer_bound(self) -> None:
        """Whatever the chunks, at most max_line + 1 octets wait."""
        framer = make()
        for _ in range(600):
            framer.feed(b"y")
            self.assertTrue(framer.buffered <= 257, framer.buffered)

    def test_tags(self) -> None:
        """The refusal has the tag if it is one, else "*"."""
        for start, tag in (
            (b"A1 ", b"A1"),
            (b"", b"*"),
            (b"A+1 ", b"*"),
            (b"A1(x ", b"*"),
            (b"t" * 64 + b" ", b"t" * 64),
            (b"t" * 65 + b" ", b"*"),
            (b"\0A1 ", b"*"),
        ):
            data = start + b"x" * 300 + b"\r\n"
            for chunks in ([data], [data[:200], data[200:]]):
                self.assertEqual(
                    drain(make(), chunks),
                    [Refuse(tag, LINE_TOO_LONG, fatal=False)],
                    start,
                )

    def test_marker_on_long_line(self) -> None:
        """A too-long line announcing a LITERAL+ literal is fatal (its
        octets follow); a synchronizing one is not (they do not)."""
        for marker, fatal in ((b"{5+}", True), (b"{5}", False), (b"{x+}", False)):
            data = b"A1 LOGIN " + b"x" * 300 + marker + b"\r\n"
            for chunks in splits(data):
                self.assertEqual(
                    drain(make(), chunks),
                    [Refuse(b"A1", LINE_TOO_LONG, fatal=fatal)],
                    chunks,
                )

    def test_long_continuation(self) -> None:
        """max_line counts all text of a command, not its literals."""
        data = b"A1 LOGIN {300}\r\n" + b"u" * 300 + b" " + b"p" * 241 + b"\r\n"
        self.assertEqual(
            framed(data),
            [
                Continue(),
                Complete((b"A1 LOGIN {300}", b"u" * 300, b" " + b"p" * 241)),
            ],
        )
        data = b"A1 LOGIN {300}\r\n" + b"u" * 300 + b" " + b"p" * 242 + b"\r\n"
        self.assertEqual(
            framed(data), [Continue(), Refuse(b"A1", LINE_TOO_LONG, fatal=False)]
        )


class ModeTests(SynchronousTestCase):
    def test_raw_line(self) -> None:
        """After expect_line, the next line comes raw, markers and all;
        then commands again."""
        framer = make()
        data = b"A1 IDLE\r\nDONE {5}\r\nA2 NOOP\r\n"
        self.assertEqual(framer.feed(data), [Complete((b"A1 IDLE",))])
        framer.expect_line()
        self.assertEqual(framer.feed(b""), [RawLine(b"DONE {5}")])
        self.assertEqual(framer.feed(b""), [Complete((b"A2 NOOP",))])

    def test_raw_line_split(self) -> None:
        framer = make()
        self.assertEqual(
            framer.feed(b"A1 AUTHENTICATE PLAIN\r\n"),
            [Complete((b"A1 AUTHENTICATE PLAIN",))],
        )
        framer.expect_line()
        self.assertEqual(framer.feed(b"AGZy"), [])
        self.assertEqual(framer.feed(b"ZWQA\n"), [RawLine(b"AGZyZWQA")])

    def test_raw_line_too_long(self) -> None:
        """A raw line too long is refused untagged, not buffered."""
        for chunks in (
            [b"z" * 300 + b"\r\nA2 NOOP\r\n"],
            [b"z" * 300, b"\r\nA2 NOOP\r\n"],
        ):
            framer = make()
            framer.expect_line()
            self.assertEqual(
                drain(framer, chunks),
                [Refuse(b"*", LINE_TOO_LONG, fatal=False), Complete((b"A2 NOOP",))],
            )

    def test_expect_line_mid_command(self) -> None:
        framer = make()
        self.assertEqual(framer.feed(b"A1 LOGIN {3}\r\n"), [Continue()])
        self.assertRaises(RuntimeError, framer.expect_line)

    def test_discard(self) -> None:
        """discard drops what is buffered (STARTTLS) and a half-read
        command, and framing starts afresh."""
        framer = make()
        self.assertEqual(
            framer.feed(b"A1 STARTTLS\r\nA2 LOGIN x y\r\n"),
            [Complete((b"A1 STARTTLS",))],
        )
        framer.discard()
        self.assertEqual(framer.buffered, 0)
        self.assertEqual(framer.feed(b""), [])
        self.assertEqual(framer.feed(b"A3 LOGIN {5}\r\nab"), [Continue()])
        framer.discard()
        self.assertEqual(framer.feed(b"A4 NOOP\r\n"), [Complete((b"A4 NOOP",))])


#: Streams rich in what framing turns on: markers good, bad, too big and
#: LITERAL+, line ends of every kind, long runs.
streams = st.lists(
    st.sampled_from(
        [b"A1 ", b"LOGIN ", b"APPEND ", b"{3}", b"{2+}", b"{0}", b"{1001}", b"{9+}"]
        + [b"{}", b"abc", b"\r\n", b"\n", b"\r", b" ", b"x" * 100, b"\0", b"+"]
    ),
    max_size=40,
).map(b"".join)


class FramingProperties(SynchronousTestCase):
    @given(streams, st.lists(st.integers(min_value=0, max_value=10_000), max_size=6))
    def test_any_cut(self, stream: bytes, points: list[int]) -> None:
        """Cut anywhere, a stream gives the events it gives whole, and
        no more than a line's worth is ever left waiting."""
        n = len(stream) + 1
        offsets = sorted({p % n for p in points} | {0, len(stream)})
        chunks = [stream[a:b] for a, b in zip(offsets, offsets[1:], strict=False)]
        framer = make()
        self.assertEqual(drain(framer, chunks), framed(stream))
        self.assertTrue(framer.buffered <= 257, framer.buffered)
