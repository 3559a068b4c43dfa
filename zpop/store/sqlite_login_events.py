"""The SQLite store's sign-in activity area (migrations 013, 014): each
account's newest LOGIN_EVENTS_KEPT login events, written a batch per
transaction with the last use of the app passwords they name."""

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
                    password_id = event.app_password_id
                    if password_id is not None:
                        # Revoked since the login: nothing to refer to.
                        used = conn.execute(
                            "UPDATE app_passwords SET last_used = ?1,"
                            " last_used_from = ?2 WHERE id = ?3 AND account_id = ?4"
                            " AND (last_used IS NULL OR last_used <= ?1)",
                            (event.at, event.client, password_id, account_id),
                        )
                        if (
                            used.rowcount == 0
                            and not conn.execute(
                                "SELECT 1 FROM app_passwords"
                                " WHERE id = ? AND account_id = ?",
                                (password_id, account_id),
                            ).fetchone()
                        ):
                            password_id = None
                    conn.execute(
                        "INSERT INTO login_events (account_id, at, protocol,"
                        " client, credential, result, reason, app_password_id)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            account_id,
                            event.at,
                            event.protocol,
                            event.client,
                            event.credential,
                            event.result,
                            event.reason,
                            password_id,
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
                    " e.result, e.reason, e.app_password_id FROM login_events e"
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
                    None if r[7] is None else int(r[7]),
                )
                for r in rows
            ]

        return self._call(thd)
