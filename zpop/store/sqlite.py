"""The embedded store: SQLite in the data directory, SQL only in threads.

Every public method hands a ``_thd_*`` function to the runner (a database
thread pool in the server, the calling thread in the ``zpop`` command); the
function opens its own transaction and commits before returning, so the
Deferred fires only once the change is on disk (WAL, ``synchronous=FULL``).
Each thread keeps its own connection: sqlite3 connections stay on the thread
that made them.
"""

from __future__ import annotations

import errno
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.python.failure import Failure
from zope.interface import implementer

from zpop.store.changes import ChangeCounter
from zpop.store.interface import (
    REPEATED_FAILURES,
    Accepted,
    Account,
    AlreadyExists,
    AppPassword,
    Bounce,
    Domain,
    IStore,
    Message,
    NewMessage,
    NotFound,
    OutboundJob,
    OutboundMessage,
    OutboundRecipient,
    PopSession,
    PopSettings,
    PopSnapshot,
    QueuedMessage,
    QueuedRecipient,
    RecipientResult,
    StorageFull,
    StoreError,
)
from zpop.store.locks import MaildropLocks
from zpop.store.schema import (  # noqa: F401 (migrate and friends live here too)
    BUSY_TIMEOUT,
    connect,
    latest_version,
    migrate,
    migrations,
)
from zpop.threads import Runner

T = TypeVar("T")

#: App passwords' last-use times are kept to this many seconds, so a client
#: polling every few seconds does not cost a durable write each time.
LAST_USE_RESOLUTION = 60.0
#: Bodies are stored in pieces of this size (migration 005).
BODY_CHUNK = 256 * 1024


_ACCOUNT_COLUMNS = """
    a.id, a.address, d.name, d.organization, a.plan, a.created, a.password_hash,
    a.federated, a.two_factor, a.pop_enabled, a.pop_mode, a.pop_enabled_at,
    a.pop_start_uid, a.pop_spam, a.pop_deletion, a.generation, a.uid_validity
"""
_ACCOUNT_FROM = "accounts a JOIN domains d ON d.id = a.domain_id"

_MESSAGE_COLUMNS = """
    id, account_id, folder, uid, received, size, subject, seen, pop_removed
"""


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
        ),
        generation=row[15],
        uid_validity=row[16],
    )


def _message(row: tuple[Any, ...]) -> Message:
    return Message(
        id=row[0],
        account_id=row[1],
        folder=row[2],
        uid=row[3],
        received=row[4],
        size=row[5],
        subject=row[6],
        seen=bool(row[7]),
        pop_removed=bool(row[8]),
    )


def _domain(row: tuple[Any, ...]) -> Domain:
    return Domain(id=row[0], name=row[1], organization=bool(row[2]), created=row[3])


def _app_password(row: tuple[Any, ...]) -> AppPassword:
    return AppPassword(
        id=row[0], account_id=row[1], label=row[2], created=row[3], last_used=row[4]
    )


@implementer(IStore)
class SQLiteStore:
    """IStore on one SQLite file, shared safely by the server and the CLI."""

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

    def _update_account(self, address: str, assignments: str, *params: Any) -> Any:
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

    # -- domains ------------------------------------------------------------

    def add_domain(self, name: str, organization: bool, now: float) -> Deferred:
        def thd() -> Domain:
            with self._write() as conn:
                try:
                    conn.execute(
                        "INSERT INTO domains (name, organization, created)"
                        " VALUES (?, ?, ?)",
                        (name.lower(), int(organization), now),
                    )
                except sqlite3.IntegrityError:
                    raise AlreadyExists(f"domain {name.lower()} exists already")
                return _domain(
                    conn.execute(
                        "SELECT id, name, organization, created FROM domains"
                        " WHERE name = ?",
                        (name.lower(),),
                    ).fetchone()
                )

        return self._call(thd)

    def get_domain(self, name: str) -> Deferred:
        def thd() -> Domain:
            with self._read() as conn:
                row = conn.execute(
                    "SELECT id, name, organization, created FROM domains"
                    " WHERE name = ?",
                    (name.lower(),),
                ).fetchone()
            if row is None:
                raise NotFound(f"no hosted domain {name.lower()}")
            return _domain(row)

        return self._call(thd)

    def list_domains(self) -> Deferred:
        def thd() -> list[Domain]:
            with self._read() as conn:
                rows = conn.execute(
                    "SELECT id, name, organization, created FROM domains ORDER BY name"
                ).fetchall()
            return [_domain(r) for r in rows]

        return self._call(thd)

    # -- accounts -----------------------------------------------------------

    def add_account(
        self,
        address: str,
        plan: str,
        federated: bool,
        password_hash: bytes | None,
        now: float,
    ) -> Deferred:
        address = address.lower()

        def thd() -> Account:
            with self._write() as conn:
                domain_id = self._claim_address(conn, address)
                conn.execute(
                    "INSERT INTO accounts (address, domain_id, plan, created,"
                    " password_hash, federated, uid_validity)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        address,
                        domain_id,
                        plan,
                        now,
                        password_hash,
                        int(federated),
                        secrets.randbits(31),
                    ),
                )
                return self._account_row(conn, address)

        return self._call(thd)

    def get_account(self, address: str) -> Deferred:
        def thd() -> Account | None:
            with self._read() as conn:
                try:
                    return self._account_row(conn, address)
                except NotFound:
                    return None

        return self._call(thd)

    def get_account_for_recipient(self, address: str) -> Deferred:
        def thd() -> Account | None:
            with self._read() as conn:
                row = conn.execute(
                    f"SELECT {_ACCOUNT_COLUMNS} FROM {_ACCOUNT_FROM}"
                    " WHERE a.address = ?1 OR a.id ="
                    " (SELECT account_id FROM aliases WHERE alias = ?1)",
                    (address.lower(),),
                ).fetchone()
            return None if row is None else _account(row)

        return self._call(thd)

    def list_accounts(self) -> Deferred:
        def thd() -> list[Account]:
            with self._read() as conn:
                rows = conn.execute(
                    f"SELECT {_ACCOUNT_COLUMNS} FROM {_ACCOUNT_FROM} ORDER BY a.address"
                ).fetchall()
            return [_account(r) for r in rows]

        return self._call(thd)

    def delete_account(self, address: str) -> Deferred:
        def thd() -> None:
            with self._write(changes=True) as conn:
                account = self._account_row(conn, address)
                conn.execute("DELETE FROM accounts WHERE id = ?", (account.id,))

        return self._call(thd)

    def set_password(self, address: str, password_hash: bytes | None) -> Deferred:
        return self._update_account(address, "password_hash = ?", password_hash)

    def set_two_factor(self, address: str, enabled: bool) -> Deferred:
        return self._update_account(address, "two_factor = ?", int(enabled))

    def enable_pop(self, address: str, mode: str, now: float) -> Deferred:
        def thd() -> Account:
            with self._write(changes=True) as conn:
                account = self._account_row(conn, address)
                if mode == "all":
                    start = "0"
                    conn.execute(
                        "UPDATE messages SET pop_removed = 0 WHERE account_id = ?",
                        (account.id,),
                    )
                else:
                    start = "next_uid"
                conn.execute(
                    "UPDATE accounts SET pop_enabled = 1, pop_mode = ?,"
                    f" pop_enabled_at = ?, pop_start_uid = {start},"
                    " generation = generation + 1 WHERE id = ?",
                    (mode, now, account.id),
                )
                return self._account_row(conn, address)

        return self._call(thd)

    def disable_pop(self, address: str) -> Deferred:
        return self._update_account(address, "pop_enabled = ?", 0)

    def set_pop_spam(self, address: str, policy: str) -> Deferred:
        return self._update_account(address, "pop_spam = ?", policy)

    def set_pop_deletion(self, address: str, policy: str) -> Deferred:
        return self._update_account(address, "pop_deletion = ?", policy)

    # -- app-specific passwords ----------------------------------------------

    def add_app_password(
        self, address: str, label: str, digest: bytes, now: float
    ) -> Deferred:
        def thd() -> AppPassword:
            with self._write(changes=True) as conn:
                account = self._account_row(conn, address)
                cursor = conn.execute(
                    "INSERT INTO app_passwords (account_id, label, digest, created)"
                    " VALUES (?, ?, ?, ?)",
                    (account.id, label, digest, now),
                )
                conn.execute(
                    "UPDATE accounts SET generation = generation + 1 WHERE id = ?",
                    (account.id,),
                )
                return AppPassword(
                    id=int(cursor.lastrowid or 0),
                    account_id=account.id,
                    label=label,
                    created=now,
                    last_used=None,
                )

        return self._call(thd)

    def list_app_passwords(self, address: str) -> Deferred:
        def thd() -> list[AppPassword]:
            with self._read() as conn:
                account = self._account_row(conn, address)
                rows = conn.execute(
                    "SELECT id, account_id, label, created, last_used"
                    " FROM app_passwords WHERE account_id = ? ORDER BY id",
                    (account.id,),
                ).fetchall()
            return [_app_password(r) for r in rows]

        return self._call(thd)

    def revoke_app_password(self, address: str, password_id: int) -> Deferred:
        def thd() -> None:
            with self._write(changes=True) as conn:
                account = self._account_row(conn, address)
                cursor = conn.execute(
                    "DELETE FROM app_passwords WHERE id = ? AND account_id = ?",
                    (password_id, account.id),
                )
                if cursor.rowcount != 1:
                    raise NotFound(
                        f"no app password {password_id} for {account.address}"
                    )
                conn.execute(
                    "UPDATE accounts SET generation = generation + 1 WHERE id = ?",
                    (account.id,),
                )

        return self._call(thd)

    def use_app_password(self, account_id: int, digest: bytes, now: float) -> Deferred:
        def thd() -> AppPassword | None:
            # Look first, write only on a match: a wrong guess never takes
            # the database's write lock.
            with self._read() as conn:
                row = conn.execute(
                    "SELECT id, account_id, label, created, last_used"
                    " FROM app_passwords WHERE account_id = ? AND digest = ?",
                    (account_id, digest),
                ).fetchone()
            if row is None:
                return None
            if row[4] is not None and now - row[4] < LAST_USE_RESOLUTION:
                return _app_password(row)
            with self._write() as conn:
                cursor = conn.execute(
                    "UPDATE app_passwords SET last_used = ? WHERE id = ?",
                    (now, row[0]),
                )
                if cursor.rowcount != 1:
                    return None  # revoked in between
            return _app_password(row[:4] + (now,))

        return self._call(thd)

    def app_password_exists(self, password_id: int) -> Deferred:
        def thd() -> bool:
            with self._read() as conn:
                row = conn.execute(
                    "SELECT 1 FROM app_passwords WHERE id = ?", (password_id,)
                ).fetchone()
            return row is not None

        return self._call(thd)

    # -- aliases --------------------------------------------------------------

    def add_alias(self, address: str, alias: str) -> Deferred:
        alias = alias.lower()

        def thd() -> None:
            with self._write() as conn:
                account = self._account_row(conn, address)
                self._claim_address(conn, alias)
                conn.execute(
                    "INSERT INTO aliases (alias, account_id) VALUES (?, ?)",
                    (alias, account.id),
                )

        return self._call(thd)

    def list_aliases(self, address: str) -> Deferred:
        def thd() -> list[str]:
            with self._read() as conn:
                account = self._account_row(conn, address)
                rows = conn.execute(
                    "SELECT alias FROM aliases WHERE account_id = ? ORDER BY alias",
                    (account.id,),
                ).fetchall()
            return [r[0] for r in rows]

        return self._call(thd)

    # -- messages ---------------------------------------------------------------

    def store_messages(self, account_id: int, messages: list[NewMessage]) -> Deferred:
        def thd() -> list[Message]:
            with self._write() as conn:
                return [self._insert_message(conn, account_id, m) for m in messages]

        return self._call(thd)

    @staticmethod
    def _insert_message(
        conn: sqlite3.Connection, account_id: int, m: NewMessage
    ) -> Message:
        """Store one message with the account's next uid (in a transaction)."""
        row = conn.execute(
            "SELECT next_uid FROM accounts WHERE id = ?", (account_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"no account with id {account_id}")
        uid = row[0]
        conn.execute(
            "UPDATE accounts SET next_uid = ? WHERE id = ?", (uid + 1, account_id)
        )
        cursor = conn.execute(
            "INSERT INTO messages (account_id, folder, uid, received,"
            " size, subject, seen) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                account_id,
                m.folder,
                uid,
                m.received,
                len(m.body),
                m.subject,
                int(m.seen),
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
            folder=m.folder,
            uid=uid,
            received=m.received,
            size=len(m.body),
            subject=m.subject,
            seen=m.seen,
            pop_removed=False,
        )

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
            query = f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE account_id = ?"
            params: tuple[Any, ...] = (account_id,)
            if folder is not None:
                query += " AND folder = ?"
                params += (folder,)
            with self._read() as conn:
                rows = conn.execute(query + " ORDER BY uid", params).fetchall()
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
        self, address: str, owner: str, folders_for: Mapping[str, tuple[str, ...]]
    ) -> Deferred:
        def thd() -> PopSession | None:
            try:
                with self._read() as conn:
                    found = self._account_row(conn, address)
            except NotFound:
                return None
            if not found.pop.enabled or not self._pop_locks.acquire(found.id, owner):
                return PopSession(found, False, PopSnapshot())
            # The snapshot is read once the lock is held: one begun before
            # could miss the deletions of a session that committed and let
            # the lock go meanwhile, and offer those messages again.
            account: Account | None = None
            rows: list[tuple[int, int, int]] | None = None
            try:
                with self._read() as conn:
                    account = self._account_row(conn, address)
                    if account.id == found.id and account.pop.enabled:
                        folders = folders_for[account.pop.spam]
                        marks = ", ".join("?" for _ in folders)
                        rows = conn.execute(
                            f"SELECT id, uid, size FROM messages"
                            f" WHERE account_id = ? AND folder IN ({marks})"
                            " AND pop_removed = 0 AND uid >= ? ORDER BY uid",
                            (account.id, *folders, account.pop.start_uid),
                        ).fetchall()
            except NotFound:
                pass
            finally:
                if rows is None:
                    self._pop_locks.release(found.id, owner)
            if account is None or account.id != found.id:
                return None  # deleted since the first look
            if rows is None:
                return PopSession(account, False, PopSnapshot())  # POP disabled
            return PopSession(account, True, PopSnapshot.from_rows(rows))

        return self._call(thd)

    def release_pop_lock(self, account_id: int, owner: str) -> Deferred:
        # A non-blocking fcntl on a local file: no thread trip.
        d = maybeDeferred(self._pop_locks.release, account_id, owner)
        return d.addCallback(lambda _: None)

    def _release_held(self, account_id: int, owner: str) -> None:
        if not self._pop_locks.release(account_id, owner):
            raise StoreError("the maildrop lock was lost")

    def finish_pop_session(
        self, account_id: int, owner: str, message_ids: list[int], to_trash: bool
    ) -> Deferred:
        if not message_ids:
            # Nothing to apply: no database trip, only the lock goes.
            return maybeDeferred(self._release_held, account_id, owner)

        def thd() -> None:
            if not self._pop_locks.holds(account_id, owner):
                raise StoreError("the maildrop lock was lost")
            folder = ", folder = 'Trash'" if to_trash else ""
            with self._write() as conn:
                conn.executemany(
                    f"UPDATE messages SET pop_removed = 1{folder}"
                    " WHERE id = ? AND account_id = ?",
                    [(mid, account_id) for mid in message_ids],
                )
            # Only after COMMIT: the next session to take the lock must see
            # these messages gone. A failed commit keeps the lock; the
            # session releases it when it ends (Maildrop.sync).
            self._release_held(account_id, owner)

        return self._call(thd)

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
            return row[0] == 0

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

    def finish_outbound(self, message_id: int, bounce: Bounce | None) -> Deferred:
        def thd() -> str:
            with self._write() as conn:
                cursor = conn.execute(
                    "DELETE FROM outbound_messages WHERE id = ?", (message_id,)
                )
                if cursor.rowcount != 1:
                    return "gone"
                if bounce is None:
                    return "none"
                address = bounce.recipient.lower()
                row = conn.execute(
                    "SELECT a.id FROM accounts a WHERE a.address = ?1 OR a.id ="
                    " (SELECT account_id FROM aliases WHERE alias = ?1)",
                    (address,),
                ).fetchone()
                if row is not None:
                    self._insert_message(
                        conn,
                        row[0],
                        NewMessage(
                            "Inbox", bounce.body, bounce.subject, bounce.created
                        ),
                    )
                    return "local"
                hosted = conn.execute(
                    "SELECT 1 FROM domains WHERE name = ?",
                    (address.rpartition("@")[2],),
                ).fetchone()
                if hosted is not None:
                    return "dropped"
                cursor = conn.execute(
                    "INSERT INTO outbound_messages (sender, account_id, body, size,"
                    " created, expires) VALUES ('', NULL, ?, ?, ?, ?)",
                    (bounce.body, len(bounce.body), bounce.created, bounce.expires),
                )
                conn.execute(
                    "INSERT INTO outbound_recipients (message_id, recipient,"
                    " next_attempt) VALUES (?, ?, ?)",
                    (cursor.lastrowid, bounce.recipient, bounce.created),
                )
                return "queued"

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
