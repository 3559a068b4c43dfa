"""The POP view of an account: an IMailbox snapshot taken at login.

What a POP session sees is decided once, at login, by the account's POP
settings: the folders its spam policy names, minus messages that left the POP
queue, minus (in ``new`` mode) mail stored before POP was enabled. Mail
arriving during the session shows up at the next login. Deletions are kept
in memory and applied, all or nothing, by ``sync`` at QUIT.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.mail.pop3 import IMailbox
from twisted.python.failure import Failure
from zope.interface import implementer

from zpop.store import (
    Account,
    IStore,
    NotFound,
    PopDownload,
    PopSessionLog,
    PopSnapshot,
    StorageFull,
)

# StorageFull: a QUIT that cannot apply its deletions; NotFound: a message
# IMAP expunged while a POP session had it.
__all__ = ["NotFound", "StorageFull"]
from zpop.store.changes import Verified

log = Logger()

SPAM_FOLDERS = {
    "exclude": ("Inbox",),
    "include": ("Inbox", "Spam"),
    "only": ("Spam",),
}

#: How much of a body one read fetches: large enough that a 20 MB RETR is a
#: few hundred database calls, small enough that memory stays flat.
CHUNK_SIZE = 256 * 1024
#: Clients read their mail in order, so retrieving a small message fetches
#: the next ones too, up to this many bytes and messages: one database trip
#: per batch instead of one per message, and a bounded buffer per session.
READ_AHEAD = 256 * 1024
READ_AHEAD_MESSAGES = 64
#: Days the download log is kept when the realm does not say
#: (``[pop] log_days``).
LOG_DAYS = 90


#: Hands a finished session's download log entries on for writing.
LogWriter = Callable[[int, PopSessionLog], None]


def pop_folders(account: Account) -> tuple[str, ...]:
    """The folders POP offers under the account's spam policy."""
    return SPAM_FOLDERS[account.pop.spam]


def uidl(account: Account, uid: int) -> str:
    """A UIDL unique in the account forever: uid-validity and uid."""
    return f"{account.uid_validity:x}-{uid}"


class BodyReader:
    """A file-like view of one stored body whose ``read`` returns Deferreds."""

    #: Stored bodies have CRLF line ends only (zpop.delivery), so a reader
    #: of them may skip normalising.
    crlf_only = True

    def __init__(self, store: IStore, message_id: int, size: int) -> None:
        self._store = store
        self._message_id = message_id
        self._size = size
        #: Where the next read from the store starts.
        self._requested = 0
        self._ahead: _Ahead | None = None

    def read(self, size: int = CHUNK_SIZE) -> Deferred:
        """The next ``size`` bytes. When they arrive the read of the chunk
        after them (of the same size) starts, so the database works while
        this one is sent; one read at a time, so one thread's buffers."""
        if self._ahead is not None:
            d, self._ahead = self._ahead.get(), None
        elif self._requested < self._size:
            d = self._fetch(size)
        else:
            # The end is known: no database trip to learn it.
            return succeed(b"")

        def arrived(data: bytes) -> bytes:
            if self._requested < self._size:
                self._ahead = _Ahead(self._fetch(size))
            return data

        return d.addCallback(arrived)

    def _fetch(self, size: int) -> Deferred:
        d = self._store.read_body(self._message_id, self._requested, size)
        self._requested += size
        return d


class _Ahead:
    """A read started before it was asked for: its result (or failure) is
    kept for whoever asks, and dropped quietly if nobody does."""

    _PENDING = object()

    def __init__(self, d: Deferred) -> None:
        self._result: Any = self._PENDING
        self._waiting: Deferred | None = None
        d.addBoth(self._done)

    def _done(self, result: Any) -> None:
        if self._waiting is not None:
            waiting, self._waiting = self._waiting, None
            waiting.callback(result)
        else:
            self._result = result

    def get(self) -> Deferred:
        if self._result is self._PENDING:
            self._waiting = Deferred()
            return self._waiting
        result, self._result = self._result, None
        return fail(result) if isinstance(result, Failure) else succeed(result)


class LoadedBody:
    """A body already in memory (``body``), also readable like a BodyReader."""

    crlf_only = True

    def __init__(self, body: bytes) -> None:
        self.body = body
        self._offset = 0

    def read(self, size: int = CHUNK_SIZE) -> bytes:
        data = self.body[self._offset : self._offset + size]
        self._offset += len(data)
        return data


@implementer(IMailbox)
class Maildrop:
    """IMailbox over a snapshot of an account's POP queue.

    Holds the account's maildrop lock, as ``lock_owner``, for the session:
    ``sync`` releases it after committing the deletions, ``release`` without
    applying them. The lock needs no upkeep meanwhile, and ends with the
    process if the process dies first.

    The download log costs nothing per command: ``note_retrieved`` appends
    to a list. A QUIT that applies deletions writes the entries (its RETRs
    and DELEs) in the same transaction; a session that deleted nothing, or
    was dropped, hands its RETRs to ``log_writer`` (the process's batching
    PopLogRecorder), so it costs no database trip of its own.
    ``login_delay`` (seconds, 0 for none) is the account's LOGIN-DELAY,
    for CAPA. With a per-device queue, ``device`` names it: the lock and
    the deletions are that device's.
    """

    def __init__(
        self,
        store: IStore,
        account: Account,
        messages: PopSnapshot,
        lock_owner: str,
        clock: IReactorTime,
        identity: str = "",
        client: str = "-",
        log_days: int = LOG_DAYS,
        login_delay: int = 0,
        log_writer: LogWriter | None = None,
        device: int | None = None,
    ) -> None:
        self.account = account
        #: The avatar ID the session logged in as (zpop.accounts.credentials.Identity).
        self.identity = identity
        #: The device, as the download log names it: the login's method.
        self._device: str = getattr(identity, "method", None) or "-"
        self._client = client
        self._log_days = log_days
        self.login_delay = login_delay
        self._log_writer = log_writer or self._write_now
        #: The device whose own queue this is (PopSession.device), or None.
        self._queue_device = device
        self._retrieved: list[PopDownload] = []
        self._app_password_id: int | None = getattr(identity, "app_password_id", None)
        self._verified: Verified | None = getattr(identity, "verified", None)
        self._store = store
        self._messages = messages
        self._uidl_prefix = uidl(account, 0)[:-1]
        self._deleted: set[int] = set()
        self._read_ahead: dict[int, bytes] = {}
        self._owner = lock_owner
        self._clock = clock
        self._released = False

    def credentials_current(self) -> bool:
        """True if the session's credentials surely still stand, without I/O:
        nothing changed since they were last verified, or they cannot be
        revoked (a primary password)."""
        if self._app_password_id is None:
            return True
        verified = self._verified
        return verified is not None and verified.current(
            self._store, self._clock.seconds()
        )

    def credentials_valid(self) -> Deferred:
        """Fires False once the app password this session used is revoked."""
        if self._app_password_id is None:
            return succeed(True)
        verified = Verified.now(self._store, self._clock.seconds())

        def checked(exists: bool) -> bool:
            if exists:
                self._verified = verified
            return exists

        return self._store.app_password_exists(self._app_password_id).addCallback(
            checked
        )

    def _end(self) -> None:
        """The session is over: nothing read ahead is kept."""
        self._read_ahead = {}

    def _check(self, index: int) -> None:
        if not 0 <= index < len(self._messages):
            raise ValueError(f"no message {index + 1}")

    # IMailbox: message numbers are 0-based here; deleted messages list as 0.

    def listMessages(self, index: int | None = None) -> Any:
        sizes = self._messages.sizes
        if index is None:
            if not self._deleted:
                return sizes.tolist()
            return [0 if i in self._deleted else s for i, s in enumerate(sizes)]
        self._check(index)
        return 0 if index in self._deleted else sizes[index]

    def getMessage(self, index: int) -> Any:
        """A reader of the body, or a Deferred of one (read ahead)."""
        self._check(index)
        if index in self._deleted:
            raise ValueError(f"message {index + 1} is deleted")
        message_id, size = self._messages.ids[index], self._messages.sizes[index]
        body = self._read_ahead.pop(message_id, None)
        if body is not None:
            return LoadedBody(body)
        if 0 < size <= READ_AHEAD:
            return self._read_from(index)
        return BodyReader(self._store, message_id, size)

    def _read_from(self, index: int) -> Deferred:
        ids, sizes = self._messages.ids, self._messages.sizes
        wanted: list[int] = []
        total = 0
        for i in range(index, len(ids)):
            if i in self._deleted or not sizes[i]:
                continue
            total += sizes[i]
            if total > READ_AHEAD or len(wanted) == READ_AHEAD_MESSAGES:
                break
            wanted.append(ids[i])
        first_id, first_size = ids[index], sizes[index]

        def fetched(bodies: dict[int, bytes]) -> Any:
            body = bodies.pop(first_id, None)
            self._read_ahead = bodies
            if body is None:
                # Gone since the login: the reader reports it as such.
                return BodyReader(self._store, first_id, first_size)
            return LoadedBody(body)

        return self._store.read_bodies(wanted).addCallback(fetched)

    def getUidl(self, index: int) -> str:
        self._check(index)
        return f"{self._uidl_prefix}{self._messages.uids[index]}"

    def note_retrieved(self, index: int) -> None:
        """Log that the whole of message ``index`` was sent (RETR, or a TOP
        that sent all of it); written when the session ends."""
        self._check(index)
        self._retrieved.append(self._entry(index, "retr"))

    def _entry(self, index: int, action: str) -> PopDownload:
        return PopDownload(
            self._clock.seconds(),
            action,
            self._device,
            self._client,
            self._messages.ids[index],
            self.getUidl(index),
        )

    def _session_log(self, deleted: list[int]) -> PopSessionLog:
        """The RETRs, and the DELEs of ``deleted``; taken once."""
        now = self._clock.seconds()
        retrieved, self._retrieved = self._retrieved, []
        return PopSessionLog(
            (*retrieved, *(self._entry(i, "dele") for i in deleted)),
            now - self._log_days * 86400.0,
        )

    def _write_now(self, account_id: int, session_log: PopSessionLog) -> None:
        """Without a batching writer (tests, tools): one store call."""
        d = self._store.record_pop_logs([(account_id, session_log)])
        d.addErrback(lambda f: log.failure("writing the POP download log", f))

    def deleteMessage(self, index: int) -> None:
        self._check(index)
        self._deleted.add(index)

    def undeleteMessages(self) -> None:
        self._deleted.clear()

    def sync(self) -> Deferred:
        """Apply the deletions, then release the lock (after the commit)."""
        self._end()
        # finish_pop_session releases the lock once it committed; a logout
        # racing with it must not release it first.
        self._released = True
        deleted = sorted(self._deleted)
        ids = [self._messages.ids[i] for i in deleted]
        session_log = self._session_log(deleted)
        if ids:
            # The DELEs' entries exactly as durable as the deletions.
            d = self._store.finish_pop_session(
                self.account.id,
                self._owner,
                ids,
                self.account.pop.deletion == "delete",
                session_log,
                self._queue_device,
            )
        else:
            # No deletion: no database trip at QUIT; the RETRs go batched.
            if session_log:
                self._log_writer(self.account.id, session_log)
            d = self._store.finish_pop_session(
                self.account.id, self._owner, [], False
            )

        def failed(failure: Any) -> Any:
            # Nothing was applied; the RETRs happened all the same.
            if ids:
                retrieved = [e for e in session_log.downloads if e.action == "retr"]
                self._retrieved = retrieved
            self._released = False
            self.release()
            return failure

        return d.addErrback(failed)

    def release(self) -> Deferred | None:
        """End the session without applying anything (logout or dropped)."""
        self._end()
        if self._released:
            return None
        self._released = True
        # Dropped before QUIT: its RETRs happened, no DELE was applied.
        session_log = self._session_log([])
        if session_log:
            self._log_writer(self.account.id, session_log)
        d = self._store.release_pop_lock(self.account.id, self._owner)
        d.addErrback(lambda f: log.failure("releasing the maildrop lock", f))
        return d
