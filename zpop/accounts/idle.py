"""IDLE's wake-ups (RFC 2177; DESIGN §1 "IMAP": new mail reaches an IDLE
client within 2 seconds, whichever process stored it).

Every waiting session of the process is watched by one look-up a second
(``IMailboxStore.folder_modseqs``), not one query per session: 10,000
IDLE sessions cost one query over their folders. A session is woken only
when its folder's MODSEQ moved (mail arrived, flags changed, messages
left) or the folder is gone; it then catches up itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from zpop.store import IStore

log = Logger()

#: Seconds between looks: with the session's own catch-up, well inside
#: the 2 seconds the contract allows.
INTERVAL = 1.0


@dataclass(eq=False)
class Watch:
    """One waiting session: its folder, the MODSEQ it has seen, and what
    to call when that moves (with the folder's new MODSEQ, or None once
    the folder is gone)."""

    folder_id: int
    modseq: int
    wake: Callable[[int | None], object]
    active: bool = field(default=True)


class IdleWatcher:
    """The process's one timer over every IDLE session's folder."""

    def __init__(
        self, store: IStore, clock: IReactorTime, interval: float = INTERVAL
    ) -> None:
        self._store = store
        self._clock = clock
        self._interval = interval
        self._watches: set[Watch] = set()
        self._call: IDelayedCall | None = None
        self._looking = False

    def watch(
        self, folder_id: int, modseq: int, wake: Callable[[int | None], object]
    ) -> Watch:
        watch = Watch(folder_id, modseq, wake)
        self._watches.add(watch)
        if self._call is None and not self._looking:
            self._call = self._clock.callLater(self._interval, self._look)
        return watch

    def unwatch(self, watch: Watch) -> None:
        watch.active = False
        self._watches.discard(watch)

    def _look(self) -> None:
        self._call = None
        if not self._watches:
            return
        self._looking = True
        watches = list(self._watches)
        d: Deferred[dict[int, int]] = self._store.folder_modseqs(
            [w.folder_id for w in watches]
        )
        d.addCallbacks(self._looked, self._failed, callbackArgs=(watches,))
        d.addBoth(self._again)

    def _looked(self, modseqs: dict[int, int], watches: list[Watch]) -> None:
        for watch in watches:
            if not watch.active:
                continue
            current = modseqs.get(watch.folder_id)
            if current is None or current > watch.modseq:
                if current is not None:
                    watch.modseq = current
                watch.wake(current)

    def _failed(self, failure: Failure) -> None:
        # The store is down for a moment: the sessions wait on; next look.
        log.warn(
            "IDLE sessions' folders not looked at: {error}",
            error=failure.getErrorMessage(),
        )

    def _again(self, _: object) -> None:
        self._looking = False
        if self._watches and self._call is None:
            self._call = self._clock.callLater(self._interval, self._look)
