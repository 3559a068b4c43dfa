"""Reading IMAP command arguments (RFC 3501 section 9): atoms, strings,
literals, numbers, flags and the single spaces between them.

A ``Reader`` walks the segments a ``CommandFramer`` delivers: text
pieces with a literal payload between each two, every piece but the last
ending in its ``{N}`` or ``{N+}`` marker. Each grammar rule of the parser
is a short run of Reader calls; a call that does not find what the rule
needs raises ParseError naming it, so every syntax error says what was
wrong where. Lists are read by the rules that expect them, never as
generic nested values, so no nesting is possible that a rule did not ask
for.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence

from zpop.imap.sequences import SequenceError, SequenceSet
from zpop.imap.values import Atom

MAX_NUMBER = 2**32 - 1
MAX_NUMBER64 = 2**63 - 1

SP = 0x20
DQUOTE = 0x22
LPAREN = 0x28
RPAREN = 0x29
BACKSLASH = 0x5C
LBRACE = 0x7B

# Character classes of RFC 3501: atom-specials are ( ) { SP CTL % * " \ ]
# and nothing outside US-ASCII is an atom character.
_ATOM = re.compile(rb'[^(){ %*"\\\]\x00-\x1f\x7f-\xff]+')
_ASTRING = re.compile(rb'[^(){ %*"\\\x00-\x1f\x7f-\xff]+')
#: RFC 3501 tag: ASTRING-CHAR but "+".
TAG = re.compile(rb'[^(){ %*"\\+\x00-\x1f\x7f-\xff]+')
_LIST_CHARS = re.compile(rb'[^(){ "\\\x00-\x1f\x7f-\xff]+')
_DIGITS = re.compile(rb"[0-9]+")
_SEQUENCE = re.compile(rb"[0-9:,*]+")
_QUOTED = re.compile(rb'"((?:[^"\\\r\n\x00]++|\\["\\])*+)"')
_ESCAPE = re.compile(rb'\\(["\\])')
_LITERAL = re.compile(rb"\{([0-9]{1,10})\+?\}")
#: RFC 5322 ftext: what a header field name is made of.
_FIELD_NAME = re.compile(rb"[!-9;-~]+")

_DATE_TIME = re.compile(
    rb"( [0-9]|[0-9]{2})-([A-Za-z]{3})-([0-9]{4}) "
    rb"([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"
)

#: Month numbers by upper-case name, as dates spell them.
MONTHS = {
    name: number
    for number, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN")
        + ("JUL", "AUG", "SEP", "OCT", "NOV", "DEC"),
        start=1,
    )
}

#: The system flags a client may set, by upper-case name.
SYSTEM_FLAGS = {
    flag.upper(): Atom(flag)
    for flag in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
}


class ParseError(ValueError):
    """A command that breaks the grammar. The server answers
    ``tag BAD message``, or ``* BAD message`` when ``tag`` is None (the
    tag itself could not be read). ``message`` is for the client: it
    quotes at most a short run of atom characters of the command."""

    def __init__(self, tag: str | None, message: str) -> None:
        super().__init__(message)
        self.tag = tag
        self.message = message


def is_atom(text: bytes) -> bool:
    return _ATOM.fullmatch(text) is not None


def shown(text: bytes | str) -> str:
    """Client text for an error message, cut short: only ever printable
    ASCII (atom characters, mostly), which the caller has checked."""
    if isinstance(text, bytes):
        text = text.decode("ascii")
    return text if len(text) <= 40 else text[:40] + "..."


class Reader:
    """A cursor over one command's segments.

    ``tag`` and ``command`` are filled in by the parser as it reads them,
    for the errors it raises. ``utf8`` is whether the client enabled
    UTF8=ACCEPT (RFC 6855), which makes mailbox names UTF-8.
    """

    def __init__(self, segments: Sequence[bytes], *, utf8: bool = False) -> None:
        if len(segments) % 2 != 1:
            raise ParseError(None, "malformed command")
        self._segments = segments
        self._index = 0
        self._text = segments[0]
        self._pos = 0
        self.tag: str | None = None
        self.command = ""
        self.utf8 = utf8

    def fail(self, message: str) -> ParseError:
        return ParseError(self.tag, message)

    def _absent(self, what: str) -> ParseError:
        """``what`` is not here: missing where a list or the command ends."""
        missing = self.at_end() or self.peek_in(b")]")
        return self.fail(f"missing {what}" if missing else f"bad {what}")

    # Position

    def peek(self) -> int:
        """The next octet of the current text piece, -1 at its end."""
        if self._pos < len(self._text):
            return self._text[self._pos]
        return -1

    def peek_in(self, octets: bytes) -> bool:
        """Whether the next octet is one of ``octets``."""
        return self._pos < len(self._text) and self._text[self._pos] in octets

    def at_end(self) -> bool:
        return self._pos >= len(self._text) and self._is_last()

    def take(self, octet: int) -> bool:
        """Step over ``octet`` if it comes next."""
        if self.peek() == octet:
            self._pos += 1
            return True
        return False

    def expect(self, octet: int, what: str) -> None:
        if not self.take(octet):
            raise self._absent(what)

    def sp(self, what: str) -> None:
        """The one space before ``what`` (RFC 3501 allows no other)."""
        if not self.take(SP):
            raise self._absent(what)
        if self.peek() == SP:
            raise self.fail(f"extra space before {what}")

    def delimiter(self, what: str) -> None:
        """What ends a token in a list: a space, ")" or the command's end."""
        if not (self.at_end() or self.peek_in(b" )")):
            raise self.fail(f"bad {what}")

    def end(self) -> None:
        """The end of the command: nothing may follow its arguments."""
        if self.at_end():
            return
        if self.peek() == SP and self._pos + 1 == len(self._text) and self._is_last():
            raise self.fail(f"trailing space after {self.command}")
        raise self.fail(f"unexpected extra arguments to {self.command}")

    def _is_last(self) -> bool:
        return self._index + 1 == len(self._segments)

    def match(self, pattern: re.Pattern[bytes], what: str) -> bytes:
        """The run of text ``pattern`` matches here, stepped over."""
        match = pattern.match(self._text, self._pos)
        if match is None:
            raise self._absent(what)
        self._pos = match.end()
        return match.group()

    def _delimited(self, what: str) -> None:
        """A token that ends inside an atom (``12abc``) is a bad one."""
        if _ATOM.match(self._text, self._pos):
            raise self.fail(f"bad {what}")

    # Atoms and numbers

    def tag_token(self) -> str:
        match = TAG.match(self._text, 0)
        if match is None:
            raise ParseError(None, "empty command line" if self.at_end() else "bad tag")
        self._pos = match.end()
        if self.peek() not in (SP, -1):
            raise ParseError(None, "bad tag")
        return match.group().decode("ascii")

    def atom(self, what: str) -> bytes:
        return self.match(_ATOM, what)

    def word(self, what: str) -> str:
        """An atom as an upper-case keyword (they are case-insensitive)."""
        return self.atom(what).decode("ascii").upper()

    def peek_word(self) -> str:
        """The keyword that comes next, not consumed; '' if none."""
        match = _ATOM.match(self._text, self._pos)
        return match.group().decode("ascii").upper() if match else ""

    def number(
        self,
        what: str,
        maximum: int = MAX_NUMBER,
        nonzero: bool = False,
        delimited: bool = True,
    ) -> int:
        """``number`` (or ``nz-number``, without leading zeros) up to
        ``maximum``: 32 bits unless the rule says otherwise. Unless it is
        not ``delimited`` (``<0.10>``), no atom character may follow."""
        digits = self.match(_DIGITS, what)
        if delimited:
            self._delimited(what)
        if nonzero and digits.startswith(b"0"):
            raise self.fail(f"bad {what}")
        if len(digits) > len(str(maximum)) or int(digits) > maximum:
            raise self.fail(f"{what} out of range")
        return int(digits)

    def sequence_set(self, what: str = "sequence set") -> SequenceSet:
        text = self.match(_SEQUENCE, what)
        self._delimited(what)
        try:
            return SequenceSet.parse(text)
        except SequenceError as e:
            raise self.fail(str(e)) from None

    # Strings

    def is_literal(self) -> bool:
        return (
            self.peek() == LBRACE
            and self._index + 1 < len(self._segments)
            and _LITERAL.fullmatch(self._text, self._pos) is not None
        )

    def literal(self, what: str) -> bytes:
        """A literal's payload; the framer has read it after the marker."""
        if not self.is_literal():
            raise self._absent(what)
        match = _LITERAL.fullmatch(self._text, self._pos)
        assert match is not None
        payload = self._segments[self._index + 1]
        if int(match.group(1)) != len(payload):
            raise self.fail("literal size mismatch")
        if b"\0" in payload:
            # RFC 3501 literal is *CHAR8: binary data has no place here.
            raise self.fail(f"NUL in {what}")
        self._index += 2
        self._text = self._segments[self._index]
        self._pos = 0
        return payload

    def quoted(self, what: str) -> bytes:
        if self.peek() != DQUOTE:
            raise self._absent(what)
        match = _QUOTED.match(self._text, self._pos)
        if match is None:
            raise self.fail(self._quoted_problem())
        self._pos = match.end()
        value = _ESCAPE.sub(rb"\1", match.group(1))
        if not value.isascii():
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                raise self.fail(f"{what} is not UTF-8") from None
        return value

    def _quoted_problem(self) -> str:
        text, i = self._text, self._pos + 1
        while i < len(text):
            octet = text[i]
            if octet == BACKSLASH:
                if i + 1 == len(text):
                    break
                if text[i + 1] in b'"\\':
                    i += 2
                    continue
                return "bad escape in quoted string"
            if octet in b"\r\n\0":
                return "bad character in quoted string"
            i += 1
        return "unterminated quoted string"

    def string(self, what: str) -> bytes:
        if self.peek() == LBRACE:
            return self.literal(what)
        if self.peek() == DQUOTE:
            return self.quoted(what)
        raise self._absent(what)

    def astring(self, what: str) -> bytes:
        if self.peek() in (DQUOTE, LBRACE):
            return self.string(what)
        return self.match(_ASTRING, what)

    def nstring(self, what: str) -> bytes | None:
        if self.peek_word() == "NIL":
            self._pos += 3
            return None
        return self.string(what)

    def list_mailbox(self, what: str) -> bytes:
        """A LIST pattern: an astring that may hold ``%`` and ``*``."""
        if self.peek() in (DQUOTE, LBRACE):
            return self.string(what)
        return self.match(_LIST_CHARS, what)

    # Values made of the above

    def flag(self, what: str = "flag") -> Atom:
        """A flag a client may set: a system flag in its RFC 3501 spelling,
        or a keyword. ``\\Recent`` and unknown ``\\`` flags are refused, as
        no command can set them."""
        if self.take(BACKSLASH):
            name = self.atom(what).decode("ascii")
            canonical = SYSTEM_FLAGS.get("\\" + name.upper())
            if canonical is not None:
                return canonical
            if name.upper() == "RECENT":
                raise self.fail("\\Recent cannot be set")
            raise self.fail(f"unknown flag \\{shown(name)}")
        return Atom(self.atom(what).decode("ascii"))

    def flag_list(self, what: str = "flag list") -> tuple[Atom, ...]:
        """``"(" [flag *(SP flag)] ")"``, repeated flags once."""
        self.expect(LPAREN, what)
        flags: list[Atom] = []
        if not self.take(RPAREN):
            flags.append(self.flag())
            while not self.take(RPAREN):
                self.sp("flag")
                flags.append(self.flag())
        return tuple(dict.fromkeys(flags))

    def header_name(self, what: str = "header field name") -> str:
        """An astring that must be an RFC 5322 field name, since any other
        could match no header, and these names are echoed in responses."""
        name = self.astring(what)
        if not _FIELD_NAME.fullmatch(name):
            raise self.fail(f"bad {what}")
        return name.decode("ascii")

    def text(self, what: str) -> str:
        """An astring as text: UTF-8 (US-ASCII being a part of it)."""
        value = self.astring(what)
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not UTF-8") from None

    def date_time(self) -> float:
        """``"dd-Mon-yyyy hh:mm:ss +zzzz"`` (RFC 3501 date-time, a day of
        one digit led by a space) as a POSIX time."""
        match = _DATE_TIME.fullmatch(self.quoted("date-time"))
        try:
            if match is None:
                raise ValueError
            day, year, hour, minute, second, zone_hours, zone_minutes = (
                int(match.group(n)) for n in (1, 3, 4, 5, 6, 8, 9)
            )
            month = MONTHS.get(match.group(2).decode("ascii").upper(), 0)
            if zone_minutes > 59 or second > 60:
                raise ValueError
            offset = datetime.timedelta(hours=zone_hours, minutes=zone_minutes)
            zone = datetime.timezone(-offset if match.group(7) == b"-" else offset)
            # A leap second (60) is one past :59, which datetime cannot hold.
            start = datetime.datetime(year, month, day, hour, minute, tzinfo=zone)
            return start.timestamp() + second
        except (ValueError, OverflowError):
            raise self.fail("bad date-time") from None
