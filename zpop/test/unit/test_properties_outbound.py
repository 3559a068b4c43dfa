"""Property tests for reading SMTP replies in the outbound relay
(zpop.outbound.client.RelayClient and RemoteReply), in memory: a
StringTransport and a Clock, no sockets.

Whatever a remote server sends, however the network cuts it, the client
either hands out exactly the replies that were sent, in order, or fails
the connection with a DeliveryError; no other exception, no hang.
"""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from zpop.outbound.client import (
    MAX_REPLY_LINE,
    MAX_REPLY_LINES,
    DeliveryError,
    RelayClient,
    RemoteReply,
)
from zpop.test import properties  # noqa: F401 (the hypothesis profile)
from zpop.test.unit.test_smtp import TLSStringTransport

TIMEOUT = 30.0
STATUS = re.compile(r"^[245]\.[0-9]{1,3}\.[0-9]{1,3}$")

codes = st.integers(min_value=200, max_value=599)
#: RemoteReply text: printable, possibly starting with an enhanced status code.
texts = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30),
    st.builds(
        lambda c, a, b, t: f"{c}.{a}.{b} {t}",
        st.sampled_from("245"),
        st.integers(min_value=0, max_value=999),
        st.integers(min_value=0, max_value=999),
        st.text("abc xyz", max_size=10),
    ),
).map(str.encode)
replies = st.builds(
    lambda code, lines: RemoteReply(code, tuple(lines)),
    codes,
    st.lists(texts, min_size=1, max_size=4),
)
cut_points = st.lists(st.integers(min_value=0, max_value=10_000), max_size=6)


def wire(reply: RemoteReply, eol: bytes) -> bytes:
    """A reply as a server writes it: CODE-text lines, then CODE text."""
    out = b""
    for i, line in enumerate(reply.lines):
        sep = b" " if i == len(reply.lines) - 1 else b"-"
        out += b"%d" % reply.code + sep + line + eol
    return out


def cut(data: bytes, points: list[int]) -> list[bytes]:
    n = len(data) + 1
    offsets = sorted({p % n for p in points} | {0, len(data)})
    return [data[a:b] for a, b in zip(offsets, offsets[1:], strict=False)]


class Client:
    """A RelayClient connected to a StringTransport, under a Clock."""

    def __init__(self, transport: StringTransport | None = None) -> None:
        self.clock = Clock()
        self.transport = transport or StringTransport()
        self.client = RelayClient(self.clock, TIMEOUT)
        self.client.makeConnection(self.transport)
        self.lost = False

    def feed(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            if not self.transport.disconnecting:
                self.client.dataReceived(chunk)
        self.lose()

    def lose(self) -> None:
        """What the reactor does once the client dropped the connection."""
        if self.transport.disconnecting and not self.lost:
            self.lost = True
            self.client.connectionLost(Failure(ConnectionDone()))

    def drain(self) -> tuple[list[RemoteReply], DeliveryError | None]:
        """Every reply available now, then the error or timeout that ends them."""
        got: list[RemoteReply] = []
        while True:
            box: list[object] = []
            self.client.reply().addBoth(box.append)
            if not box:
                self.clock.advance(TIMEOUT)
                self.lose()
            assert box, "reply() neither fired nor timed out"
            if isinstance(box[0], Failure):
                box[0].trap(DeliveryError)
                return got, box[0].value
            assert isinstance(box[0], RemoteReply)
            got.append(box[0])


class ReplyParsingProperties(SynchronousTestCase):
    @given(
        st.lists(replies, max_size=5),
        st.sampled_from([b"\r\n", b"\n"]),
        cut_points,
    )
    def test_well_formed(
        self, sent: list[RemoteReply], eol: bytes, points: list[int]
    ) -> None:
        """Well-formed replies come out as sent, in order, however they are cut."""
        c = Client()
        c.feed(cut(b"".join(wire(r, eol) for r in sent), points))
        self.assertFalse(c.transport.disconnecting)
        got, error = c.drain()
        self.assertEqual(got, sent)
        self.assertIsNotNone(error)
        assert error is not None
        self.assertIn("timed out", error.text)

    @given(st.binary(max_size=200), cut_points)
    def test_any_bytes(self, data: bytes, points: list[int]) -> None:
        """Any bytes: replies from complete lines, then an abort or a timeout."""
        c = Client()
        c.feed(cut(data, points))
        got, error = c.drain()
        assert error is not None
        for reply in got:
            self.assertTrue(0 <= reply.code <= 999)
            self.assertNotIn("\n", reply.text)
            self.assertTrue(reply.text.startswith(str(reply.code)))
        if "malformed" in error.text or "over-long" in error.text:
            self.assertTrue(c.transport.disconnected)
        else:
            self.assertIn("timed out", error.text)
        # The same bytes uncut give the same result.
        d = Client()
        d.feed([data])
        self.assertEqual(d.drain()[0], got)

    @given(
        st.lists(replies, max_size=3),
        st.binary(min_size=1, max_size=20).filter(
            lambda b: not re.match(rb"^[0-9]{3}([ -]|\r?$)", b.split(b"\n")[0])
        ),
    )
    def test_garbage_line_aborts(self, sent: list[RemoteReply], junk: bytes) -> None:
        """A line that is not DDD, DDD text or DDD-text aborts the connection."""
        c = Client()
        c.feed([b"".join(wire(r, b"\r\n") for r in sent) + junk + b"\r\n"])
        got, error = c.drain()
        self.assertEqual(got, sent)
        assert error is not None
        self.assertIn("malformed reply", error.text)
        self.assertTrue(c.transport.disconnected)

    @given(st.integers(min_value=1, max_value=3), codes)
    def test_limits(self, extra: int, code: int) -> None:
        """Over-long reply lines and over-long replies abort the connection."""
        long_line = Client()
        long_line.feed([b"%d " % code + b"x" * (MAX_REPLY_LINE + extra) + b"\r\n"])
        error = long_line.drain()[1]
        assert error is not None
        self.assertIn("over-long reply line", error.text)
        many = Client()
        many.feed([b"%d-x\r\n" % code * (MAX_REPLY_LINES + extra) + b"%d y\r\n" % code])
        got, error = many.drain()
        self.assertEqual(got, [])
        assert error is not None
        self.assertIn("over-long reply", error.text)

    @given(st.lists(replies, max_size=3), st.binary(max_size=40))
    def test_starttls_drops_injection(
        self, before: list[RemoteReply], injected: bytes
    ) -> None:
        """Bytes sent along with the 220 to STARTTLS are never read as replies."""
        transport = TLSStringTransport()
        c = Client(transport)
        context = object()
        box: list[object] = []
        c.client.starttls(context).addBoth(box.append)
        c.feed([b"220 2.0.0 go ahead\r\n" + injected])
        self.assertEqual(box, [RemoteReply(220, (b"2.0.0 go ahead",))])
        self.assertIs(transport.tls_started_with, context)
        self.assertTrue(c.client.tls)
        c.feed([b"".join(wire(r, b"\r\n") for r in before)])
        self.assertEqual(c.drain()[0], before)


class ReplyStatusProperties(SynchronousTestCase):
    @given(st.integers(min_value=0, max_value=999), st.lists(texts, max_size=3))
    def test_status(self, code: int, lines: list[bytes]) -> None:
        """status is the reply's RFC 3463 code if its class fits, else a default."""
        reply = RemoteReply(code, tuple(lines))
        status = reply.status
        self.assertRegex(status, STATUS)
        first = lines[0] if lines else b""
        match = re.match(rb"^([245]\.[0-9]{1,3}\.[0-9]{1,3})(\s|$)", first)
        if match and match.group(1)[:1] == str(code)[:1].encode():
            self.assertEqual(status, match.group(1).decode())
        elif code // 100 in (2, 4, 5):
            self.assertEqual(status, f"{code // 100}.0.0")
        else:
            self.assertEqual(status, "4.0.0")

    @given(codes, st.lists(st.binary(max_size=20), min_size=1, max_size=3))
    def test_text(self, code: int, lines: list[bytes]) -> None:
        """text is the code and the stripped lines joined by spaces."""
        reply = RemoteReply(code, tuple(lines))
        joined = b" ".join(line.strip() for line in lines)
        self.assertEqual(
            reply.text, f"{code} {joined.decode('utf-8', 'replace')}".strip()
        )
