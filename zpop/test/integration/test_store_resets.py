"""The password-reset area of the Store API (IPasswordResetStore, migration
012): a conformance suite run on MemoryStore, on SQLiteStore synchronously
and on SQLiteStore with its SQL on other threads; then SQLite's own
promise: single use between two stores on one file (two processes).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from zpop.store.interface import IPasswordResetStore, IStore
from zpop.store.memory import MemoryStore
from zpop.store.records import NotFound, StoreError
from zpop.store.sqlite import SQLiteStore
from zpop.test.integration.test_store import (
    NOW,
    _MixinBase,
    memory_store,
    sqlite_store,
    threaded_sqlite_store,
)
from zpop.threads import run_synchronously

BOB = "bob@example.com"
AMY = "amy@example.com"
HOUR = 3600.0


def digest(tag: str) -> bytes:
    """A 32-byte stand-in for a token's keyed hash."""
    return tag.encode().ljust(32, b".")


class ResetStoreMixin(_MixinBase):
    """Tests any IPasswordResetStore must pass, through the store API alone."""

    def make_store(self) -> Any:
        raise NotImplementedError("make_store")

    def setUp(self) -> None:
        super().setUp()
        self.store = self.make_store()
        self.ok(self.store.add_domain("example.com", False, NOW))
        self.ok(self.store.add_account(BOB, "paid", False, None, NOW))
        self.ok(self.store.add_account(AMY, "paid", False, None, NOW))

    def ok(self, d: defer.Deferred) -> Any:
        return self.successResultOf(d)

    def fails(self, d: defer.Deferred, exc_type: type[Exception]) -> Exception:
        return self.failureResultOf(d, exc_type).value

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(IPasswordResetStore, self.store))
        self.assertTrue(verifyObject(IStore, self.store))

    def test_recovery_address(self) -> None:
        """None at first; set, replaced and cleared; per account; any case
        of the account's address finds it."""
        self.assertIsNone(self.ok(self.store.get_recovery_address(BOB)))
        self.ok(self.store.set_recovery_address(BOB, "bob@elsewhere.example"))
        self.assertEqual(
            self.ok(self.store.get_recovery_address("Bob@Example.com")),
            "bob@elsewhere.example",
        )
        self.assertIsNone(self.ok(self.store.get_recovery_address(AMY)))
        self.ok(self.store.set_recovery_address(BOB, "b2@elsewhere.example"))
        self.assertEqual(
            self.ok(self.store.get_recovery_address(BOB)), "b2@elsewhere.example"
        )
        self.ok(self.store.set_recovery_address(BOB, None))
        self.assertIsNone(self.ok(self.store.get_recovery_address(BOB)))

    def test_recovery_address_unknown_account(self) -> None:
        self.fails(self.store.set_recovery_address("no@example.com", "x@y.z"), NotFound)
        self.fails(self.store.get_recovery_address("no@example.com"), NotFound)

    def test_find_and_use(self) -> None:
        """A live link is found (spending nothing) until it is used, once."""
        self.ok(self.store.add_password_reset(BOB, digest("a"), NOW, NOW + HOUR))
        for _ in range(2):
            self.assertEqual(
                self.ok(self.store.find_password_reset(digest("a"), NOW + 1)), BOB
            )
        self.assertEqual(
            self.ok(self.store.use_password_reset(digest("a"), NOW + 2)), BOB
        )
        self.assertIsNone(self.ok(self.store.use_password_reset(digest("a"), NOW + 3)))
        self.assertIsNone(self.ok(self.store.find_password_reset(digest("a"), NOW + 3)))

    def test_unknown_digest(self) -> None:
        self.ok(self.store.add_password_reset(BOB, digest("a"), NOW, NOW + HOUR))
        self.assertIsNone(self.ok(self.store.find_password_reset(digest("b"), NOW)))
        self.assertIsNone(self.ok(self.store.use_password_reset(digest("b"), NOW)))

    def test_expired(self) -> None:
        """Good until ``expires``, not at it."""
        self.ok(self.store.add_password_reset(BOB, digest("a"), NOW, NOW + HOUR))
        self.assertEqual(
            self.ok(self.store.find_password_reset(digest("a"), NOW + HOUR - 1)), BOB
        )
        self.assertIsNone(
            self.ok(self.store.find_password_reset(digest("a"), NOW + HOUR))
        )
        self.assertIsNone(
            self.ok(self.store.use_password_reset(digest("a"), NOW + HOUR))
        )

    def test_several_links(self) -> None:
        """Links are independent, of one account or several."""
        self.ok(self.store.add_password_reset(BOB, digest("a"), NOW, NOW + HOUR))
        self.ok(self.store.add_password_reset(BOB, digest("b"), NOW, NOW + HOUR))
        self.ok(self.store.add_password_reset(AMY, digest("c"), NOW, NOW + HOUR))
        self.assertEqual(self.ok(self.store.use_password_reset(digest("b"), NOW)), BOB)
        self.assertEqual(self.ok(self.store.find_password_reset(digest("a"), NOW)), BOB)
        self.assertEqual(self.ok(self.store.use_password_reset(digest("c"), NOW)), AMY)

    def test_digest_unique(self) -> None:
        self.ok(self.store.add_password_reset(BOB, digest("a"), NOW, NOW + HOUR))
        self.fails(
            self.store.add_password_reset(AMY, digest("a"), NOW, NOW + HOUR),
            StoreError,
        )

    def test_unknown_account(self) -> None:
        self.fails(
            self.store.add_password_reset("no@example.com", digest("a"), NOW, NOW),
            NotFound,
        )

    def test_gone_with_account(self) -> None:
        """Deleting the account deletes its links and recovery address; an
        account made again at the address has neither."""
        self.ok(self.store.set_recovery_address(BOB, "bob@elsewhere.example"))
        self.ok(self.store.add_password_reset(BOB, digest("a"), NOW, NOW + HOUR))
        self.ok(self.store.delete_account(BOB))
        self.assertIsNone(self.ok(self.store.find_password_reset(digest("a"), NOW)))
        self.assertIsNone(self.ok(self.store.use_password_reset(digest("a"), NOW)))
        self.ok(self.store.add_account(BOB, "paid", False, None, NOW))
        self.assertIsNone(self.ok(self.store.get_recovery_address(BOB)))
        self.assertIsNone(self.ok(self.store.find_password_reset(digest("a"), NOW)))
        self.ok(self.store.add_password_reset(BOB, digest("a"), NOW, NOW + HOUR))
        self.assertEqual(self.ok(self.store.use_password_reset(digest("a"), NOW)), BOB)


class MemoryResetTests(ResetStoreMixin, SynchronousTestCase):
    """The password-reset conformance suite on MemoryStore."""

    def make_store(self) -> MemoryStore:
        return memory_store(self)


class ThreadedSQLiteResetTests(ResetStoreMixin, SynchronousTestCase):
    """The password-reset conformance suite on SQLiteStore, every call on
    another of three threads, each with its own connection."""

    def make_store(self) -> SQLiteStore:
        return threaded_sqlite_store(self)


class SQLiteResetTests(ResetStoreMixin, SynchronousTestCase):
    """The password-reset conformance suite on SQLiteStore, called on this
    thread, and single use between two stores on one file."""

    def make_store(self) -> SQLiteStore:
        return sqlite_store(self)

    def other(self) -> SQLiteStore:
        """A second store on the same file: another process's view."""
        other = SQLiteStore(self.store.path, run_synchronously)
        self.addCleanup(other.close)
        return other

    def race(self, calls: list[Any]) -> list[Any]:
        """Run the calls at once, one thread each, released together."""
        barrier = threading.Barrier(len(calls))

        def run(call: Any) -> Any:
            barrier.wait(10)
            return self.successResultOf(call())

        with ThreadPoolExecutor(len(calls)) as pool:
            return list(pool.map(run, calls))

    def test_single_use_between_stores(self) -> None:
        """One link used through two stores, in turn and at the same
        moment, is spent by exactly one of them."""
        other = self.other()
        self.ok(self.store.add_password_reset(BOB, digest("x"), NOW, NOW + HOUR))
        self.assertEqual(
            [
                self.ok(other.use_password_reset(digest("x"), NOW)),
                self.ok(self.store.use_password_reset(digest("x"), NOW)),
            ],
            [BOB, None],
        )
        for i in range(20):
            d = digest(f"r{i}")
            self.ok(self.store.add_password_reset(BOB, d, NOW, NOW + HOUR))
            won = self.race(
                [
                    lambda s=store, d=d: s.use_password_reset(d, NOW)
                    for store in (self.store, other, self.store, other)
                ]
            )
            self.assertEqual(won.count(BOB), 1, i)
            self.assertEqual(won.count(None), 3, i)

    def test_recovery_address_seen_by_other_store(self) -> None:
        other = self.other()
        self.ok(self.store.set_recovery_address(BOB, "bob@elsewhere.example"))
        self.assertEqual(
            self.ok(other.get_recovery_address(BOB)), "bob@elsewhere.example"
        )
