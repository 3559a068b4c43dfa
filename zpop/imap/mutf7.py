"""Modified UTF-7 (RFC 3501 section 5.1.3): how IMAP4rev1 clients spell
mailbox names that are not printable ASCII.

Decoding is strict, because a name has to have exactly one spelling: two
spellings of one name (a base64-encoded ``a``, a superfluous shift) would
let a client create look-alike mailboxes or slip past a name check made
on the other spelling.
"""

from __future__ import annotations

import base64

_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"
_VALUE = {c: i for i, c in enumerate(_ALPHABET)}
_AMPERSAND = 0x26
_DASH = 0x2D


class DecodeError(ValueError):
    """The bytes are not modified UTF-7 in its one canonical form."""


def _direct(code: int) -> bool:
    """Whether a character (or octet) is printable US-ASCII, which modified
    UTF-7 sends as itself (``&`` as ``&-``) and never in base64."""
    return 0x20 <= code <= 0x7E


def encode(name: str) -> bytes:
    """The modified UTF-7 spelling of ``name``.

    Raises ValueError for a string that is not Unicode text (a lone
    surrogate), which no mailbox should be named.
    """
    out = bytearray()
    shifted: list[str] = []

    def shift_out() -> None:
        if shifted:
            utf16 = "".join(shifted).encode("utf-16-be")
            out.extend(b"&" + base64.b64encode(utf16, b"+,").rstrip(b"=") + b"-")
            shifted.clear()

    for char in name:
        if _direct(ord(char)):
            shift_out()
            out.extend(b"&-" if char == "&" else char.encode("ascii"))
        else:
            shifted.append(char)
    shift_out()
    return bytes(out)


def decode(data: bytes) -> str:
    """The name that ``data`` spells, or DecodeError if it is not in the
    canonical modified UTF-7 form ``encode`` gives."""
    out: list[str] = []
    i = 0
    after_shift = False
    while i < len(data):
        octet = data[i]
        if octet == _AMPERSAND:
            end = data.find(b"-", i + 1)
            if end < 0:
                raise DecodeError("unterminated base64 in mailbox name")
            if end == i + 1:
                out.append("&")
                after_shift = False
            elif after_shift:
                # "-&": two shifted runs that should have been one.
                raise DecodeError("superfluous shift in mailbox name")
            else:
                out.append(_decode_shifted(data[i + 1 : end]))
                after_shift = True
            i = end + 1
            continue
        if not _direct(octet):
            raise DecodeError("mailbox name is not 7-bit printable text")
        out.append(chr(octet))
        after_shift = False
        i += 1
    return "".join(out)


def _decode_shifted(run: bytes) -> str:
    """The characters of one ``&...-`` run (without ``&`` and ``-``)."""
    value = 0
    for octet in run:
        digit = _VALUE.get(octet)
        if digit is None:
            raise DecodeError("bad base64 in mailbox name")
        value = value << 6 | digit
    bits = 6 * len(run)
    units, spare = divmod(bits, 16)
    # The encoder pads to the next base64 digit only: fewer than 6 spare
    # bits, all zero, and at least one UTF-16 unit.
    if units == 0 or spare >= 6 or value & ((1 << spare) - 1):
        raise DecodeError("bad base64 in mailbox name")
    utf16 = (value >> spare).to_bytes(2 * units, "big")
    try:
        text = utf16.decode("utf-16-be")
    except UnicodeDecodeError:
        raise DecodeError("unpaired surrogate in mailbox name") from None
    if any(_direct(ord(char)) for char in text):
        raise DecodeError("printable ASCII in base64 in mailbox name")
    return text
