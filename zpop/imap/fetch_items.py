"""FETCH data items (RFC 3501 section 6.4.5, with CONDSTORE's MODSEQ and
CHANGEDSINCE of RFC 7162), each able to say the name its FETCH response
item has.

That name is not the request's: BODY.PEEK[...] is answered as BODY[...],
and a partial ``BODY[1]<0.100>`` as ``BODY[1]<0>``, the origin octet
only (RFC 3501 section 7.4.2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from zpop.imap.sequences import SequenceSet
from zpop.imap.tokens import (
    LPAREN,
    MAX_NUMBER,
    MAX_NUMBER64,
    RPAREN,
    Reader,
    shown,
)

#: How many part numbers a section may have. Real MIME trees are a few
#: levels deep; the bound keeps a client from making the server walk an
#: absurd path.
MAX_PART_DEPTH = 32

#: The data items that take no arguments.
ATTRIBUTES = frozenset(
    {
        "ENVELOPE",
        "FLAGS",
        "INTERNALDATE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.SIZE",
        "RFC822.TEXT",
        "BODY",
        "BODYSTRUCTURE",
        "UID",
        "MODSEQ",
    }
)

_ITEM_NAME = re.compile(rb"[A-Za-z0-9.]+")
_SECTION_SPEC = re.compile(rb"[A-Za-z0-9.]+")
_SECTION_TEXTS = frozenset(
    {"", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"}
)
_ATOM_NAME = re.compile(r"[^(){ %*\"\\\]\x00-\x1f\x7f-\uffff]+")


@dataclass(frozen=True)
class Attribute:
    """A data item without arguments, upper-case: ``FLAGS``, ``UID``,
    ``RFC822.HEADER``, ``BODY`` (the non-extensible body structure)."""

    name: str

    @property
    def label(self) -> str:
        return self.name

    @property
    def sets_seen(self) -> bool:
        """RFC822 and RFC822.TEXT set \\Seen; RFC822.HEADER does not."""
        return self.name in ("RFC822", "RFC822.TEXT")


@dataclass(frozen=True)
class Section:
    """A BODY section: ``part`` numbers (none for the whole message),
    then ``text``: None, ``HEADER``, ``HEADER.FIELDS``,
    ``HEADER.FIELDS.NOT``, ``TEXT`` or (after a part) ``MIME``;
    ``fields`` the header names of the HEADER.FIELDS forms, as given."""

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()

    @property
    def spec(self) -> str:
        """The section as a response names it: ``1.2.HEADER.FIELDS (To)``."""
        words = [str(n) for n in self.part]
        if self.text is not None:
            words.append(self.text)
        spec = ".".join(words)
        if self.fields:
            spec += " (" + " ".join(_field_wire(f) for f in self.fields) + ")"
        return spec


def _field_wire(name: str) -> str:
    """A header name (printable ASCII) as an atom if it is one, else quoted."""
    if _ATOM_NAME.fullmatch(name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class BodySection:
    """BODY[section] or BODY.PEEK[section] (``peek``), optionally only
    ``partial`` = (offset, length) octets of it."""

    section: Section
    peek: bool = False
    partial: tuple[int, int] | None = None

    @property
    def label(self) -> str:
        label = f"BODY[{self.section.spec}]"
        if self.partial is not None:
            label += f"<{self.partial[0]}>"
        return label

    @property
    def sets_seen(self) -> bool:
        return not self.peek


FetchItem = Attribute | BodySection

#: The macros of RFC 3501, which may only stand alone.
MACROS: dict[str, tuple[FetchItem, ...]] = {
    "ALL": tuple(
        Attribute(n) for n in ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE")
    ),
    "FAST": tuple(Attribute(n) for n in ("FLAGS", "INTERNALDATE", "RFC822.SIZE")),
    "FULL": tuple(
        Attribute(n)
        for n in ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY")
    ),
}


@dataclass(frozen=True)
class Fetch:
    """The arguments of FETCH and UID FETCH.

    ``items`` are in the order given, repeats dropped, and hold what the
    response must carry even unasked: UID (first) for UID FETCH (RFC 3501
    section 6.4.8), MODSEQ when ``changed_since`` is given (RFC 7162
    section 3.1.4.1).
    """

    messages: SequenceSet
    items: tuple[FetchItem, ...]
    changed_since: int | None = None


def parse_fetch(reader: Reader, uid: bool) -> Fetch:
    """``SP sequence-set SP (macro / fetch-att / "(" fetch-att *(SP
    fetch-att) ")") [SP "(" fetch-modifier *(SP fetch-modifier) ")"]``."""
    reader.sp("sequence set")
    messages = reader.sequence_set()
    reader.sp("fetch items")
    items: list[FetchItem]
    if reader.take(LPAREN):
        items = [_item(reader)]
        while not reader.take(RPAREN):
            reader.sp("fetch item")
            items.append(_item(reader))
    elif reader.peek_word() in MACROS:
        items = list(MACROS[reader.word("fetch items")])
    else:
        items = [_item(reader)]
    changed_since = None
    if reader.peek() == RPAREN:
        raise reader.fail("unbalanced parenthesis")
    if not reader.at_end():
        reader.sp("FETCH modifiers")
        changed_since = _modifiers(reader)
    if changed_since is not None:
        items.append(Attribute("MODSEQ"))
    if uid:
        items.insert(0, Attribute("UID"))
    return Fetch(messages, tuple(dict.fromkeys(items)), changed_since)


def _item(reader: Reader) -> FetchItem:
    name = reader.match(_ITEM_NAME, "fetch item").decode("ascii").upper()
    if name in ("BODY", "BODY.PEEK") and reader.peek() == ord("["):
        section = _section(reader)
        partial = None
        if reader.take(ord("<")):
            offset = reader.number("partial offset", delimited=False)
            reader.expect(ord("."), "partial length")
            length = reader.number(
                "partial length", MAX_NUMBER, nonzero=True, delimited=False
            )
            reader.expect(ord(">"), "end of partial range")
            partial = (offset, length)
        reader.delimiter("fetch item")
        return BodySection(section, name == "BODY.PEEK", partial)
    if name not in ATTRIBUTES or reader.peek_in(b"[<"):
        raise reader.fail(f"unknown fetch item {shown(name)}")
    reader.delimiter("fetch item")
    return Attribute(name)


def _section(reader: Reader) -> Section:
    """``"[" [section-spec] "]"`` (RFC 3501 section 9)."""
    reader.expect(ord("["), "section")
    if reader.take(ord("]")):
        return Section()
    words = reader.match(_SECTION_SPEC, "section").split(b".")
    part: list[int] = []
    while words and words[0].isdigit():
        number = words.pop(0)
        if number.startswith(b"0") or len(number) > 10 or int(number) > MAX_NUMBER:
            raise reader.fail("bad section part number")
        part.append(int(number))
    if len(part) > MAX_PART_DEPTH:
        raise reader.fail("section part nested too deeply")
    if b"" in words:
        raise reader.fail("bad section")
    text = b".".join(words).decode("ascii").upper()
    if text not in _SECTION_TEXTS or (text == "MIME" and not part):
        raise reader.fail("bad section")
    fields: list[str] = []
    if text.startswith("HEADER.FIELDS"):
        reader.sp("header list")
        reader.expect(LPAREN, "header list")
        if reader.peek() == RPAREN:
            raise reader.fail("empty header list")
        fields.append(reader.header_name())
        while not reader.take(RPAREN):
            reader.sp("header field name")
            fields.append(reader.header_name())
    reader.expect(ord("]"), "end of section")
    return Section(tuple(part), text or None, tuple(fields))


def _modifiers(reader: Reader) -> int:
    """``"(" fetch-modifier *(SP fetch-modifier) ")"``: CHANGEDSINCE only.

    RFC 7162 wants a mod-sequence of at least 1; CHANGEDSINCE 0 is taken
    too (all messages), as iOS Mail sends it to servers new to CONDSTORE.
    """
    reader.expect(LPAREN, "FETCH modifiers")
    changed_since = None
    while True:
        modifier = reader.word("FETCH modifier")
        if modifier != "CHANGEDSINCE":
            raise reader.fail(f"unknown FETCH modifier {shown(modifier)}")
        if changed_since is not None:
            raise reader.fail("CHANGEDSINCE given twice")
        reader.sp("mod-sequence")
        changed_since = reader.number("mod-sequence", MAX_NUMBER64)
        if reader.take(RPAREN):
            return changed_since
        reader.sp("FETCH modifier")
