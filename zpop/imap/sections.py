"""FETCH sections (RFC 3501 §6.4.5) of a parsed message: which byte
ranges of the stored message ``BODY[section]<partial>`` sends, so the
server streams them from the store and reads nothing else (see
zpop.imap.structure for the flow)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from zpop.imap.envelope import fields_end
from zpop.imap.structure import Part, Range

HEADER: Final = "HEADER"
HEADER_FIELDS: Final = "HEADER.FIELDS"
HEADER_FIELDS_NOT: Final = "HEADER.FIELDS.NOT"
TEXT: Final = "TEXT"
MIME: Final = "MIME"
_LINE: Final = re.compile(rb"[^\n]*\n|[^\n]+")
_BLANK_LINE: Final = re.compile(rb"\r?\n")
_SECTION_TEXTS: Final = frozenset(
    (None, HEADER, HEADER_FIELDS, HEADER_FIELDS_NOT, TEXT, MIME)
)


@dataclass(frozen=True, slots=True)
class Section:
    """A FETCH ``section`` (RFC 3501 §6.4.5): part numbers, then one of
    None, HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT or MIME (upper
    case), with the field names of the FIELDS forms."""

    parts: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.text not in _SECTION_TEXTS:
            raise ValueError(f"unknown section text {self.text!r}")
        if any(number < 1 for number in self.parts):
            raise ValueError("part numbers start at 1")
        if self.text == MIME and not self.parts:
            raise ValueError("MIME needs a part number")
        if self.filtered != bool(self.fields):
            raise ValueError("field names go with HEADER.FIELDS (.NOT) only")

    @property
    def filtered(self) -> bool:
        """HEADER.FIELDS or HEADER.FIELDS.NOT: the header must be read and
        passed through :func:`header_fields`."""
        return self.text in (HEADER_FIELDS, HEADER_FIELDS_NOT)

    @property
    def exclude(self) -> bool:
        return self.text == HEADER_FIELDS_NOT


def find_part(root: Part, numbers: Sequence[int]) -> Part | None:
    """The part that ``numbers`` (e.g. 4.2.1) name, or None.

    As in RFC 3501 and Dovecot: parts of a multipart count from 1; a
    non-multipart has only part 1, itself (so 1 of a single-part message is
    its body); numbers after a message/rfc822 part go into its message.
    """
    part = root
    for index, number in enumerate(numbers):
        more = index + 1 < len(numbers)
        if part.is_multipart:
            if number > len(part.children):
                return None
            part = part.children[number - 1]
        elif number != 1 or more and not part.is_message:
            return None
        if more and part.is_message:
            part = part.message
    return part


def section_range(root: Part, section: Section) -> list[Range]:
    """The byte ranges of the stored message that ``section`` of the
    message whose tree is ``root`` consists of; [] for a part that does not
    exist.  For HEADER.FIELDS (.NOT), the range of the header to filter
    with :func:`header_fields`."""
    target = root
    if section.parts:
        found = find_part(root, section.parts)
        if found is None:
            return []
        if section.text is None:
            return [(found.body_start, found.body_end)]
        if section.text == MIME:
            return [(found.header_start, found.body_start)]
        if not found.is_message:
            return []
        target = found.message
    elif section.text is None:
        return [(root.header_start, root.body_end)]
    if section.text == TEXT:
        return [(target.body_start, target.body_end)]
    return [(target.header_start, target.body_start)]


def header_fields(header: bytes, names: Iterable[str], exclude: bool = False) -> bytes:
    """HEADER.FIELDS (or, ``exclude``, HEADER.FIELDS.NOT) of ``header``.

    Fields keep their bytes and order; names match case-insensitively.
    The blank line that ends ``header`` ends the result too; RFC 3501 leaves
    it out only for a message that has none.  A line that is not a field
    (no colon) matches no name, so only HEADER.FIELDS.NOT keeps it.
    """
    wanted = {name.encode("utf-8").lower() for name in names}
    end = fields_end(header)
    kept: list[bytes] = []
    current: bytes | None = None
    keep = False
    for line in _LINE.findall(header, 0, end):
        if line[:1] in (b" ", b"\t") and current is not None:
            current += line
            continue
        if current is not None and keep:
            kept.append(current)
        current = line
        colon = line.find(b":")
        name = line[:colon].rstrip(b" \t").lower() if colon > 0 else None
        keep = (name in wanted) != exclude
    if current is not None and keep:
        kept.append(current)
    blank = _BLANK_LINE.match(header, end)
    return b"".join(kept) + (b"" if blank is None else blank.group())


def partial(
    ranges: Sequence[Range], offset: int, length: int | None = None
) -> list[Range]:
    """``ranges`` narrowed to ``length`` octets from ``offset`` of their
    concatenation (FETCH ``<offset.length>``): past the end is empty, a
    length past the end is cut there."""
    if offset < 0 or length is not None and length < 0:
        raise ValueError("offset and length cannot be negative")
    narrowed: list[Range] = []
    for start, end in ranges:
        if offset >= end - start:
            offset -= end - start
            continue
        start += offset
        offset = 0
        if length is not None:
            if length == 0:
                break
            end = min(end, start + length)
            length -= end - start
        narrowed.append((start, end))
    return narrowed


def total(ranges: Sequence[Range]) -> int:
    """The octet count of ``ranges``: the literal size to announce."""
    return sum(end - start for start, end in ranges)
