"""The realm on a SQLite file: a maildrop lock held by another process.
The set-up is the unit tests' (zpop.test.unit.test_realm)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from zpop.accounts.maildrop import SPAM_FOLDERS
from zpop.store import SQLiteStore
from zpop.test.stores import make_sqlite_store, result
from zpop.test.unit.test_realm import _RealmCase
from zpop.threads import run_synchronously


class RealmSQLiteTests(_RealmCase, SynchronousTestCase):
    """Logins against the lock of another process's store."""

    def make_store(self) -> SQLiteStore:
        """A synchronous SQLiteStore on a fresh database file."""
        return make_sqlite_store(self.mktemp())

    def test_lock_of_another_process(self) -> None:
        """A session in another process (another store on the database)
        refuses the login [IN-USE]; the login works as soon as that process
        ends, with no lease to wait out."""
        self.enable()
        other = SQLiteStore(self.store.path, run_synchronously)
        self.addCleanup(other.close)
        held = result(other.open_pop_session("alice@example.com", "dead", SPAM_FOLDERS))
        self.assertTrue(held.locked)
        self.assertEqual(
            self.refusal(),
            ("IN-USE", "Another POP session is already using this mailbox"),
        )
        other.close()
        self.login()
