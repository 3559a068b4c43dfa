"""Maildrop locks: kernel OFD locks between processes, a dict of owners
within one, and nothing left behind by a process that dies."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import stat
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from zpop.store.locks import FLOCK, MaildropLocks
from zpop.store.records import StoreError

#: Seconds a subprocess may take to start and report; only a bound.
STARTUP = 30.0


class MaildropLocksTests(SynchronousTestCase):
    def setUp(self) -> None:
        directory = self.mktemp()
        os.mkdir(directory)
        self.path = os.path.join(directory, "zpop.sqlite-pop-locks")

    def locks(self) -> MaildropLocks:
        locks = MaildropLocks(self.path)
        self.addCleanup(locks.close)
        return locks

    def test_flock_layout(self) -> None:
        """The packed struct flock is Linux's (32 bytes on 64-bit): the
        kernel reports a lock taken with it at the account's byte."""
        self.assertEqual(FLOCK.size, 32)
        one = self.locks()
        self.assertTrue(one.acquire(1234567, "a"))
        fd = os.open(self.path, os.O_RDWR)
        self.addCleanup(os.close, fd)
        probe = FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 1234567, 1, 0)
        found = FLOCK.unpack(fcntl.fcntl(fd, fcntl.F_OFD_GETLK, probe))
        # An OFD lock has no owning pid: the kernel says -1.
        self.assertEqual(found, (fcntl.F_WRLCK, os.SEEK_SET, 1234567, 1, -1))
        free = FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 1234568, 1, 0)
        self.assertEqual(
            FLOCK.unpack(fcntl.fcntl(fd, fcntl.F_OFD_GETLK, free))[0], fcntl.F_UNLCK
        )

    def test_file_made_on_first_lock(self) -> None:
        """The lock file is created, mode 0600, by the first acquire only."""
        locks = self.locks()
        self.assertFalse(os.path.exists(self.path))
        self.assertTrue(locks.acquire(1, "a"))
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)

    def test_two_descriptions_conflict(self) -> None:
        """Two lock objects on one file (as two processes) exclude each
        other per account, and a release lets the other take it."""
        one, two = self.locks(), self.locks()
        self.assertTrue(one.acquire(7, "a"))
        self.assertEqual(
            (two.acquire(7, "b"), two.acquire(8, "b"), one.acquire(8, "a")),
            (False, True, False),
        )
        self.assertTrue(one.release(7, "a"))
        self.assertTrue(two.acquire(7, "b"))
        self.assertFalse(one.acquire(7, "a"))

    def test_devices_lock_apart(self) -> None:
        """A per-device maildrop (an app password's) conflicts only with the
        same device's, in another process or this one; the account's own
        lock (shared queue, primary password) stays apart from them."""
        one, two = self.locks(), self.locks()
        self.assertTrue(one.acquire(7, "a", 3))
        self.assertEqual(
            (two.acquire(7, "b", 3), two.acquire(7, "b", 4), two.acquire(7, "c")),
            (False, True, True),
        )
        self.assertEqual((one.acquire(7, "d", 3), one.acquire(3, "e")), (False, True))
        self.assertTrue(one.release(7, "a"))
        self.assertTrue(two.acquire(7, "f", 3))
        self.assertRaises(StoreError, one.acquire, 7, "g", 1 << 31)

    def test_second_owner_of_one_process_refused(self) -> None:
        """Within one object (one process) a second session is refused like
        one elsewhere, whatever its owner name."""
        locks = self.locks()
        self.assertTrue(locks.acquire(7, "a"))
        self.assertEqual((locks.acquire(7, "b"), locks.acquire(7, "a")), (False, False))
        self.assertEqual((locks.holds(7, "a"), locks.holds(7, "b")), (True, False))

    def test_wrong_owner_release_is_a_no_op(self) -> None:
        """Only the holder releases: a stale or foreign release changes
        nothing, here or in another process."""
        locks, other = self.locks(), self.locks()
        self.assertTrue(locks.acquire(7, "a"))
        self.assertEqual((locks.release(7, "b"), locks.release(8, "a")), (False, False))
        self.assertEqual(
            (locks.holds(7, "a"), locks.acquire(7, "b"), other.acquire(7, "c")),
            (True, False, False),
        )

    def test_release_then_acquire(self) -> None:
        """A released lock is taken by the next session; a repeated release
        by the old owner does not free the new one's lock."""
        locks, other = self.locks(), self.locks()
        self.assertTrue(locks.acquire(7, "a"))
        self.assertTrue(locks.release(7, "a"))
        self.assertTrue(locks.acquire(7, "b"))
        self.assertFalse(locks.release(7, "a"))
        self.assertEqual((locks.holds(7, "b"), other.acquire(7, "c")), (True, False))

    def test_close_frees(self) -> None:
        """Closing drops every lock the object held; after it, a release is
        a no-op and an acquire fails StoreError."""
        locks, other = self.locks(), self.locks()
        self.assertTrue(locks.acquire(7, "a"))
        self.assertTrue(locks.acquire(8, "a"))
        locks.close()
        self.assertEqual(
            (other.acquire(7, "b"), other.acquire(8, "b"), locks.release(7, "a")),
            (True, True, False),
        )
        error = self.assertRaises(StoreError, locks.acquire, 9, "a")
        self.assertEqual(str(error), f"the maildrop lock file {self.path} is closed")

    def test_killed_process_frees_at_once(self) -> None:
        """A process killed with SIGKILL holds no lock once it is reaped:
        no lease to wait out."""
        code = (
            "import sys; from zpop.store.locks import MaildropLocks;"
            "locks = MaildropLocks(sys.argv[1]);"
            "print(locks.acquire(7, 'child'), flush=True); sys.stdin.read()"
        )
        child = subprocess.Popen(
            [sys.executable, "-c", code, self.path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.addCleanup(child.wait)
        self.addCleanup(child.stdin.close)  # type: ignore[union-attr]
        self.addCleanup(child.stdout.close)  # type: ignore[union-attr]
        self.addCleanup(child.kill)
        ready, _, _ = select.select([child.stdout], [], [], STARTUP)
        self.assertTrue(ready, f"the child did not lock within {STARTUP}s")
        self.assertEqual(child.stdout.readline(), b"True\n")  # type: ignore[union-attr]
        locks = self.locks()
        self.assertFalse(locks.acquire(7, "parent"))
        child.send_signal(signal.SIGKILL)
        self.assertEqual(child.wait(STARTUP), -signal.SIGKILL)
        self.assertTrue(locks.acquire(7, "parent"))

    def test_unusable_path(self) -> None:
        """A lock file that cannot be opened fails StoreError naming it."""
        path = os.path.join(self.path, "missing-directory", "db-pop-locks")
        locks = MaildropLocks(path)
        self.addCleanup(locks.close)
        error = self.assertRaises(StoreError, locks.acquire, 1, "a")
        self.assertEqual(
            str(error),
            f"cannot open the maildrop lock file {path}: No such file or directory",
        )
