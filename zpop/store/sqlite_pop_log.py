"""The SQLite store's POP download log and last POP logins (migration 016):
written with a session's deletions by ``finish_pop_session`` (the SQL of
``zpop.store.sqlite_messages``), else in batches by ``record_pop_logs``,
and read here."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from twisted.internet.defer import Deferred

from zpop.store.records import PopDownload, PopSessionLog
from zpop.store.sqlite_base import SQLiteBase


def write_pop_log(
    conn: sqlite3.Connection, account_id: int, log: PopSessionLog
) -> None:
    """Write ``log`` for the account inside the caller's transaction: its
    entries (each with its message's subject, "" once gone), pruning those
    older than ``kept_since``, and the last login."""
    if log.downloads:
        conn.executemany(
            "INSERT INTO pop_downloads (account_id, at, action, credential,"
            " client, message_id, uidl, subject) VALUES (?1, ?2, ?3, ?4, ?5, ?6,"
            " ?7, COALESCE((SELECT subject FROM messages WHERE id = ?6"
            " AND account_id = ?1), ''))",
            [
                (
                    account_id,
                    d.at,
                    d.action,
                    d.credential,
                    d.client,
                    d.message_id,
                    d.uidl,
                )
                for d in log.downloads
            ],
        )
        conn.execute(
            "DELETE FROM pop_downloads WHERE account_id = ? AND at < ?",
            (account_id, log.kept_since),
        )
    if log.login_at is not None and log.device is not None:
        conn.execute(
            "UPDATE pop_devices SET last_login = MAX(COALESCE(last_login, 0), ?)"
            " WHERE id = ? AND account_id = ?",
            (log.login_at, log.device, account_id),
        )
    elif log.login_at is not None:
        conn.execute(
            "INSERT INTO pop_logins (account_id, at) VALUES (?1, ?2)"
            " ON CONFLICT (account_id) DO UPDATE SET at = MAX(at, ?2)",
            (account_id, log.login_at),
        )


class SQLitePopLog(SQLiteBase):
    """The POP download log on SQLite: the batched writes and the reads."""

    def record_pop_logs(self, logs: Sequence[tuple[int, PopSessionLog]]) -> Deferred:
        batch = [(account_id, log) for account_id, log in logs if log]

        def thd() -> None:
            if not batch:
                return
            with self._write() as conn:
                for account_id, log in batch:
                    # Deleted since the session: nothing to refer to.
                    if conn.execute(
                        "SELECT 1 FROM accounts WHERE id = ?", (account_id,)
                    ).fetchone():
                        write_pop_log(conn, account_id, log)

        return self._call(thd)

    def list_pop_downloads(self, address: str, limit: int = 100) -> Deferred:
        def thd() -> list[PopDownload]:
            with self._read() as conn:
                rows = conn.execute(
                    "SELECT d.at, d.action, d.credential, d.client, d.message_id,"
                    " d.uidl, d.subject FROM pop_downloads d"
                    " JOIN accounts a ON a.id = d.account_id WHERE a.address = ?"
                    " ORDER BY d.at DESC, d.id DESC LIMIT ?",
                    (address.lower(), max(limit, 0)),
                ).fetchall()
            return [
                PopDownload(
                    float(r[0]),
                    str(r[1]),
                    str(r[2]),
                    str(r[3]),
                    int(r[4]),
                    str(r[5]),
                    str(r[6]),
                )
                for r in rows
            ]

        return self._call(thd)
