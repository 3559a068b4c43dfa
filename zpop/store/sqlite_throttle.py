"""The SQLite store's login failures and bans."""

from __future__ import annotations

from twisted.internet.defer import Deferred

from zpop.store.records import (
    REPEATED_FAILURES,
)
from zpop.store.sqlite_base import (
    SQLiteBase,
)


class SQLiteThrottle(SQLiteBase):
    """The SQLite store's login failures and bans."""

    # -- login throttling ----------------------------------------------------

    def note_login_failure(
        self, client: str, account: str, secret: str, now: float, window: float
    ) -> Deferred:
        def thd() -> tuple[int, int]:
            since = now - window
            with self._write() as conn:
                conn.execute("DELETE FROM login_failures WHERE at <= ?", (since,))
                repeated = conn.execute(
                    "SELECT 1 FROM (SELECT secret FROM login_failures"
                    " WHERE client = ? AND at > ? ORDER BY id DESC LIMIT ?)"
                    " WHERE secret = ?",
                    (client, since, REPEATED_FAILURES, secret),
                ).fetchone()
                if repeated is None:
                    conn.execute(
                        "INSERT INTO login_failures (client, account, secret, at)"
                        " VALUES (?, ?, ?, ?)",
                        (client, account, secret, now),
                    )
                (by_client,) = conn.execute(
                    "SELECT count(*) FROM login_failures WHERE client = ? AND at > ?",
                    (client, since),
                ).fetchone()
                (by_account,) = conn.execute(
                    "SELECT count(*) FROM login_failures WHERE account = ? AND at > ?",
                    (account, since),
                ).fetchone()
            return by_client, by_account

        return self._call(thd)

    def ban_client(self, client: str, until: float) -> Deferred:
        def thd() -> None:
            with self._write(changes=True) as conn:
                conn.execute(
                    "INSERT INTO login_bans (client, until) VALUES (?, ?)"
                    " ON CONFLICT (client) DO UPDATE SET until = excluded.until",
                    (client, until),
                )

        return self._call(thd)

    def client_banned_until(self, client: str, now: float) -> Deferred:
        def thd() -> float | None:
            with self._read() as conn:
                row = conn.execute(
                    "SELECT until FROM login_bans WHERE client = ? AND until > ?",
                    (client, now),
                ).fetchone()
            return None if row is None else float(row[0])

        return self._call(thd)
