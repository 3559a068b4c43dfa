"""Line ends: mail on the wire and in the store has CRLF only, whatever a
client or a Maildir file had (CRLF, bare CR or bare LF)."""

from __future__ import annotations

import re

_LINE_END = re.compile(rb"\r\n|\r|\n")


def to_crlf(data: bytes) -> bytes:
    """``data`` with every line end made CRLF."""
    return _LINE_END.sub(b"\r\n", data)
