"""The IMAP access switch of the Store API (``IStore.set_imap``, migration
011): a conformance suite run on MemoryStore, on SQLiteStore synchronously
and on SQLiteStore with its SQL on other threads; then SQLite's own
promises: the CHECK constraint, another store's view of the file, and the
upgrade of a version 10 database."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import replace
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from zpop.store import schema
from zpop.store.memory import MemoryStore
from zpop.store.records import Account, NotFound
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


class ImapStoreMixin(_MixinBase):
    """Tests any IStore must pass for the IMAP switch, through the store
    API alone; ``make_store`` gives a store whose Deferreds have fired by
    the time the call returns."""

    def make_store(self) -> Any:
        raise NotImplementedError("make_store")

    def setUp(self) -> None:
        super().setUp()
        self.store = self.make_store()
        self.ok(self.store.add_domain("example.com", False, NOW))
        self.bob: Account = self.ok(
            self.store.add_account(BOB, "paid", False, None, NOW)
        )

    def ok(self, d: defer.Deferred) -> Any:
        return self.successResultOf(d)

    def get(self, address: str = BOB) -> Account:
        account: Account = self.ok(self.store.get_account(address))
        return account

    def test_on_by_default(self) -> None:
        """A new account has IMAP access on (DESIGN §1 "IMAP")."""
        self.assertTrue(self.bob.imap_enabled)
        self.assertTrue(self.get().imap_enabled)

    def test_off_and_on(self) -> None:
        """set_imap fires with the changed account, which reads back the same,
        and bumps the generation each time (caches forget)."""
        off = self.ok(self.store.set_imap(BOB, False))
        self.assertEqual(
            (off.imap_enabled, off.generation), (False, self.bob.generation + 1)
        )
        self.assertEqual(self.get(), off)
        on = self.ok(self.store.set_imap(BOB, True))
        self.assertEqual((on.imap_enabled, on.generation), (True, off.generation + 1))
        self.assertEqual(self.get(), on)

    def test_any_case(self) -> None:
        self.assertFalse(
            self.ok(self.store.set_imap("BOB@Example.COM", False)).imap_enabled
        )

    def test_leaves_the_rest(self) -> None:
        """Only the flag (and generation) changes; other accounts keep theirs."""
        amy = self.ok(
            self.store.add_account("amy@example.com", "free", False, None, NOW)
        )
        off = self.ok(self.store.set_imap(BOB, False))
        self.assertEqual(
            off, replace(self.bob, imap_enabled=False, generation=off.generation)
        )
        self.assertEqual(self.get("amy@example.com"), amy)

    def test_change_counter(self) -> None:
        before = self.store.changes()
        self.ok(self.store.set_imap(BOB, False))
        self.assertGreater(self.store.changes(), before)

    def test_unknown(self) -> None:
        self.failureResultOf(self.store.set_imap("nobody@example.com", False), NotFound)

    def test_listed(self) -> None:
        self.ok(self.store.set_imap(BOB, False))
        (listed,) = self.ok(self.store.list_accounts())
        self.assertFalse(listed.imap_enabled)

    def test_recreated_account_on(self) -> None:
        """A deleted and re-created account starts over with IMAP on."""
        self.ok(self.store.set_imap(BOB, False))
        self.ok(self.store.delete_account(BOB))
        again = self.ok(self.store.add_account(BOB, "paid", False, None, NOW))
        self.assertTrue(again.imap_enabled)


class MemoryImapTests(ImapStoreMixin, SynchronousTestCase):
    """The IMAP switch conformance suite on MemoryStore."""

    def make_store(self) -> MemoryStore:
        return memory_store(self)


class ThreadedSQLiteImapTests(ImapStoreMixin, SynchronousTestCase):
    """The suite on SQLiteStore, every call on another of three threads."""

    def make_store(self) -> SQLiteStore:
        return threaded_sqlite_store(self)


class SQLiteImapTests(ImapStoreMixin, SynchronousTestCase):
    """The suite on SQLiteStore, called on this thread, and what only the
    file shows."""

    def make_store(self) -> SQLiteStore:
        return sqlite_store(self)

    def test_other_store_sees_it(self) -> None:
        """Another store on the file (another process) reads the change."""
        other = SQLiteStore(self.store.path, run_synchronously)
        self.addCleanup(other.close)
        self.ok(self.store.set_imap(BOB, False))
        self.assertFalse(self.successResultOf(other.get_account(BOB)).imap_enabled)

    def test_check_constraint(self) -> None:
        """The column takes 0 or 1 only."""
        conn = sqlite3.connect(self.store.path)
        self.addCleanup(conn.close)
        with self.assertRaises(sqlite3.IntegrityError):
            with conn:
                conn.execute("UPDATE accounts SET imap_enabled = 2")


class Migration011Tests(SynchronousTestCase):
    """Migration 011 on a database made by the previous zpop (version 10)."""

    def test_version_10_upgrades(self) -> None:
        """Existing accounts get IMAP on (the default the migration
        justifies) and the switch works on them."""
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "zpop.sqlite")
        self.assertEqual(schema.migrate(path, to_version=10), 10)
        conn = sqlite3.connect(path)
        with conn:
            conn.execute(
                "INSERT INTO domains (name, organization, created)"
                " VALUES ('example.com', 0, 0)"
            )
            conn.execute(
                "INSERT INTO accounts (address, domain_id, plan, created,"
                " uid_validity) VALUES (?, 1, 'paid', 0, 1)",
                (BOB,),
            )
        conn.close()
        upgraded = schema.upgrade(path)
        self.assertEqual(
            (upgraded.before, upgraded.after), (10, schema.latest_version())
        )
        store = SQLiteStore(path, run_synchronously)
        self.addCleanup(store.close)
        self.assertTrue(self.successResultOf(store.get_account(BOB)).imap_enabled)
        off = self.successResultOf(store.set_imap(BOB, False))
        self.assertFalse(off.imap_enabled)
