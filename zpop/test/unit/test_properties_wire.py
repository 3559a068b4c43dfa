"""Property tests for message bodies on the wire: dot-stuffing and its inverse.

- ``zpop.wire.dotstuff.DotStuffer``: what the relay sends after DATA;
- ``zpop.smtp.SMTPServer`` in DATA mode: what the server takes in (fed the
  stuffed stream cut at every index and at random), including SMTP
  smuggling: only CRLF "." CRLF ends the data;
- ``zpop.retrieval.BodyTransform``: what RETR and TOP send.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from zpop.delivery import Route, normalize
from zpop.retrieval import BodyTransform
from zpop.smtp import DATA
from zpop.store import Accepted
from zpop.test import properties  # noqa: F401 (the hypothesis profile)
from zpop.test.unit import test_smtp
from zpop.wire.dotstuff import DotStuffer, dot_stuff

#: Bodies rich in what matters: dots at line starts, CR, LF, CRLF.
bodies = st.lists(
    st.sampled_from([b".", b"..", b"\r", b"\n", b"\r\n", b"a", b" ", b"\xc3\xa9"])
    | st.binary(max_size=6),
    max_size=24,
).map(b"".join)
#: Where to cut a stream: offsets as fractions, so any length is covered.
cut_points = st.lists(st.integers(min_value=0, max_value=10_000), max_size=6)


def cut(data: bytes, points: list[int]) -> list[bytes]:
    """``data`` cut at the given points (taken modulo its length, sorted)."""
    n = len(data) + 1
    offsets = sorted({p % n for p in points} | {0, len(data)})
    return [data[a:b] for a, b in zip(offsets, offsets[1:], strict=False)]


def unstuff(stream: bytes) -> bytes:
    """RFC 5321 4.5.2 / RFC 1939 receiving side, as a client would do it:
    the lines before the "." line, one leading dot removed from each."""
    assert stream.endswith(b".\r\n"), stream
    assert stream == b".\r\n" or stream.endswith(b"\r\n.\r\n"), stream
    lines = stream[:-3].split(b"\r\n")[:-1] if stream != b".\r\n" else []
    return b"".join((x[1:] if x[:1] == b"." else x) + b"\r\n" for x in lines)


class DotStufferProperties(SynchronousTestCase):
    def assert_wire_form(self, stream: bytes, body: bytes) -> None:
        """CRLF only; the one end-of-data at the end; the body comes back."""
        self.assertEqual(re.sub(rb"\r\n", b"", stream).count(b"\r"), 0, stream)
        self.assertEqual(re.sub(rb"\r\n", b"", stream).count(b"\n"), 0, stream)
        self.assertEqual((b"\r\n" + stream).find(b"\r\n.\r\n"), len(stream) - 3)
        self.assertEqual(unstuff(stream), normalize(body) if body else b"")

    @given(bodies)
    def test_whole_body(self, body: bytes) -> None:
        """The stuffed body is CRLF-only, ends once, and unstuffs to the body."""
        self.assert_wire_form(dot_stuff(body), body)

    @given(bodies)
    def test_every_split(self, body: bytes) -> None:
        """Cut in two at any index, the stream is the same as uncut."""
        whole = dot_stuff(body)
        for i in range(len(body) + 1):
            stuffer = DotStuffer()
            out = stuffer.feed(body[:i]) + stuffer.feed(body[i:]) + stuffer.finish()
            self.assertEqual(out, whole, i)

    @given(bodies, cut_points)
    def test_any_chunking(self, body: bytes, points: list[int]) -> None:
        """Cut into any number of chunks, the stream is the same as uncut."""
        stuffer = DotStuffer()
        out = b"".join(stuffer.feed(c) for c in cut(body, points)) + stuffer.finish()
        self.assertEqual(out, dot_stuff(body))

    def test_lone_lf_after_cr(self) -> None:
        """A chunk that is only the LF of a CRLF cut in two does not eat the
        next chunk's LF (an empty line was lost)."""
        stuffer = DotStuffer()
        out = b"".join(stuffer.feed(c) for c in [b"a\r", b"\n", b"\nb"])
        self.assertEqual(out + stuffer.finish(), dot_stuff(b"a\r\n\nb"))


class RecordingRouter:
    """An SMTPDelivery stand-in: every recipient is bob's, commits are kept."""

    def __init__(self, account: Any) -> None:
        self.account = account
        self.bodies: list[bytes] = []

    def route(self, address: str) -> Deferred:
        return succeed(Route("local", self.account))

    def commit(self, envelope: Any, body: bytes, trace: bytes) -> Deferred:
        self.bodies.append(body)
        return succeed(Accepted((), None))


ENVELOPE = b"MAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
READY = (
    b"250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n"
    b"354 End data with <CR><LF>.<CR><LF>\r\n"
)
HEADER = b"Subject: wire\r\n\r\n"


class SMTPDataProperties(test_smtp.SMTPTestCase):
    role = "mx"

    def open_data(self, again: bool = False) -> RecordingRouter:
        """A new MX session (or, ``again``, the next transaction of the
        current one) in DATA, recording what it would commit."""
        if not again:
            self.router = RecordingRouter(self.bob)
            self.connect()
            self.send(b"EHLO client.example\r\n")
        self.router.bodies.clear()
        self.assertEqual(self.send(ENVELOPE), READY)
        return self.router

    def feed(self, chunks: list[bytes]) -> list[bytes]:
        """Each chunk's output, in order."""
        return [self.send(c) for c in chunks]

    @settings(max_examples=12)
    @given(bodies)
    def test_round_trip_every_split(self, body: bytes) -> None:
        """The stuffed stream cut at any index arrives as exactly the body."""
        message = HEADER + body.replace(b"\0", b"")
        stream = dot_stuff(message)
        for i in range(len(stream)):
            router = self.open_data(again=i > 0)
            first, second = self.feed([stream[:i], stream[i:]])
            self.assertEqual(first, b"", i)
            self.assertRegex(second, rb"^250 2\.0\.0 Message accepted as \w+\r\n$")
            self.assertEqual(router.bodies, [normalize(message)], i)

    @given(bodies, cut_points)
    def test_round_trip_any_chunking(self, body: bytes, points: list[int]) -> None:
        """The stuffed stream cut anywhere arrives intact; the next command runs."""
        message = HEADER + body.replace(b"\0", b"")
        router = self.open_data()
        out = b"".join(self.feed(cut(dot_stuff(message) + b"NOOP\r\n", points)))
        self.assertRegex(out, rb"^250 2\.0\.0 Message accepted as \w+\r\n250 2\.0\.0")
        self.assertEqual(router.bodies, [normalize(message)])

    @given(
        st.lists(
            st.sampled_from(test_smtp.SMUGGLING_ENDINGS)
            | st.sampled_from([b"MAIL FROM:<evil@remote.example>", b"\r\n", b"x"])
            | bodies,
            max_size=6,
        ).map(b"".join),
        cut_points,
    )
    def test_only_crlf_dot_crlf_ends(self, raw: bytes, points: list[int]) -> None:
        """Only CRLF.CRLF ends DATA; bare CR/LF gets one 554 at the real end."""
        stream = HEADER + raw.replace(b"\0", b"")
        while b"\r\n.\r\n" in stream:
            stream = stream.replace(b"\r\n.\r\n", b"\r\n..\r\n")
        if stream.endswith(b"\r\n."):
            stream += b"."
        router = self.open_data()
        self.assertEqual(b"".join(self.feed(cut(stream, points))), b"")
        self.assertEqual(self.proto.mode, DATA)
        end = b"\r\n.\r\n" if not stream.endswith(b"\r\n") else b".\r\n"
        reply = self.send(end + b"NOOP\r\n")
        unpaired = re.sub(rb"\r\n", b"", stream + end)
        if b"\r" in unpaired or b"\n" in unpaired:
            self.assertEqual(
                reply,
                b"554 5.5.2 Bare CR or LF in message data is not accepted\r\n"
                b"250 2.0.0 OK\r\n",
            )
            self.assertEqual(router.bodies, [])
        else:
            self.assertRegex(reply, rb"^250 2\.0\.0 Message accepted as \w+\r\n250 ")
            self.assertEqual(len(router.bodies), 1)

    @given(
        st.binary(min_size=1, max_size=8).filter(lambda b: b"\0" not in b),
        st.integers(min_value=0, max_value=3000),
        cut_points,
    )
    def test_oversize(self, piece: bytes, extra: int, points: list[int]) -> None:
        """An oversize body, however cut, gets one 552 and is never committed."""
        limit = self.config.limits.message_size
        body = (piece * (limit // len(piece) + 2))[: limit + 1 + extra]
        router = self.open_data()
        stream = dot_stuff(HEADER + body) + b"NOOP\r\n"
        out = b"".join(self.feed(cut(stream, points)))
        self.assertEqual(
            out,
            b"552 5.3.4 Message size exceeds fixed maximum message size\r\n"
            b"250 2.0.0 OK\r\n",
        )
        self.assertEqual(router.bodies, [])


class POP3BodyProperties(SynchronousTestCase):
    def transform(self, chunks: list[bytes], lines: int | None = None) -> bytes:
        t = BodyTransform(lines)
        return b"".join(t.feed(c) for c in chunks) + t.finish()

    @given(bodies, cut_points)
    def test_retr(self, body: bytes, points: list[int]) -> None:
        """RETR bytes: same for any chunking, CRLF-only, and unstuff to the body."""
        out = self.transform(cut(body, points))
        self.assertEqual(out, self.transform([body]))
        self.assertEqual((b"\r\n" + out).find(b"\r\n.\r\n"), len(out) - 3)
        self.assertEqual(unstuff(out), normalize(body) if body else b"")

    @given(bodies, bodies, st.integers(min_value=0, max_value=6), cut_points)
    def test_top(self, header: bytes, body: bytes, n: int, points: list[int]) -> None:
        """TOP sends the header and the first n body lines, for any chunking."""
        header = normalize(header).replace(b"\r\n\r\n", b"\r\n")
        message = header + b"\r\n" + normalize(body)
        out = self.transform(cut(message, points), n)
        self.assertEqual(out, self.transform([message], n))
        kept = normalize(body).split(b"\r\n")[:-1][:n]
        self.assertEqual(
            unstuff(out), header + b"\r\n" + b"".join(k + b"\r\n" for k in kept)
        )
