"""What an IMAP handler answers with: untagged responses and refusals."""

from __future__ import annotations

from collections.abc import Sequence

from zpop.imap.values import Value, encode


class Refusal(Exception):
    """A command refused: ``tag NO text``, or ``tag BAD text`` with ``bad``
    (counted towards the session's bad commands). ``text`` is sent as it
    is, response code included (``[TRYCREATE] No such mailbox``)."""

    def __init__(self, text: str, bad: bool = False) -> None:
        super().__init__(text)
        self.text = text
        self.bad = bad


def untagged(values: Sequence[Value]) -> bytes:
    """``* `` and the values, space-separated, and the line end."""
    return b"* " + b" ".join(encode(v) for v in values) + b"\r\n"
