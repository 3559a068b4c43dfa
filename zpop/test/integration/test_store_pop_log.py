"""The POP download log area of the Store API (migration 016): a
conformance suite run on MemoryStore, on SQLiteStore synchronously and with
its SQL on other threads; then the upgrade of a version 15 database."""

from __future__ import annotations

import os
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from zpop.accounts.maildrop import SPAM_FOLDERS
from zpop.store import schema
from zpop.store.memory import MemoryStore
from zpop.store.records import NewMessage, PopDownload, PopSessionLog, StoreError
from zpop.store.sqlite import SQLiteStore
from zpop.test.integration.test_store import (
    NOW,
    _MixinBase,
    memory_store,
    seed_old_database,
    sqlite_store,
    threaded_sqlite_store,
)
from zpop.threads import run_synchronously

BOB = "bob@example.com"


class PopLogStoreMixin(_MixinBase):
    """Tests any store must pass for the download log and last logins."""

    def make_store(self) -> Any:
        raise NotImplementedError("make_store")

    def setUp(self) -> None:
        super().setUp()
        self.store = self.make_store()
        self.ok(self.store.add_domain("example.com", False, NOW))
        self.ok(self.store.add_account(BOB, "paid", False, None, NOW))
        self.bob = self.ok(self.store.enable_pop(BOB, "all", NOW))
        body = b"Subject: hi\r\n\r\nx\r\n"
        self.message = self.ok(
            self.store.store_messages(
                self.bob.id, [NewMessage("Inbox", body, "hi", NOW)]
            )
        )[0]

    def ok(self, d: Any) -> Any:
        return self.successResultOf(d)

    def entry(self, at: float, action: str) -> PopDownload:
        return PopDownload(at, action, "primary", "192.0.2.1", self.message.id, "u-1")

    def test_finish_writes_log_and_login(self) -> None:
        """finish_pop_session writes entries (subject filled in), prunes old
        ones, and records the login for the next open."""
        opened = self.ok(self.store.open_pop_session(BOB, "o1", SPAM_FOLDERS))
        self.assertIsNone(opened.last_login)
        log = PopSessionLog((self.entry(NOW, "retr"),), 0.0, NOW)
        self.ok(self.store.finish_pop_session(self.bob.id, "o1", [], False, log))
        opened = self.ok(self.store.open_pop_session(BOB, "o2", SPAM_FOLDERS))
        self.assertEqual(opened.last_login, NOW)
        later = PopSessionLog((self.entry(NOW + 9, "dele"),), NOW + 1)
        self.ok(
            self.store.finish_pop_session(
                self.bob.id, "o2", [self.message.id], True, later
            )
        )
        self.assertEqual(
            self.ok(self.store.list_pop_downloads(BOB)),
            [
                PopDownload(
                    NOW + 9,
                    "dele",
                    "primary",
                    "192.0.2.1",
                    self.message.id,
                    "u-1",
                    "hi",
                )
            ],
        )

    def test_record_in_batches(self) -> None:
        """record_pop_logs writes several sessions' logs and logins in one
        call, prunes, drops the pairs of deleted accounts, and writes
        nothing of a batch the schema refuses."""
        carol = self.ok(
            self.store.add_account("carol@example.com", "paid", False, None, NOW)
        )
        self.ok(self.store.enable_pop("carol@example.com", "all", NOW))
        self.ok(
            self.store.record_pop_logs(
                [
                    (self.bob.id, PopSessionLog((self.entry(NOW, "retr"),), 0.0)),
                    (carol.id, PopSessionLog(login_at=NOW + 7)),
                    (424242, PopSessionLog((self.entry(NOW, "retr"),), 0.0)),
                ]
            )
        )
        [entry] = self.ok(self.store.list_pop_downloads(BOB))
        self.assertEqual((entry.action, entry.subject), ("retr", "hi"))
        opened = self.ok(
            self.store.open_pop_session("carol@example.com", "o2", SPAM_FOLDERS)
        )
        self.assertEqual(opened.last_login, NOW + 7)
        self.ok(
            self.store.record_pop_logs(
                [(self.bob.id, PopSessionLog((self.entry(NOW + 5, "retr"),), NOW + 1))]
            )
        )
        self.assertEqual(
            [e.at for e in self.ok(self.store.list_pop_downloads(BOB))], [NOW + 5]
        )
        self.failureResultOf(
            self.store.record_pop_logs(
                [
                    (self.bob.id, PopSessionLog((self.entry(NOW + 6, "retr"),), 0.0)),
                    (self.bob.id, PopSessionLog((self.entry(NOW + 6, "peek"),), 0.0)),
                ]
            ),
            StoreError,
        )
        self.assertEqual(len(self.ok(self.store.list_pop_downloads(BOB))), 1)
        self.assertIsNone(self.ok(self.store.record_pop_logs([])))


class MemoryPopLogTests(PopLogStoreMixin, SynchronousTestCase):
    """The download log suite on MemoryStore."""

    def make_store(self) -> MemoryStore:
        return memory_store(self)


class ThreadedSQLitePopLogTests(PopLogStoreMixin, SynchronousTestCase):
    """The download log suite on SQLiteStore, calls on threads."""

    def make_store(self) -> SQLiteStore:
        return threaded_sqlite_store(self)


class SQLitePopLogTests(PopLogStoreMixin, SynchronousTestCase):
    """The download log suite on SQLiteStore, on this thread."""

    def make_store(self) -> SQLiteStore:
        return sqlite_store(self)


class Migration016Tests(SynchronousTestCase):
    def test_version_15_upgrades(self) -> None:
        """A version 15 database upgrades and keeps its accounts."""
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "zpop.sqlite")
        schema.migrate(path, to_version=15)
        seed_old_database(path, BOB, now=NOW)
        schema.migrate(path)
        self.assertEqual(schema.check(path), schema.latest_version())
        store = SQLiteStore(path, run_synchronously)
        self.addCleanup(store.close)
        self.assertEqual(self.successResultOf(store.list_pop_downloads(BOB)), [])
