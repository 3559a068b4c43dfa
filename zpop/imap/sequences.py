"""IMAP sequence sets (RFC 3501 ``sequence-set``): message numbers or UIDs
such as ``2,4:7,9,12:*``.

A set is kept as the ranges the client sent, never as the numbers in
them, since ``1:4294967295`` is a legal (and common) way to say "all
UIDs"; ``resolve`` gives the numbers as merged ``range`` objects.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable

#: ``*``: the largest number in use, known only when the set is resolved.
STAR = 0

#: nz-number: a non-zero unsigned 32-bit integer.
MAX_NUMBER = 2**32 - 1

#: More ranges than this is no client's real need, only a way to make
#: each resolve or membership test slow.
MAX_RANGES = 10_000

_NUMBER = re.compile(rb"[1-9][0-9]*|\*")


class SequenceError(ValueError):
    """Why a sequence set is refused, in words for a BAD response."""


class SequenceSet:
    """Ranges of message numbers or UIDs, ``STAR`` standing for ``*``.

    Each range is a ``(first, last)`` pair as the client gave it, so
    ``4:2`` is ``(4, 2)`` and means the same as ``2:4``.
    """

    __slots__ = ("_ranges", "_cache")

    def __init__(self, ranges: Iterable[tuple[int, int]]) -> None:
        self._ranges = tuple(ranges)
        if not self._ranges:
            raise SequenceError("empty sequence set")
        for pair in self._ranges:
            for number in pair:
                if not (number == STAR or 1 <= number <= MAX_NUMBER):
                    raise SequenceError("message number out of range")
        self._cache: tuple[int, tuple[range, ...], list[int]] | None = None

    @classmethod
    def parse(cls, text: bytes) -> SequenceSet:
        """The set ``text`` spells, or SequenceError."""
        if text.count(b",") >= MAX_RANGES:
            raise SequenceError("too many ranges in sequence set")
        ranges = []
        for item in text.split(b","):
            ends = item.split(b":")
            if b"0" in ends:
                raise SequenceError("message number 0 is not valid")
            if len(ends) > 2 or not all(_NUMBER.fullmatch(end) for end in ends):
                raise SequenceError("invalid sequence set")
            if any(len(end) > 10 for end in ends):
                raise SequenceError("message number out of range")
            numbers = [STAR if end == b"*" else int(end) for end in ends]
            ranges.append((numbers[0], numbers[-1]))
        return cls(ranges)

    @classmethod
    def of(cls, numbers: Iterable[int]) -> SequenceSet:
        """The smallest set of exactly ``numbers`` (for COPYUID and
        APPENDUID, whose UIDs come from the store)."""
        ranges: list[tuple[int, int]] = []
        for number in sorted(set(numbers)):
            if ranges and ranges[-1][1] == number - 1:
                ranges[-1] = (ranges[-1][0], number)
            else:
                ranges.append((number, number))
        if ranges and (ranges[0][0] < 1 or ranges[-1][1] > MAX_NUMBER):
            raise SequenceError("message number out of range")
        return cls(ranges)

    @property
    def ranges(self) -> tuple[tuple[int, int], ...]:
        return self._ranges

    def resolve(self, largest: int) -> tuple[range, ...]:
        """The numbers of the set as sorted, disjoint, non-adjacent ranges,
        ``*`` being ``largest`` (the number of messages, or the highest
        UID) and nothing above ``largest`` kept: no message has it.

        ``3:*`` with ``largest`` 2 is ``2:3``, so it holds message 2, as
        RFC 3501 says of a UID range past the last UID.
        """
        return self._resolved(largest)[0]

    def _resolved(self, largest: int) -> tuple[tuple[range, ...], list[int]]:
        """``resolve`` and the starts of its ranges, for bisecting; kept
        for the last ``largest``, as a FETCH or STORE asks once a message."""
        if self._cache is not None and self._cache[0] == largest:
            return self._cache[1], self._cache[2]
        spans = []
        for first, last in self._ranges:
            low, high = sorted(largest if n == STAR else n for n in (first, last))
            low, high = max(low, 1), min(high, largest)
            if low <= high:
                spans.append((low, high))
        spans.sort()
        merged: list[list[int]] = []
        for low, high in spans:
            if merged and low <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], high)
            else:
                merged.append([low, high])
        resolved = tuple(range(low, high + 1) for low, high in merged)
        starts = [low for low, _ in merged]
        self._cache = (largest, resolved, starts)
        return resolved, starts

    def contains(self, number: int, largest: int) -> bool:
        """Whether ``number`` is in the set, ``*`` being ``largest``."""
        resolved, starts = self._resolved(largest)
        index = bisect.bisect_right(starts, number) - 1
        return index >= 0 and number in resolved[index]

    def exceeds(self, largest: int) -> bool:
        """Whether the client named a number above ``largest``, or ``*``
        with ``largest`` 0: for message numbers that is a BAD command (RFC
        3501 section 9, ``seq-number``); for UIDs it is no error."""
        return any(
            n > largest or (n == STAR and largest == 0)
            for pair in self._ranges
            for n in pair
        )

    def to_wire(self) -> str:
        """The set in IMAP syntax, ranges in their order: ``1:3,5``."""
        return ",".join(
            _wire(first) if first == last else f"{_wire(first)}:{_wire(last)}"
            for first, last in self._ranges
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SequenceSet):
            return NotImplemented
        return self._ranges == other._ranges

    def __hash__(self) -> int:
        return hash(self._ranges)

    def __repr__(self) -> str:
        return f"SequenceSet({self.to_wire()!r})"


def _wire(number: int) -> str:
    return "*" if number == STAR else str(number)
