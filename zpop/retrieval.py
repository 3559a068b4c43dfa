"""Sending a stored message to a POP3 client (RETR, TOP): CRLF line ends,
dot-stuffing and TOP's line limit applied chunk by chunk, with
back-pressure, so no message is ever loaded whole."""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer

from zpop.wire.dotstuff import DotStuffer
from zpop.wire.lines import CRLFStream

#: Bytes read from the store per step.
CHUNK_SIZE = 256 * 1024


class Transform(Protocol):
    """What BodyProducer does to each chunk: ``feed`` it, then ``finish``;
    ``done`` once nothing more is wanted (TOP's line limit)."""

    done: bool

    def feed(self, chunk: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class BodyTransform:
    """Stream a body as POP3 sends it: CRLF line ends, dot-stuffed.

    Line ends and dots are ``zpop.wire``'s, with their state across chunk
    boundaries, so any chunking gives the same bytes. With ``lines`` set it
    sends the header and that many body lines (TOP), counted between the
    two steps: on CRLF lines, before any dot is added.
    """

    def __init__(self, lines: int | None = None, crlf_only: bool = False) -> None:
        #: None when the source promises CRLF line ends only: skip normalising.
        self._line_ends = None if crlf_only else CRLFStream()
        self._stuffer = DotStuffer(crlf_only=True)
        self._lines_left = lines
        self._in_header = lines is not None
        self._tail = b""
        self.done = False

    def feed(self, chunk: bytes) -> bytes:
        if self.done:
            return b""
        if self._line_ends is not None:
            chunk = self._line_ends.feed(chunk)
        return self._emit(chunk)

    def finish(self) -> bytes:
        """The bytes that end the body, including the terminating dot line."""
        tail = b""
        if self._line_ends is not None and not self.done:
            tail = self._emit(self._line_ends.flush())
        return tail + self._stuffer.finish()

    def _emit(self, data: bytes) -> bytes:
        if self._lines_left is not None:
            data = self._limit(data)
        return self._stuffer.feed(data)

    def _limit(self, data: bytes) -> bytes:
        position = 0
        if self._in_header:
            joined = self._tail + data
            end = joined.find(b"\r\n\r\n")
            if end < 0:
                self._tail = joined[-3:]
                return data
            position = end + 4 - len(self._tail)
            self._in_header = False
        assert self._lines_left is not None
        while self._lines_left > 0:
            newline = data.find(b"\n", position)
            if newline < 0:
                return data
            position = newline + 1
            self._lines_left -= 1
        self.done = True
        return data[:position]


class Prefetched:
    """A reader whose first chunk was read already (to fail before a reply
    starts): that chunk, then the rest from ``reader``."""

    def __init__(self, first: bytes, reader: Any) -> None:
        self._first: bytes | None = first
        self._reader = reader
        self.crlf_only = getattr(reader, "crlf_only", False)

    def read(self, size: int) -> Any:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return self._reader.read(size)


@implementer(IPushProducer)
class BodyProducer:
    """Sends one message body with back-pressure, a chunk at a time.

    Upstream reads the whole message file through FileSender synchronously;
    zpop's bodies come from the store through Deferreds. A push producer:
    each chunk's read starts as soon as the previous chunk is written,
    unless the transport paused us. (As a pull producer under TLS, Twisted
    polls it from a cooperator while the read is pending: ~50 ms a RETR.)
    """

    def __init__(self, transport: Any, reader: Any, transform: Transform) -> None:
        self._transport = transport
        self._reader = reader
        self._transform = transform
        self._reading = False
        self._paused = False
        self._stopped = False
        self._pumping = False
        self._again = False
        self.sent = 0
        self.done: Deferred = Deferred()

    def start(self) -> Deferred:
        self._transport.registerProducer(self, True)
        self._pump()
        return self.done

    def _pump(self) -> None:
        # A loop rather than recursion, for readers that answer at once.
        if self._pumping:
            self._again = True
            return
        self._pumping = True
        try:
            self._again = True
            while self._again and not (self._reading or self._paused or self._stopped):
                self._again = False
                self._reading = True
                d = maybeDeferred(self._reader.read, CHUNK_SIZE)
                d.addCallbacks(self._received, self._failed)
        finally:
            self._pumping = False

    def _received(self, data: bytes) -> None:
        self._reading = False
        if self._stopped:
            return
        self.sent += len(data)
        out = self._transform.feed(data) if data else b""
        if not data or self._transform.done:
            self._finish(out + self._transform.finish())
            return
        # Write before asking for more: a reader may answer at once (the
        # end of a body is known without a read) and must not overtake.
        if out:
            self._transport.write(out)
        self._pump()

    def _finish(self, tail: bytes) -> None:
        self._stopped = True
        self._transport.write(tail)
        self._transport.unregisterProducer()
        self.done.callback(self.sent)

    def _failed(self, failure: Failure) -> None:
        self._reading = False
        if self._stopped:
            return
        self._stopped = True
        self._transport.unregisterProducer()
        self.done.errback(failure)

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._pump()

    def stopProducing(self) -> None:
        if not self._stopped:
            self._stopped = True
            self.done.errback(Failure(ConnectionError("connection lost")))
