"""One command at a time: how zpop's POP3 and SMTP sessions run handlers.

A handler answers at once, raises the protocol's refusal, or returns a
coroutine or Deferred. While one is pending the session reads no further
command (a pipelined RCPT never overtakes its MAIL), stops reading the
socket once ``PIPELINE_LIMIT`` bytes wait, and keeps no idle timer; every
failure is answered in the protocol's own words, never with a traceback.
Upstream twisted.mail runs pipelined SMTP checks out of order, buffers
without bound, and leaves a POP3 session blocked forever when an operation
fails.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from time import perf_counter
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from zpop import metrics

#: Bytes a client may pipeline while a command is pending before zpop stops
#: reading from its socket (back-pressure instead of an unbounded buffer).
PIPELINE_LIMIT = 64 * 1024

#: Seconds a closing connection may take to go before it is aborted.
CLOSE_GRACE = 5.0


def start(coroutine: Coroutine[Any, Any, Any]) -> Deferred | None:
    """Run a handler's coroutine; None if it finished without waiting.

    Most commands await only Deferreds that have already fired, so they end
    on the first step; only one that really waits pays for a Deferred and
    for holding the session's input.
    """
    try:
        awaited = coroutine.send(None)
    except StopIteration:
        return None
    return Deferred.fromCoroutine(_resume(coroutine, awaited))


async def _resume(coroutine: Coroutine[Any, Any, Any], awaited: Any) -> Any:
    """Drive a coroutine suspended on ``awaited`` (a Deferred) to its end."""
    while True:
        failed: BaseException | None = None
        try:
            value = await awaited
        except BaseException as error:
            failed = error
        try:
            if failed is None:
                awaited = coroutine.send(value)
            else:
                awaited = coroutine.throw(failed)
        except StopIteration as stop:
            return stop.value


class CommandRunner:
    """Mixin for a session protocol (with TimeoutMixin) that runs handlers.

    The protocol supplies ``refusal`` (the exception its handlers raise to
    refuse), ``_refuse`` and ``_server_error`` (how it answers those and
    everything else), ``_idle_timeout`` and ``_process`` (reads buffered
    input while ``_waiting`` is false), and sets ``_buffer``, ``_waiting``,
    ``_reading_paused`` and ``_disconnected`` when the connection starts.
    """

    refusal: type[Exception]
    #: The protocol's name in the command latency metrics (zpop.metrics).
    metrics_protocol: str
    transport: Any
    clock: IReactorTime
    _abort_call: IDelayedCall | None = None
    _buffer: bytes
    _waiting: bool
    _reading_paused: bool
    _disconnected: bool
    setTimeout: Callable[[float | None], Any]  # noqa: N815 - TimeoutMixin

    def _refuse(self, refusal: Any) -> None:
        raise NotImplementedError

    def _server_error(self, failure: Failure) -> None:
        raise NotImplementedError

    def _idle_timeout(self) -> float:
        raise NotImplementedError

    def _process(self) -> None:
        raise NotImplementedError

    def _lose_connection(self) -> None:
        """Close once the last reply is sent, and abort if the peer keeps
        the connection open: a TLS close waits for the peer's close_notify,
        which a hostile client never sends. ``connectionLost`` calls
        ``_closed``."""
        self.transport.loseConnection()
        self._abort_call = self.clock.callLater(CLOSE_GRACE, self._abort)

    def _abort(self) -> None:
        if not self._disconnected:
            self.transport.abortConnection()

    def _closed(self) -> None:
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()

    def _run(self, handler: Callable[..., Any], *args: Any) -> None:
        """Call a handler; answer a refusal; wait for what it returns.
        The time to its reply goes to the latency histogram."""
        started = perf_counter()
        try:
            result = handler(*args)
            if isinstance(result, Coroutine):
                result = start(result)
        except self.refusal as refusal:
            self._refuse(refusal)
            metrics.command(self.metrics_protocol, perf_counter() - started)
            return
        except Exception:
            self._render_failure(Failure())
            return
        if isinstance(result, Deferred):
            # Before _wait_for's callbacks, which go on to the next command.
            result.addBoth(self._timed, started)
            self._wait_for(result)
        else:
            metrics.command(self.metrics_protocol, perf_counter() - started)

    def _timed(self, result: object, started: float) -> object:
        metrics.command(self.metrics_protocol, perf_counter() - started)
        return result

    def _wait_for(self, d: Deferred) -> None:
        self._waiting = True
        self.setTimeout(None)
        d.addErrback(self._render_failure)
        d.addBoth(self._unblock)

    def _unblock(self, _: object) -> None:
        self._waiting = False
        if self._disconnected:
            return
        # From the config: setTimeout(None) cleared TimeoutMixin.timeOut.
        self.setTimeout(self._idle_timeout())
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resumeProducing()
        self._process()

    def _hold_input(self) -> None:
        """Stop reading the socket while a command waits and much is buffered."""
        if self._waiting and len(self._buffer) > PIPELINE_LIMIT:
            if not self._reading_paused:
                self._reading_paused = True
                self.transport.pauseProducing()

    def _render_failure(self, failure: Failure) -> None:
        if self._disconnected:
            return
        if failure.check(self.refusal):
            self._refuse(failure.value)
            return
        self._server_error(failure)
