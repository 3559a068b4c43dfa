"""The SQLite store's settings API tokens (IApiTokenStore, migration 015)."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from zpop.store.records import ApiToken, NotFound
from zpop.store.sqlite_base import SQLiteBase

_SELECT = (
    "SELECT t.id, a.address, t.scope, t.label, t.created, t.last_used"
    " FROM api_tokens t LEFT JOIN accounts a ON a.id = t.account_id"
)


def _token(row: tuple[Any, ...]) -> ApiToken:
    return ApiToken(*row)


class SQLiteApiTokens(SQLiteBase):
    """API tokens in the ``api_tokens`` table."""

    def add_api_token(
        self, address: str | None, scope: str, label: str, digest: bytes, now: float
    ) -> Deferred:
        def thd() -> ApiToken:
            with self._write() as conn:
                account_id = None
                if address is not None:
                    account_id = self._account_row(conn, address).id
                cursor = conn.execute(
                    "INSERT INTO api_tokens (account_id, scope, label, digest,"
                    " created) VALUES (?, ?, ?, ?, ?)",
                    (account_id, scope, label, digest, now),
                )
                row = conn.execute(
                    f"{_SELECT} WHERE t.id = ?", (int(cursor.lastrowid or 0),)
                ).fetchone()
            return _token(row)

        return self._call(thd)

    def find_api_token(self, digest: bytes) -> Deferred:
        def thd() -> ApiToken | None:
            with self._read() as conn:
                row = conn.execute(
                    f"{_SELECT} WHERE t.digest = ?", (digest,)
                ).fetchone()
            return None if row is None else _token(row)

        return self._call(thd)

    def list_api_tokens(self, address: str | None = None) -> Deferred:
        def thd() -> list[ApiToken]:
            with self._read() as conn:
                if address is None:
                    rows = conn.execute(f"{_SELECT} ORDER BY t.id").fetchall()
                else:
                    account = self._account_row(conn, address)
                    rows = conn.execute(
                        f"{_SELECT} WHERE t.account_id = ? ORDER BY t.id",
                        (account.id,),
                    ).fetchall()
            return [_token(r) for r in rows]

        return self._call(thd)

    def revoke_api_token(self, token_id: int) -> Deferred:
        def thd() -> ApiToken:
            with self._write() as conn:
                row = conn.execute(f"{_SELECT} WHERE t.id = ?", (token_id,)).fetchone()
                if row is None:
                    raise NotFound(f"no API token {token_id}")
                conn.execute("DELETE FROM api_tokens WHERE id = ?", (token_id,))
            return _token(row)

        return self._call(thd)

    def touch_api_token(self, token_id: int, now: float) -> Deferred:
        def thd() -> None:
            with self._write() as conn:
                conn.execute(
                    "UPDATE api_tokens SET last_used = ? WHERE id = ?"
                    " AND (last_used IS NULL OR last_used < ?)",
                    (now, token_id, now),
                )

        return self._call(thd)
