"""The POP download log (issue 17; DESIGN §1 "POP access settings"): which
device downloaded or deleted which message when. Written as a POP session
ends (zpop.accounts.maildrop: with its deletions, else batched by
PopLogRecorder), read here for the web page ``/settings/downloads``,
``GET /api/v1/pop/downloads`` and ``zpop pop log``.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

from zpop.accounts import service as as_service
from zpop.accounts.accounts import require_account
from zpop.accounts.batches import BatchRecorder
from zpop.store import IStore, PopDownload, PopSessionLog

#: Entries the web page shows, and the most the API pages through.
SHOWN = 200
LISTED = 5000


@as_service
async def list_downloads(
    store: IStore, address: str, limit: int = SHOWN
) -> list[PopDownload]:
    """The account's newest ``limit`` download log entries, newest first
    (UnknownAccount for an unknown address)."""
    account = await require_account(store, address)
    found: list[PopDownload] = await store.list_pop_downloads(account.address, limit)
    return found


class PopLogRecorder(BatchRecorder[tuple[int, PopSessionLog]]):
    """The download log of POP sessions that ended without a deletion (or
    were dropped), written in batches: the POP path then costs no database
    trip of its own at QUIT. A session's DELEs are not here: they are
    written with the deletions themselves (IPopStore.finish_pop_session)."""

    name = "pop-log"
    what = "POP download log"

    def __init__(self, store: IStore, clock: IReactorTime) -> None:
        super().__init__(lambda logs: store.record_pop_logs(logs), clock)

    def write(self, account_id: int, log: PopSessionLog) -> None:
        """The Maildrop's LogWriter."""
        self.record((account_id, log))
