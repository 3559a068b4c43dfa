"""The sign-in activity area of the Store API (ILoginEventStore, migrations
013 and 014): a conformance suite run on MemoryStore, on SQLiteStore
synchronously and on SQLiteStore with its SQL on other threads; then the
upgrades of version 12 and 13 databases."""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from zpop.store import schema
from zpop.store.interface import ILoginEventStore, IStore
from zpop.store.memory import MemoryStore
from zpop.store.records import LOGIN_EVENTS_KEPT, AppPassword, LoginEvent, StoreError
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


def event(n: int, address: str = BOB, **changes: Any) -> LoginEvent:
    fields: dict[str, Any] = {
        "address": address,
        "at": NOW + n,
        "protocol": "pop3",
        "client": f"192.0.2.{n % 250}",
        "credential": "primary",
        "result": "succeeded",
        "reason": "-",
    }
    fields.update(changes)
    return LoginEvent(**fields)


class LoginEventStoreMixin(_MixinBase):
    """Tests any ILoginEventStore must pass, through the store API alone.

    Mix into a SynchronousTestCase whose ``make_store`` returns a store
    whose Deferreds have fired by the time the call returns.
    """

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

    def listed(self, address: str = BOB, limit: int = 100) -> list[LoginEvent]:
        found: list[LoginEvent] = self.ok(self.store.list_login_events(address, limit))
        return found

    def test_interface(self) -> None:
        """The store provides ILoginEventStore, as part of IStore."""
        self.assertTrue(ILoginEventStore.providedBy(self.store))
        self.assertTrue(verifyObject(ILoginEventStore, self.store))
        self.assertTrue(IStore.isOrExtends(ILoginEventStore))

    def test_empty(self) -> None:
        """A new account has no events; an unknown address neither."""
        self.assertEqual(self.listed(), [])
        self.assertEqual(self.listed("nobody@example.com"), [])

    def test_round_trip_newest_first(self) -> None:
        """Every field comes back, newest first, per account; the address
        matches whatever its case."""
        events = [
            event(1, credential="app password Thunderbird", protocol="smtp"),
            event(2, result="failed", credential="-", reason="bad credentials"),
            event(3, CAROL, protocol="web"),
            event(
                4,
                "Bob@Example.com",
                result="refused",
                reason="POP access is disabled",
                client="2001:db8::1",
            ),
        ]
        self.assertIsNone(self.ok(self.store.record_login_events(events)))
        self.assertEqual(
            self.listed(),
            [
                event(
                    4,
                    result="refused",
                    reason="POP access is disabled",
                    client="2001:db8::1",
                ),
                events[1],
                events[0],
            ],
        )
        self.assertEqual(self.listed("CAROL@example.com"), [events[2]])

    def test_limit(self) -> None:
        """``limit`` gives that many of the newest."""
        self.ok(self.store.record_login_events([event(n) for n in range(5)]))
        self.assertEqual(self.listed(limit=2), [event(4), event(3)])
        self.assertEqual(self.listed(limit=0), [])

    def test_same_time_in_order_recorded(self) -> None:
        """Events of one second are listed newest recorded first."""
        first = event(1, client="192.0.2.10")
        second = event(1, client="192.0.2.20")
        self.ok(self.store.record_login_events([first]))
        self.ok(self.store.record_login_events([second]))
        self.assertEqual(self.listed(), [second, first])

    def test_keeps_last_100(self) -> None:
        """Only the newest LOGIN_EVENTS_KEPT per account are kept, across
        batches and within one; other accounts keep theirs."""
        self.assertEqual(LOGIN_EVENTS_KEPT, 100)
        self.ok(self.store.record_login_events([event(0, CAROL)]))
        self.ok(self.store.record_login_events([event(n) for n in range(60)]))
        self.ok(self.store.record_login_events([event(n) for n in range(60, 130)]))
        kept = self.listed(limit=1000)
        self.assertEqual(kept, [event(n) for n in reversed(range(30, 130))])
        self.ok(self.store.record_login_events([event(n) for n in range(200, 450)]))
        self.assertEqual(
            self.listed(limit=1000), [event(n) for n in reversed(range(350, 450))]
        )
        self.assertEqual(self.listed(CAROL), [event(0, CAROL)])

    def test_unknown_accounts_dropped(self) -> None:
        """Events of addresses with no account are dropped, the rest kept."""
        self.ok(
            self.store.record_login_events([event(1, "nobody@example.com"), event(2)])
        )
        self.assertEqual(self.listed(), [event(2)])
        self.assertEqual(self.listed("nobody@example.com"), [])

    def test_empty_batch(self) -> None:
        """An empty batch is fine and changes nothing."""
        self.assertIsNone(self.ok(self.store.record_login_events([])))

    def test_one_transaction(self) -> None:
        """A batch the schema refuses (a result outside LOGIN_RESULTS)
        leaves nothing of it behind."""
        d = self.store.record_login_events([event(1), event(2, result="maybe")])
        self.failureResultOf(d, StoreError)
        self.assertEqual(self.listed(), [])

    def test_gone_with_account(self) -> None:
        """Deleting the account deletes its events; a new account of that
        address starts empty."""
        self.ok(self.store.record_login_events([event(1)]))
        self.ok(self.store.delete_account(BOB))
        self.assertEqual(self.listed(), [])
        self.ok(self.store.add_account(BOB, "paid", False, None, NOW))
        self.ok(self.store.record_login_events([event(2, CAROL)]))
        self.assertEqual(self.listed(), [])

    def app_password(self, address: str = BOB, label: str = "phone") -> AppPassword:
        digest = label.encode().ljust(32, b"-") + address.encode()
        added: AppPassword = self.ok(
            self.store.add_app_password(address, label, digest, NOW)
        )
        return added

    def test_app_password_use(self) -> None:
        """An event naming an app password records its last use, time and
        client, and lists with the password's id."""
        phone = self.app_password()
        used = event(5, app_password_id=phone.id, client="198.51.100.7")
        self.ok(self.store.record_login_events([used]))
        self.assertEqual(self.listed(), [used])
        self.assertEqual(
            self.ok(self.store.list_app_passwords(BOB)),
            [
                AppPassword(
                    phone.id, phone.account_id, "phone", NOW, NOW + 5, "198.51.100.7"
                )
            ],
        )

    def test_app_password_latest_use_wins(self) -> None:
        """The newest use is kept, whatever the order events arrive in,
        within one batch or across batches."""
        phone = self.app_password()
        self.ok(
            self.store.record_login_events(
                [
                    event(9, app_password_id=phone.id, client="192.0.2.9"),
                    event(3, app_password_id=phone.id, client="192.0.2.3"),
                ]
            )
        )
        self.ok(
            self.store.record_login_events(
                [event(4, app_password_id=phone.id, client="192.0.2.4")]
            )
        )
        [listed] = self.ok(self.store.list_app_passwords(BOB))
        self.assertEqual(
            (listed.last_used, listed.last_used_from), (NOW + 9, "192.0.2.9")
        )
        self.assertEqual(len(self.listed()), 3)

    def test_revoked_app_password(self) -> None:
        """An event naming a password revoked since is still kept, without
        the id; a revoke after the event clears the event's id too."""
        gone = self.app_password(label="gone")
        kept = self.app_password(label="kept")
        self.ok(self.store.revoke_app_password(BOB, gone.id))
        self.ok(
            self.store.record_login_events(
                [event(1, app_password_id=gone.id), event(2, app_password_id=kept.id)]
            )
        )
        self.assertEqual(self.listed(), [event(2, app_password_id=kept.id), event(1)])
        self.ok(self.store.revoke_app_password(BOB, kept.id))
        self.assertEqual(self.listed(), [event(2), event(1)])

    def test_other_accounts_app_password(self) -> None:
        """An event cannot mark another account's app password as used."""
        carols = self.app_password(CAROL, "pad")
        self.ok(self.store.record_login_events([event(1, app_password_id=carols.id)]))
        self.assertEqual(self.listed(), [event(1)])
        [listed] = self.ok(self.store.list_app_passwords(CAROL))
        self.assertEqual((listed.last_used, listed.last_used_from), (None, None))


class MemoryLoginEventTests(LoginEventStoreMixin, SynchronousTestCase):
    """The sign-in activity conformance suite on MemoryStore."""

    def make_store(self) -> MemoryStore:
        return memory_store(self)


class ThreadedSQLiteLoginEventTests(LoginEventStoreMixin, SynchronousTestCase):
    """The sign-in activity conformance suite on SQLiteStore, every call on
    another of three threads, each with its own connection."""

    def make_store(self) -> SQLiteStore:
        return threaded_sqlite_store(self)


class SQLiteLoginEventTests(LoginEventStoreMixin, SynchronousTestCase):
    """The sign-in activity conformance suite on SQLiteStore, on this thread."""

    def make_store(self) -> SQLiteStore:
        return sqlite_store(self)


class Migration013Tests(SynchronousTestCase):
    """Migration 013 on a database made by the previous zpop (version 12)."""

    def test_version_12_upgrades(self) -> None:
        """A version 12 database upgrades, keeps its accounts, and records
        their events."""
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "zpop.sqlite")
        schema.migrate(path, to_version=12)
        seed_old_database(path, BOB, now=NOW)
        schema.migrate(path)
        self.assertEqual(schema.check(path), schema.latest_version())
        store = SQLiteStore(path, run_synchronously)
        self.addCleanup(store.close)
        self.successResultOf(store.record_login_events([event(1)]))
        self.assertEqual(self.successResultOf(store.list_login_events(BOB)), [event(1)])


class Migration014Tests(SynchronousTestCase):
    """Migration 014 on a database made by the previous zpop (version 13)."""

    def test_version_13_upgrades(self) -> None:
        """App passwords and login events of a version 13 database survive,
        with no recorded client; the next use records one."""
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "zpop.sqlite")
        schema.migrate(path, to_version=13)
        account_id, phone_id = seed_old_database(path, BOB, "phone", NOW)
        schema.migrate(path)
        self.assertEqual(schema.check(path), schema.latest_version())
        store = SQLiteStore(path, run_synchronously)
        self.addCleanup(store.close)
        self.assertEqual(
            self.successResultOf(store.list_app_passwords(BOB)),
            [AppPassword(phone_id, account_id, "phone", NOW, None, None)],
        )
        self.successResultOf(
            store.record_login_events([event(1, app_password_id=phone_id)])
        )
        [used] = self.successResultOf(store.list_app_passwords(BOB))
        self.assertEqual(used.last_used_from, "192.0.2.1")
