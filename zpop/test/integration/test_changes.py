"""The shared change counter and the freshness rule built on it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from zpop.store.changes import RECHECK, ChangeCounter, Verified


class _Store:
    """Just what Verified reads from a store."""

    def __init__(self, counter: ChangeCounter) -> None:
        self.changes = counter.value


class ChangeCounterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.mkdir(self.dir)

    def counter(self) -> ChangeCounter:
        counter = ChangeCounter(os.path.join(self.dir, "db-changes"))
        self.addCleanup(counter.close)
        return counter

    def test_new_file(self) -> None:
        """A new counter file is 8 bytes, private to its owner, and reads 0."""
        counter = self.counter()
        info = os.stat(counter.path)
        self.assertEqual(
            (counter.value(), info.st_size, stat.S_IMODE(info.st_mode)),
            (0, 8, 0o600),
        )

    def test_bump_seen_by_every_opener(self) -> None:
        """A bump through one mapping is seen at once through another."""
        one, two = self.counter(), self.counter()
        one.bump()
        two.bump()
        self.assertEqual((one.value(), two.value()), (2, 2))

    def test_bump_from_another_process(self) -> None:
        """Another process's bump (the `zpop` command) is seen without I/O."""
        counter = self.counter()
        code = (
            "import sys; from zpop.store.changes import ChangeCounter;"
            "c = ChangeCounter(sys.argv[1]); [c.bump() for _ in range(3)]; c.close()"
        )
        subprocess.run([sys.executable, "-c", code, counter.path], check=True)
        self.assertEqual(counter.value(), 3)

    def test_reopen_keeps_value(self) -> None:
        """Opening an existing counter does not reset it."""
        self.counter().bump()
        self.assertEqual(self.counter().value(), 1)

    def test_wraps(self) -> None:
        """The counter wraps instead of overflowing."""
        counter = self.counter()
        with open(counter.path, "r+b") as f:
            f.write((2**64 - 1).to_bytes(8, "little"))
        counter.bump()
        self.assertEqual(counter.value(), 0)


class VerifiedTests(SynchronousTestCase):
    def setUp(self) -> None:
        path = self.mktemp()
        os.mkdir(path)
        self.counter = ChangeCounter(os.path.join(path, "db-changes"))
        self.addCleanup(self.counter.close)
        self.store = _Store(self.counter)

    def test_current_until_a_change(self) -> None:
        """A verification stands until the counter moves."""
        verified = Verified.now(self.store, 100.0)
        self.assertTrue(verified.current(self.store, 100.0 + RECHECK - 1))
        self.counter.bump()
        self.assertFalse(verified.current(self.store, 100.0))

    def test_recheck_after_a_while(self) -> None:
        """Even with no change seen, a verification expires after RECHECK
        seconds (a writer killed between commit and bump)."""
        verified = Verified.now(self.store, 100.0)
        self.assertFalse(verified.current(self.store, 100.0 + RECHECK))
