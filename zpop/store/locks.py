"""Maildrop locks: at most one POP session per maildrop, across every process.

A maildrop is an account's (shared POP queue), or one device's of it (a
per-device POP queue: each app password has its own, the primary password
shares the account's): see ``lock_offset``.

RFC 1939 gives a POP session exclusive access to its maildrop. The lock used
to be a row in the database with a lease, which cost two write transactions
per session, a renewal timer, and a lock that outlived a crashed process by
its lease. Now it is a kernel lock: a Linux open-file-description (OFD)
write lock on the one byte at the maildrop's offset in a lock file beside
the database (``<database>-pop-locks``). The kernel drops a process's OFD
locks when the process ends, however it ends (``kill -9`` included), so
there is nothing to renew and nothing to expire, and taking or dropping
one is a non-blocking system call, cheap enough for the reactor thread.

OFD locks conflict between open file descriptions, not between the sessions
of one process: every session of a process shares this object's one
description, whose locks never conflict with each other. So within the
process a dict records which session (``owner``) holds each maildrop's lock,
and a second session for the same maildrop is refused exactly like one in
another process. Only the holder can release a lock, so a late or repeated
release never frees a newer session's lock. The dict is guarded by a
``threading.Lock``: the store takes locks in its database threads.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import threading

from zpop.store.records import (
    StoreError,
)
from zpop.store.sidefile import open_beside

#: ``struct flock`` on 64-bit Linux (x86-64, arm64): short l_type, short
#: l_whence, 4 bytes of alignment padding, off_t l_start, off_t l_len,
#: pid_t l_pid (0, as OFD locks require), 4 bytes of trailing padding.
FLOCK = struct.Struct("=hh4xqqi4x")
assert FLOCK.size == 32

#: fcntl's answers when a conflicting lock is held through another
#: description (POSIX allows either).
_HELD_ELSEWHERE = (errno.EAGAIN, errno.EACCES)

#: Account ids below this; app password ids are above it, in the offset.
_ACCOUNT_BITS = 32


def lock_offset(account_id: int, app_password_id: int | None = None) -> int:
    """The byte that stands for a maildrop: the account's own (its shared
    queue, and the primary password's queue), or one app password's. Ids
    are positive and below 2**31, so offsets stay far below off_t's 2**63
    and never collide."""
    if not 0 < account_id < 1 << _ACCOUNT_BITS:
        raise StoreError(f"account id {account_id} is out of the lock file's range")
    if app_password_id is None:
        return account_id
    if not 0 < app_password_id < 1 << 31:
        raise StoreError(f"app password id {app_password_id} is out of range")
    return app_password_id << _ACCOUNT_BITS | account_id


class MaildropLocks:
    """The maildrop locks one store holds, in the lock file at ``path``.

    The file is opened, and created if missing, on the first ``acquire``,
    so a ``zpop`` command that never opens a POP session never makes it
    (``owner_of``: see ``zpop.store.sidefile.open_beside``).
    """

    def __init__(self, path: str, owner_of: str | None = None) -> None:
        self.path = path
        self._owner_of = owner_of
        self._fd: int | None = None
        self._closed = False
        #: lock offset -> the owner holding it through this description,
        #: and back (an owner holds one lock of an account at most).
        self._holders: dict[int, str] = {}
        self._offsets: dict[tuple[int, str], int] = {}
        self._mutex = threading.Lock()

    def acquire(
        self, account_id: int, owner: str, app_password_id: int | None = None
    ) -> bool:
        """Take the maildrop's lock (``lock_offset``) for ``owner``; False if
        any session, of this process or another, holds it. Never blocks."""
        offset = lock_offset(account_id, app_password_id)
        with self._mutex:
            if offset in self._holders or (account_id, owner) in self._offsets:
                return False
            fd = self._open()
            try:
                fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _flock(fcntl.F_WRLCK, offset))
            except OSError as e:
                if e.errno in _HELD_ELSEWHERE:
                    return False
                raise StoreError(
                    f"cannot lock maildrop {account_id} in {self.path}: {e.strerror}"
                ) from e
            self._holders[offset] = owner
            self._offsets[account_id, owner] = offset
            return True

    def _held(self, account_id: int, owner: str) -> int | None:
        return self._offsets.get((account_id, owner))

    def holds(self, account_id: int, owner: str) -> bool:
        """Whether ``owner`` holds a lock of the account's."""
        with self._mutex:
            return self._held(account_id, owner) is not None

    def release(self, account_id: int, owner: str) -> bool:
        """Give up the account's lock ``owner`` holds; returns whether it
        did (False, changing nothing, for anyone else). Never blocks."""
        with self._mutex:
            offset = self._held(account_id, owner)
            if offset is None:
                return False
            del self._holders[offset], self._offsets[account_id, owner]
            assert self._fd is not None
            try:
                fcntl.fcntl(self._fd, fcntl.F_OFD_SETLK, _flock(fcntl.F_UNLCK, offset))
            except OSError as e:
                raise StoreError(
                    f"cannot unlock maildrop {account_id} in {self.path}: {e.strerror}"
                ) from e
            return True

    def close(self) -> None:
        """Drop every lock held here (closing the description does) and
        close the file; acquiring afterwards fails StoreError."""
        with self._mutex:
            self._closed = True
            self._holders.clear()
            self._offsets.clear()
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _open(self) -> int:
        if self._fd is not None:
            return self._fd
        if self._closed:
            raise StoreError(f"the maildrop lock file {self.path} is closed")
        try:
            self._fd = open_beside(self.path, self._owner_of)
        except OSError as e:
            raise StoreError(
                f"cannot open the maildrop lock file {self.path}: {e.strerror}"
            ) from e
        return self._fd


def _flock(kind: int, offset: int) -> bytes:
    """A ``struct flock`` for the one byte at ``offset``."""
    return FLOCK.pack(kind, os.SEEK_SET, offset, 1, 0)
