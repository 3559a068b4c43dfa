"""A buffer that writes what it is handed to the store in batches, off the
path that produced it: the sign-in activity (``zpop.accounts.activity``)
and the POP download log (``zpop.accounts.pop_log``).

``record`` appends and returns; one store call writes everything waiting
every FLUSH_INTERVAL seconds, as soon as FLUSH_BATCH are waiting, and once
more when the service stops (it is placed in the tree so that it stops
before the database pool and the store). What it holds is no promise made
to a client: on a hard kill up to a second of it can be lost, nothing
else. A failed write is logged once, without a traceback, and its items
are dropped; the producers never see it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from twisted.application import service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

log = Logger()

T = TypeVar("T")

#: Seconds between writes of buffered items.
FLUSH_INTERVAL = 1.0

#: Buffered items that are written at once, without waiting for the timer.
FLUSH_BATCH = 200


class BatchRecorder(service.Service, Generic[T]):
    """Buffers items and hands them to ``write`` in batches."""

    #: What the items are, for the log line of a failed write.
    what = "records"

    def __init__(
        self,
        write: Callable[[Sequence[T]], Deferred[Any]],
        clock: IReactorTime,
        interval: float = FLUSH_INTERVAL,
        batch: int = FLUSH_BATCH,
    ) -> None:
        self._write = write
        self._interval = interval
        self._batch = batch
        self._pending: list[T] = []
        self._loop = LoopingCall(self.flush)
        self._loop.clock = clock

    def record(self, item: T) -> None:
        """Remember ``item`` for the next write; never blocks, never fails."""
        self._pending.append(item)
        if len(self._pending) >= self._batch:
            self.flush()

    @property
    def pending(self) -> int:
        """Items waiting for the next write."""
        return len(self._pending)

    def flush(self) -> Deferred[None]:
        """Write what is buffered in one store call; fires when written (or
        the write failed and was logged), never with an error."""
        if not self._pending:
            return succeed(None)
        batch, self._pending = self._pending, []
        try:
            d: Deferred[Any] = self._write(batch)
        except Exception as e:
            self._failed(e, len(batch))
            return succeed(None)
        d.addCallbacks(lambda _: None, lambda f: self._failed(f.value, len(batch)))
        return d

    def _failed(self, error: BaseException, count: int) -> None:
        log.warn(
            "{what} not recorded: {count} events lost ({error})",
            what=self.what,
            count=count,
            error=f"{type(error).__name__}: {error}",
        )

    def startService(self) -> None:  # noqa: N802 - twisted API
        super().startService()
        self._loop.start(self._interval, now=False)

    def stopService(self) -> Deferred[None]:  # noqa: N802 - twisted API
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        return self.flush()
