"""The POP view of an account on a SQLite file: what only a database
shared with another process shows (its changes, the store's trips, a
commit that fails). The set-up is the unit tests'
(zpop.test.unit.test_maildrop)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from zpop.store import SQLiteStore, StoreError
from zpop.test.stores import make_sqlite_store, refuse_message_updates, result
from zpop.test.unit.test_maildrop import _MaildropLockCase, _RevocationCase
from zpop.threads import run_synchronously


class RevocationSQLiteTests(_RevocationCase, SynchronousTestCase):
    """An app-password session sees another process's changes."""

    def make_store(self) -> SQLiteStore:
        """A synchronous SQLiteStore on a fresh database file."""
        return make_sqlite_store(self.mktemp())

    def test_current_until_something_changes(self) -> None:
        """Current while nothing changed; after a change anywhere (here by
        another process's store) the store is asked, and while the password
        stands, current again."""
        maildrop = self.maildrop(self.identity())
        self.assertTrue(maildrop.credentials_current())
        other = SQLiteStore(self.store.path, run_synchronously)
        self.addCleanup(other.close)
        result(other.set_pop_spam("alice@example.com", "include"))
        self.assertFalse(maildrop.credentials_current())
        self.assertTrue(result(maildrop.credentials_valid()))
        self.assertTrue(maildrop.credentials_current())
        result(other.revoke_app_password("alice@example.com", self.app.id))
        self.assertFalse(maildrop.credentials_current())
        self.assertFalse(result(maildrop.credentials_valid()))
        self.assertFalse(maildrop.credentials_current())


class MaildropLockSQLiteTests(_MaildropLockCase, SynchronousTestCase):
    """The maildrop lock at QUIT: the database trips it costs, and a commit
    that fails."""

    def make_store(self) -> SQLiteStore:
        """A synchronous SQLiteStore on a fresh database file."""
        return make_sqlite_store(self.mktemp())

    def test_sync_without_deletions_no_database_call(self) -> None:
        """QUIT with nothing deleted frees the lock without a database trip."""
        self.deliver("a")
        one = self.session("one")
        assert one is not None
        trips = self.count_trips()
        self.assertIsNone(result(one.sync()))
        self.assertEqual(trips, [])
        self.assertIsNotNone(self.session("two"))

    def test_sync_with_deletions(self) -> None:
        """QUIT with deletions applies them in one trip, then frees the lock."""
        self.deliver("a", "b")
        one = self.session("one")
        assert one is not None
        one.deleteMessage(0)
        trips = self.count_trips()
        self.assertIsNone(result(one.sync()))
        self.assertEqual(trips, ["trip"])
        two = self.session("two")
        assert two is not None
        self.assertEqual(len(two.listMessages()), 1)

    def test_failed_sync_releases_lock(self) -> None:
        """A QUIT whose deletions cannot be committed fails, applies nothing,
        and still ends the session's hold on the maildrop."""
        self.deliver("a")
        one = self.session("one")
        assert one is not None
        one.deleteMessage(0)
        refuse_message_updates(self.store.path)
        self.assertRaises(StoreError, result, one.sync())
        two = self.session("two")
        assert two is not None
        self.assertEqual(len(two.listMessages()), 1)
