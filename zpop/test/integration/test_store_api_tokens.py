"""The settings API token area of the Store API (IApiTokenStore, migration
015): a conformance suite run on MemoryStore, on SQLiteStore synchronously
and on SQLiteStore with its SQL on other threads; then the upgrade of a
version 14 database."""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from zpop.store import schema
from zpop.store.interface import IApiTokenStore, IStore
from zpop.store.memory import MemoryStore
from zpop.store.records import ApiToken, NotFound, StoreError
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
CAROL = "carol@example.com"


class ApiTokenStoreMixin(_MixinBase):
    """Tests any IApiTokenStore must pass, through the store API alone."""

    def make_store(self) -> Any:
        raise NotImplementedError("make_store")

    def setUp(self) -> None:
        super().setUp()
        self.store = self.make_store()
        self.ok(self.store.add_domain("example.com", False, NOW))
        self.ok(self.store.add_account(BOB, "paid", False, None, NOW))
        self.ok(self.store.add_account(CAROL, "paid", False, None, NOW))

    def ok(self, d: defer.Deferred) -> Any:
        return self.successResultOf(d)

    def add(
        self, address: str | None = BOB, scope: str = "read", label: str = "cron"
    ) -> ApiToken:
        digest = f"{address}:{label}".encode().ljust(32, b"-")
        token: ApiToken = self.ok(
            self.store.add_api_token(address, scope, label, digest, NOW)
        )
        return token

    def test_interface(self) -> None:
        """The store provides IApiTokenStore, as part of IStore."""
        self.assertTrue(verifyObject(IApiTokenStore, self.store))
        self.assertTrue(IStore.isOrExtends(IApiTokenStore))

    def test_add_and_find(self) -> None:
        """A token comes back by its digest with every field; an admin
        token has no address; an unknown digest finds None."""
        user = self.add(scope="write", label="backup script")
        admin = self.add(None, label="ops")
        self.assertEqual(
            user, ApiToken(user.id, BOB, "write", "backup script", NOW, None)
        )
        self.assertEqual((admin.address, admin.admin, user.admin), (None, True, False))
        digest = b"bob@example.com:backup script".ljust(32, b"-")
        self.assertEqual(self.ok(self.store.find_api_token(digest)), user)
        self.assertIsNone(self.ok(self.store.find_api_token(b"x" * 32)))

    def test_list(self) -> None:
        """Per account, oldest first; without an address every token."""
        first = self.add(label="a")
        carols = self.add(CAROL, label="b")
        admin = self.add(None, label="c")
        second = self.add(label="d")
        self.assertEqual(self.ok(self.store.list_api_tokens(BOB)), [first, second])
        self.assertEqual(
            self.ok(self.store.list_api_tokens()), [first, carols, admin, second]
        )
        self.assertEqual(
            self.ok(self.store.list_api_tokens("Bob@Example.com")), [first, second]
        )

    def test_unknown_account(self) -> None:
        """Adding or listing for an unknown account fails NotFound."""
        self.failureResultOf(
            self.store.add_api_token("nobody@example.com", "read", "x", b"n" * 32, NOW),
            NotFound,
        )
        self.failureResultOf(self.store.list_api_tokens("nobody@example.com"), NotFound)

    def test_schema_checks(self) -> None:
        """A scope outside API_SCOPES and a repeated digest are refused."""
        self.failureResultOf(
            self.store.add_api_token(BOB, "admin", "x", b"s" * 32, NOW), StoreError
        )
        self.ok(self.store.add_api_token(BOB, "read", "x", b"d" * 32, NOW))
        self.failureResultOf(
            self.store.add_api_token(CAROL, "read", "y", b"d" * 32, NOW), StoreError
        )
        self.assertEqual(len(self.ok(self.store.list_api_tokens())), 1)

    def test_revoke(self) -> None:
        """Revoking fires with the token and it is gone; again: NotFound;
        ids are never reused."""
        token = self.add()
        self.assertEqual(self.ok(self.store.revoke_api_token(token.id)), token)
        self.assertEqual(self.ok(self.store.list_api_tokens()), [])
        self.failureResultOf(self.store.revoke_api_token(token.id), NotFound)
        self.assertGreater(self.add(label="next").id, token.id)

    def test_touch(self) -> None:
        """A use is recorded, never moved back; a gone token is ignored."""
        token = self.add()
        self.ok(self.store.touch_api_token(token.id, NOW + 60))
        self.ok(self.store.touch_api_token(token.id, NOW + 30))
        [listed] = self.ok(self.store.list_api_tokens(BOB))
        self.assertEqual(listed.last_used, NOW + 60)
        self.ok(self.store.revoke_api_token(token.id))
        self.assertIsNone(self.ok(self.store.touch_api_token(token.id, NOW + 90)))

    def test_gone_with_account(self) -> None:
        """Deleting an account deletes its tokens; admin tokens stay."""
        self.add()
        admin = self.add(None, label="ops")
        self.ok(self.store.delete_account(BOB))
        self.assertEqual(self.ok(self.store.list_api_tokens()), [admin])
        digest = b"bob@example.com:cron".ljust(32, b"-")
        self.assertIsNone(self.ok(self.store.find_api_token(digest)))


class MemoryApiTokenTests(ApiTokenStoreMixin, SynchronousTestCase):
    """The API token conformance suite on MemoryStore."""

    def make_store(self) -> MemoryStore:
        return memory_store(self)


class ThreadedSQLiteApiTokenTests(ApiTokenStoreMixin, SynchronousTestCase):
    """The API token conformance suite on SQLiteStore, calls on threads."""

    def make_store(self) -> SQLiteStore:
        return threaded_sqlite_store(self)


class SQLiteApiTokenTests(ApiTokenStoreMixin, SynchronousTestCase):
    """The API token conformance suite on SQLiteStore, on this thread."""

    def make_store(self) -> SQLiteStore:
        return sqlite_store(self)


class Migration015Tests(SynchronousTestCase):
    """Migration 015 on a database made by the previous zpop (version 14)."""

    def test_version_14_upgrades(self) -> None:
        """A version 14 database upgrades, keeps its accounts, and takes
        their tokens."""
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "zpop.sqlite")
        schema.migrate(path, to_version=14)
        seed_old_database(path, BOB, now=NOW)
        schema.migrate(path)
        self.assertEqual(schema.check(path), schema.latest_version())
        store = SQLiteStore(path, run_synchronously)
        self.addCleanup(store.close)
        token = self.successResultOf(
            store.add_api_token(BOB, "write", "cron", b"t" * 32, NOW)
        )
        self.assertEqual(self.successResultOf(store.list_api_tokens(BOB)), [token])
