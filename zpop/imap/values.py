"""IMAP data values as Python values, and their one wire encoding.

Every response zpop builds (FETCH items, ENVELOPE, BODYSTRUCTURE, LIST,
STATUS) is a nested ``Value`` encoded here, so quoting, literals and NIL
are decided in one place: a ``str`` is a string (quoted when it is short
printable ASCII without CR, LF or NUL, a literal otherwise), ``bytes``
always a literal, an ``Atom`` is sent as it is (flags, keywords,
capabilities), ``None`` is NIL, an ``Adjacent`` its values back to back and
any other tuple or list a parenthesised list.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias


class Atom(str):
    """Sent as it is: a flag (``\\Seen``), a keyword, a capability."""


class Adjacent(tuple):
    """Values sent back to back with no space between them: RFC 3501's
    ``1*body`` (a multipart's parts) and ``1*address`` (an address list)."""


Value: TypeAlias = "None | int | str | bytes | Atom | Sequence[Value]"

#: Strings longer than this go as literals: a quoted string of that size
#: is harder to read and no cheaper.
QUOTED_MAX = 1024

_QUOTED_UNSAFE = frozenset(b"\r\n\0")


def quoted(text: bytes) -> bytes | None:
    """``text`` as a quoted string, or None if it must be a literal."""
    if len(text) > QUOTED_MAX or any(c in _QUOTED_UNSAFE or c > 0x7E for c in text):
        return None
    return b'"' + text.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


def string(text: str | bytes) -> bytes:
    """A string, quoted when it can be, else a literal (UTF-8 for ``str``)."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    q = quoted(data)
    return literal(data) if q is None else q


def encode(value: Value) -> bytes:
    """The wire form of one value."""
    if value is None:
        return b"NIL"
    if isinstance(value, Atom):
        return value.encode("ascii")
    if isinstance(value, bool):
        raise TypeError("IMAP has no boolean values")
    if isinstance(value, int):
        return b"%d" % value
    if isinstance(value, str):
        return string(value)
    if isinstance(value, bytes):
        return literal(value)
    if isinstance(value, Adjacent):
        return b"".join(encode(v) for v in value)
    return b"(" + b" ".join(encode(v) for v in value) + b")"
