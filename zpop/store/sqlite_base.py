"""What every area of the SQLite store shares: connections per thread,
durable transactions, error mapping, and the rows-to-records helpers."""

from __future__ import annotations

import errno
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from twisted.internet.defer import Deferred

from zpop.store.changes import ChangeCounter
from zpop.store.locks import MaildropLocks
from zpop.store.records import (
    Account,
    AlreadyExists,
    AppPassword,
    Domain,
    Message,
    NewMessage,
    NotFound,
    PopSettings,
    QueuedMessage,
    StorageFull,
    StoreError,
)
from zpop.store.schema import connect
from zpop.store.sqlite_folders import keywords_of, take_uid_in
from zpop.threads import Runner

T = TypeVar("T")

#: Bodies are stored in pieces of this size (migration 005).
BODY_CHUNK = 256 * 1024


_ACCOUNT_COLUMNS = """
    a.id, a.address, d.name, d.organization, a.plan, a.created, a.password_hash,
    a.federated, a.two_factor, a.pop_enabled, a.pop_mode, a.pop_enabled_at,
    a.pop_start_uid, a.pop_spam, a.pop_deletion, a.generation, a.uid_validity,
    a.two_factor_required,
    EXISTS (SELECT 1 FROM totp_secrets t WHERE t.account_id = a.id),
    a.imap_enabled, a.pop_queue
"""
_ACCOUNT_FROM = "accounts a JOIN domains d ON d.id = a.domain_id"


def _account(row: tuple[Any, ...]) -> Account:
    return Account(
        id=row[0],
        address=row[1],
        domain=row[2],
        organization=bool(row[3]),
        plan=row[4],
        created=row[5],
        password_hash=None if row[6] is None else bytes(row[6]),
        federated=bool(row[7]),
        two_factor=bool(row[8]),
        pop=PopSettings(
            enabled=bool(row[9]),
            mode=row[10],
            enabled_at=row[11],
            start_uid=row[12],
            spam=row[13],
            deletion=row[14],
            queue=row[20],
        ),
        generation=row[15],
        uid_validity=row[16],
        two_factor_required=bool(row[17]),
        totp_enrolled=bool(row[18]),
        imap_enabled=bool(row[19]),
    )


def _message(row: tuple[Any, ...]) -> Message:
    """A Message from sqlite_folders.MESSAGE_COLUMNS."""
    return Message(
        id=row[0],
        account_id=row[1],
        folder=row[2],
        uid=row[3],
        received=row[4],
        size=row[5],
        subject=row[6],
        pop_removed=bool(row[7]),
        imap_uid=row[8],
        modseq=row[9],
        flags=row[10],
        keywords=keywords_of(row[11]),
    )


def _domain(row: tuple[Any, ...]) -> Domain:
    return Domain(id=row[0], name=row[1], organization=bool(row[2]), created=row[3])


#: The columns _app_password reads, in its order.
APP_PASSWORD_COLUMNS = (
    "id, account_id, label, created, last_used, last_used_from, pop_start"
)


def _app_password(row: tuple[Any, ...]) -> AppPassword:
    return AppPassword(
        id=row[0],
        account_id=row[1],
        label=row[2],
        created=row[3],
        last_used=row[4],
        last_used_from=row[5],
        pop_start=row[6],
    )


class SQLiteBase:
    """Connections, transactions and helpers of the SQLite store."""

    def __init__(self, path: str, runner: Runner) -> None:
        self.path = path
        self._run = runner
        self._changes = ChangeCounter(f"{path}-changes", owner_of=path)
        #: Opened on the first POP session, so the zpop command makes no
        #: lock file.
        self._pop_locks = MaildropLocks(f"{path}-pop-locks", owner_of=path)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # accept_message's group commit; touched on the caller's thread only.
        self._accepts: list[
            tuple[list[tuple[int, NewMessage]], QueuedMessage | None, Deferred]
        ] = []
        self._accepting = False

    def close(self) -> None:
        """Close every thread's connection; call once no call is running."""
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()
        self._changes.close()
        # Closing the lock file drops every maildrop lock this store holds.
        self._pop_locks.close()

    def changes(self) -> int:
        return self._changes.value()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _write(self, changes: bool = False) -> Iterator[sqlite3.Connection]:
        """A durable write transaction, taken up front so it never deadlocks
        on upgrade.

        ``changes=True`` bumps the change counter after the commit: for
        changes to credentials, account settings and bans.
        """
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            # A COMMIT that failed (a full disk) may have left the
            # transaction open, or SQLite may have rolled it back already.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if changes:
            self._changes.bump()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: several SELECTs see one snapshot."""
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def _error(self, e: sqlite3.Error | OSError) -> StoreError:
        """The store's error for a failed database call."""
        code = getattr(e, "sqlite_errorcode", None)
        if code == sqlite3.SQLITE_FULL or getattr(e, "errno", None) == errno.ENOSPC:
            return StorageFull(
                f"the disk holding {self.path} is full: free some space,"
                " nothing was written"
            )
        return StoreError(f"database error in {self.path}: {e}")

    def _call(self, f: Callable[..., T], *args: Any) -> Deferred:
        def guarded() -> T:
            try:
                return f(*args)
            except sqlite3.Error as e:
                raise self._error(e) from e

        return self._run(guarded)

    # -- helpers run inside a transaction ---------------------------------

    @staticmethod
    def _account_row(conn: sqlite3.Connection, address: str) -> Account:
        row = conn.execute(
            f"SELECT {_ACCOUNT_COLUMNS} FROM {_ACCOUNT_FROM} WHERE a.address = ?",
            (address.lower(),),
        ).fetchone()
        if row is None:
            raise NotFound(f"no account {address.lower()}")
        return _account(row)

    @staticmethod
    def _claim_address(conn: sqlite3.Connection, address: str) -> int:
        """The id of ``address``'s hosted domain, if no account or alias has
        the address; raises NotFound or AlreadyExists."""
        domain = address.rpartition("@")[2]
        row = conn.execute(
            "SELECT id FROM domains WHERE name = ?", (domain,)
        ).fetchone()
        if row is None:
            raise NotFound(f"no hosted domain {domain}")
        taken = conn.execute(
            "SELECT 1 FROM accounts WHERE address = ?"
            " UNION SELECT 1 FROM aliases WHERE alias = ?",
            (address, address),
        ).fetchone()
        if taken:
            raise AlreadyExists(f"address {address} is taken already")
        return int(row[0])

    def _update_account(self, address: str, assignments: str, *params: Any) -> Deferred:
        def thd() -> Account:
            with self._write(changes=True) as conn:
                account = self._account_row(conn, address)
                conn.execute(
                    f"UPDATE accounts SET {assignments}, generation = generation + 1"
                    " WHERE id = ?",
                    (*params, account.id),
                )
                return self._account_row(conn, address)

        return self._call(thd)

    @staticmethod
    def _insert_message(
        conn: sqlite3.Connection, account_id: int, m: NewMessage
    ) -> Message:
        """Store one message with the account's next uid and its folder's
        next UID (in a transaction)."""
        row = conn.execute(
            "UPDATE accounts SET next_uid = next_uid + 1 WHERE id = ?"
            " RETURNING next_uid - 1",
            (account_id,),
        ).fetchone()
        if row is None:
            raise NotFound(f"no account with id {account_id}")
        uid = row[0]
        folder_id, folder, imap_uid, modseq = take_uid_in(conn, account_id, m.folder)
        keywords = " ".join(m.keywords)
        cursor = conn.execute(
            "INSERT INTO messages (account_id, folder_id, uid, imap_uid, modseq,"
            " received, size, subject, flags, keywords)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                account_id,
                folder_id,
                uid,
                imap_uid,
                modseq,
                m.received,
                len(m.body),
                m.subject,
                m.flag_bits,
                keywords,
            ),
        )
        message_id = int(cursor.lastrowid or 0)
        conn.executemany(
            "INSERT INTO body_chunks (message_id, seq, data) VALUES (?, ?, ?)",
            [
                (message_id, seq, m.body[start : start + BODY_CHUNK])
                for seq, start in enumerate(range(0, len(m.body), BODY_CHUNK))
            ],
        )
        return Message(
            id=message_id,
            account_id=account_id,
            folder=folder,
            uid=uid,
            received=m.received,
            size=len(m.body),
            subject=m.subject,
            pop_removed=False,
            imap_uid=imap_uid,
            modseq=modseq,
            flags=m.flag_bits,
            keywords=tuple(m.keywords),
        )

    @staticmethod
    def _queue(conn: sqlite3.Connection, queued: QueuedMessage) -> int:
        """Put a message in the outbound queue (in a transaction); its id."""
        cursor = conn.execute(
            "INSERT INTO outbound_messages (sender, account_id, body, size,"
            " created, expires) VALUES (?, ?, ?, ?, ?, ?)",
            (
                queued.sender,
                queued.account_id,
                queued.body,
                len(queued.body),
                queued.created,
                queued.expires,
            ),
        )
        queue_id = int(cursor.lastrowid or 0)
        recipients = list(dict.fromkeys(queued.recipients))
        conn.executemany(
            "INSERT INTO outbound_recipients (message_id, recipient,"
            " next_attempt) VALUES (?, ?, ?)",
            [(queue_id, r, queued.created) for r in recipients],
        )
        return queue_id
