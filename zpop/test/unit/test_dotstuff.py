"""Tests for zpop.wire.dotstuff and zpop.wire.lines.CRLFStream: the one
chunked line-end and dot-stuffing code that POP3 RETR/TOP and the outbound
relay's DATA share."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from zpop.retrieval import BodyTransform
from zpop.wire.dotstuff import DotStuffer, dot_stuff
from zpop.wire.lines import CRLFStream, to_crlf

#: Dots at line starts, every kind of line end, a CR LF pair and an LF CR
#: pair, and no final line end.
TRICKY = b".a\r\nb\n.c\r.\r\n\r\n..d\r\n.\rx\n\r.e"
STUFFED = b"..a\r\nb\r\n..c\r\n..\r\n\r\n...d\r\n..\r\nx\r\n\r\n..e\r\n.\r\n"


def stuffed(chunks: list[bytes], crlf_only: bool = False) -> bytes:
    """What a DotStuffer sends for ``chunks``, the "." line included."""
    stuffer = DotStuffer(crlf_only)
    return b"".join(stuffer.feed(c) for c in chunks) + stuffer.finish()


def splits(data: bytes) -> list[list[bytes]]:
    """``data`` cut in two at every index, and cut into single bytes."""
    halves = [[data[:i], data[i:]] for i in range(len(data) + 1)]
    return [*halves, [data[i : i + 1] for i in range(len(data))]]


class DotStufferTests(SynchronousTestCase):
    def test_whole(self) -> None:
        """CRLF line ends only, every leading dot doubled, one "." line."""
        self.assertEqual(dot_stuff(TRICKY), STUFFED)

    def test_every_split(self) -> None:
        """Cut anywhere (between CR and LF, just before or after a leading
        dot) or byte by byte, the bytes are those of the uncut body."""
        for chunks in splits(TRICKY):
            self.assertEqual(stuffed(chunks), STUFFED, chunks)
        self.assertEqual(dot_stuff(TRICKY, chunk=1), STUFFED)

    def test_dot_after_boundary(self) -> None:
        """A dot that starts a chunk is stuffed after a CRLF, after a CRLF
        cut in two, and after a bare CR whose LF-or-not the chunk decides."""
        for chunks in ([b"a\r\n", b".b"], [b"a\r", b"\n.b"], [b"a\r", b".b"]):
            self.assertEqual(stuffed(chunks), b"a\r\n..b\r\n.\r\n", chunks)
        self.assertEqual(stuffed([b"a", b".b"]), b"a.b\r\n.\r\n")

    def test_lone_lf_after_cr(self) -> None:
        """A chunk that is only the LF of a cut CRLF does not eat the next
        chunk's LF (an empty line)."""
        self.assertEqual(stuffed([b"a\r", b"\n", b"\nb"]), b"a\r\n\r\nb\r\n.\r\n")

    def test_no_final_line_end(self) -> None:
        """A body without a final line end gets CRLF before the "." line;
        a final bare CR is that line end."""
        self.assertEqual(dot_stuff(b"a"), b"a\r\n.\r\n")
        self.assertEqual(dot_stuff(b"a\r"), b"a\r\n.\r\n")
        self.assertEqual(dot_stuff(b"."), b"..\r\n.\r\n")
        self.assertEqual(stuffed([b"a\r\n", b".b"]), b"a\r\n..b\r\n.\r\n")

    def test_empty(self) -> None:
        """An empty body is only the "." line, however many empty chunks."""
        self.assertEqual(dot_stuff(b""), b".\r\n")
        self.assertEqual(stuffed([]), b".\r\n")
        self.assertEqual(stuffed([b"", b""]), b".\r\n")
        self.assertEqual(stuffed([], crlf_only=True), b".\r\n")

    def test_crlf_only(self) -> None:
        """For a CRLF source, skipping the normalisation gives the same
        bytes for any chunking."""
        body = to_crlf(TRICKY)
        for chunks in splits(body):
            self.assertEqual(stuffed(chunks, crlf_only=True), STUFFED, chunks)

    def test_line_start(self) -> None:
        """line_start says whether the next byte fed starts a line."""
        stuffer = DotStuffer()
        self.assertTrue(stuffer.line_start)
        stuffer.feed(b"a")
        self.assertFalse(stuffer.line_start)
        stuffer.feed(b"\r\n")
        self.assertTrue(stuffer.line_start)

    def test_one_implementation(self) -> None:
        """POP3's RETR sends a body as the relay's DATA does, byte for byte."""
        for chunks in splits(TRICKY):
            transform = BodyTransform()
            out = b"".join(transform.feed(c) for c in chunks) + transform.finish()
            self.assertEqual(out, STUFFED, chunks)


class CRLFStreamTests(SynchronousTestCase):
    def normalised(self, chunks: list[bytes]) -> bytes:
        stream = CRLFStream()
        return b"".join(stream.feed(c) for c in chunks) + stream.flush()

    def test_every_split(self) -> None:
        """Any chunking gives to_crlf of the whole."""
        for chunks in splits(TRICKY):
            self.assertEqual(self.normalised(chunks), to_crlf(TRICKY), chunks)

    def test_trailing_cr_held_back(self) -> None:
        """A CR ending a chunk waits for the next chunk; flush ends it."""
        stream = CRLFStream()
        self.assertEqual(stream.feed(b"a\r"), b"a")
        self.assertEqual(stream.feed(b""), b"")
        self.assertEqual(stream.flush(), b"\r\n")
        self.assertEqual(stream.flush(), b"")

    def test_crlf_untouched(self) -> None:
        """A CRLF chunk comes back as it is."""
        chunk = b"a\r\n.b\r\n"
        self.assertIs(CRLFStream().feed(chunk), chunk)
