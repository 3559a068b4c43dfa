"""The SQLite store's web settings sessions (IWebSessionStore)."""

from __future__ import annotations

import sqlite3
from typing import Any

from twisted.internet.defer import Deferred

from zpop.store.records import WEB_SESSION_TOUCH, NotFound, WebSession
from zpop.store.sqlite_base import SQLiteBase

_COLUMNS = """
    s.id, s.account_id, a.address, s.stage, s.client, s.user_agent, s.created,
    s.last_seen, s.expires, s.idle
"""
_FROM = "web_sessions s JOIN accounts a ON a.id = s.account_id"
#: What "the session ended" is in SQL, with ``:now`` bound.
_ENDED = "(expires <= :now OR last_seen + idle <= :now)"


def _session(row: tuple[Any, ...]) -> WebSession:
    return WebSession(*row)


class SQLiteWebSessions(SQLiteBase):
    """Web sessions in the ``web_sessions`` table (migration 010)."""

    def add_web_session(
        self,
        address: str,
        digest: bytes,
        stage: str,
        client: str,
        user_agent: str,
        now: float,
        lifetime: float,
        idle: float,
    ) -> Deferred:
        def thd() -> WebSession:
            with self._write() as conn:
                account = self._account_row(conn, address)
                conn.execute(f"DELETE FROM web_sessions WHERE {_ENDED}", {"now": now})
                cursor = conn.execute(
                    "INSERT INTO web_sessions (account_id, digest, stage, client,"
                    " user_agent, created, last_seen, expires, idle)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        account.id,
                        digest,
                        stage,
                        client,
                        user_agent,
                        now,
                        now,
                        now + lifetime,
                        idle,
                    ),
                )
                return self._session_row(conn, "s.id = ?", int(cursor.lastrowid or 0))

        return self._call(thd)

    @staticmethod
    def _session_row(conn: sqlite3.Connection, where: str, value: Any) -> WebSession:
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM {_FROM} WHERE {where}", (value,)
        ).fetchone()
        if row is None:
            raise NotFound("no such web session")
        return _session(row)

    def use_web_session(self, digest: bytes, now: float) -> Deferred:
        def look() -> WebSession | None:
            with self._read() as conn:
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM {_FROM} WHERE s.digest = ?", (digest,)
                ).fetchone()
            return None if row is None else _session(row)

        def thd() -> WebSession | None:
            found = look()
            if found is None:
                return None
            if not found.live(now):
                with self._write() as conn:
                    conn.execute("DELETE FROM web_sessions WHERE digest = ?", (digest,))
                return None
            if now - found.last_seen < WEB_SESSION_TOUCH:
                return found
            with self._write() as conn:
                conn.execute(
                    "UPDATE web_sessions SET last_seen = ? WHERE digest = ?",
                    (now, digest),
                )
                return self._session_row(conn, "s.digest = ?", digest)

        return self._call(thd)

    def end_web_session(self, digest: bytes) -> Deferred:
        def thd() -> bool:
            with self._write() as conn:
                cursor = conn.execute(
                    "DELETE FROM web_sessions WHERE digest = ?", (digest,)
                )
                return cursor.rowcount > 0

        return self._call(thd)

    def list_web_sessions(self, address: str, now: float) -> Deferred:
        def thd() -> list[WebSession]:
            with self._read() as conn:
                account = self._account_row(conn, address)
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM {_FROM} WHERE s.account_id = ?"
                    " ORDER BY s.id",
                    (account.id,),
                ).fetchall()
            return [s for s in map(_session, rows) if s.live(now)]

        return self._call(thd)

    def revoke_web_session(self, address: str, session_id: int) -> Deferred:
        def thd() -> None:
            with self._write() as conn:
                account = self._account_row(conn, address)
                cursor = conn.execute(
                    "DELETE FROM web_sessions WHERE id = ? AND account_id = ?",
                    (session_id, account.id),
                )
                if cursor.rowcount == 0:
                    raise NotFound(f"{account.address} has no web session {session_id}")

        return self._call(thd)
