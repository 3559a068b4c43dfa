"""The SQLite store's two-factor area (migration 009): sealed TOTP secrets,
their last accepted time step, and single-use recovery codes.

Replay protection and single use are decided by the database, not by the
caller: accepting a step and spending a recovery code are each one
conditional UPDATE, so of two processes presenting the same code at once
exactly one sees its row change.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from twisted.internet.defer import Deferred

from zpop.store.records import (
    Account,
    AlreadyExists,
    NotFound,
    RecoveryCode,
    TotpSecret,
)
from zpop.store.sqlite_base import SQLiteBase


def _insert_codes(
    conn: sqlite3.Connection, account_id: int, digests: Sequence[bytes], now: float
) -> None:
    conn.executemany(
        "INSERT INTO recovery_codes (account_id, digest, created) VALUES (?, ?, ?)",
        [(account_id, bytes(d), now) for d in digests],
    )


class SQLiteTwoFactor(SQLiteBase):
    """ITwoFactorStore on SQLite."""

    def enrol_two_factor(
        self,
        address: str,
        sealed: bytes,
        step: int,
        digests: Sequence[bytes],
        now: float,
    ) -> Deferred:
        def thd() -> Account:
            with self._write(changes=True) as conn:
                account = self._account_row(conn, address)
                try:
                    conn.execute(
                        "INSERT INTO totp_secrets (account_id, sealed, last_step,"
                        " enrolled) VALUES (?, ?, ?, ?)",
                        (account.id, bytes(sealed), step, now),
                    )
                except sqlite3.IntegrityError:
                    raise AlreadyExists(
                        f"{account.address} is enrolled in two-factor"
                        " authentication already"
                    )
                _insert_codes(conn, account.id, digests, now)
                conn.execute(
                    "UPDATE accounts SET two_factor = 1, generation = generation + 1"
                    " WHERE id = ?",
                    (account.id,),
                )
                return self._account_row(conn, address)

        return self._call(thd)

    def get_totp_secret(self, account_id: int) -> Deferred:
        def thd() -> TotpSecret | None:
            with self._read() as conn:
                row = conn.execute(
                    "SELECT account_id, sealed, last_step, enrolled"
                    " FROM totp_secrets WHERE account_id = ?",
                    (account_id,),
                ).fetchone()
            if row is None:
                return None
            return TotpSecret(row[0], bytes(row[1]), row[2], row[3])

        return self._call(thd)

    def accept_totp_step(self, account_id: int, step: int) -> Deferred:
        def thd() -> bool:
            with self._write() as conn:
                cursor = conn.execute(
                    "UPDATE totp_secrets SET last_step = ?1 WHERE account_id = ?2"
                    " AND (last_step IS NULL OR last_step < ?1)",
                    (step, account_id),
                )
                return cursor.rowcount == 1

        return self._call(thd)

    def use_recovery_code(self, account_id: int, digest: bytes, now: float) -> Deferred:
        def thd() -> bool:
            # Look first, write only on a match: a wrong guess never takes
            # the database's write lock.
            with self._read() as conn:
                row = conn.execute(
                    "SELECT id FROM recovery_codes WHERE account_id = ?"
                    " AND digest = ? AND used IS NULL",
                    (account_id, bytes(digest)),
                ).fetchone()
            if row is None:
                return False
            with self._write() as conn:
                cursor = conn.execute(
                    "UPDATE recovery_codes SET used = ? WHERE id = ? AND used IS NULL",
                    (now, row[0]),
                )
                return cursor.rowcount == 1

        return self._call(thd)

    def list_recovery_codes(self, address: str) -> Deferred:
        def thd() -> list[RecoveryCode]:
            with self._read() as conn:
                account = self._account_row(conn, address)
                rows = conn.execute(
                    "SELECT id, account_id, created, used FROM recovery_codes"
                    " WHERE account_id = ? ORDER BY id",
                    (account.id,),
                ).fetchall()
            return [RecoveryCode(*r) for r in rows]

        return self._call(thd)

    def replace_recovery_codes(
        self, address: str, digests: Sequence[bytes], now: float
    ) -> Deferred:
        def thd() -> None:
            with self._write() as conn:
                account = self._account_row(conn, address)
                if not account.totp_enrolled:
                    raise NotFound(
                        f"{account.address} is not enrolled in two-factor"
                        " authentication"
                    )
                conn.execute(
                    "DELETE FROM recovery_codes WHERE account_id = ?", (account.id,)
                )
                _insert_codes(conn, account.id, digests, now)

        return self._call(thd)

    def reset_two_factor(self, address: str) -> Deferred:
        # Turning two_factor off fires migration 009's trigger, which deletes
        # the secret and the recovery codes, in this same transaction.
        return self._update_account(
            address, "two_factor = ?, two_factor_required = ?", 0, 0
        )
