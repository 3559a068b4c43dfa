"""Cutting an IMAP client's byte stream into commands (RFC 3501 section
2.2, literals of section 4.3, LITERAL+ of RFC 7888), with hard bounds on
what is held in memory.

A command is a line, or lines joined by literals: a line that ends in
``{N}`` (synchronizing: the client waits for ``+``) or ``{N+}`` (sent at
once) is followed by N octets, then the command goes on with the next
line. ``CommandFramer.feed`` gives events:

- ``Complete(segments)``: a whole command, ``segments`` being text,
  literal, text, literal, ..., text: each text without its line end, and
  each text but the last ending in the ``{N}``/``{N+}`` marker of the
  literal after it (which the parser checks against the payload).
- ``Continue()``: a synchronizing literal is accepted; the server sends
  ``+ ...`` so that the client sends it.
- ``Refuse(tag, reason, fatal, too_big)``: the command is dropped. A
  refused synchronizing literal is never continued, so the client does
  not send it and the stream stays in step: the server answers ``tag NO
  [TOOBIG]`` (``too_big``) or ``tag BAD`` and reads on. A refused ``{N+}``
  literal is on its way regardless: ``fatal``, the server says BYE and
  closes, and the framer takes nothing more.
- ``RawLine(data)``: after ``expect_line()``, the next line as it is,
  literals not looked for: IDLE's DONE, an AUTHENTICATE response.

A line too long is not buffered: once it is over ``max_line`` the framer
drops what it has and discards until the line end, keeping only the tag
and the last few octets, then refuses the command (not fatally), with
the tag if it could be read, else ``*``. Only if that line announced a
``{N+}`` literal is the refusal fatal: those octets follow, and reading
them as commands would execute whatever the client's data says.

``feed`` stops after the event that ends a command (Complete, RawLine,
Refuse) and keeps the rest buffered, so that the server can change how
the next bytes are read first (``expect_line`` after IDLE, ``discard``
after STARTTLS); ``feed(b"")`` goes on. A server that runs a command
asynchronously pauses the transport meanwhile, so that what waits in the
buffer stays bounded too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from zpop.imap.tokens import TAG

#: Octets of a literal size: ten digits are already past 4 GB.
MAX_LITERAL_DIGITS = 10

#: The longest tag kept for a refusal; a real tag is a few characters.
MAX_TAG = 64

LITERAL_TOO_BIG = "Literal too big"
LINE_TOO_LONG = "Command line too long"
TOO_MANY_LITERALS = "Too many literals in one command"

# The marker at a line's end: any number of digits, so that a size too
# long to be a literal is refused rather than left as text (a {N+} one is
# followed by its octets all the same).
_MARKER = re.compile(rb"\{([0-9]+)(\+?)\}\Z")
# How much of a discarded line's end is kept to look for a marker: far
# more than a literal size can have.
_TAIL = 64


@dataclass(frozen=True)
class Complete:
    """A whole command, for ``parser.parse_command``."""

    segments: tuple[bytes, ...]


@dataclass(frozen=True)
class Continue:
    """Send ``+`` now: the client waits for it to send its literal."""


@dataclass(frozen=True)
class Refuse:
    """The command is dropped: answer ``tag`` (``*`` if unknown) with NO
    [TOOBIG] if ``too_big``, else BAD; if ``fatal``, with BYE and close.
    ``reason`` is one of the constants above, fit for the client."""

    tag: bytes
    reason: str
    fatal: bool
    too_big: bool = False


@dataclass(frozen=True)
class RawLine:
    """The line asked for by ``expect_line``, without its line end."""

    data: bytes


Event = Complete | Continue | Refuse | RawLine


class CommandFramer:
    """Commands out of the bytes of one connection.

    ``max_literal(name)`` is the most literal octets a command may carry
    in all (APPEND needs a big one, LOGIN a small one), ``name`` being
    the upper-case word after the tag (``UID`` for the UID commands).
    ``max_line`` bounds the text of a command, its lines taken together,
    and ``max_literals`` the literals in one command, so that a command
    holds at most ``max_line`` + ``max_literal(name)`` octets.
    """

    def __init__(
        self,
        *,
        max_literal: Callable[[bytes], int],
        max_line: int = 65536,
        max_literals: int = 1000,
    ) -> None:
        if max_line < 2 * MAX_TAG:
            raise ValueError("max_line too small to hold a tag and a command")
        self._max_literal = max_literal
        self._max_line = max_line
        self._max_literals = max_literals
        self._buffer = bytearray()
        # How far _buffer has been searched for a line end.
        self._scanned = 0
        self._closed = False
        self._raw = False
        self._reset()

    def _reset(self) -> None:
        """Forget the command being read."""
        self._segments: list[bytes] = []
        self._text_size = 0
        self._literal_total = 0
        self._literal_limit: int | None = None
        self._literal = bytearray()
        self._literal_left: int | None = None
        # While discarding a line too long: its tag and last octets.
        self._overflow_tag: bytes | None = None
        self._overflow_tail = b""

    @property
    def buffered(self) -> int:
        """Octets received and not yet framed."""
        return len(self._buffer)

    def expect_line(self) -> None:
        """Deliver the next line as a RawLine, literals not looked for.

        Only between commands: after the Complete that asks for it.
        """
        if self._segments or self._overflow_tag is not None:
            raise RuntimeError("expect_line() in the middle of a command")
        self._raw = True

    def discard(self) -> None:
        """Drop everything received and not yet delivered (STARTTLS: what
        came before the handshake must not be read as if after it)."""
        self._buffer.clear()
        self._scanned = 0
        self._raw = False
        self._reset()

    def feed(self, data: bytes) -> list[Event]:
        """The events ``data`` completes, up to the end of one command."""
        if self._closed:
            return []
        events: list[Event] = []
        if self._overflow_tag is not None:
            data = self._skip_overflow(data, events)
            if events:
                self._buffer += data
                return events
        self._buffer += data
        while not self._closed:
            if self._literal_left is not None:
                if not self._read_literal():
                    break
                continue
            end = self._buffer.find(b"\n", self._scanned)
            if end < 0:
                self._scanned = len(self._buffer)
                if self._text_size + len(self._buffer) > self._max_line + 1:
                    self._start_overflow()
                break
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            self._scanned = 0
            if line.endswith(b"\r"):
                line = line[:-1]
            if self._line(line, events):
                break
        return events

    def _read_literal(self) -> bool:
        """Move literal octets out of the buffer; True once all are in."""
        assert self._literal_left is not None
        take = min(self._literal_left, len(self._buffer))
        self._literal += self._buffer[:take]
        del self._buffer[:take]
        self._literal_left -= take
        if self._literal_left:
            return False
        self._segments.append(bytes(self._literal))
        self._literal = bytearray()
        self._literal_left = None
        return True

    def _line(self, line: bytes, events: list[Event]) -> bool:
        """Take one line; True if it ended the command (an event is out)."""
        if self._raw:
            self._raw = False
            if len(line) > self._max_line:
                events.append(Refuse(b"*", LINE_TOO_LONG, fatal=False))
            else:
                events.append(RawLine(line))
            return True
        if self._text_size + len(line) > self._max_line:
            head = self._segments[0] if self._segments else line[: MAX_TAG + 1]
            self._refuse_overflow(_tag(head), line[-_TAIL:], events)
            return True
        self._text_size += len(line)
        self._segments.append(line)
        marker = _MARKER.search(line)
        if marker is None:
            events.append(Complete(tuple(self._segments)))
            self._reset()
            return True
        digits, synchronizing = marker.group(1), not marker.group(2)
        name = _command_name(self._segments[0])
        if self._literal_limit is None:
            self._literal_limit = self._max_literal(name)
        size = int(digits) if len(digits) <= MAX_LITERAL_DIGITS else None
        if len(self._segments) // 2 + 1 > self._max_literals:
            reason, too_big = TOO_MANY_LITERALS, False
        elif size is None or self._literal_total + size > self._literal_limit:
            reason, too_big = LITERAL_TOO_BIG, True
        else:
            self._literal_total += size
            self._literal_left = size
            if synchronizing:
                events.append(Continue())
            return False
        self._refuse(
            _tag(self._segments[0]), reason, not synchronizing, too_big, events
        )
        return True

    def _refuse(
        self,
        tag: bytes,
        reason: str,
        fatal: bool,
        too_big: bool,
        events: list[Event],
    ) -> None:
        events.append(Refuse(tag, reason, fatal, too_big))
        self._reset()
        if fatal:
            self._closed = True
            self._buffer.clear()

    def _start_overflow(self) -> None:
        """Stop buffering a line that is already too long."""
        if self._raw:
            self._overflow_tag = b"*"
        else:
            head = self._segments[0] if self._segments else self._buffer[: MAX_TAG + 1]
            self._overflow_tag = _tag(bytes(head))
        self._overflow_tail = bytes(self._buffer[-(_TAIL + 1) :])
        self._buffer.clear()
        self._scanned = 0

    def _skip_overflow(self, data: bytes, events: list[Event]) -> bytes:
        """Discard ``data`` up to the long line's end; what follows it."""
        end = data.find(b"\n")
        discarded = data if end < 0 else data[:end]
        # One octet more than _TAIL: it may be the CR of the line end.
        self._overflow_tail = (self._overflow_tail + discarded)[-(_TAIL + 1) :]
        if end < 0:
            return b""
        tag = self._overflow_tag
        assert tag is not None
        tail = self._overflow_tail
        tail = (tail[:-1] if tail.endswith(b"\r") else tail)[-_TAIL:]
        if self._raw:
            self._raw = False
            self._reset()
            events.append(Refuse(b"*", LINE_TOO_LONG, fatal=False))
        else:
            self._refuse_overflow(tag, tail, events)
        return data[end + 1 :]

    def _refuse_overflow(self, tag: bytes, tail: bytes, events: list[Event]) -> None:
        """Refuse a command whose line was too long; ``tail`` is the end
        of that line (without its line end), where a marker would be."""
        marker = _MARKER.search(tail)
        fatal = marker is not None and bool(marker.group(2))
        self._refuse(tag, LINE_TOO_LONG, fatal, False, events)


def _tag(head: bytes) -> bytes:
    """The tag that starts a command's first line, if it is one that can
    be echoed (RFC 3501 ``tag``), else ``*``."""
    match = TAG.match(head)
    if match is None or len(match.group()) > MAX_TAG:
        return b"*"
    if match.end() < len(head) and head[match.end()] != 0x20:
        return b"*"
    return match.group()


def _command_name(first_line: bytes) -> bytes:
    words = first_line.split(b" ", 2)
    return words[1].upper() if len(words) > 1 else b""
