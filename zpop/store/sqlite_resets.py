"""The SQLite store's password-reset area (migration 012): each account's
recovery address, and one-time "set your password" links kept as the keyed
hash of their token.

Single use is decided by the database: spending a link is one conditional
UPDATE, so of two processes presenting the same link at once exactly one
sees its row change.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred

from zpop.store.records import NotFound
from zpop.store.sqlite_base import SQLiteBase

_LIVE = (
    "SELECT r.id, a.address FROM password_resets r"
    " JOIN accounts a ON a.id = r.account_id"
    " WHERE r.digest = ? AND r.used IS NULL AND r.expires > ?"
)


class SQLitePasswordResets(SQLiteBase):
    """IPasswordResetStore on SQLite."""

    def set_recovery_address(self, address: str, email: str | None) -> Deferred:
        def thd() -> None:
            with self._write() as conn:
                cursor = conn.execute(
                    "UPDATE accounts SET recovery_address = ? WHERE address = ?",
                    (email, address.lower()),
                )
                if cursor.rowcount != 1:
                    raise NotFound(f"no account {address.lower()}")

        return self._call(thd)

    def get_recovery_address(self, address: str) -> Deferred:
        def thd() -> str | None:
            with self._read() as conn:
                row = conn.execute(
                    "SELECT recovery_address FROM accounts WHERE address = ?",
                    (address.lower(),),
                ).fetchone()
            if row is None:
                raise NotFound(f"no account {address.lower()}")
            found: str | None = row[0]
            return found

        return self._call(thd)

    def add_password_reset(
        self, address: str, digest: bytes, now: float, expires: float
    ) -> Deferred:
        def thd() -> None:
            with self._write() as conn:
                account = self._account_row(conn, address)
                conn.execute(
                    "INSERT INTO password_resets (account_id, digest, created,"
                    " expires) VALUES (?, ?, ?, ?)",
                    (account.id, bytes(digest), now, expires),
                )

        return self._call(thd)

    def find_password_reset(self, digest: bytes, now: float) -> Deferred:
        def thd() -> str | None:
            with self._read() as conn:
                row = conn.execute(_LIVE, (bytes(digest), now)).fetchone()
            return None if row is None else str(row[1])

        return self._call(thd)

    def use_password_reset(self, digest: bytes, now: float) -> Deferred:
        def thd() -> str | None:
            # Look first, write only on a match: a wrong guess never takes
            # the database's write lock.
            with self._read() as conn:
                row = conn.execute(_LIVE, (bytes(digest), now)).fetchone()
            if row is None:
                return None
            with self._write() as conn:
                cursor = conn.execute(
                    "UPDATE password_resets SET used = ?1 WHERE id = ?2"
                    " AND used IS NULL AND expires > ?1",
                    (now, row[0]),
                )
                return str(row[1]) if cursor.rowcount == 1 else None

        return self._call(thd)
