"""Sign-in activity: every login outcome of a known account, written to the
store in batches off the login path (DESIGN §1 "Self-service web settings").

The Authenticator hands ``ActivityRecorder.record`` each outcome and goes
on: a login reply never waits for this write. Events are buffered in
memory and written in one ``record_login_events`` call every FLUSH_INTERVAL
seconds or as soon as FLUSH_BATCH are waiting, and once more when the
service stops (it is placed in the tree so that it stops before the
database pool and the store).

Activity is not a promise made to the client: on a hard kill (``kill -9``,
a power cut) up to a second of activity can be lost, and nothing else is:
logins themselves, the throttle's counters and bans, and every other change
are written by their own paths as before. A failed write is logged once per
failure, without a traceback, and its events are dropped; logins never see
it.
"""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from zpop.accounts import service as as_service
from zpop.accounts.accounts import require_account
from zpop.store import IStore, LoginEvent

log = Logger()

#: Seconds between writes of buffered events.
FLUSH_INTERVAL = 1.0

#: Buffered events that are written at once, without waiting for the timer.
FLUSH_BATCH = 200

#: Events the sign-in activity page shows.
SHOWN = 100


@as_service
async def list_activity(
    store: IStore, address: str, limit: int = SHOWN
) -> list[LoginEvent]:
    """The account's newest ``limit`` login events, newest first
    (UnknownAccount for an unknown address)."""
    account = await require_account(store, address)
    found: list[LoginEvent] = await store.list_login_events(account.address, limit)
    return found


class ActivityRecorder(service.Service):
    """Buffers LoginEvents and writes them to ``store`` in batches."""

    name = "activity"

    def __init__(
        self,
        store: IStore,
        clock: IReactorTime,
        interval: float = FLUSH_INTERVAL,
        batch: int = FLUSH_BATCH,
    ) -> None:
        self._store = store
        self._clock = clock
        self._interval = interval
        self._batch = batch
        self._pending: list[LoginEvent] = []
        self._writing: Deferred[None] | None = None
        self._loop = LoopingCall(self.flush)
        self._loop.clock = clock

    def record(self, event: LoginEvent) -> None:
        """Remember ``event`` for the next write; never blocks, never fails."""
        self._pending.append(event)
        if len(self._pending) >= self._batch:
            self.flush()

    @property
    def pending(self) -> int:
        """Events waiting for the next write."""
        return len(self._pending)

    def flush(self) -> Deferred[None]:
        """Write what is buffered in one store call; fires when written (or
        the write failed and was logged), never with an error."""
        if not self._pending:
            return succeed(None)
        batch, self._pending = self._pending, []
        try:
            d: Deferred[Any] = self._store.record_login_events(batch)
        except Exception as e:
            self._failed(e, len(batch))
            return succeed(None)
        d.addCallbacks(lambda _: None, lambda f: self._failed(f.value, len(batch)))
        return d

    @staticmethod
    def _failed(error: BaseException, count: int) -> None:
        log.warn(
            "sign-in activity not recorded: {count} events lost ({error})",
            count=count,
            error=f"{type(error).__name__}: {error}",
        )

    def startService(self) -> None:
        super().startService()
        self._loop.start(self._interval, now=False)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        return self.flush()
