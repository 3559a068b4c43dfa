"""A change counter every process shares, readable without any I/O.

Credentials, account settings and bans are read at login and then trusted
for a while (credential cache, ban look-ups, an open POP session's app
password). Asking the database whether they still hold costs a thread round
trip each time; most of the time nothing changed. So every store commit
that changes them bumps an 8-byte counter in a memory-mapped file beside
the database, in whatever process made the change (the server or the
``zpop`` command), and a reader compares it with the value it saw before
its last look-up: reading it is a memory load.

The bump follows the commit, so a reader that saw the old value before its
look-up always sees a new one afterwards. Only a process killed between
the commit and the bump goes unnoticed, which is why what was verified is
also looked at again after ``RECHECK`` seconds whatever the counter says.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from dataclasses import dataclass
from typing import Any

from zpop.store.sidefile import open_beside

#: Seconds after which something verified is looked up again even if the
#: counter did not move.
RECHECK = 60.0

_VALUE = struct.Struct("<Q")


class ChangeCounter:
    """The shared counter: ``value()`` to read, ``bump()`` after a commit."""

    def __init__(self, path: str, owner_of: str | None = None) -> None:
        self.path = path
        fd = open_beside(path, owner_of)
        try:
            # Allocated, not a hole: writing a page of a hole through the
            # map on a full disk would kill the process with SIGBUS.
            os.posix_fallocate(fd, 0, _VALUE.size)
            self._map: mmap.mmap | None = mmap.mmap(fd, _VALUE.size)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def value(self) -> int:
        assert self._map is not None, "the change counter is closed"
        return int(_VALUE.unpack_from(self._map)[0])

    def bump(self) -> None:
        assert self._map is not None, "the change counter is closed"
        # The lock only serialises writers, so no increment is lost.
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            (current,) = _VALUE.unpack_from(self._map)
            _VALUE.pack_into(self._map, 0, (current + 1) % 2**64)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
            os.close(self._fd)


@dataclass(frozen=True, slots=True)
class Verified:
    """When something read from the store was last known to be current.

    ``changes`` is the store's counter read *before* the look-up, ``at`` the
    clock's time of it.
    """

    changes: int
    at: float

    @classmethod
    def now(cls, store: Any, seconds: float) -> Verified:
        return cls(store.changes(), seconds)

    def current(self, store: Any, seconds: float) -> bool:
        """Whether nothing that could matter changed since the look-up."""
        return store.changes() == self.changes and seconds - self.at < RECHECK
