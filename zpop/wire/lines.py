"""Line ends: mail on the wire and in the store has CRLF only, whatever a
client or a Maildir file had (CRLF, bare CR or bare LF)."""

from __future__ import annotations

import re

_LINE_END = re.compile(rb"\r\n|\r|\n")


def to_crlf(data: bytes) -> bytes:
    """``data`` with every line end made CRLF."""
    return _LINE_END.sub(b"\r\n", data)


class CRLFStream:
    """``to_crlf`` over a body read in chunks, for any chunking the same
    bytes as ``to_crlf`` of the whole.

    A CR that ends a chunk is held back until the next chunk tells whether
    it is half of a CRLF; ``flush`` gives it out as a line end of its own
    at the end of the body.
    """

    def __init__(self) -> None:
        self._pending_cr = False

    def feed(self, chunk: bytes) -> bytes:
        if self._pending_cr:
            chunk = b"\r" + chunk
            self._pending_cr = False
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
            self._pending_cr = True
        # Stored mail is CRLF already: three counts cost far less than the
        # substitution, which only runs when a line end is not CRLF.
        crlf = chunk.count(b"\r\n")
        if not (chunk.count(b"\r") == crlf == chunk.count(b"\n")):
            chunk = to_crlf(chunk)
        return chunk

    def flush(self) -> bytes:
        """The end of the body: CRLF for a held-back CR, else nothing."""
        if self._pending_cr:
            self._pending_cr = False
            return b"\r\n"
        return b""
