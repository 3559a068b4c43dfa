"""The SQLite store's messages and POP sessions."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.python.failure import Failure

from zpop.store.records import (
    Accepted,
    Account,
    Message,
    NewMessage,
    NotFound,
    PopSession,
    PopSessionLog,
    PopSnapshot,
    QueuedMessage,
    QueuedRecipient,
    StoreError,
)
from zpop.store.sqlite_base import BODY_CHUNK, SQLiteBase, _message
from zpop.store.sqlite_folders import (
    MESSAGE_COLUMNS,
    MESSAGE_FROM,
    move_messages,
    pop_folders,
    pop_order,
    trash_id,
)
from zpop.store.sqlite_pop_devices import (
    device_snapshot,
    find_device,
    register_device,
    remove_for_device,
)
from zpop.store.sqlite_pop_log import write_pop_log


class SQLiteMessages(SQLiteBase):
    """The SQLite store's messages and POP sessions."""

    # -- messages ---------------------------------------------------------------

    def store_messages(self, account_id: int, messages: list[NewMessage]) -> Deferred:
        def thd() -> list[Message]:
            with self._write() as conn:
                return [self._insert_message(conn, account_id, m) for m in messages]

        return self._call(thd)

    def accept_message(
        self, local: list[tuple[int, NewMessage]], queued: QueuedMessage | None
    ) -> Deferred:
        # Group commit: acceptances arriving while a commit is on its way to
        # disk share the next transaction, so N concurrent SMTP sessions
        # cost one fsync, not N. Each still fires only after its commit, and
        # one that fails (a savepoint each) fails alone.
        d: Deferred = Deferred()
        self._accepts.append((local, queued, d))
        if not self._accepting:
            self._commit_accepts()
        return d

    def _commit_accepts(self) -> None:
        batch, self._accepts = self._accepts, []
        self._accepting = True

        def thd() -> list[Accepted | Exception]:
            results: list[Accepted | Exception] = []
            with self._write() as conn:
                for local, queued, _ in batch:
                    conn.execute("SAVEPOINT accept")
                    try:
                        results.append(self._accept_one(conn, local, queued))
                    except sqlite3.Error as e:
                        if not conn.in_transaction:
                            # SQLite rolled back the whole transaction (a
                            # full disk does): the batch fails together.
                            raise
                        conn.execute("ROLLBACK TO accept")
                        results.append(self._error(e))
                    except StoreError as e:
                        conn.execute("ROLLBACK TO accept")
                        results.append(e)
                    conn.execute("RELEASE accept")
            return results

        def committed(results: list[Accepted | Exception]) -> None:
            for (_, _, d), outcome in zip(batch, results, strict=True):
                if isinstance(outcome, Exception):
                    d.errback(outcome)
                else:
                    d.callback(outcome)

        def failed(failure: Failure) -> None:
            for _, _, d in batch:
                d.errback(failure)

        def next_batch(_: object) -> None:
            self._accepting = False
            if self._accepts:
                self._commit_accepts()

        self._call(thd).addCallbacks(committed, failed).addBoth(next_batch)

    def _accept_one(
        self,
        conn: sqlite3.Connection,
        local: list[tuple[int, NewMessage]],
        queued: QueuedMessage | None,
    ) -> Accepted:
        stored = tuple(
            self._insert_message(conn, account_id, m) for account_id, m in local
        )
        if queued is None or not queued.recipients:
            return Accepted(messages=stored, queue_id=None)
        queue_id = self._queue(conn, queued)
        rows = conn.execute(
            "SELECT recipient, state, attempts, next_attempt, last_error"
            " FROM outbound_recipients WHERE message_id = ? ORDER BY id",
            (queue_id,),
        ).fetchall()
        return Accepted(
            messages=stored,
            queue_id=queue_id,
            queued=tuple(QueuedRecipient(*r) for r in rows),
        )

    def list_messages(self, account_id: int, folder: str | None = None) -> Deferred:
        def thd() -> list[Message]:
            query = (
                f"SELECT {MESSAGE_COLUMNS} FROM {MESSAGE_FROM} WHERE m.account_id = ?"
            )
            params: tuple[Any, ...] = (account_id,)
            if folder is not None:
                query += " AND COALESCE(f.role, f.name) = ?"
                params += (folder,)
            with self._read() as conn:
                rows = conn.execute(query + " ORDER BY m.uid", params).fetchall()
            return [_message(r) for r in rows]

        return self._call(thd)

    def read_body(self, message_id: int, offset: int, length: int) -> Deferred:
        def thd() -> bytes:
            first = offset // BODY_CHUNK
            last = (offset + max(length, 1) - 1) // BODY_CHUNK
            # One statement is its own snapshot: no BEGIN/COMMIT around it.
            conn = self._conn()
            rows = conn.execute(
                "SELECT data FROM body_chunks WHERE message_id = ?"
                " AND seq BETWEEN ? AND ? ORDER BY seq",
                (message_id, first, last),
            ).fetchall()
            if not rows:
                exists = conn.execute(
                    "SELECT 1 FROM messages WHERE id = ?", (message_id,)
                ).fetchone()
                if not exists:
                    raise NotFound(f"message {message_id} no longer exists")
                return b""
            if len(rows) == 1:
                data = rows[0][0]
            else:
                data = b"".join(row[0] for row in rows)
            start = offset - first * BODY_CHUNK
            return bytes(data[start : start + length])

        return self._call(thd)

    def read_bodies(self, message_ids: Sequence[int]) -> Deferred:
        ids = list(message_ids)

        def thd() -> dict[int, bytes]:
            marks = ", ".join("?" for _ in ids)
            rows = (
                self._conn()
                .execute(
                    "SELECT message_id, data FROM body_chunks"
                    f" WHERE message_id IN ({marks}) ORDER BY message_id, seq",
                    ids,
                )
                .fetchall()
            )
            pieces: dict[int, list[bytes]] = {}
            for message_id, data in rows:
                pieces.setdefault(message_id, []).append(data)
            return {message_id: b"".join(parts) for message_id, parts in pieces.items()}

        if not ids:
            return succeed({})
        return self._call(thd)

    # -- POP sessions -------------------------------------------------------------

    def open_pop_session(
        self,
        address: str,
        owner: str,
        folders_for: Mapping[str, tuple[str, ...]],
        app_password_id: int | None = None,
        now: float = 0.0,
    ) -> Deferred:
        def thd() -> PopSession | None:
            try:
                with self._read() as conn:
                    found = self._account_row(conn, address)
            except NotFound:
                return None
            # The queue the lock was taken for, whatever changes meanwhile.
            per_device = found.pop.queue == "per-device"
            holder = app_password_id if per_device else None
            if not found.pop.enabled or not self._pop_locks.acquire(
                found.id, owner, holder
            ):
                return PopSession(found, False, PopSnapshot())
            # The snapshot is read once the lock is held: one begun before
            # could miss the deletions of a session that committed and let
            # the lock go meanwhile, and offer those messages again.
            opened: PopSession | None = None
            try:
                opened = self._pop_snapshot(
                    address, found.id, folders_for, per_device, app_password_id, now
                )
            except NotFound:
                pass
            finally:
                if opened is None or not opened.locked:
                    self._pop_locks.release(found.id, owner)
            return opened

        return self._call(thd)

    def _pop_snapshot(
        self,
        address: str,
        account_id: int,
        folders_for: Mapping[str, tuple[str, ...]],
        per_device: bool,
        app_password_id: int | None,
        now: float,
    ) -> PopSession | None:
        """The session's account and queue, under its lock; None if the
        account is gone, unlocked if POP was disabled meanwhile."""
        # A device's first login registers it: a write transaction, once.
        for register in (False, True):
            with self._write() if register else self._read() as conn:
                account = self._account_row(conn, address)
                if account.id != account_id:
                    return None  # deleted and re-created since the first look
                if not account.pop.enabled:
                    return PopSession(account, False, PopSnapshot())
                folders = folders_for[account.pop.spam]
                if not per_device:
                    return self._shared_snapshot(conn, account, folders)
                device = find_device(conn, account.id, app_password_id)
                if device is None and register:
                    device = register_device(conn, account.id, app_password_id, now)
                if device is None:
                    continue
                device_id, start_uid, last_login = device
                rows = device_snapshot(conn, account, folders, device_id, start_uid)
                snapshot = PopSnapshot.from_rows(rows)
                return PopSession(account, True, snapshot, last_login, device_id)
        raise AssertionError("a registered device is found")

    @staticmethod
    def _shared_snapshot(
        conn: sqlite3.Connection, account: Account, folders: tuple[str, ...]
    ) -> PopSession:
        where, ids = pop_folders(conn, account.id, folders)
        rows = conn.execute(
            f"SELECT id, uid, size FROM messages WHERE {where}"
            f" AND pop_removed = 0 AND uid >= ? ORDER BY {pop_order(folders)}",
            (*ids, account.pop.start_uid),
        ).fetchall()
        login = conn.execute(
            "SELECT at FROM pop_logins WHERE account_id = ?", (account.id,)
        ).fetchone()
        last = None if login is None else float(login[0])
        return PopSession(account, True, PopSnapshot.from_rows(rows), last)

    def release_pop_lock(self, account_id: int, owner: str) -> Deferred:
        # A non-blocking fcntl on a local file: no thread trip.
        d = maybeDeferred(self._pop_locks.release, account_id, owner)
        return d.addCallback(lambda _: None)

    def _release_held(self, account_id: int, owner: str) -> None:
        if not self._pop_locks.release(account_id, owner):
            raise StoreError("the maildrop lock was lost")

    def finish_pop_session(
        self,
        account_id: int,
        owner: str,
        message_ids: list[int],
        to_trash: bool,
        log: PopSessionLog | None = None,
        device: int | None = None,
    ) -> Deferred:
        if not message_ids and not log:
            # Nothing to apply: no database trip, only the lock goes.
            return maybeDeferred(self._release_held, account_id, owner)

        def thd() -> None:
            if not self._pop_locks.holds(account_id, owner):
                raise StoreError("the maildrop lock was lost")
            with self._write() as conn:
                if log:
                    write_pop_log(conn, account_id, log)
                if device is not None:
                    remove_for_device(conn, account_id, device, message_ids, to_trash)
                else:
                    ids = [(mid, account_id) for mid in message_ids]
                    conn.executemany(
                        "UPDATE messages SET pop_removed = 1"
                        " WHERE id = ? AND account_id = ?",
                        ids,
                    )
                    if to_trash:
                        trash = trash_id(conn, account_id)
                        move_messages(conn, account_id, trash, message_ids)
            # Only after COMMIT: the next session to take the lock must see
            # these messages gone. A failed commit keeps the lock; the
            # session releases it when it ends (Maildrop.sync).
            self._release_held(account_id, owner)

        return self._call(thd)
