"""The SQLite store's outbound queue."""

from __future__ import annotations

import sqlite3
from typing import Any

from twisted.internet.defer import Deferred

from zpop.store.records import (
    NewMessage,
    NotFound,
    OutboundJob,
    OutboundMessage,
    OutboundRecipient,
    QueuedMessage,
    RecipientResult,
)
from zpop.store.sqlite_base import (
    SQLiteBase,
)


class SQLiteQueue(SQLiteBase):
    """The SQLite store's outbound queue."""

    # -- outbound relay ------------------------------------------------------

    _OUTBOUND_RECIPIENT_COLUMNS = (
        "recipient, state, attempts, next_attempt, last_error, status,"
        " remote_mta, diagnostic"
    )

    def claim_outbound(
        self, owner: str, now: float, lease: float, limit: int
    ) -> Deferred:
        def thd() -> list[OutboundJob]:
            with self._write() as conn:
                rows = conn.execute(
                    "SELECT r.id, r.message_id, r.recipient, r.attempts, m.sender,"
                    " m.size, m.created, m.expires"
                    " FROM outbound_recipients r"
                    " JOIN outbound_messages m ON m.id = r.message_id"
                    " WHERE r.state = 'queued' AND r.next_attempt <= ?"
                    " AND (r.lease_until IS NULL OR r.lease_until <= ?)"
                    " ORDER BY r.next_attempt, r.message_id, r.id LIMIT ?",
                    (now, now, limit),
                ).fetchall()
                conn.executemany(
                    "UPDATE outbound_recipients SET lease_owner = ?, lease_until = ?"
                    " WHERE id = ?",
                    [(owner, now + lease, row[0]) for row in rows],
                )
            groups: dict[tuple[int, str], list[tuple[Any, ...]]] = {}
            for row in rows:
                domain = row[2].rpartition("@")[2].lower()
                groups.setdefault((row[1], domain), []).append(row)
            return [
                OutboundJob(
                    message_id=message_id,
                    sender=group[0][4],
                    domain=domain,
                    recipients=tuple(r[2] for r in group),
                    size=group[0][5],
                    created=group[0][6],
                    expires=group[0][7],
                    attempts=tuple(r[3] for r in group),
                )
                for (message_id, domain), group in groups.items()
            ]

        return self._call(thd)

    def renew_outbound_leases(self, owner: str, now: float, lease: float) -> Deferred:
        def thd() -> int:
            with self._write() as conn:
                cursor = conn.execute(
                    "UPDATE outbound_recipients SET lease_until = ?"
                    " WHERE lease_owner = ? AND state = 'queued'",
                    (now + lease, owner),
                )
            return cursor.rowcount

        return self._call(thd)

    def outbound_lease_owners(self) -> Deferred:
        def thd() -> list[str]:
            with self._read() as conn:
                rows = conn.execute(
                    "SELECT DISTINCT lease_owner FROM outbound_recipients"
                    " WHERE lease_owner IS NOT NULL ORDER BY lease_owner"
                ).fetchall()
            return [row[0] for row in rows]

        return self._call(thd)

    def release_outbound_leases(self, owner: str) -> Deferred:
        def thd() -> int:
            with self._write() as conn:
                cursor = conn.execute(
                    "UPDATE outbound_recipients SET lease_owner = NULL,"
                    " lease_until = NULL WHERE lease_owner = ?",
                    (owner,),
                )
            return cursor.rowcount

        return self._call(thd)

    def read_outbound_body(self, message_id: int, offset: int, length: int) -> Deferred:
        def thd() -> bytes:
            conn = self._conn()
            try:
                with conn.blobopen(
                    "outbound_messages", "body", message_id, readonly=True
                ) as blob:
                    if offset >= len(blob):
                        return b""
                    blob.seek(offset)
                    return blob.read(length)
            except sqlite3.OperationalError as e:
                if "no such rowid" in str(e):
                    raise NotFound(f"queued message {message_id} no longer exists")
                raise

        return self._call(thd)

    def record_outbound_results(
        self,
        owner: str,
        message_id: int,
        results: list[RecipientResult],
        now: float,
    ) -> Deferred:
        def thd() -> bool:
            with self._write() as conn:
                conn.executemany(
                    "UPDATE outbound_recipients SET state = ?, attempts = attempts + 1,"
                    " next_attempt = ?, last_error = ?, status = ?, remote_mta = ?,"
                    " diagnostic = ?, lease_owner = NULL, lease_until = NULL"
                    " WHERE message_id = ? AND recipient = ? AND state = 'queued'",
                    [
                        (
                            r.state,
                            r.next_attempt if r.state == "queued" else now,
                            r.error,
                            r.status,
                            r.remote_mta,
                            r.diagnostic,
                            message_id,
                            r.recipient,
                        )
                        for r in results
                    ],
                )
                row = conn.execute(
                    "SELECT count(*) FROM outbound_recipients"
                    " WHERE message_id = ? AND state = 'queued'",
                    (message_id,),
                ).fetchone()
            return bool(row[0] == 0)

        return self._call(thd)

    def finished_outbound(self, limit: int) -> Deferred:
        def thd() -> list[int]:
            with self._read() as conn:
                rows = conn.execute(
                    "SELECT m.id FROM outbound_messages m WHERE NOT EXISTS"
                    " (SELECT 1 FROM outbound_recipients r"
                    "  WHERE r.message_id = m.id AND r.state = 'queued')"
                    " ORDER BY m.id LIMIT ?",
                    (limit,),
                ).fetchall()
            return [r[0] for r in rows]

        return self._call(thd)

    def _outbound_messages(
        self, conn: sqlite3.Connection, message_id: int | None
    ) -> list[OutboundMessage]:
        where = "" if message_id is None else " WHERE id = ?"
        params: tuple[Any, ...] = () if message_id is None else (message_id,)
        messages = conn.execute(
            "SELECT id, sender, account_id, size, created, expires"
            f" FROM outbound_messages{where} ORDER BY id",
            params,
        ).fetchall()
        where = "" if message_id is None else " WHERE message_id = ?"
        recipients: dict[int, list[OutboundRecipient]] = {}
        for row in conn.execute(
            f"SELECT message_id, {self._OUTBOUND_RECIPIENT_COLUMNS}"
            f" FROM outbound_recipients{where} ORDER BY id",
            params,
        ):
            recipients.setdefault(row[0], []).append(OutboundRecipient(*row[1:]))
        return [
            OutboundMessage(
                id=m[0],
                sender=m[1],
                account_id=m[2],
                size=m[3],
                created=m[4],
                expires=m[5],
                recipients=tuple(recipients.get(m[0], ())),
            )
            for m in messages
        ]

    def get_outbound(self, message_id: int) -> Deferred:
        def thd() -> OutboundMessage:
            with self._read() as conn:
                found = self._outbound_messages(conn, message_id)
            if not found:
                raise NotFound(f"no queued message {message_id}")
            return found[0]

        return self._call(thd)

    def list_outbound(self) -> Deferred:
        def thd() -> list[OutboundMessage]:
            with self._read() as conn:
                return self._outbound_messages(conn, None)

        return self._call(thd)

    def outbound_summary(self) -> Deferred:
        def thd() -> tuple[int, float | None]:
            with self._read() as conn:
                count, oldest = conn.execute(
                    "SELECT COUNT(*), MIN(created) FROM outbound_messages"
                ).fetchone()
            return int(count), None if oldest is None else float(oldest)

        return self._call(thd)

    def finish_outbound(
        self,
        message_id: int,
        local: tuple[int, NewMessage] | None = None,
        queued: QueuedMessage | None = None,
    ) -> Deferred:
        def thd() -> bool:
            with self._write() as conn:
                cursor = conn.execute(
                    "DELETE FROM outbound_messages WHERE id = ?", (message_id,)
                )
                if cursor.rowcount != 1:
                    return False
                if local is not None:
                    self._insert_message(conn, *local)
                if queued is not None:
                    self._queue(conn, queued)
                return True

        return self._call(thd)

    def retry_outbound(self, message_id: int | None, now: float) -> Deferred:
        def thd() -> int:
            with self._write() as conn:
                if message_id is not None:
                    exists = conn.execute(
                        "SELECT 1 FROM outbound_messages WHERE id = ?", (message_id,)
                    ).fetchone()
                    if exists is None:
                        raise NotFound(f"no queued message {message_id}")
                    cursor = conn.execute(
                        "UPDATE outbound_recipients SET next_attempt = ?"
                        " WHERE message_id = ? AND state = 'queued'",
                        (now, message_id),
                    )
                else:
                    cursor = conn.execute(
                        "UPDATE outbound_recipients SET next_attempt = ?"
                        " WHERE state = 'queued'",
                        (now,),
                    )
            return cursor.rowcount

        return self._call(thd)

    def delete_outbound(self, message_id: int) -> Deferred:
        def thd() -> int:
            with self._write() as conn:
                (count,) = conn.execute(
                    "SELECT count(*) FROM outbound_recipients WHERE message_id = ?",
                    (message_id,),
                ).fetchone()
                cursor = conn.execute(
                    "DELETE FROM outbound_messages WHERE id = ?", (message_id,)
                )
                if cursor.rowcount != 1:
                    raise NotFound(f"no queued message {message_id}")
            return int(count)

        return self._call(thd)
