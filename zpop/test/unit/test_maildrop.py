"""The POP view of an account: read-ahead of small bodies, and how an open
session learns that its app password was revoked."""

from __future__ import annotations

import gc
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from zpop.accounts.credentials import Identity
from zpop.accounts.maildrop import (
    READ_AHEAD,
    READ_AHEAD_MESSAGES,
    SPAM_FOLDERS,
    BodyReader,
    Maildrop,
)
from zpop.store import NewMessage, NotFound, PopSnapshot
from zpop.store.changes import RECHECK, Verified
from zpop.test.stores import (
    add_account,
    add_app_password,
    make_store,
    read_message,
    result,
)


def body(n: int, size: int) -> bytes:
    head = f"Subject: {n}\r\n\r\n".encode()
    return head + b"x" * (size - len(head) - 2) + b"\r\n"


class _AliceMixin:
    """A store with alice@example.com, POP enabled, and a clock. The store
    is ``make_store``'s: a MemoryStore here; a SQLite file in
    zpop.test.integration.test_maildrop_sqlite, for what only a file shows."""

    def make_store(self) -> Any:
        """The store of the test: a MemoryStore, no disk."""
        return make_store()

    def setUp(self) -> None:
        self.store = self.make_store()
        self.addCleanup(self.store.close)
        self.clock = Clock()
        self.clock.advance(1000)
        self.alice = add_account(self.store, "alice@example.com")
        result(self.store.enable_pop("alice@example.com", "all", 0.0))


class MaildropTests(_AliceMixin, SynchronousTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.reads: list[list[int]] = []
        read_bodies = self.store.read_bodies

        def counted(ids: Any) -> Any:
            self.reads.append(list(ids))
            return read_bodies(ids)

        self.patch(self.store, "read_bodies", counted)

    def deliver(self, *sizes: int) -> list[bytes]:
        bodies = [body(n, size) for n, size in enumerate(sizes)]
        new = [NewMessage("Inbox", b, str(n), 10.0) for n, b in enumerate(bodies)]
        result(self.store.store_messages(self.alice.id, new))
        return bodies

    def maildrop(self, identity: str = "alice@example.com") -> Maildrop:
        opened = result(
            self.store.open_pop_session("alice@example.com", "owner", SPAM_FOLDERS)
        )
        maildrop = Maildrop(
            self.store,
            opened.account,
            opened.messages,
            "owner",
            self.clock,
            identity,
        )
        self.addCleanup(maildrop.release)
        return maildrop

    def test_small_bodies_in_one_trip(self) -> None:
        """Reading small messages in order costs one store trip per batch."""
        bodies = self.deliver(*[10_000] * 20)
        maildrop = self.maildrop()
        self.assertEqual([read_message(maildrop, i) for i in range(20)], bodies)
        self.assertEqual(len(self.reads), 1)

    def test_batch_is_bounded(self) -> None:
        """A batch holds at most READ_AHEAD bytes and READ_AHEAD_MESSAGES
        messages, so a session's buffer stays small."""
        per_batch = READ_AHEAD // 50_000
        bodies = self.deliver(*[50_000] * (per_batch + 2))
        tiny = self.deliver(*[100] * (READ_AHEAD_MESSAGES + 1))
        maildrop = self.maildrop()
        got = [read_message(maildrop, i) for i in range(len(bodies) + len(tiny))]
        self.assertEqual(got, bodies + tiny)
        # The bytes end the first batch; the count ends the second (the
        # last two large bodies and 62 tiny ones); 3 tiny ones are left.
        self.assertEqual(
            [len(ids) for ids in self.reads], [per_batch, READ_AHEAD_MESSAGES, 3]
        )

    def test_deleted_and_large_messages_are_skipped(self) -> None:
        """Deleted messages are not fetched; a large body is read in chunks
        (not in a batch) and the next small one starts a new batch."""
        bodies = self.deliver(1000, 1000, READ_AHEAD + 1, 1000)
        maildrop = self.maildrop()
        maildrop.deleteMessage(1)
        self.assertEqual(read_message(maildrop, 0), bodies[0])
        self.assertEqual(read_message(maildrop, 2), bodies[2])
        self.assertEqual(read_message(maildrop, 3), bodies[3])
        ids = [m.id for m in result(self.store.list_messages(self.alice.id))]
        self.assertEqual(self.reads, [[ids[0]], [ids[3]]])

    def test_out_of_order(self) -> None:
        """Any order of reads gives the right bodies."""
        bodies = self.deliver(*[1000] * 5)
        maildrop = self.maildrop()
        for i in (3, 0, 4, 1, 2, 0):
            self.assertEqual(read_message(maildrop, i), bodies[i])

    def test_gone_since_login(self) -> None:
        """A message deleted by another session since the login is reported
        as gone, not served from nowhere."""
        self.deliver(1000, 1000)
        maildrop = self.maildrop()
        result(self.store.delete_account("alice@example.com"))
        reader = result(maildrop.getMessage(0))
        self.failureResultOf(reader.read(), NotFound)

    def test_release_drops_read_ahead(self) -> None:
        """Ending the session frees what was read ahead."""
        self.deliver(1000, 1000)
        maildrop = self.maildrop()
        read_message(maildrop, 0)
        self.assertEqual(len(maildrop._read_ahead), 1)
        maildrop.release()
        self.assertEqual(maildrop._read_ahead, {})


class _RevocationCase(_AliceMixin):
    """Set-up and helpers of RevocationTests: alice has an app password."""

    def setUp(self) -> None:
        super().setUp()
        add_app_password(self.store, self.alice)
        (self.app,) = result(self.store.list_app_passwords("alice@example.com"))

    def maildrop(self, identity: Identity) -> Maildrop:
        maildrop = Maildrop(
            self.store, self.alice, PopSnapshot(), "o", self.clock, identity
        )
        self.addCleanup(maildrop.release)
        return maildrop

    def identity(self) -> Identity:
        verified = Verified.now(self.store, self.clock.seconds())
        return Identity("alice@example.com", "app password", self.app.id, verified)


class RevocationTests(_RevocationCase, SynchronousTestCase):
    """An app-password session checks the store only when something changed."""

    def test_primary_password_always_current(self) -> None:
        """A primary-password session has nothing to revoke."""
        maildrop = self.maildrop(Identity("alice@example.com", "primary"))
        result(self.store.set_two_factor("alice@example.com", True))
        self.assertTrue(maildrop.credentials_current())

    def test_recheck_time(self) -> None:
        """Unverified identities, and verifications older than RECHECK, are
        not current."""
        self.assertFalse(
            self.maildrop(
                Identity("alice@example.com", "app password", self.app.id)
            ).credentials_current()
        )
        maildrop = self.maildrop(self.identity())
        self.clock.advance(RECHECK)
        self.assertFalse(maildrop.credentials_current())


class _MaildropLockCase(_AliceMixin):
    """Helpers of MaildropLockTests: sessions, store trips, deliveries."""

    def session(self, owner: str) -> Maildrop | None:
        """A Maildrop for alice as ``owner``, or None if the lock is held."""
        opened = result(
            self.store.open_pop_session("alice@example.com", owner, SPAM_FOLDERS)
        )
        if not opened.locked:
            return None
        maildrop = Maildrop(
            self.store, opened.account, opened.messages, owner, self.clock
        )
        self.addCleanup(maildrop.release)
        return maildrop

    def count_trips(self) -> list[str]:
        trips: list[str] = []
        run = self.store._run

        def counted(f: Any, *args: Any) -> Any:
            trips.append("trip")
            return run(f, *args)

        self.patch(self.store, "_run", counted)
        return trips

    def deliver(self, *subjects: str) -> None:
        new = [
            NewMessage("Inbox", f"Subject: {s}\r\n\r\n".encode(), s, 1.0)
            for s in subjects
        ]
        result(self.store.store_messages(self.alice.id, new))


class MaildropLockTests(_MaildropLockCase, SynchronousTestCase):
    """The session's maildrop lock: released by sync after the commit, or by
    release; a session needs no timer and no database trip to keep it."""

    def test_held_without_upkeep(self) -> None:
        """An open session schedules nothing and keeps the maildrop however
        long it lasts."""
        self.assertIsNotNone(self.session("one"))
        self.clock.advance(86400.0)
        self.assertEqual(
            (self.clock.getDelayedCalls(), self.session("two")), ([], None)
        )

    def test_late_release_keeps_newer_session(self) -> None:
        """Releasing an ended session again, even through the store, never
        frees the lock of the session that followed it."""
        one = self.session("one")
        assert one is not None
        self.assertIsNone(result(one.sync()))
        self.assertIsNotNone(self.session("two"))
        self.assertIsNone(one.release())
        result(self.store.release_pop_lock(self.alice.id, "one"))
        self.assertIsNone(self.session("three"))


class _SlowStore:
    """read_body calls answered only when the test says so."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, Deferred]] = []

    def read_body(self, message_id: int, offset: int, length: int) -> Deferred:
        d: Deferred = Deferred()
        self.calls.append((offset, length, d))
        return d


class BodyReaderTests(SynchronousTestCase):
    def test_next_chunk_read_ahead(self) -> None:
        """When a chunk arrives the following chunk's read starts, so the
        database works while a chunk is sent; one read at a time."""
        store = _SlowStore()
        reader = BodyReader(store, 1, 25)  # type: ignore[arg-type]
        first = reader.read(10)
        self.assertEqual([(o, n) for o, n, _ in store.calls], [(0, 10)])
        store.calls[0][2].callback(b"a" * 10)
        self.assertEqual(self.successResultOf(first), b"a" * 10)
        self.assertEqual([(o, n) for o, n, _ in store.calls], [(0, 10), (10, 10)])
        store.calls[1][2].callback(b"b" * 10)
        self.assertEqual(len(store.calls), 2)
        second = reader.read(10)
        self.assertEqual(self.successResultOf(second), b"b" * 10)
        self.assertEqual([(o, n) for o, n, _ in store.calls][2:], [(20, 10)])
        third = reader.read(10)
        self.assertNoResult(third)
        store.calls[2][2].callback(b"c" * 5)
        self.assertEqual(self.successResultOf(third), b"c" * 5)
        self.assertEqual(self.successResultOf(reader.read(10)), b"")
        self.assertEqual(len(store.calls), 3)

    def test_failure_read_ahead(self) -> None:
        """A read-ahead that fails fails the read that asks for it; one that
        nobody asks for is dropped without an unhandled error."""
        store = _SlowStore()
        reader = BodyReader(store, 1, 30)  # type: ignore[arg-type]
        reader.read(10)
        store.calls[0][2].callback(b"a" * 10)
        store.calls[1][2].errback(NotFound("message 1 no longer exists"))
        self.failureResultOf(reader.read(10), NotFound)
        slow = _SlowStore()
        other = BodyReader(slow, 2, 30)  # type: ignore[arg-type]
        other.read(10)
        slow.calls[0][2].callback(b"a" * 10)
        slow.calls[1][2].errback(Failure(NotFound("gone")))
        del other, slow
        gc.collect()
        self.assertEqual(self.flushLoggedErrors(NotFound), [])
