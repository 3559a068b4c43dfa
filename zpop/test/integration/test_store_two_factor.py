"""The two-factor area of the Store API (ITwoFactorStore, migration 009): a
conformance suite run on MemoryStore, on SQLiteStore synchronously and on
SQLiteStore with its SQL on other threads; then SQLite's own promises: the
compare-and-set and single use between two stores on one file (two
processes), the schema's trigger, and the upgrade of a version 8 database.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from zpop.store import schema
from zpop.store.interface import IStore, ITwoFactorStore
from zpop.store.memory import MemoryStore
from zpop.store.records import (
    Account,
    AlreadyExists,
    NotFound,
    RecoveryCode,
    StoreError,
    TotpSecret,
)
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
SEALED = b"\x01" + b"s" * 48
STEP = 56_666_666


def digests(tag: str, count: int = 10) -> list[bytes]:
    """``count`` distinct 32-byte stand-ins for recovery code digests."""
    return [f"{tag}-{i}".encode().ljust(32, b".") for i in range(count)]


class TwoFactorStoreMixin(_MixinBase):
    """Tests any ITwoFactorStore must pass, through the store API alone.

    Mix into a SynchronousTestCase whose ``make_store`` returns a store
    whose Deferreds have fired by the time the call returns.
    """

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

    def fails(self, d: defer.Deferred, exc_type: type[Exception]) -> Exception:
        return self.failureResultOf(d, exc_type).value

    def get(self, address: str = BOB) -> Account:
        account: Account = self.ok(self.store.get_account(address))
        return account

    def enrol(self, address: str = BOB, tag: str = "bob") -> Account:
        account: Account = self.ok(
            self.store.enrol_two_factor(address, SEALED, STEP, digests(tag), NOW)
        )
        return account

    def accept(self, step: int, account_id: int | None = None) -> bool:
        account_id = self.bob.id if account_id is None else account_id
        accepted: bool = self.ok(self.store.accept_totp_step(account_id, step))
        return accepted

    def use(self, digest: bytes, when: float = NOW + 1) -> bool:
        used: bool = self.ok(self.store.use_recovery_code(self.bob.id, digest, when))
        return used

    # -- the tests -------------------------------------------------------------

    def test_interface(self) -> None:
        """The store provides ITwoFactorStore, as part of IStore."""
        self.assertTrue(ITwoFactorStore.providedBy(self.store))
        self.assertTrue(verifyObject(ITwoFactorStore, self.store))
        self.assertTrue(IStore.isOrExtends(ITwoFactorStore))

    def test_new_account(self) -> None:
        """A new account has no two-factor of any kind."""
        self.assertEqual(
            (
                self.bob.two_factor,
                self.bob.two_factor_required,
                self.bob.totp_enrolled,
            ),
            (False, False, False),
        )
        self.assertIsNone(self.ok(self.store.get_totp_secret(self.bob.id)))
        self.assertEqual(self.ok(self.store.list_recovery_codes(BOB)), [])

    def test_enrol(self) -> None:
        """Enrolling stores the sealed secret with its first accepted step
        and the recovery codes, turns two-factor on (not required), and
        counts as a credential change."""
        before = self.store.changes()
        account = self.enrol("Bob@Example.com")
        self.assertEqual(
            (
                account.two_factor,
                account.two_factor_required,
                account.totp_enrolled,
                account.generation,
            ),
            (True, False, True, self.bob.generation + 1),
        )
        self.assertEqual(self.get(), account)
        self.assertNotEqual(self.store.changes(), before)
        self.assertEqual(
            self.ok(self.store.get_totp_secret(self.bob.id)),
            TotpSecret(self.bob.id, SEALED, STEP, NOW),
        )
        codes = self.ok(self.store.list_recovery_codes(BOB))
        self.assertEqual(len(codes), 10)
        self.assertEqual(
            {(c.account_id, c.created, c.used) for c in codes},
            {(self.bob.id, NOW, None)},
        )
        self.assertEqual([c.id for c in codes], sorted({c.id for c in codes}))
        for code in codes:
            self.assertIsInstance(code, RecoveryCode)

    def test_listing_shows_state_not_secret(self) -> None:
        """Accounts listed carry whether they are enrolled, never the
        secret."""
        self.ok(self.store.add_account("amy@example.com", "paid", False, None, NOW))
        self.enrol()
        listed = self.ok(self.store.list_accounts())
        self.assertEqual(
            [(a.address, a.totp_enrolled) for a in listed],
            [("amy@example.com", False), (BOB, True)],
        )
        names = {f.name for f in fields(Account)}
        self.assertEqual(
            names & {"sealed", "secret", "totp_secret", "last_step"}, set()
        )

    def test_enrol_unknown(self) -> None:
        """Enrolling an unknown address fails NotFound."""
        error = self.fails(
            self.store.enrol_two_factor(
                "eve@example.com", SEALED, STEP, digests("eve"), NOW
            ),
            NotFound,
        )
        self.assertEqual(str(error), "no account eve@example.com")

    def test_enrol_twice(self) -> None:
        """A second enrolment fails AlreadyExists and changes nothing."""
        self.enrol()
        error = self.fails(
            self.store.enrol_two_factor(BOB, b"other", STEP + 5, digests("x"), NOW),
            AlreadyExists,
        )
        self.assertEqual(
            str(error),
            "bob@example.com is enrolled in two-factor authentication already",
        )
        self.assertEqual(
            self.ok(self.store.get_totp_secret(self.bob.id)).sealed, SEALED
        )
        self.assertTrue(self.use(digests("bob")[0]))
        self.assertFalse(self.use(digests("x")[0]))

    def test_enrol_duplicate_digest(self) -> None:
        """A recovery digest another account has is refused by the schema's
        UNIQUE, and nothing of the enrolment is stored."""
        self.ok(self.store.add_account("amy@example.com", "paid", False, None, NOW))
        self.enrol("amy@example.com", tag="amy")
        clash = digests("bob", 9) + [digests("amy")[0]]
        error = self.fails(
            self.store.enrol_two_factor(BOB, SEALED, STEP, clash, NOW), StoreError
        )
        self.assertEqual(
            str(error),
            f"database error in {self.store.path}: UNIQUE constraint failed:"
            " recovery_codes.digest",
        )
        self.assertEqual(self.get(), self.bob)
        self.assertIsNone(self.ok(self.store.get_totp_secret(self.bob.id)))

    def test_accept_step_compare_and_set(self) -> None:
        """A step is accepted only if later than the last one; each once."""
        self.enrol()
        self.assertEqual(
            [self.accept(s) for s in (STEP - 1, STEP, STEP + 1, STEP + 1, STEP)],
            [False, False, True, False, False],
        )
        self.assertEqual(
            self.ok(self.store.get_totp_secret(self.bob.id)).last_step, STEP + 1
        )
        self.assertTrue(self.accept(STEP + 3))
        self.assertFalse(self.accept(STEP + 2))

    def test_accept_step_not_a_credential_change(self) -> None:
        """Accepting a step changes neither the account nor the change
        counter: a sign-in is not a settings change."""
        self.enrol()
        account, before = self.get(), self.store.changes()
        self.assertTrue(self.accept(STEP + 1))
        self.assertEqual((self.get(), self.store.changes()), (account, before))

    def test_accept_step_not_enrolled(self) -> None:
        """Without an enrolment (or an account) no step is accepted."""
        self.assertFalse(self.accept(STEP))
        self.assertFalse(self.accept(STEP, account_id=9999))

    def test_recovery_code_single_use(self) -> None:
        """A recovery code is spent once, its time of use recorded; a wrong
        one, or another account's, spends nothing."""
        self.ok(self.store.add_account("amy@example.com", "paid", False, None, NOW))
        self.enrol("amy@example.com", tag="amy")
        self.enrol()
        self.assertFalse(self.use(b"w" * 32))
        self.assertFalse(self.use(digests("amy")[0]))
        self.assertTrue(self.use(digests("bob")[2], NOW + 7))
        self.assertFalse(self.use(digests("bob")[2], NOW + 8))
        codes = self.ok(self.store.list_recovery_codes(BOB))
        self.assertEqual([c.used for c in codes], [None, None, NOW + 7] + [None] * 7)
        amy = self.ok(self.store.list_recovery_codes("amy@example.com"))
        self.assertEqual({c.used for c in amy}, {None})

    def test_recovery_codes_unknown_account(self) -> None:
        """Listing or replacing codes of an unknown address fails NotFound."""
        error = self.fails(self.store.list_recovery_codes("eve@example.com"), NotFound)
        self.assertEqual(str(error), "no account eve@example.com")
        error = self.fails(
            self.store.replace_recovery_codes("eve@example.com", digests("e"), NOW),
            NotFound,
        )
        self.assertEqual(str(error), "no account eve@example.com")

    def test_replace_recovery_codes(self) -> None:
        """New codes replace every old one, used or not, with new ids."""
        self.enrol()
        self.assertTrue(self.use(digests("bob")[0]))
        old = self.ok(self.store.list_recovery_codes(BOB))
        self.assertIsNone(
            self.ok(self.store.replace_recovery_codes(BOB, digests("new"), NOW + 9))
        )
        new = self.ok(self.store.list_recovery_codes(BOB))
        self.assertEqual({(c.created, c.used) for c in new}, {(NOW + 9, None)})
        self.assertGreater(min(c.id for c in new), max(c.id for c in old))
        self.assertFalse(self.use(digests("bob")[1]))
        self.assertTrue(self.use(digests("new")[1]))
        # Its own old digests may come back: they are deleted first.
        self.ok(self.store.replace_recovery_codes(BOB, digests("new"), NOW + 10))
        self.assertEqual(len(self.ok(self.store.list_recovery_codes(BOB))), 10)

    def test_replace_not_enrolled(self) -> None:
        """Without an enrolment there are no codes to replace."""
        error = self.fails(
            self.store.replace_recovery_codes(BOB, digests("bob"), NOW), NotFound
        )
        self.assertEqual(
            str(error), "bob@example.com is not enrolled in two-factor authentication"
        )

    def test_reset(self) -> None:
        """Reset deletes secret and codes, turns two-factor off and required
        no more, counts as a credential change; enrolling works again."""
        self.ok(self.store.set_two_factor(BOB, True))
        enrolled = self.enrol()
        before = self.store.changes()
        account = self.ok(self.store.reset_two_factor("BOB@example.com"))
        self.assertEqual(
            (
                account.two_factor,
                account.two_factor_required,
                account.totp_enrolled,
                account.generation,
            ),
            (False, False, False, enrolled.generation + 1),
        )
        self.assertEqual(self.get(), account)
        self.assertNotEqual(self.store.changes(), before)
        self.assertIsNone(self.ok(self.store.get_totp_secret(self.bob.id)))
        self.assertEqual(self.ok(self.store.list_recovery_codes(BOB)), [])
        self.assertFalse(self.use(digests("bob")[0]))
        self.assertFalse(self.accept(STEP + 1))
        self.assertTrue(self.enrol().totp_enrolled)
        error = self.fails(self.store.reset_two_factor("eve@example.com"), NotFound)
        self.assertEqual(str(error), "no account eve@example.com")

    def test_operator_switch(self) -> None:
        """set_two_factor on requires two-factor and keeps an enrolment;
        off is a reset."""
        required = self.ok(self.store.set_two_factor(BOB, True))
        self.assertEqual(
            (
                required.two_factor,
                required.two_factor_required,
                required.totp_enrolled,
            ),
            (True, True, False),
        )
        enrolled = self.enrol()
        self.assertEqual(
            (enrolled.two_factor_required, enrolled.totp_enrolled), (True, True)
        )
        self.assertTrue(self.ok(self.store.set_two_factor(BOB, True)).totp_enrolled)
        off = self.ok(self.store.set_two_factor(BOB, False))
        self.assertEqual(
            (off.two_factor, off.two_factor_required, off.totp_enrolled),
            (False, False, False),
        )
        self.assertIsNone(self.ok(self.store.get_totp_secret(self.bob.id)))
        self.assertEqual(self.ok(self.store.list_recovery_codes(BOB)), [])

    def test_gone_with_the_account(self) -> None:
        """Deleting the account deletes its enrolment; its digests are free
        again, and a new account at the address starts without one."""
        self.enrol()
        self.ok(self.store.delete_account(BOB))
        self.assertIsNone(self.ok(self.store.get_totp_secret(self.bob.id)))
        self.assertFalse(self.use(digests("bob")[0]))
        again = self.ok(self.store.add_account(BOB, "paid", False, None, NOW))
        self.assertFalse(again.totp_enrolled)
        self.assertIsNone(self.ok(self.store.get_totp_secret(again.id)))
        self.assertEqual(self.ok(self.store.list_recovery_codes(BOB)), [])
        self.ok(self.store.add_account("amy@example.com", "paid", False, None, NOW))
        self.assertTrue(self.enrol("amy@example.com", tag="bob").totp_enrolled)


class MemoryTwoFactorTests(TwoFactorStoreMixin, SynchronousTestCase):
    """The two-factor conformance suite on MemoryStore."""

    def make_store(self) -> MemoryStore:
        return memory_store(self)


class ThreadedSQLiteTwoFactorTests(TwoFactorStoreMixin, SynchronousTestCase):
    """The two-factor conformance suite on SQLiteStore, every call on
    another of three threads, each with its own connection."""

    def make_store(self) -> SQLiteStore:
        return threaded_sqlite_store(self)


class SQLiteTwoFactorTests(TwoFactorStoreMixin, SynchronousTestCase):
    """The two-factor conformance suite on SQLiteStore, called on this
    thread, and what only a shared file shows."""

    def make_store(self) -> SQLiteStore:
        return sqlite_store(self)

    def other(self) -> SQLiteStore:
        """A second store on the same file: another process's view."""
        other = SQLiteStore(self.store.path, run_synchronously)
        self.addCleanup(other.close)
        return other

    def race(self, calls: list[Any]) -> list[Any]:
        """Run the calls at once, one thread each (each store opens its own
        connection on its thread), released together by a barrier."""
        barrier = threading.Barrier(len(calls))

        def run(call: Any) -> Any:
            barrier.wait(10)
            return self.successResultOf(call())

        with ThreadPoolExecutor(len(calls)) as pool:
            return list(pool.map(run, calls))

    def test_compare_and_set_between_stores(self) -> None:
        """Two stores on one file accepting the same step: one wins, step
        after step, also when both try at the same moment."""
        self.enrol()
        other = self.other()
        self.assertEqual(
            [
                self.ok(self.store.accept_totp_step(self.bob.id, STEP + 1)),
                self.ok(other.accept_totp_step(self.bob.id, STEP + 1)),
            ],
            [True, False],
        )
        for step in range(STEP + 2, STEP + 22):
            won = self.race(
                [
                    lambda s=store, t=step: s.accept_totp_step(self.bob.id, t)
                    for store in (self.store, other, self.store, other)
                ]
            )
            self.assertEqual(sorted(won), [False, False, False, True], step)
        self.assertEqual(
            self.ok(other.get_totp_secret(self.bob.id)).last_step, STEP + 21
        )

    def test_recovery_code_between_stores(self) -> None:
        """One recovery code presented through two stores at once is spent
        by exactly one of them."""
        self.enrol()
        other = self.other()
        for digest in digests("bob"):
            won = self.race(
                [
                    lambda s=store, d=digest: s.use_recovery_code(self.bob.id, d, NOW)
                    for store in (self.store, other, self.store, other)
                ]
            )
            self.assertEqual(sorted(won), [False, False, False, True])
        used = self.ok(other.list_recovery_codes(BOB))
        self.assertEqual({c.used for c in used}, {NOW})

    def test_enrolment_between_stores(self) -> None:
        """Two stores enrolling one account: the second fails AlreadyExists
        and the first enrolment stands."""
        other = self.other()
        self.enrol()
        self.fails(
            other.enrol_two_factor(BOB, b"late", STEP, digests("late"), NOW),
            AlreadyExists,
        )
        self.assertEqual(self.ok(other.get_totp_secret(self.bob.id)).sealed, SEALED)

    def test_trigger_keeps_off_without_secret(self) -> None:
        """Whatever turns two_factor off in the database (here raw SQL)
        deletes the secret and recovery codes: off never hides an old
        enrolment that switching on again would revive."""
        self.enrol()
        conn = sqlite3.connect(self.store.path)
        self.addCleanup(conn.close)
        with conn:
            conn.execute(
                "UPDATE accounts SET two_factor = 0 WHERE id = ?", (self.bob.id,)
            )
        self.assertEqual(
            [
                conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("totp_secrets", "recovery_codes")
            ],
            [0, 0],
        )
        self.assertFalse(self.get().totp_enrolled)


class Migration009Tests(SynchronousTestCase):
    """Migration 009 on a database made by the previous zpop (version 8)."""

    def test_version_8_upgrades(self) -> None:
        """A version 8 database keeps its accounts and app passwords; an
        account the operator had switched two-factor on for is now
        "required (not enrolled)", the others off; and enrolment works."""
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "zpop.sqlite")
        self.assertEqual(schema.migrate(path, to_version=8), 8)
        conn = sqlite3.connect(path)
        with conn:
            conn.execute(
                "INSERT INTO domains (name, organization, created)"
                " VALUES ('example.com', 0, 0)"
            )
            for address, on in (("amy@example.com", 0), (BOB, 1)):
                conn.execute(
                    "INSERT INTO accounts (address, domain_id, plan, created,"
                    " two_factor, uid_validity) VALUES (?, 1, 'paid', 0, ?, 1)",
                    (address, on),
                )
            conn.execute(
                "INSERT INTO app_passwords (account_id, label, digest, created)"
                " VALUES (2, 'phone', ?, 5.0)",
                (b"d" * 32,),
            )
        conn.close()
        upgraded = schema.upgrade(path)
        self.assertEqual(
            (upgraded.before, upgraded.after), (8, schema.latest_version())
        )
        self.assertIsNotNone(upgraded.backup)
        store = SQLiteStore(path, run_synchronously)
        self.addCleanup(store.close)
        amy = self.successResultOf(store.get_account("amy@example.com"))
        bob = self.successResultOf(store.get_account(BOB))
        self.assertEqual(
            [
                (a.two_factor, a.two_factor_required, a.totp_enrolled)
                for a in (amy, bob)
            ],
            [(False, False, False), (True, True, False)],
        )
        self.assertEqual(
            [p.label for p in self.successResultOf(store.list_app_passwords(BOB))],
            ["phone"],
        )
        enrolled = self.successResultOf(
            store.enrol_two_factor(BOB, SEALED, STEP, digests("bob"), NOW)
        )
        self.assertEqual(
            (enrolled.two_factor_required, enrolled.totp_enrolled), (True, True)
        )
        self.assertEqual(schema.check(path), schema.latest_version())
