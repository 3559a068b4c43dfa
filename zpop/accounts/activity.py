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

from twisted.internet.interfaces import IReactorTime

from zpop.accounts import service as as_service
from zpop.accounts.accounts import require_account
from zpop.accounts.batches import FLUSH_BATCH, FLUSH_INTERVAL, BatchRecorder
from zpop.store import IStore, LoginEvent

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


class ActivityRecorder(BatchRecorder[LoginEvent]):
    """Buffers LoginEvents and writes them to ``store`` in batches."""

    name = "activity"
    what = "sign-in activity"

    def __init__(
        self,
        store: IStore,
        clock: IReactorTime,
        interval: float = FLUSH_INTERVAL,
        batch: int = FLUSH_BATCH,
    ) -> None:
        # Looked up at each write, so a store wrapped later is the one used.
        super().__init__(
            lambda events: store.record_login_events(events), clock, interval, batch
        )
