"""The SQLite store's sign-in activity area (migration 013): each account's
newest LOGIN_EVENTS_KEPT login events, written a batch per transaction."""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet.defer import Deferred

from zpop.store.records import LOGIN_EVENTS_KEPT, LoginEvent
from zpop.store.sqlite_base import SQLiteBase


class SQLiteLoginEvents(SQLiteBase):
    """ILoginEventStore on SQLite."""

    def record_login_events(self, events: Sequence[LoginEvent]) -> Deferred:
        batch = list(events)

        def thd() -> None:
            if not batch:
                return
            with self._write() as conn:
                ids: dict[str, int | None] = {}
                for event in batch:
                    address = event.address.lower()
                    if address not in ids:
                        row = conn.execute(
                            "SELECT id FROM accounts WHERE address = ?", (address,)
                        ).fetchone()
                        ids[address] = None if row is None else int(row[0])
                    account_id = ids[address]
                    if account_id is None:
                        continue
                    conn.execute(
                        "INSERT INTO login_events (account_id, at, protocol,"
                        " client, credential, result, reason)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            account_id,
                            event.at,
                            event.protocol,
                            event.client,
                            event.credential,
                            event.result,
                            event.reason,
                        ),
                    )
                for account_id in {i for i in ids.values() if i is not None}:
                    conn.execute(
                        "DELETE FROM login_events WHERE account_id = ?1 AND id <"
                        " (SELECT MIN(id) FROM (SELECT id FROM login_events"
                        " WHERE account_id = ?1 ORDER BY id DESC LIMIT ?2))",
                        (account_id, LOGIN_EVENTS_KEPT),
                    )

        return self._call(thd)

    def list_login_events(self, address: str, limit: int = 100) -> Deferred:
        def thd() -> list[LoginEvent]:
            with self._read() as conn:
                rows = conn.execute(
                    "SELECT a.address, e.at, e.protocol, e.client, e.credential,"
                    " e.result, e.reason FROM login_events e"
                    " JOIN accounts a ON a.id = e.account_id"
                    " WHERE a.address = ? ORDER BY e.id DESC LIMIT ?",
                    (address.lower(), max(limit, 0)),
                ).fetchall()
            return [
                LoginEvent(
                    str(r[0]),
                    float(r[1]),
                    str(r[2]),
                    str(r[3]),
                    str(r[4]),
                    str(r[5]),
                    str(r[6]),
                )
                for r in rows
            ]

        return self._call(thd)
