"""SEARCH criteria (RFC 3501 section 6.4.4, CONDSTORE's MODSEQ of RFC
7162, ESEARCH's RETURN of RFC 4731) as a tree of small frozen values.

The tree has no aliases: NEW, OLD and the UN- keys become the ``Flag``
tests they stand for, a parenthesised group of one key is that key, so
the code that runs a search knows one form of each test.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Literal

from zpop.imap.sequences import SequenceSet
from zpop.imap.tokens import (
    DQUOTE,
    LPAREN,
    MAX_NUMBER64,
    MONTHS,
    RPAREN,
    SYSTEM_FLAGS,
    ParseError,
    Reader,
    is_atom,
    shown,
)
from zpop.imap.values import Atom

#: How deep NOT, OR and parentheses may nest. Clients build OR chains one
#: level a term (Thunderbird's quick filter: OR OR OR FROM x TO x CC x
#: SUBJECT x), so a few dozen is a real need; recursion beyond is not.
MAX_DEPTH = 32

#: The charsets whose text zpop decodes (US-ASCII being part of UTF-8);
#: for any other the server answers NO [BADCHARSET (US-ASCII UTF-8)].
SEARCH_CHARSETS = frozenset({"US-ASCII", "UTF-8"})

#: ESEARCH result options (RFC 4731 section 3.1).
RETURN_OPTIONS = frozenset({"MIN", "MAX", "ALL", "COUNT"})

DateField = Literal["internal", "sent"]
Comparison = Literal["before", "on", "since"]
TextField = Literal["bcc", "body", "cc", "from", "subject", "text", "to"]


@dataclass(frozen=True)
class All:
    """Every message."""


@dataclass(frozen=True)
class And:
    """Messages that match every key (a list of keys, or a group)."""

    keys: tuple[Key, ...]


@dataclass(frozen=True)
class Or:
    left: Key
    right: Key


@dataclass(frozen=True)
class Not:
    key: Key


@dataclass(frozen=True)
class Flag:
    """Messages with (``present``) or without the flag ``name``: a system
    flag in its RFC 3501 spelling (``\\Recent`` too), or a keyword."""

    name: str
    present: bool


@dataclass(frozen=True)
class Date:
    """The internal date or the Date: header (``sent``) compared, as a
    day, with ``date`` (RFC 3501: time and zone are disregarded)."""

    field: DateField
    comparison: Comparison
    date: datetime.date


@dataclass(frozen=True)
class Size:
    """LARGER (``larger``) or SMALLER than ``size`` octets."""

    comparison: Literal["larger", "smaller"]
    size: int


@dataclass(frozen=True)
class Text:
    """A substring of a header field (BCC CC FROM SUBJECT TO), the body
    (BODY) or the whole message (TEXT)."""

    field: TextField
    value: str


@dataclass(frozen=True)
class Header:
    """HEADER: a substring of the field ``name``; "" finds any message
    that has the field."""

    name: str
    value: str


@dataclass(frozen=True)
class Messages:
    """A sequence set, of message numbers or (``uid``) of UIDs."""

    numbers: SequenceSet
    uid: bool


@dataclass(frozen=True)
class ModSeq:
    """CONDSTORE: a mod-sequence of at least ``modseq``, of the message
    or (``flag``) of one flag's metadata of ``entry_type`` priv, shared
    or all, which zpop need not tell apart (RFC 7162 section 3.1.5)."""

    modseq: int
    flag: str | None = None
    entry_type: str | None = None


Key = All | And | Or | Not | Flag | Date | Size | Text | Header | Messages | ModSeq


@dataclass(frozen=True)
class Search:
    """The arguments of SEARCH and UID SEARCH.

    ``returns`` is None for a plain SEARCH (answered with ``* SEARCH``),
    else the ESEARCH result options (``RETURN ()`` meaning ALL).
    ``charset`` is the CHARSET the client named (upper-case), if any;
    every text in ``key`` is decoded already.
    """

    key: Key
    charset: str | None = None
    returns: frozenset[str] | None = None


class UnsupportedCharset(ParseError):
    """A CHARSET outside SEARCH_CHARSETS: a NO [BADCHARSET] answer, not BAD."""

    def __init__(self, tag: str | None, charset: str) -> None:
        super().__init__(tag, f"unsupported charset {charset}")
        self.charset = charset


_DATE = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
_PRINTABLE = re.compile(rb"[!-~]+")

_FLAG_KEYS: dict[str, tuple[str, bool]] = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "RECENT": ("\\Recent", True),
    "SEEN": ("\\Seen", True),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
    "OLD": ("\\Recent", False),
}
_DATE_KEYS: dict[str, tuple[DateField, Comparison]] = {
    "BEFORE": ("internal", "before"),
    "ON": ("internal", "on"),
    "SINCE": ("internal", "since"),
    "SENTBEFORE": ("sent", "before"),
    "SENTON": ("sent", "on"),
    "SENTSINCE": ("sent", "since"),
}
_TEXT_KEYS: dict[str, TextField] = {
    "BCC": "bcc",
    "BODY": "body",
    "CC": "cc",
    "FROM": "from",
    "SUBJECT": "subject",
    "TEXT": "text",
    "TO": "to",
}
_ENTRY_TYPES = frozenset({"PRIV", "SHARED", "ALL"})


def parse_search(reader: Reader) -> Search:
    """SEARCH's arguments, the reader just after the command name:
    ``[SP "RETURN" SP "(" ... ")"] [SP "CHARSET" SP astring]
    1*(SP search-key)``."""
    reader.sp("search criteria")
    returns = None
    if reader.peek_word() == "RETURN":
        reader.atom("RETURN")
        reader.sp("SEARCH RETURN options")
        returns = _return_options(reader)
        reader.sp("search criteria")
    charset = None
    if reader.peek_word() == "CHARSET":
        reader.atom("CHARSET")
        reader.sp("charset")
        charset = _charset(reader)
        reader.sp("search criteria")
    keys = [_key(reader, 1)]
    while not reader.at_end():
        if reader.peek() == RPAREN:
            raise reader.fail("unbalanced parenthesis")
        reader.sp("search key")
        keys.append(_key(reader, 1))
    return Search(_all_of(keys), charset, returns)


def _return_options(reader: Reader) -> frozenset[str]:
    reader.expect(LPAREN, "SEARCH RETURN options")
    options: set[str] = set()
    while not reader.take(RPAREN):
        if options:
            reader.sp("SEARCH RETURN option")
        option = reader.word("SEARCH RETURN option")
        if option not in RETURN_OPTIONS:
            raise reader.fail(f"unknown SEARCH RETURN option {shown(option)}")
        options.add(option)
    return frozenset(options or {"ALL"})


def _charset(reader: Reader) -> str:
    name = reader.astring("charset")
    if not _PRINTABLE.fullmatch(name):
        raise reader.fail("bad charset")
    charset = name.decode("ascii").upper()
    if charset not in SEARCH_CHARSETS:
        raise UnsupportedCharset(reader.tag, shown(charset))
    return charset


def _all_of(keys: list[Key]) -> Key:
    return keys[0] if len(keys) == 1 else And(tuple(keys))


def _key(reader: Reader, depth: int) -> Key:
    if depth > MAX_DEPTH:
        raise reader.fail("search criteria nested too deeply")
    if reader.take(LPAREN):
        keys = [_key(reader, depth + 1)]
        while not reader.take(RPAREN):
            reader.sp("search key")
            keys.append(_key(reader, depth + 1))
        return _all_of(keys)
    if reader.peek_in(b"0123456789*"):
        return Messages(reader.sequence_set(), uid=False)
    name = reader.word("search key")
    if name in _FLAG_KEYS:
        flag, present = _FLAG_KEYS[name]
        return Flag(flag, present)
    if name in _DATE_KEYS:
        field, comparison = _DATE_KEYS[name]
        reader.sp("date")
        return Date(field, comparison, _date(reader))
    if name in _TEXT_KEYS:
        reader.sp("search text")
        return Text(_TEXT_KEYS[name], reader.text("search text"))
    if name == "ALL":
        return All()
    if name == "NEW":
        return And((Flag("\\Recent", True), Flag("\\Seen", False)))
    if name in ("KEYWORD", "UNKEYWORD"):
        reader.sp("keyword")
        return Flag(reader.atom("keyword").decode("ascii"), name == "KEYWORD")
    if name == "HEADER":
        reader.sp("header field name")
        header = reader.header_name()
        reader.sp("search text")
        return Header(header, reader.text("search text"))
    if name in ("LARGER", "SMALLER"):
        reader.sp("size")
        size = reader.number("size", MAX_NUMBER64)
        return Size("larger" if name == "LARGER" else "smaller", size)
    if name == "NOT":
        reader.sp("search key")
        return Not(_key(reader, depth + 1))
    if name == "OR":
        reader.sp("search key")
        left = _key(reader, depth + 1)
        reader.sp("search key")
        return Or(left, _key(reader, depth + 1))
    if name == "UID":
        reader.sp("sequence set")
        return Messages(reader.sequence_set(), uid=True)
    if name == "MODSEQ":
        return _modseq(reader)
    raise reader.fail(f"unknown search key {shown(name)}")


def _date(reader: Reader) -> datetime.date:
    """``date-text / DQUOTE date-text DQUOTE``: ``1-Feb-1994``."""
    text = reader.quoted("date") if reader.peek() == DQUOTE else reader.atom("date")
    match = _DATE.fullmatch(text)
    month = MONTHS.get(match.group(2).decode("ascii").upper(), 0) if match else 0
    try:
        if match is None or not month:
            raise ValueError
        return datetime.date(int(match.group(3)), month, int(match.group(1)))
    except ValueError:
        raise reader.fail("bad date") from None


def _modseq(reader: Reader) -> ModSeq:
    """``"MODSEQ" [SP entry-name SP entry-type-req] SP mod-sequence-valzer``."""
    reader.sp("mod-sequence")
    flag = entry_type = None
    if reader.peek() == DQUOTE:
        flag = _entry_flag(reader, reader.quoted("MODSEQ entry name"))
        reader.sp("MODSEQ entry type")
        entry_type = reader.word("MODSEQ entry type")
        if entry_type not in _ENTRY_TYPES:
            raise reader.fail("bad MODSEQ entry type")
        entry_type = entry_type.lower()
        reader.sp("mod-sequence")
    return ModSeq(reader.number("mod-sequence", MAX_NUMBER64), flag, entry_type)


def _entry_flag(reader: Reader, entry: bytes) -> str:
    """The flag of ``/flags/<flag>`` (RFC 7162 entry-flag-name)."""
    prefix, name = entry[:7], entry[7:]
    if prefix.lower() == b"/flags/" and name.startswith(b"\\"):
        canonical = SYSTEM_FLAGS.get(name.decode("ascii", "replace").upper())
        if canonical is not None:
            return canonical
    elif prefix.lower() == b"/flags/" and is_atom(name):
        return Atom(name.decode("ascii"))
    raise reader.fail("bad MODSEQ entry name")
