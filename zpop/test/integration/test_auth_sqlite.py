"""The Authenticator on a SQLite file: what only a database shared with
another process shows (its changes, its bans, writes behind the store's
back). The set-up is the unit tests' (zpop.test.unit.test_auth)."""

from __future__ import annotations

import sqlite3

from twisted.trial.unittest import SynchronousTestCase

from zpop.accounts.credentials import AppPasswordRequired, LoginRefused
from zpop.store import SQLiteStore
from zpop.store.changes import RECHECK
from zpop.test.stores import (
    add_account,
    add_app_password,
    make_sqlite_store,
    result,
)
from zpop.test.unit.test_auth import _AuthenticatorCase
from zpop.threads import run_synchronously


class AuthenticatorSQLiteTests(_AuthenticatorCase, SynchronousTestCase):
    """Cached look-ups and bans against another process's store."""

    def make_store(self) -> SQLiteStore:
        """A synchronous SQLiteStore on a fresh database file."""
        return make_sqlite_store(self.mktemp())

    def test_cached_login_looks_nothing_up(self) -> None:
        """While nothing changed, a repeated login from a known client costs
        neither a ban look-up nor an account look-up; a change anywhere (here
        to another account, by another process's store on the same file)
        brings both back, but not the password check."""
        add_account(self.store, "bob@example.com")
        secret = add_app_password(self.store, self.alice)
        calls = self.count_lookups()
        self.successResultOf(self.login(secret))
        self.assertEqual(
            calls, ["client_banned_until", "get_account", "find_app_password"]
        )
        del calls[:]
        self.successResultOf(self.login(secret))
        self.assertEqual(calls, [])
        other = SQLiteStore(self.store.path, run_synchronously)
        self.addCleanup(other.close)
        result(other.set_pop_deletion("bob@example.com", "delete"))
        self.successResultOf(self.login(secret))
        self.assertEqual(calls, ["client_banned_until", "get_account"])

    def test_ban_by_another_process_is_seen(self) -> None:
        """A client banned by another process is refused at its next login,
        though its earlier clean look-up was remembered."""
        self.successResultOf(self.login("primary-secret"))
        other = SQLiteStore(self.store.path, run_synchronously)
        self.addCleanup(other.close)
        result(other.ban_client("192.0.2.1", self.clock.seconds() + 900))
        self.failureResultOf(self.login("primary-secret"), LoginRefused)

    def test_looks_again_after_recheck_time(self) -> None:
        """A change whose writer died before moving the counter (here made
        behind the store's back) is seen within RECHECK seconds."""
        self.successResultOf(self.login("primary-secret"))
        conn = sqlite3.connect(self.store.path)
        with conn:
            conn.execute(
                "UPDATE accounts SET two_factor = 1, generation = generation + 1"
            )
        conn.close()
        self.successResultOf(self.login("primary-secret"))
        self.clock.advance(RECHECK)
        self.failureResultOf(self.login("primary-secret"), AppPasswordRequired)
