"""The sign-in activity area of MemoryStore (ILoginEventStore), as
SQLiteStore keeps it (``zpop.store.sqlite_login_events``, migrations 013,
014): each account's newest LOGIN_EVENTS_KEPT events, those of unknown
addresses dropped, rows gone with their account, and the last use of the
app passwords they name."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from twisted.internet.defer import Deferred

from zpop.store.memory_queue import check_in, settle
from zpop.store.records import LOGIN_EVENTS_KEPT, LOGIN_RESULTS, LoginEvent


class MemoryLoginEvents:
    """A MemoryStore mixin; the account tables are MemoryStore's."""

    #: MemoryStore's: address -> account id, account id -> row.
    _addresses: dict[str, int]
    _accounts: dict[int, Any]
    #: MemoryAppPasswords': id -> row.
    _app_passwords: dict[int, Any]
    path: str

    def __init__(self, path: str) -> None:
        super().__init__(path)  # type: ignore[call-arg]
        # account id -> events, oldest first
        self._login_events: dict[int, list[LoginEvent]] = {}

    def _note_app_password_use(
        self, account_id: int, password_id: int, at: float, client: str
    ) -> int | None:
        """MemoryAppPasswords': record the use; None once revoked."""
        raise NotImplementedError

    def record_login_events(self, events: Sequence[LoginEvent]) -> Deferred[None]:
        def apply() -> None:
            for event in events:
                check_in(self.path, "result", event.result, LOGIN_RESULTS)
            # Rows of deleted accounts go first, as the cascade had done.
            for gone in list(self._login_events):
                if gone not in self._accounts:
                    del self._login_events[gone]
            for event in events:
                account_id = self._addresses.get(event.address.lower())
                if account_id is None:
                    continue
                password_id = event.app_password_id
                if password_id is not None:
                    password_id = self._note_app_password_use(
                        account_id, password_id, event.at, event.client
                    )
                kept = self._login_events.setdefault(account_id, [])
                kept.append(
                    replace(
                        event,
                        address=event.address.lower(),
                        app_password_id=password_id,
                    )
                )
                del kept[:-LOGIN_EVENTS_KEPT]

        return settle(apply)

    def list_login_events(
        self, address: str, limit: int = 100
    ) -> Deferred[list[LoginEvent]]:
        def look() -> list[LoginEvent]:
            account_id = self._addresses.get(address.lower())
            if account_id is None or limit <= 0:
                return []
            row = self._accounts[account_id]
            kept = self._login_events.get(account_id, [])
            return [
                replace(
                    e,
                    address=str(row.account.address),
                    # ON DELETE SET NULL, for passwords revoked since.
                    app_password_id=(
                        e.app_password_id
                        if e.app_password_id in self._app_passwords
                        else None
                    ),
                )
                for e in reversed(kept[-limit:])
            ]

        return settle(look)
