"""ENVELOPE (RFC 3501 §7.4.2) from a raw header block, and the header
scanning that BODYSTRUCTURE shares with it.

Every header is hostile input, so nothing here raises on content: address
lists are read the way Dovecot's message-address.c reads them, best effort,
with Dovecot's fillers (``MISSING_MAILBOX``, ``MISSING_DOMAIN``) where RFC
3501 needs a value the header does not give.  Strings are the header bytes
as written, unfolded: encoded words stay encoded, because decoding them is
the client's job and a server that guesses charsets loses information.

Header scanning works on whole byte strings with compiled patterns so that
a megabyte-long header line or a header of a million fields costs C-speed
scanning, not a Python loop per character or per line.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

from zpop.imap.values import Adjacent, Value

#: A string for the client: ``str`` when the header bytes are UTF-8 (or
#: ASCII), else the bytes themselves, which values.py sends as a literal,
#: so 8-bit headers reach the client byte for byte.
Text = str | bytes

#: (name, adl, mailbox, host), RFC 3501's address structure.
Address = tuple[Text | None, Text | None, Text | None, Text | None]

#: An address list; None is NIL (absent or empty header).
Addresses = tuple[Address, ...] | None

MISSING_MAILBOX: Final = "MISSING_MAILBOX"
MISSING_DOMAIN: Final = "MISSING_DOMAIN"

# The blank line that ends a header: LF, optional CR, LF, so that both the
# stored CRLF form and a stray bare LF end it.
HEADER_END: Final = re.compile(rb"\n\r?\n")

# A field's value ends at the first line break not followed by folding
# whitespace (RFC 5322 §2.2.3).
_FIELD_END: Final = re.compile(rb"\n(?![ \t])")

_ENVELOPE_FIELDS: Final = re.compile(
    rb"^(date|subject|from|sender|reply-to|to|cc|bcc|in-reply-to|message-id)"
    rb"[ \t]*:",
    re.IGNORECASE | re.MULTILINE,
)

_REPLACEMENT: Final = "\ufffd".encode()


def text(raw: bytes) -> Text:
    """``raw`` as a Value string.

    NUL, which no IMAP string may hold, becomes U+FFFD (as Dovecot does);
    CR and LF go, so a value is one unfolded line.
    """
    if b"\0" in raw:
        raw = raw.replace(b"\0", _REPLACEMENT)
    if b"\r" in raw or b"\n" in raw:
        raw = raw.replace(b"\r", b"").replace(b"\n", b"")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def unfold(raw: bytes) -> bytes:
    """A field value without its line breaks or leading whitespace."""
    return raw.replace(b"\r", b"").replace(b"\n", b"").lstrip(b" \t")


def fields_end(header: bytes) -> int:
    """Where the fields of ``header`` end: before its blank line, if any."""
    if header[:1] == b"\n" or header[:2] == b"\r\n":
        return 0
    blank = HEADER_END.search(header)
    return len(header) if blank is None else blank.start() + 1


def field_values(header: bytes, names: re.Pattern[bytes]) -> dict[str, bytes]:
    """The raw value of the first field of each name that ``names`` matches.

    ``names`` matches a field name at a line start (group 1) up to its
    colon.  The first occurrence wins, as in Dovecot and Python's email:
    RFC 5322 allows these fields once, and a duplicate is more likely an
    injection than a correction.
    """
    end = fields_end(header)
    found: dict[str, bytes] = {}
    for match in names.finditer(header, 0, end):
        name = match.group(1).lower().decode("ascii")
        if name in found:
            continue
        stop = _FIELD_END.search(header, match.end(), end)
        found[name] = header[match.end() : end if stop is None else stop.start()]
    return found


class Envelope(NamedTuple):
    """The fields of an ENVELOPE, sender and reply-to already defaulted."""

    date: Text | None
    subject: Text | None
    from_: Addresses
    sender: Addresses
    reply_to: Addresses
    to: Addresses
    cc: Addresses
    bcc: Addresses
    in_reply_to: Text | None
    message_id: Text | None

    def value(self) -> Value:
        """The ENVELOPE list, in RFC 3501's field order."""
        return (
            self.date,
            self.subject,
            _address_list(self.from_),
            _address_list(self.sender),
            _address_list(self.reply_to),
            _address_list(self.to),
            _address_list(self.cc),
            _address_list(self.bcc),
            self.in_reply_to,
            self.message_id,
        )


def _address_list(addresses: Addresses) -> Value:
    if addresses is None:
        return None
    return (Adjacent(addresses),)


def parse_envelope(header: bytes) -> Envelope:
    """The envelope of a message whose header block is ``header``.

    ``header`` may run on into the body; only the fields before the first
    blank line count.
    """
    fields = field_values(header, _ENVELOPE_FIELDS)

    def string(name: str) -> Text | None:
        raw = fields.get(name)
        return None if raw is None else text(unfold(raw))

    def addresses(name: str) -> Addresses:
        raw = fields.get(name)
        return None if raw is None else parse_addresses(raw)

    from_ = addresses("from")
    return Envelope(
        date=string("date"),
        subject=string("subject"),
        from_=from_,
        # RFC 3501: absent or empty Sender and Reply-To are set to From.
        sender=addresses("sender") or from_,
        reply_to=addresses("reply-to") or from_,
        to=addresses("to"),
        cc=addresses("cc"),
        bcc=addresses("bcc"),
        in_reply_to=string("in-reply-to"),
        message_id=string("message-id"),
    )


def envelope(header: bytes) -> Value:
    """The ENVELOPE value of a message whose header block is ``header``."""
    return parse_envelope(header).value()


# Address lists.  The tokenizer is one compiled pattern; a quoted string,
# domain literal or comment left open runs to the end of the value.
_TOKEN: Final = re.compile(
    rb"[ \t\r\n]*(?:"
    rb'"(?P<quoted>(?:[^"\\]|\\[\s\S]?)*)"?'
    rb"|(?P<literal>\[(?:[^\]\\]|\\[\s\S]?)*\]?)"
    rb"|\((?P<comment>(?:[^()\\]|\\[\s\S]?)*)\)"
    rb"|(?P<nested>\()"
    rb'|(?P<atom>[^ \t\r\n()<>@,;:\\"\[\]]+)'
    rb"|(?P<special>[^ \t\r\n]))"
)
_COMMENT_DELIMITERS: Final = re.compile(rb"[()\\]")
_ESCAPE: Final = re.compile(rb"\\([\s\S])")

#: Address fields are read up to this many octets (over a thousand
#: addresses), so that a hostile header costs bounded time; the rest of a
#: longer list is left out of the ENVELOPE, from its last comma on.
MAX_ADDRESS_FIELD: Final = 64 * 1024

_WORD: Final = "w"
_COMMENT: Final = "c"

_Token = tuple[str, bytes]


def _nested_comment(raw: bytes, start: int) -> tuple[int, bytes]:
    """End and text of the comment opening at ``start``; it may nest."""
    depth = 0
    pos = start
    while True:
        found = _COMMENT_DELIMITERS.search(raw, pos)
        if found is None:
            return len(raw), raw[start + 1 :]
        char = found.group()
        pos = found.end()
        if char == b"\\":
            pos += 1
        elif char == b"(":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return pos, raw[start + 1 : pos - 1]


def _tokens(raw: bytes) -> list[_Token]:
    """Words (atoms, unquoted quoted-strings, domain literals), comments and
    single special characters, whitespace dropped."""
    tokens: list[_Token] = []
    append = tokens.append
    pos = 0
    while True:
        for match in _TOKEN.finditer(raw, pos):
            kind = match.lastgroup
            if kind == "atom" or kind == "literal":
                append((_WORD, match.group(kind)))
            elif kind == "special":
                char = match.group(kind)
                append((char.decode("latin-1"), char))
            elif kind == "quoted":
                append((_WORD, _ESCAPE.sub(rb"\1", match.group(kind))))
            elif kind == "comment":
                append((_COMMENT, _ESCAPE.sub(rb"\1", match.group(kind))))
            else:
                # A comment with comments inside: found by hand, then the
                # scan goes on after it.
                pos, comment = _nested_comment(raw, match.start("nested"))
                append((_COMMENT, _ESCAPE.sub(rb"\1", comment)))
                break
        else:
            return tokens


def _join(words: list[bytes]) -> bytes:
    """Words as a phrase: one space between words, none around a lone dot
    (RFC 5322 obs-phrase and obs-local-part allow whitespace there); empty
    quoted strings add nothing."""
    words = [word for word in words if word]
    if len(words) < 2:
        return words[0] if words else b""
    out = bytearray()
    for index, word in enumerate(words):
        if index and word != b"." and words[index - 1] != b".":
            out += b" "
        out += word
    return bytes(out)


def _words(tokens: list[_Token]) -> list[bytes]:
    return [value for kind, value in tokens if kind == _WORD]


def _addr_spec(tokens: list[_Token]) -> tuple[bytes, bytes]:
    """Local part and domain; either may be empty."""
    for index, (kind, _) in enumerate(tokens):
        if kind == "@":
            return _join(_words(tokens[:index])), _join(_words(tokens[index + 1 :]))
    return _join(_words(tokens)), b""


def _mailbox(tokens: list[_Token]) -> Address | None:
    """One mailbox from the tokens between two commas, or None if there is
    nothing there but comments."""
    kinds = [kind for kind, _ in tokens]
    route: bytes | None = None
    if "<" in kinds:
        opening = kinds.index("<")
        closing = kinds.index(">", opening) if ">" in kinds[opening:] else len(kinds)
        name: bytes | None = _join(_words(tokens[:opening]))
        inner = tokens[opening + 1 : closing]
        if inner and inner[0][0] == "@" and ":" in [kind for kind, _ in inner]:
            colon = [kind for kind, _ in inner].index(":")
            route = b"".join(value for kind, value in inner[:colon] if kind != _COMMENT)
            inner = inner[colon + 1 :]
        mailbox, host = _addr_spec(inner)
    else:
        if _WORD not in kinds:
            return None
        comments = [value for kind, value in tokens if kind == _COMMENT]
        # Dovecot's reading of "user@host (Real Name)": the last comment.
        name = comments[-1] if comments else None
        mailbox, host = _addr_spec(tokens)
    return (
        text(name) if name else None,
        text(route) if route else None,
        text(mailbox) if mailbox else MISSING_MAILBOX,
        text(host) if host else MISSING_DOMAIN,
    )


def parse_addresses(raw: bytes) -> Addresses:
    """An address list (RFC 5322 §3.4), groups in RFC 3501's form: a
    (NIL NIL name NIL) start and a (NIL NIL NIL NIL) end.  None when the
    value holds no address at all."""
    found: list[Address] = []
    segment: list[_Token] = []
    in_group = in_angle = False

    def flush() -> None:
        mailbox = _mailbox(segment)
        if mailbox is not None:
            found.append(mailbox)
        segment.clear()

    if len(raw) > MAX_ADDRESS_FIELD:
        cut = raw.rfind(b",", 0, MAX_ADDRESS_FIELD)
        raw = raw[: MAX_ADDRESS_FIELD if cut < 0 else cut]
    for token in _tokens(raw):
        kind = token[0]
        if kind == "<":
            in_angle = True
        elif kind == ">":
            in_angle = False
        elif in_angle:
            pass
        elif kind == ",":
            flush()
            continue
        elif kind == ";" and in_group:
            flush()
            found.append((None, None, None, None))
            in_group = False
            continue
        elif kind == ":" and not in_group:
            name = _join(_words(segment))
            if name and all(k in (_WORD, _COMMENT) for k, _ in segment):
                found.append((None, None, text(name), None))
                segment.clear()
                in_group = True
                continue
        segment.append(token)
    flush()
    if in_group:
        found.append((None, None, None, None))
    return tuple(found) or None
