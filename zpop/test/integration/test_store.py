"""The Store API: a conformance suite for every IStore, run on MemoryStore,
on SQLiteStore synchronously and on SQLiteStore with its SQL on other
threads, plus SQLite's own promises (migrations, pragmas, sharing one file
between processes, a real thread pool)."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from typing import TYPE_CHECKING, Any, cast

from twisted.internet import defer
from twisted.internet import reactor as _global_reactor
from twisted.internet.interfaces import IReactorFromThreads
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from zpop.store import records, schema
from zpop.store.interface import IStore
from zpop.store.memory import MemoryStore
from zpop.store.records import (
    SPAM_POLICIES,
    Account,
    AlreadyExists,
    AppPassword,
    Domain,
    Message,
    NewMessage,
    NotFound,
    PopEntry,
    PopSettings,
    QueuedMessage,
    SchemaError,
    StoreError,
)
from zpop.store.sqlite import SQLiteStore, latest_version, migrate, migrations
from zpop.test.stores import refuse_message_updates
from zpop.threads import ThreadPoolService, run_synchronously

NOW = 1_700_000_000.0

#: open_pop_session's folders per spam policy (zpop.accounts.maildrop.SPAM_FOLDERS).
FOLDERS = {
    "exclude": ("Inbox",),
    "include": ("Inbox", "Spam"),
    "only": ("Spam",),
}

#: The real reactor, for the tests that run real threads.
REACTOR = cast(IReactorFromThreads, _global_reactor)


def _new(
    folder: str = "Inbox", body: bytes = b"Subject: hi\r\n\r\nhello\r\n", **kw: Any
) -> NewMessage:
    return NewMessage(
        folder=folder,
        body=body,
        subject=kw.get("subject", "hi"),
        received=kw.get("received", NOW),
        seen=kw.get("seen", False),
    )


if TYPE_CHECKING:
    _MixinBase = SynchronousTestCase
else:
    _MixinBase = object


def _seed_account(conn: sqlite3.Connection) -> None:
    """example.com and a@example.com (id 1), straight into an old schema."""
    conn.execute(
        "INSERT INTO domains (name, organization, created) VALUES ('example.com', 0, 0)"
    )
    conn.execute(
        "INSERT INTO accounts (address, domain_id, plan, created,"
        " uid_validity) VALUES ('a@example.com', 1, 'paid', 0, 1)"
    )


def seed_old_database(
    path: str, address: str, app_password: str | None = None, now: float = 0.0
) -> tuple[int, int | None]:
    """A domain and an account (and an app password labelled
    ``app_password``) written with SQL into a database migrated to an older
    version, whose columns today's store would not find; their ids."""
    domain = address.partition("@")[2]
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "INSERT INTO domains (name, organization, created) VALUES (?, 0, ?)",
            (domain, now),
        )
        account = conn.execute(
            "INSERT INTO accounts (address, domain_id, plan, created, uid_validity)"
            " VALUES (?, last_insert_rowid(), 'paid', ?, 1)",
            (address, now),
        ).lastrowid
        password = None
        if app_password is not None:
            password = conn.execute(
                "INSERT INTO app_passwords (account_id, label, digest, created)"
                " VALUES (?, ?, ?, ?)",
                (account, app_password, app_password.encode().ljust(32, b"-"), now),
            ).lastrowid
    assert account is not None
    return account, password


class StoreConformanceMixin(_MixinBase):
    """Tests any IStore must pass, using nothing but the IStore API.

    Mix into a SynchronousTestCase whose ``make_store`` returns a store whose
    Deferreds have fired by the time the call returns.
    """

    def make_store(self) -> Any:
        raise NotImplementedError("make_store")

    # -- helpers ----------------------------------------------------------

    def setUp(self) -> None:
        super().setUp()
        self.store = self.make_store()

    def ok(self, d: defer.Deferred) -> Any:
        return self.successResultOf(d)

    def fails(self, d: defer.Deferred, exc_type: type[Exception]) -> Exception:
        failure = self.failureResultOf(d, exc_type)
        return failure.value

    def account(
        self, address: str = "bob@example.com", organization: bool = False
    ) -> Account:
        domain = address.rpartition("@")[2].lower()
        if domain not in [d.name for d in self.ok(self.store.list_domains())]:
            self.ok(self.store.add_domain(domain, organization, NOW))
        return self.ok(self.store.add_account(address, "paid", False, None, NOW))

    def get(self, address: str = "bob@example.com") -> Account:
        account = self.ok(self.store.get_account(address))
        self.assertIsNotNone(account)
        return account

    def lock(self, account: Account, owner: str, store: Any = None) -> bool:
        """Open a POP session on the account (POP enabled) as ``owner``;
        whether it got the maildrop lock."""
        store = self.store if store is None else store
        opened = self.ok(store.open_pop_session(account.address, owner, FOLDERS))
        return bool(opened.locked)

    def offered(
        self, account: Account, folders: tuple[str, ...] = ("Inbox",)
    ) -> list[int]:
        """The ids a POP session of ``account`` is offered from ``folders``
        (whatever its spam policy), its lock released again."""
        session = self.ok(
            self.store.open_pop_session(
                account.address, "probe", {p: folders for p in SPAM_POLICIES}
            )
        )
        self.assertTrue(session.locked)
        self.ok(self.store.release_pop_lock(session.account.id, "probe"))
        return list(session.messages.ids)

    def pop_account(self, address: str = "bob@example.com") -> Account:
        """A new account with POP enabled (mode all)."""
        self.account(address)
        return self.ok(self.store.enable_pop(address, "all", NOW))

    # -- the interface ----------------------------------------------------

    def test_provides_istore(self) -> None:
        """The store provides every IStore method and attribute."""
        self.assertTrue(verifyObject(IStore, self.store))

    # -- domains ----------------------------------------------------------

    def test_add_domain(self) -> None:
        """add_domain fires with the new Domain, its name lower-cased."""
        domain = self.ok(self.store.add_domain("Example.COM", True, NOW))
        self.assertEqual(
            (domain.name, domain.organization, domain.created),
            ("example.com", True, NOW),
        )
        self.assertIsInstance(domain, Domain)

    def test_add_domain_duplicate(self) -> None:
        """A domain that exists in any case fails AlreadyExists."""
        self.ok(self.store.add_domain("example.com", False, NOW))
        error = self.fails(
            self.store.add_domain("EXAMPLE.com", True, NOW), AlreadyExists
        )
        self.assertEqual(str(error), "domain example.com exists already")
        self.assertEqual(len(self.ok(self.store.list_domains())), 1)

    def test_get_domain_any_case(self) -> None:
        """get_domain finds a domain by any case of its name."""
        added = self.ok(self.store.add_domain("example.com", False, NOW))
        self.assertEqual(self.ok(self.store.get_domain("ExAmPlE.CoM")), added)

    def test_get_domain_unknown(self) -> None:
        """get_domain of a domain that is not hosted fails NotFound."""
        error = self.fails(self.store.get_domain("Nowhere.example"), NotFound)
        self.assertEqual(str(error), "no hosted domain nowhere.example")

    def test_list_domains_by_name(self) -> None:
        """list_domains lists every domain sorted by name, not by creation."""
        for name in ("zeta.example", "alpha.example", "mid.example"):
            self.ok(self.store.add_domain(name, name == "mid.example", NOW))
        domains = self.ok(self.store.list_domains())
        self.assertEqual(
            [(d.name, d.organization) for d in domains],
            [("alpha.example", False), ("mid.example", True), ("zeta.example", False)],
        )

    def test_list_domains_empty(self) -> None:
        """A new store hosts no domain."""
        self.assertEqual(self.ok(self.store.list_domains()), [])

    # -- accounts ---------------------------------------------------------

    def test_add_account(self) -> None:
        """add_account fires with the whole new Account, POP off by default."""
        self.ok(self.store.add_domain("corp.example", True, NOW))
        account = self.ok(
            self.store.add_account("Ann@Corp.Example", "free", True, b"$2b$hash", NOW)
        )
        self.assertIsInstance(account, Account)
        self.assertEqual(
            (
                account.address,
                account.domain,
                account.organization,
                account.plan,
                account.created,
                account.password_hash,
                account.federated,
                account.two_factor,
                account.pop,
            ),
            (
                "ann@corp.example",
                "corp.example",
                True,
                "free",
                NOW,
                b"$2b$hash",
                True,
                False,
                PopSettings(
                    enabled=False,
                    mode=None,
                    enabled_at=None,
                    start_uid=0,
                    spam="exclude",
                    deletion="keep",
                ),
            ),
        )
        self.assertIsInstance(account.uid_validity, int)
        self.assertEqual(self.get("ann@corp.example"), account)

    def test_add_account_unknown_domain(self) -> None:
        """An account in a domain that is not hosted fails NotFound."""
        error = self.fails(
            self.store.add_account("bob@Nowhere.example", "free", False, None, NOW),
            NotFound,
        )
        self.assertEqual(str(error), "no hosted domain nowhere.example")
        self.assertEqual(self.ok(self.store.list_accounts()), [])

    def test_add_account_duplicate(self) -> None:
        """An address taken by an account (in any case) fails AlreadyExists."""
        self.account("bob@example.com")
        error = self.fails(
            self.store.add_account("BOB@example.com", "free", False, None, NOW),
            AlreadyExists,
        )
        self.assertEqual(str(error), "address bob@example.com is taken already")

    def test_add_account_taken_by_alias(self) -> None:
        """An address that is another account's alias fails AlreadyExists."""
        self.account("bob@example.com")
        self.ok(self.store.add_alias("bob@example.com", "sales@example.com"))
        error = self.fails(
            self.store.add_account("Sales@example.com", "free", False, None, NOW),
            AlreadyExists,
        )
        self.assertEqual(str(error), "address sales@example.com is taken already")

    def test_get_account_any_case(self) -> None:
        """get_account finds an account by any case of its address."""
        account = self.account("Bob@Example.com")
        self.assertEqual(account.address, "bob@example.com")
        self.assertEqual(self.get("BOB@EXAMPLE.COM"), account)

    def test_get_account_unknown(self) -> None:
        """get_account of an unknown address fires with None, not an error."""
        self.account("bob@example.com")
        self.assertIsNone(self.ok(self.store.get_account("eve@example.com")))

    def test_get_account_for_recipient(self) -> None:
        """A recipient resolves to the account by its address or an alias."""
        bob = self.account("bob@example.com")
        self.account("ann@example.com")
        self.ok(self.store.add_alias("bob@example.com", "Sales@Example.com"))
        for recipient in ("bob@example.com", "BOB@example.com", "sales@EXAMPLE.com"):
            self.assertEqual(
                self.ok(self.store.get_account_for_recipient(recipient)), bob
            )
        self.assertIsNone(
            self.ok(self.store.get_account_for_recipient("eve@example.com"))
        )

    def test_list_accounts_by_address(self) -> None:
        """list_accounts lists every account sorted by address."""
        for address in ("zed@b.example", "amy@b.example", "bob@a.example"):
            self.account(address)
        self.assertEqual(
            [a.address for a in self.ok(self.store.list_accounts())],
            ["amy@b.example", "bob@a.example", "zed@b.example"],
        )

    def test_delete_account(self) -> None:
        """delete_account removes the account; other accounts stay."""
        self.account("bob@example.com")
        ann = self.account("ann@example.com")
        self.assertIsNone(self.ok(self.store.delete_account("Bob@example.com")))
        self.assertIsNone(self.ok(self.store.get_account("bob@example.com")))
        self.assertEqual(self.ok(self.store.list_accounts()), [ann])

    def test_delete_account_unknown(self) -> None:
        """Deleting an unknown account fails NotFound."""
        error = self.fails(self.store.delete_account("eve@example.com"), NotFound)
        self.assertEqual(str(error), "no account eve@example.com")

    def test_delete_account_cascades(self) -> None:
        """Deleting an account removes its messages, app passwords and aliases."""
        bob = self.account("bob@example.com")
        stored = self.ok(self.store.store_messages(bob.id, [_new(), _new("Spam")]))
        self.ok(self.store.add_app_password("bob@example.com", "phone", b"d" * 32, NOW))
        self.ok(self.store.add_alias("bob@example.com", "sales@example.com"))
        self.ok(self.store.delete_account("bob@example.com"))
        self.assertEqual(self.ok(self.store.list_messages(bob.id)), [])
        for message in stored:
            self.fails(self.store.read_body(message.id, 0, 10), NotFound)
        self.assertIsNone(self.ok(self.store.find_app_password(bob.id, b"d" * 32)))
        self.assertIsNone(
            self.ok(self.store.get_account_for_recipient("sales@example.com"))
        )
        # The alias and the address are free again.
        again = self.ok(
            self.store.add_account("bob@example.com", "free", False, None, NOW)
        )
        self.assertEqual(self.ok(self.store.list_aliases(again.address)), [])
        self.assertEqual(self.ok(self.store.list_app_passwords(again.address)), [])
        self.assertEqual(self.ok(self.store.list_messages(again.id)), [])
        self.ok(self.store.add_alias("bob@example.com", "sales@example.com"))

    def test_set_password(self) -> None:
        """set_password sets and clears the primary password hash."""
        self.account("bob@example.com")
        account = self.ok(self.store.set_password("Bob@example.com", b"$2b$new"))
        self.assertEqual(account.password_hash, b"$2b$new")
        self.assertEqual(self.get().password_hash, b"$2b$new")
        account = self.ok(self.store.set_password("bob@example.com", None))
        self.assertIsNone(account.password_hash)
        self.assertIsNone(self.get().password_hash)

    def test_set_two_factor(self) -> None:
        """set_two_factor turns two-factor authentication on and off."""
        self.account("bob@example.com")
        self.assertTrue(
            self.ok(self.store.set_two_factor("bob@example.com", True)).two_factor
        )
        self.assertTrue(self.get().two_factor)
        self.assertFalse(
            self.ok(self.store.set_two_factor("bob@example.com", False)).two_factor
        )
        self.assertFalse(self.get().two_factor)

    def test_changes_to_unknown_account(self) -> None:
        """Every per-address change to an unknown account fails NotFound."""
        self.account("bob@example.com")
        calls = [
            self.store.set_password("eve@example.com", b"x"),
            self.store.set_two_factor("eve@example.com", True),
            self.store.enable_pop("eve@example.com", "all", NOW),
            self.store.disable_pop("eve@example.com"),
            self.store.set_pop_spam("eve@example.com", "include"),
            self.store.set_pop_deletion("eve@example.com", "delete"),
            self.store.set_plan("eve@example.com", "free"),
            self.store.add_app_password("eve@example.com", "x", b"e" * 32, NOW),
            self.store.list_app_passwords("eve@example.com"),
            self.store.revoke_app_password("eve@example.com", 1),
            self.store.add_alias("eve@example.com", "x@example.com"),
            self.store.list_aliases("eve@example.com"),
        ]
        for d in calls:
            error = self.fails(d, NotFound)
            self.assertEqual(str(error), "no account eve@example.com")

    def test_generation_bumps_on_every_change(self) -> None:
        """Every credential or settings change raises the account's generation
        and moves the store's change counter."""
        address = "bob@example.com"
        seen = [self.account(address).generation]
        self.ok(self.store.add_domain("other.example", False, NOW))

        counted = [self.store.changes()]

        def changed(result: Any) -> None:
            generation = self.get(address).generation
            if isinstance(result, Account):
                self.assertEqual(result.generation, generation)
            self.assertGreater(generation, seen[-1])
            seen.append(generation)
            # ... and moves the change counter readers trust (zpop.store.changes).
            self.assertNotEqual(self.store.changes(), counted[-1])
            counted.append(self.store.changes())

        changed(self.ok(self.store.set_password(address, b"$2b$x")))
        changed(self.ok(self.store.set_password(address, None)))
        changed(self.ok(self.store.set_two_factor(address, True)))
        changed(self.ok(self.store.set_two_factor(address, False)))
        changed(self.ok(self.store.enable_pop(address, "all", NOW)))
        changed(self.ok(self.store.enable_pop(address, "new", NOW)))
        changed(self.ok(self.store.disable_pop(address)))
        changed(self.ok(self.store.set_pop_spam(address, "include")))
        changed(self.ok(self.store.set_pop_deletion(address, "delete")))
        changed(self.ok(self.store.set_plan(address, "free")))
        app = self.ok(self.store.add_app_password(address, "phone", b"a" * 32, NOW))
        changed(app)
        changed(self.ok(self.store.revoke_app_password(address, app.id)))

    def test_changes_on_delete_and_ban_only(self) -> None:
        """Deleting an account and banning a client move the change counter;
        mail, POP sessions, app-password use and failures do not."""
        bob = self.pop_account()
        secret_digest = b"d" * 32
        self.ok(self.store.add_app_password(bob.address, "phone", secret_digest, NOW))
        before = self.store.changes()
        (message,) = self.ok(self.store.store_messages(bob.id, [_new()]))
        self.assertTrue(self.lock(bob, "a"))
        self.ok(self.store.finish_pop_session(bob.id, "a", [message.id], False))
        self.assertTrue(self.lock(bob, "b"))
        self.ok(self.store.finish_pop_session(bob.id, "b", [], False))
        self.ok(self.store.find_app_password(bob.id, secret_digest))
        self.ok(self.store.note_login_failure("192.0.2.1", bob.address, "t", NOW, 600))
        self.assertEqual(self.store.changes(), before)
        self.ok(self.store.ban_client("192.0.2.1", NOW + 900))
        banned = self.store.changes()
        self.assertNotEqual(banned, before)
        self.ok(self.store.delete_account(bob.address))
        self.assertNotEqual(self.store.changes(), banned)

    # -- login throttling -------------------------------------------------

    def test_login_failures(self) -> None:
        """Failures count per client and per account within the window; a
        repeat of one of the client's recent secrets is not counted again."""
        note = self.store.note_login_failure
        self.assertEqual(
            [
                self.ok(note("192.0.2.1", "a@example.com", "s1", NOW, 600)),
                self.ok(note("192.0.2.1", "a@example.com", "s2", NOW + 1, 600)),
                self.ok(note("192.0.2.1", "a@example.com", "s1", NOW + 2, 600)),
                self.ok(note("192.0.2.2", "a@example.com", "s1", NOW + 3, 600)),
                self.ok(note("192.0.2.1", "b@example.com", "s3", NOW + 4, 600)),
                self.ok(note("192.0.2.1", "a@example.com", "s1", NOW + 700, 600)),
            ],
            [(1, 1), (2, 2), (2, 2), (1, 3), (3, 1), (1, 1)],
        )

    # -- POP settings -----------------------------------------------------

    def test_enable_pop_all(self) -> None:
        """Enabling in all mode records mode and time and offers every message."""
        bob = self.account()
        self.ok(self.store.store_messages(bob.id, [_new(), _new()]))
        account = self.ok(self.store.enable_pop("bob@example.com", "all", NOW + 5))
        self.assertEqual(
            account.pop,
            PopSettings(
                enabled=True,
                mode="all",
                enabled_at=NOW + 5,
                start_uid=0,
                spam="exclude",
                deletion="keep",
            ),
        )
        self.assertEqual(self.get().pop, account.pop)
        self.assertEqual(len(self.offered(bob)), 2)

    def test_enable_pop_all_requeues_removed(self) -> None:
        """Enabling in all mode puts messages a client deleted back in the queue."""
        bob = self.account()
        self.ok(self.store.enable_pop("bob@example.com", "all", NOW))
        first, second = self.ok(self.store.store_messages(bob.id, [_new(), _new()]))
        self.assertTrue(self.lock(bob, "s1"))
        self.ok(self.store.finish_pop_session(bob.id, "s1", [first.id], False))
        self.assertEqual(self.offered(bob), [second.id])
        self.ok(self.store.enable_pop("bob@example.com", "all", NOW + 10))
        self.assertEqual(self.offered(bob), [first.id, second.id])
        self.assertEqual(
            [m.pop_removed for m in self.ok(self.store.list_messages(bob.id))],
            [False, False],
        )

    def test_enable_pop_new(self) -> None:
        """Enabling in new mode offers only messages stored after enabling."""
        bob = self.account()
        self.ok(self.store.store_messages(bob.id, [_new(), _new()]))
        account = self.ok(self.store.enable_pop("bob@example.com", "new", NOW))
        self.assertEqual(
            (account.pop.enabled, account.pop.mode, account.pop.enabled_at),
            (True, "new", NOW),
        )
        self.assertEqual(self.offered(bob), [])
        later = self.ok(self.store.store_messages(bob.id, [_new(), _new()]))
        self.assertEqual(self.offered(bob), [m.id for m in later])

    def test_enable_pop_new_again_moves_start(self) -> None:
        """Re-enabling in new mode moves the start to mail stored from then on."""
        bob = self.account()
        first = self.ok(self.store.enable_pop("bob@example.com", "new", NOW))
        self.ok(self.store.store_messages(bob.id, [_new()]))
        again = self.ok(self.store.enable_pop("bob@example.com", "new", NOW + 60))
        self.assertGreater(again.pop.start_uid, first.pop.start_uid)
        self.assertEqual(again.pop.enabled_at, NOW + 60)
        self.assertEqual(self.offered(bob), [])
        latest = self.ok(self.store.store_messages(bob.id, [_new()]))
        self.assertEqual(self.offered(bob), [m.id for m in latest])

    def test_enable_pop_all_after_new_offers_everything(self) -> None:
        """Switching from new to all mode offers the older mail again."""
        bob = self.account()
        old = self.ok(self.store.store_messages(bob.id, [_new()]))
        self.ok(self.store.enable_pop("bob@example.com", "new", NOW))
        new = self.ok(self.store.store_messages(bob.id, [_new()]))
        account = self.ok(self.store.enable_pop("bob@example.com", "all", NOW))
        self.assertEqual(account.pop.start_uid, 0)
        self.assertEqual(self.offered(bob), [m.id for m in old + new])

    def test_disable_pop(self) -> None:
        """disable_pop turns POP access off and leaves the policies alone."""
        self.account()
        self.ok(self.store.enable_pop("bob@example.com", "all", NOW))
        self.ok(self.store.set_pop_spam("bob@example.com", "only"))
        account = self.ok(self.store.disable_pop("bob@example.com"))
        self.assertEqual((account.pop.enabled, account.pop.spam), (False, "only"))
        self.assertEqual(self.get().pop, account.pop)

    def test_pop_policies(self) -> None:
        """Every spam and deletion policy is stored and read back."""
        self.account()
        for policy in ("include", "only", "exclude"):
            account = self.ok(self.store.set_pop_spam("bob@example.com", policy))
            self.assertEqual(account.pop.spam, policy)
            self.assertEqual(self.get().pop.spam, policy)
        for policy in ("delete", "keep"):
            account = self.ok(self.store.set_pop_deletion("bob@example.com", policy))
            self.assertEqual(account.pop.deletion, policy)
            self.assertEqual(self.get().pop.deletion, policy)

    def test_set_plan(self) -> None:
        """Each plan is stored and read back; another is refused by the
        schema and changes nothing."""
        self.account()
        for plan in ("free", "paid"):
            account = self.ok(self.store.set_plan("bob@example.com", plan))
            self.assertEqual((account.plan, self.get().plan), (plan, plan))
        self.fails(self.store.set_plan("bob@example.com", "gold"), StoreError)
        self.assertEqual(self.get().plan, "paid")

    # -- app-specific passwords -------------------------------------------

    def test_app_passwords(self) -> None:
        """App passwords are added, listed oldest first and revoked one by one."""
        bob = self.account()
        phone = self.ok(
            self.store.add_app_password("Bob@example.com", "phone", b"p" * 32, NOW)
        )
        laptop = self.ok(
            self.store.add_app_password("bob@example.com", "laptop", b"l" * 32, NOW + 1)
        )
        self.assertEqual(phone, AppPassword(phone.id, bob.id, "phone", NOW, None))
        self.assertEqual(
            self.ok(self.store.list_app_passwords("bob@example.com")), [phone, laptop]
        )
        self.assertIsNone(
            self.ok(self.store.revoke_app_password("bob@example.com", phone.id))
        )
        self.assertEqual(
            self.ok(self.store.list_app_passwords("bob@example.com")), [laptop]
        )
        self.assertIsNone(self.ok(self.store.find_app_password(bob.id, b"p" * 32)))

    def test_revoke_app_password_of_another_account(self) -> None:
        """Revoking another account's app password fails NotFound and keeps it."""
        self.account("bob@example.com")
        self.account("ann@example.com")
        anns = self.ok(
            self.store.add_app_password("ann@example.com", "phone", b"a" * 32, NOW)
        )
        error = self.fails(
            self.store.revoke_app_password("bob@example.com", anns.id), NotFound
        )
        self.assertEqual(str(error), f"no app password {anns.id} for bob@example.com")
        self.assertEqual(
            self.ok(self.store.list_app_passwords("ann@example.com")), [anns]
        )

    def test_app_password_ids_not_reused(self) -> None:
        """A revoked app password's id is never given to a new one, so a
        session that checks app_password_exists sees it revoked."""
        self.account()
        first = self.ok(
            self.store.add_app_password("bob@example.com", "old", b"o" * 32, NOW)
        )
        self.ok(self.store.revoke_app_password("bob@example.com", first.id))
        second = self.ok(
            self.store.add_app_password("bob@example.com", "new", b"n" * 32, NOW)
        )
        self.assertNotEqual(second.id, first.id)
        self.assertFalse(self.ok(self.store.app_password_exists(first.id)))

    def test_revoke_unknown_app_password(self) -> None:
        """Revoking an id that does not exist fails NotFound."""
        self.account()
        self.fails(self.store.revoke_app_password("bob@example.com", 4242), NotFound)
        self.assertEqual(self.ok(self.store.list_app_passwords("bob@example.com")), [])

    def test_find_app_password(self) -> None:
        """A matching digest fires with the record, and records nothing."""
        bob = self.account()
        added = self.ok(
            self.store.add_app_password("bob@example.com", "phone", b"p" * 32, NOW)
        )
        found = self.ok(self.store.find_app_password(bob.id, b"p" * 32))
        self.assertEqual(found, AppPassword(added.id, bob.id, "phone", NOW, None))
        self.assertEqual(
            self.ok(self.store.list_app_passwords("bob@example.com")), [found]
        )

    def test_find_app_password_wrong(self) -> None:
        """A wrong digest, or another account's, fires None."""
        bob = self.account("bob@example.com")
        self.account("ann@example.com")
        added = self.ok(
            self.store.add_app_password("bob@example.com", "phone", b"p" * 32, NOW)
        )
        self.ok(self.store.add_app_password("ann@example.com", "pad", b"a" * 32, NOW))
        self.assertIsNone(self.ok(self.store.find_app_password(bob.id, b"x" * 32)))
        self.assertIsNone(self.ok(self.store.find_app_password(bob.id, b"a" * 32)))
        self.assertEqual(
            self.ok(self.store.list_app_passwords("bob@example.com")), [added]
        )

    # -- aliases ------------------------------------------------------------

    def test_aliases(self) -> None:
        """Aliases are stored lower-case and listed sorted."""
        self.account()
        self.ok(self.store.add_domain("other.example", False, NOW))
        for alias in ("Zed@example.com", "info@Other.example", "abc@example.com"):
            self.ok(self.store.add_alias("bob@example.com", alias))
        self.assertEqual(
            self.ok(self.store.list_aliases("BOB@example.com")),
            ["abc@example.com", "info@other.example", "zed@example.com"],
        )

    def test_alias_taken(self) -> None:
        """An alias taken by an account or another alias fails AlreadyExists."""
        self.account("bob@example.com")
        self.account("ann@example.com")
        self.ok(self.store.add_alias("bob@example.com", "sales@example.com"))
        for taken in ("Ann@example.com", "SALES@example.com"):
            error = self.fails(
                self.store.add_alias("ann@example.com", taken), AlreadyExists
            )
            self.assertEqual(str(error), f"address {taken.lower()} is taken already")
        self.assertEqual(self.ok(self.store.list_aliases("ann@example.com")), [])

    def test_alias_unknown_domain(self) -> None:
        """An alias in a domain that is not hosted fails NotFound."""
        self.account()
        error = self.fails(
            self.store.add_alias("bob@example.com", "bob@elsewhere.example"), NotFound
        )
        self.assertEqual(str(error), "no hosted domain elsewhere.example")

    # -- messages -----------------------------------------------------------

    def test_store_messages(self) -> None:
        """store_messages keeps order, sizes are len(body), uids increase."""
        bob = self.account()
        news = [
            _new("Inbox", b"one\r\n", subject="1", received=NOW + 3),
            _new("Spam", b"", subject="2", received=NOW + 1, seen=True),
            _new("Sent", b"three three\r\n", subject="3", received=NOW + 2),
        ]
        stored = self.ok(self.store.store_messages(bob.id, news))
        self.assertEqual(
            [
                (m.account_id, m.folder, m.size, m.subject, m.received, m.seen)
                for m in stored
            ],
            [
                (bob.id, "Inbox", 5, "1", NOW + 3, False),
                (bob.id, "Spam", 0, "2", NOW + 1, True),
                (bob.id, "Sent", 13, "3", NOW + 2, False),
            ],
        )
        self.assertEqual([m.pop_removed for m in stored], [False] * 3)
        uids = [m.uid for m in stored]
        self.assertEqual(uids, sorted(set(uids)))
        self.assertTrue(all(isinstance(m, Message) for m in stored))
        self.assertEqual(self.ok(self.store.list_messages(bob.id)), stored)

    def test_store_no_messages(self) -> None:
        """Storing an empty batch stores nothing."""
        bob = self.account()
        self.assertEqual(self.ok(self.store.store_messages(bob.id, [])), [])
        self.assertEqual(self.ok(self.store.list_messages(bob.id)), [])

    def test_uids_increase_across_batches(self) -> None:
        """Uids keep increasing from batch to batch."""
        bob = self.account()
        uids: list[int] = []
        for _ in range(3):
            stored = self.ok(self.store.store_messages(bob.id, [_new(), _new()]))
            uids.extend(m.uid for m in stored)
        self.assertEqual(uids, sorted(set(uids)))
        self.assertEqual(len(uids), 6)

    def test_uids_per_account(self) -> None:
        """One account's mail does not touch another's messages."""
        bob = self.account("bob@example.com")
        ann = self.account("ann@example.com")
        bobs = self.ok(self.store.store_messages(bob.id, [_new()]))
        anns = self.ok(self.store.store_messages(ann.id, [_new(), _new()]))
        self.assertEqual(self.ok(self.store.list_messages(bob.id)), bobs)
        self.assertEqual(self.ok(self.store.list_messages(ann.id)), anns)

    def test_uids_not_reused_after_pop_removal(self) -> None:
        """After a POP session removed every message, new mail gets higher uids."""
        bob = self.pop_account()
        stored = self.ok(self.store.store_messages(bob.id, [_new(), _new()]))
        self.assertTrue(self.lock(bob, "s1"))
        self.ok(
            self.store.finish_pop_session(bob.id, "s1", [m.id for m in stored], True)
        )
        later = self.ok(self.store.store_messages(bob.id, [_new()]))
        self.assertGreater(later[0].uid, max(m.uid for m in stored))

    def test_list_messages_by_folder(self) -> None:
        """list_messages with a folder lists only that folder, oldest first."""
        bob = self.account()
        stored = self.ok(
            self.store.store_messages(
                bob.id, [_new("Inbox"), _new("Spam"), _new("Inbox"), _new("Trash")]
            )
        )
        self.assertEqual(
            self.ok(self.store.list_messages(bob.id, "Inbox")), [stored[0], stored[2]]
        )
        self.assertEqual(self.ok(self.store.list_messages(bob.id, "Spam")), [stored[1]])
        self.assertEqual(self.ok(self.store.list_messages(bob.id, "Sent")), [])

    def test_pop_snapshot(self) -> None:
        """A snapshot is a sequence of PopEntry over three packed arrays."""
        snapshot = records.PopSnapshot.from_rows([(7, 1, 100), (9, 2, 250)])
        self.assertEqual(
            (len(snapshot), snapshot[1], list(snapshot.sizes), snapshot[-1:]),
            (
                2,
                records.PopEntry(9, 2, 250),
                [100, 250],
                (records.PopEntry(9, 2, 250),),
            ),
        )
        self.assertEqual(
            snapshot, (records.PopEntry(7, 1, 100), records.PopEntry(9, 2, 250))
        )
        self.assertEqual(records.PopSnapshot.from_rows([]), ())
        self.assertRaises(ValueError, records.PopSnapshot, [1], [1, 2], [3])

    def test_open_pop_session(self) -> None:
        """One call gives the account, the lock and the queue snapshot of the
        folders its spam policy names; a second owner gets no lock until the
        first lets it go."""
        self.assertIsNone(
            self.ok(self.store.open_pop_session("no@example.com", "s1", FOLDERS))
        )
        bob = self.account()
        inbox, spam = self.ok(
            self.store.store_messages(bob.id, [_new(), _new(folder="Spam")])
        )
        closed = self.ok(self.store.open_pop_session("BOB@example.com", "s1", FOLDERS))
        self.assertEqual(
            (closed.account, closed.locked, closed.messages), (bob, False, ())
        )
        self.ok(self.store.enable_pop("bob@example.com", "all", NOW))
        self.ok(self.store.set_pop_spam("bob@example.com", "include"))
        opened = self.ok(self.store.open_pop_session("bob@example.com", "s1", FOLDERS))
        self.assertEqual(
            (opened.account.address, opened.locked, opened.messages),
            (
                "bob@example.com",
                True,
                tuple(PopEntry(m.id, m.uid, m.size) for m in (inbox, spam)),
            ),
        )
        other = self.ok(self.store.open_pop_session("bob@example.com", "s2", FOLDERS))
        self.assertEqual((other.locked, other.messages), (False, ()))
        self.ok(self.store.release_pop_lock(bob.id, "s1"))
        later = self.ok(self.store.open_pop_session("bob@example.com", "s2", FOLDERS))
        self.assertEqual((later.locked, len(later.messages)), (True, 2))

    def test_pop_queue_filters(self) -> None:
        """A POP session is offered the given folders, not removed, from the
        start uid on."""
        bob = self.pop_account()
        inbox1, spam1, sent, inbox2, spam2, inbox3 = self.ok(
            self.store.store_messages(
                bob.id,
                [
                    _new("Inbox", received=NOW + 9),
                    _new("Spam"),
                    _new("Sent"),
                    _new("Inbox", received=NOW + 1),
                    _new("Spam"),
                    _new("Inbox"),
                ],
            )
        )
        self.assertTrue(self.lock(bob, "s1"))
        self.ok(self.store.finish_pop_session(bob.id, "s1", [inbox2.id], False))

        self.assertEqual(self.offered(bob), [inbox1.id, inbox3.id])
        self.assertEqual(
            self.offered(bob, ("Inbox", "Spam")),
            [inbox1.id, spam1.id, spam2.id, inbox3.id],
        )
        self.assertEqual(self.offered(bob, ("Spam",)), [spam1.id, spam2.id])
        self.assertNotIn(sent.id, self.offered(bob, ("Inbox", "Spam", "Trash")))
        self.ok(self.store.enable_pop(bob.address, "new", NOW))
        later = self.ok(self.store.store_messages(bob.id, [_new("Spam"), _new()]))
        self.assertEqual(
            self.offered(bob, ("Inbox", "Spam")), [m.id for m in later]
        )

    def test_read_body_in_chunks(self) -> None:
        """Reading a body in chunks gives back exactly the stored octets."""
        bob = self.account()
        body = bytes(range(256)) * 40 + b"\r\n.\r\nend\r\n"
        (message,) = self.ok(self.store.store_messages(bob.id, [_new(body=body)]))
        self.assertEqual(message.size, len(body))
        chunks = []
        offset = 0
        while True:
            chunk = self.ok(self.store.read_body(message.id, offset, 1000))
            if not chunk:
                break
            self.assertLessEqual(len(chunk), 1000)
            chunks.append(chunk)
            offset += len(chunk)
        self.assertEqual(b"".join(chunks), body)
        self.assertEqual(len(chunks), 11)

    def test_read_body_ranges(self) -> None:
        """read_body returns the asked range, short at the end, b'' past it."""
        bob = self.account()
        (message,) = self.ok(
            self.store.store_messages(bob.id, [_new(body=b"0123456789")])
        )
        self.assertEqual(self.ok(self.store.read_body(message.id, 0, 4)), b"0123")
        self.assertEqual(self.ok(self.store.read_body(message.id, 3, 4)), b"3456")
        self.assertEqual(self.ok(self.store.read_body(message.id, 8, 4)), b"89")
        self.assertEqual(self.ok(self.store.read_body(message.id, 10, 4)), b"")
        self.assertEqual(self.ok(self.store.read_body(message.id, 11, 4)), b"")
        self.assertEqual(self.ok(self.store.read_body(message.id, 500, 4)), b"")

    def test_read_empty_body(self) -> None:
        """An empty body reads as b''."""
        bob = self.account()
        (message,) = self.ok(self.store.store_messages(bob.id, [_new(body=b"")]))
        self.assertEqual(self.ok(self.store.read_body(message.id, 0, 100)), b"")

    def test_read_body_gone(self) -> None:
        """Reading the body of a message that no longer exists fails NotFound."""
        bob = self.account()
        (message,) = self.ok(self.store.store_messages(bob.id, [_new()]))
        self.ok(self.store.delete_account("bob@example.com"))
        error = self.fails(self.store.read_body(message.id, 0, 100), NotFound)
        self.assertEqual(str(error), f"message {message.id} no longer exists")

    # -- POP locks ------------------------------------------------------------

    def test_lock_one_owner(self) -> None:
        """One owner holds the lock; a second owner is refused meanwhile,
        however long the first session lasts (nothing expires)."""
        bob = self.pop_account()
        self.assertTrue(self.lock(bob, "a"))
        self.assertFalse(self.lock(bob, "b"))
        self.assertFalse(self.lock(bob, "a"))
        # "a" still holds it: its finish succeeds.
        self.assertIsNone(
            self.ok(self.store.finish_pop_session(bob.id, "a", [], False))
        )

    def test_lock_per_account(self) -> None:
        """Locks of different accounts do not interfere."""
        bob = self.pop_account("bob@example.com")
        ann = self.pop_account("ann@example.com")
        self.assertTrue(self.lock(bob, "a"))
        self.assertTrue(self.lock(ann, "b"))

    def test_lock_not_taken_for_disabled_pop(self) -> None:
        """A session refused because POP is disabled takes no lock."""
        bob = self.account()
        self.assertFalse(self.lock(bob, "a"))
        self.ok(self.store.enable_pop(bob.address, "all", NOW))
        self.assertTrue(self.lock(bob, "b"))

    def test_lock_release(self) -> None:
        """Releasing frees the lock; a non-owner's release is a no-op."""
        bob = self.pop_account()
        self.assertTrue(self.lock(bob, "a"))
        self.assertIsNone(self.ok(self.store.release_pop_lock(bob.id, "b")))
        self.assertFalse(self.lock(bob, "b"))
        self.assertIsNone(self.ok(self.store.release_pop_lock(bob.id, "a")))
        self.assertTrue(self.lock(bob, "b"))

    def test_late_release_keeps_newer_lock(self) -> None:
        """A late or repeated release by an ended session never frees the
        lock a newer session took."""
        bob = self.pop_account()
        self.assertTrue(self.lock(bob, "a"))
        self.ok(self.store.finish_pop_session(bob.id, "a", [], False))
        self.assertTrue(self.lock(bob, "b"))
        self.assertIsNone(self.ok(self.store.release_pop_lock(bob.id, "a")))
        self.assertIsNone(self.ok(self.store.release_pop_lock(bob.id, "a")))
        self.assertFalse(self.lock(bob, "c"))

    def test_finish_keep(self) -> None:
        """Finishing with keep removes messages from POP but leaves their folder."""
        bob = self.pop_account()
        stored = self.ok(
            self.store.store_messages(bob.id, [_new("Inbox"), _new("Spam"), _new()])
        )
        self.assertTrue(self.lock(bob, "a"))
        self.assertIsNone(
            self.ok(
                self.store.finish_pop_session(
                    bob.id, "a", [stored[0].id, stored[1].id], False
                )
            )
        )
        self.assertEqual(
            [
                (m.id, m.folder, m.pop_removed)
                for m in self.ok(self.store.list_messages(bob.id))
            ],
            [
                (stored[0].id, "Inbox", True),
                (stored[1].id, "Spam", True),
                (stored[2].id, "Inbox", False),
            ],
        )
        self.assertEqual(self.offered(bob, ("Inbox", "Spam")), [stored[2].id])
        # The session's lock is released.
        self.assertTrue(self.lock(bob, "b"))

    def test_finish_to_trash(self) -> None:
        """Finishing with to_trash moves the deleted messages to Trash."""
        bob = self.pop_account()
        stored = self.ok(self.store.store_messages(bob.id, [_new("Inbox"), _new()]))
        self.assertTrue(self.lock(bob, "a"))
        self.ok(self.store.finish_pop_session(bob.id, "a", [stored[1].id], True))
        self.assertEqual(
            [
                (m.id, m.folder, m.pop_removed)
                for m in self.ok(self.store.list_messages(bob.id))
            ],
            [(stored[0].id, "Inbox", False), (stored[1].id, "Trash", True)],
        )
        self.assertEqual(
            self.ok(self.store.read_body(stored[1].id, 0, 1000)), _new().body
        )

    def test_finish_without_deletions(self) -> None:
        """Finishing with nothing to delete changes no message and frees
        the lock."""
        bob = self.pop_account()
        stored = self.ok(self.store.store_messages(bob.id, [_new()]))
        self.assertTrue(self.lock(bob, "a"))
        self.assertIsNone(self.ok(self.store.finish_pop_session(bob.id, "a", [], True)))
        self.assertEqual(self.ok(self.store.list_messages(bob.id)), stored)
        self.assertTrue(self.lock(bob, "b"))

    def test_finish_ignores_other_accounts_messages(self) -> None:
        """A session's deletions never touch another account's messages."""
        bob = self.pop_account("bob@example.com")
        ann = self.account("ann@example.com")
        anns = self.ok(self.store.store_messages(ann.id, [_new()]))
        self.assertTrue(self.lock(bob, "a"))
        self.ok(self.store.finish_pop_session(bob.id, "a", [anns[0].id], True))
        self.assertEqual(self.ok(self.store.list_messages(ann.id)), anns)

    def test_finish_by_non_owner(self) -> None:
        """Finishing without holding the lock fails StoreError, applying
        nothing and leaving the holder's lock alone."""
        bob = self.pop_account()
        stored = self.ok(self.store.store_messages(bob.id, [_new()]))
        self.assertTrue(self.lock(bob, "a"))
        for ids in ([stored[0].id], []):
            error = self.fails(
                self.store.finish_pop_session(bob.id, "b", ids, True), StoreError
            )
            self.assertEqual(str(error), "the maildrop lock was lost")
        self.assertEqual(self.ok(self.store.list_messages(bob.id)), stored)
        self.assertFalse(self.lock(bob, "c"))
        self.assertIsNone(
            self.ok(self.store.finish_pop_session(bob.id, "a", [], False))
        )

    def test_finish_without_any_lock(self) -> None:
        """Finishing a session that never held the lock fails StoreError."""
        bob = self.pop_account()
        stored = self.ok(self.store.store_messages(bob.id, [_new()]))
        self.fails(
            self.store.finish_pop_session(bob.id, "a", [stored[0].id], False),
            StoreError,
        )
        self.assertEqual(self.ok(self.store.list_messages(bob.id)), stored)

    def test_finish_after_release(self) -> None:
        """A session whose lock was released (and taken by another session)
        applies nothing at QUIT."""
        bob = self.pop_account()
        stored = self.ok(self.store.store_messages(bob.id, [_new(), _new()]))
        self.assertTrue(self.lock(bob, "a"))
        self.ok(self.store.release_pop_lock(bob.id, "a"))
        self.assertTrue(self.lock(bob, "b"))
        error = self.fails(
            self.store.finish_pop_session(bob.id, "a", [m.id for m in stored], True),
            StoreError,
        )
        self.assertEqual(str(error), "the maildrop lock was lost")
        self.assertEqual(self.ok(self.store.list_messages(bob.id)), stored)
        # The new owner still holds its lock.
        self.assertFalse(self.lock(bob, "c"))
        self.assertIsNone(
            self.ok(self.store.finish_pop_session(bob.id, "b", [], False))
        )

    # -- accepting SMTP mail ------------------------------------------------

    def test_accept_message_local_and_queued(self) -> None:
        """accept_message stores every local copy and queues every remote
        recipient (state queued, due now) in one call."""
        bob = self.account()
        carol = self.account("carol@example.com")
        queued = records.QueuedMessage(
            "bob@example.com",
            ("x@remote.example", "y@remote.example", "x@remote.example"),
            b"Subject: out\r\n\r\nbody\r\n",
            NOW,
            NOW + 100.0,
            bob.id,
        )
        accepted = self.ok(
            self.store.accept_message(
                [(carol.id, _new()), (bob.id, _new("Sent", seen=True))], queued
            )
        )
        self.assertEqual(
            (
                [(m.account_id, m.folder, m.seen) for m in accepted.messages],
                list(accepted.messages),
                self.ok(self.store.list_messages(carol.id))
                + self.ok(self.store.list_messages(bob.id)),
                isinstance(accepted.queue_id, int),
                accepted.queued,
            ),
            (
                [(carol.id, "Inbox", False), (bob.id, "Sent", True)],
                list(accepted.messages),
                list(accepted.messages),
                True,
                (
                    records.QueuedRecipient("x@remote.example", "queued", 0, NOW, None),
                    records.QueuedRecipient("y@remote.example", "queued", 0, NOW, None),
                ),
            ),
        )

    def test_accept_message_local_only(self) -> None:
        """Without remote recipients nothing is queued (queue_id None)."""
        bob = self.account()
        accepted = self.ok(self.store.accept_message([(bob.id, _new())], None))
        self.assertEqual(
            (accepted.queue_id, accepted.queued, len(accepted.messages)),
            (None, (), 1),
        )

    def test_accept_message_atomic(self) -> None:
        """A failing copy (unknown account) stores nothing at all."""
        bob = self.account()
        queued = records.QueuedMessage(
            "", ("x@remote.example",), b"Subject: x\r\n\r\nx\r\n", NOW, NOW + 1
        )
        self.fails(
            self.store.accept_message(
                [(bob.id, _new()), (bob.id + 999, _new())], queued
            ),
            records.NotFound,
        )
        later = self.ok(self.store.accept_message([(bob.id, _new())], None))
        self.assertEqual(
            (self.ok(self.store.list_messages(bob.id)), later.messages[0].uid),
            (list(later.messages), 1),
        )

    # -- outbound relay ---------------------------------------------------

    def queue(
        self,
        recipients: tuple[str, ...] = ("a@remote.example", "b@remote.example"),
        sender: str = "bob@example.com",
        body: bytes = b"Subject: out\r\n\r\nbody\r\n",
        created: float = NOW,
    ) -> int:
        """Queue a message for ``recipients`` through accept_message."""
        accepted = self.ok(
            self.store.accept_message(
                [],
                records.QueuedMessage(
                    sender, recipients, body, created, created + 1000.0
                ),
            )
        )
        return int(accepted.queue_id)

    def test_claim_groups_by_message_and_domain(self) -> None:
        """claim_outbound fires one job per (message, domain), due work only."""
        first = self.queue(("a@one.example", "b@two.example", "c@one.example"))
        second = self.queue(("d@one.example",), sender="", created=NOW + 5)
        jobs = self.ok(self.store.claim_outbound("p1", NOW, 60.0, 100))
        self.assertEqual(
            jobs,
            [
                records.OutboundJob(
                    first,
                    "bob@example.com",
                    "one.example",
                    ("a@one.example", "c@one.example"),
                    22,
                    NOW,
                    NOW + 1000.0,
                    (0, 0),
                ),
                records.OutboundJob(
                    first,
                    "bob@example.com",
                    "two.example",
                    ("b@two.example",),
                    22,
                    NOW,
                    NOW + 1000.0,
                    (0,),
                ),
            ],
        )
        later = self.ok(self.store.claim_outbound("p1", NOW + 5, 60.0, 100))
        self.assertEqual(
            [(j.message_id, j.sender, j.recipients) for j in later],
            [(second, "", ("d@one.example",))],
        )

    def test_claim_lease_excludes_others_until_it_ends(self) -> None:
        """Claimed recipients are not claimed again until the lease runs out."""
        self.queue(("a@one.example",))
        self.assertEqual(len(self.ok(self.store.claim_outbound("p1", NOW, 60, 10))), 1)
        self.assertEqual(self.ok(self.store.claim_outbound("p2", NOW + 59, 60, 10)), [])
        self.assertEqual(
            self.ok(self.store.renew_outbound_leases("p1", NOW + 59, 60)), 1
        )
        self.assertEqual(
            self.ok(self.store.claim_outbound("p2", NOW + 100, 60, 10)), []
        )
        taken = self.ok(self.store.claim_outbound("p2", NOW + 119, 60, 10))
        self.assertEqual([j.recipients for j in taken], [("a@one.example",)])
        self.assertEqual(self.ok(self.store.release_outbound_leases("p2")), 1)
        again = self.ok(self.store.claim_outbound("p3", NOW + 119, 60, 10))
        self.assertEqual([j.recipients for j in again], [("a@one.example",)])

    def test_claim_limit(self) -> None:
        """claim_outbound takes at most ``limit`` recipients, oldest first."""
        self.queue(("a@one.example", "b@one.example", "c@one.example"))
        jobs = self.ok(self.store.claim_outbound("p1", NOW, 60, 2))
        self.assertEqual(
            [j.recipients for j in jobs], [("a@one.example", "b@one.example")]
        )
        rest = self.ok(self.store.claim_outbound("p1", NOW, 60, 2))
        self.assertEqual([j.recipients for j in rest], [("c@one.example",)])

    def test_record_results_per_recipient(self) -> None:
        """Results are recorded per recipient; the message is complete only
        once no recipient is queued, and then finished_outbound lists it."""
        mid = self.queue(("a@one.example", "b@one.example", "c@one.example"))
        self.ok(self.store.claim_outbound("p1", NOW, 60, 10))
        done = self.ok(
            self.store.record_outbound_results(
                "p1",
                mid,
                [
                    records.RecipientResult("a@one.example", "delivered"),
                    records.RecipientResult(
                        "b@one.example",
                        "failed",
                        error="mx[127.0.0.1] said: 550 5.1.1 no such user",
                        status="5.1.1",
                        remote_mta="mx[127.0.0.1]",
                        diagnostic="550 5.1.1 no such user",
                    ),
                    records.RecipientResult(
                        "c@one.example", "queued", NOW + 300, error="451 later"
                    ),
                ],
                NOW + 1,
            )
        )
        self.assertFalse(done)
        self.assertEqual(self.ok(self.store.finished_outbound(10)), [])
        listed = self.ok(self.store.get_outbound(mid))
        self.assertEqual(
            listed,
            records.OutboundMessage(
                mid,
                "bob@example.com",
                None,
                22,
                NOW,
                NOW + 1000.0,
                (
                    records.OutboundRecipient(
                        "a@one.example", "delivered", 1, NOW + 1, None, None, None, None
                    ),
                    records.OutboundRecipient(
                        "b@one.example",
                        "failed",
                        1,
                        NOW + 1,
                        "mx[127.0.0.1] said: 550 5.1.1 no such user",
                        "5.1.1",
                        "mx[127.0.0.1]",
                        "550 5.1.1 no such user",
                    ),
                    records.OutboundRecipient(
                        "c@one.example",
                        "queued",
                        1,
                        NOW + 300,
                        "451 later",
                        None,
                        None,
                        None,
                    ),
                ),
            ),
        )
        self.assertEqual(self.ok(self.store.list_outbound()), [listed])
        # Not due before NOW + 300, and the lease was dropped with the result.
        self.assertEqual(
            self.ok(self.store.claim_outbound("p1", NOW + 299, 60, 10)), []
        )
        self.ok(self.store.claim_outbound("p1", NOW + 300, 60, 10))
        done = self.ok(
            self.store.record_outbound_results(
                "p1",
                mid,
                [
                    records.RecipientResult("c@one.example", "delivered"),
                    # A final row is never changed back.
                    records.RecipientResult("a@one.example", "failed", error="x"),
                ],
                NOW + 301,
            )
        )
        self.assertTrue(done)
        self.assertEqual(self.ok(self.store.finished_outbound(10)), [mid])
        states = [
            (r.recipient, r.state, r.attempts)
            for r in self.ok(self.store.get_outbound(mid)).recipients
        ]
        self.assertEqual(
            states,
            [
                ("a@one.example", "delivered", 1),
                ("b@one.example", "failed", 1),
                ("c@one.example", "delivered", 2),
            ],
        )

    def test_read_outbound_body(self) -> None:
        """A queued body reads back in chunks; NotFound once it is gone."""
        body = bytes(range(256)) * 40
        mid = self.queue(body=body)
        chunks = [
            self.ok(self.store.read_outbound_body(mid, offset, 1000))
            for offset in range(0, len(body) + 1000, 1000)
        ]
        self.assertEqual(b"".join(chunks), body)
        self.assertEqual(chunks[-1], b"")
        self.assertEqual(self.ok(self.store.delete_outbound(mid)), 2)
        error = self.fails(self.store.read_outbound_body(mid, 0, 10), NotFound)
        self.assertEqual(str(error), f"queued message {mid} no longer exists")

    BOUNCE = b"Subject: Undelivered\r\n\r\nsorry\r\n"

    def test_finish_outbound_stores_locally(self) -> None:
        """Finishing a message can store a message for an account in the same
        transaction, once: a second finish stores nothing and fires False."""
        bob = self.account()
        mid = self.queue(sender="bob@example.com")
        bounce = NewMessage("Inbox", self.BOUNCE, "Undelivered", NOW + 9)
        self.assertEqual(
            [
                self.ok(self.store.finish_outbound(mid, (bob.id, bounce))),
                self.ok(self.store.finish_outbound(mid, (bob.id, bounce))),
            ],
            [True, False],
        )
        inbox = self.ok(self.store.list_messages(bob.id, "Inbox"))
        self.assertEqual(
            [(m.subject, m.received, m.size) for m in inbox],
            [("Undelivered", NOW + 9, 31)],
        )
        self.assertEqual(self.ok(self.store.list_outbound()), [])

    def test_outbound_summary(self) -> None:
        """The summary counts queued messages and names the oldest's time,
        and follows a finish; an empty queue is (0, None)."""
        self.assertEqual(self.ok(self.store.outbound_summary()), (0, None))
        first = self.queue(created=NOW + 5)
        self.queue(created=NOW + 2)
        self.assertEqual(self.ok(self.store.outbound_summary()), (2, NOW + 2))
        self.ok(self.store.finish_outbound(first))
        self.assertEqual(self.ok(self.store.outbound_summary()), (1, NOW + 2))

    def test_finish_outbound_queues(self) -> None:
        """Finishing a message can queue another (a bounce from the null
        sender) in the same transaction."""
        mid = self.queue(sender="carol@remote.example")
        bounce = QueuedMessage(
            "", ("carol@remote.example",), self.BOUNCE, NOW + 9, NOW + 99
        )
        self.assertTrue(self.ok(self.store.finish_outbound(mid, None, bounce)))
        (queued,) = self.ok(self.store.list_outbound())
        self.assertEqual(
            (queued.sender, queued.size, queued.created, queued.expires),
            ("", 31, NOW + 9, NOW + 99),
        )
        self.assertEqual(
            [(r.recipient, r.state, r.next_attempt) for r in queued.recipients],
            [("carol@remote.example", "queued", NOW + 9)],
        )
        self.assertEqual(
            self.ok(self.store.read_outbound_body(queued.id, 0, 100)), self.BOUNCE
        )

    def test_finish_outbound_is_atomic(self) -> None:
        """A finish whose local message cannot be stored (the account is
        gone) fails StoreError and leaves the message queued."""
        mid = self.queue()
        bounce = NewMessage("Inbox", self.BOUNCE, "Undelivered", NOW + 9)
        self.fails(self.store.finish_outbound(mid, (4242, bounce)), StoreError)
        self.assertEqual([m.id for m in self.ok(self.store.list_outbound())], [mid])
        self.assertTrue(self.ok(self.store.finish_outbound(mid)))
        self.assertEqual(self.ok(self.store.list_outbound()), [])

    def test_schema_refuses_bad_values(self) -> None:
        """A value outside the schema's (plan, POP mode and policies,
        recipient state, a digest in use, an unknown submitting account)
        fails StoreError, a folder the account does not have NotFound, and
        each changes nothing."""
        bob = self.account()
        self.ok(self.store.add_app_password(bob.address, "phone", b"p" * 32, NOW))
        mid = self.queue(("a@one.example",))
        before = (self.get(), self.store.changes(), self.ok(self.store.list_outbound()))
        stranger = records.QueuedMessage(
            "", ("x@remote.example",), b"x", NOW, NOW + 1, bob.id + 999
        )
        lost = records.RecipientResult("a@one.example", "lost")
        calls = [
            self.store.add_account("ann@example.com", "gold", False, None, NOW),
            self.store.enable_pop(bob.address, "some", NOW),
            self.store.set_pop_spam(bob.address, "maybe"),
            self.store.set_pop_deletion(bob.address, "shred"),
            self.store.add_app_password(bob.address, "again", b"p" * 32, NOW),
            self.store.accept_message([(bob.id, _new())], stranger),
            self.store.record_outbound_results("p1", mid, [lost], NOW),
        ]
        for d in calls:
            self.assertIs(type(self.fails(d, StoreError)), StoreError)
        self.fails(self.store.store_messages(bob.id, [_new(), _new("Junk")]), NotFound)
        self.assertEqual(
            (self.get(), self.store.changes(), self.ok(self.store.list_outbound())),
            before,
        )
        self.assertIsNone(self.ok(self.store.get_account("ann@example.com")))
        self.assertEqual(self.ok(self.store.list_messages(bob.id)), [])
        self.assertEqual(len(self.ok(self.store.list_app_passwords(bob.address))), 1)

    def test_retry_and_delete_outbound(self) -> None:
        """retry_outbound makes queued recipients due now; delete_outbound
        removes a message; unknown ids fail NotFound."""
        mid = self.queue(("a@one.example", "b@one.example"))
        other = self.queue(("c@one.example",))
        self.ok(self.store.claim_outbound("p1", NOW, 60, 10))
        self.ok(
            self.store.record_outbound_results(
                "p1",
                mid,
                [
                    records.RecipientResult("a@one.example", "queued", NOW + 900),
                    records.RecipientResult("b@one.example", "delivered"),
                ],
                NOW,
            )
        )
        self.ok(
            self.store.record_outbound_results(
                "p1",
                other,
                [records.RecipientResult("c@one.example", "queued", NOW + 900)],
                NOW,
            )
        )
        self.assertEqual(self.ok(self.store.retry_outbound(mid, NOW + 10)), 1)
        jobs = self.ok(self.store.claim_outbound("p1", NOW + 10, 60, 10))
        self.assertEqual([j.recipients for j in jobs], [("a@one.example",)])
        self.assertEqual(self.ok(self.store.retry_outbound(None, NOW + 20)), 2)
        error = self.fails(self.store.retry_outbound(999, NOW), NotFound)
        self.assertEqual(str(error), "no queued message 999")
        self.assertEqual(self.ok(self.store.delete_outbound(other)), 1)
        error = self.fails(self.store.delete_outbound(other), NotFound)
        self.assertEqual(str(error), f"no queued message {other}")
        self.assertEqual([m.id for m in self.ok(self.store.list_outbound())], [mid])


def _fresh_database(case: SynchronousTestCase) -> str:
    directory = case.mktemp()
    os.makedirs(directory)
    path = os.path.join(directory, "zpop.sqlite")
    migrate(path)
    return path


def _schema(path: str) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL"
        ).fetchall()
    finally:
        conn.close()
    return sorted(rows)


class MemoryStoreTests(StoreConformanceMixin, SynchronousTestCase):
    """The conformance suite on MemoryStore: no disk, threads or reactor."""

    def make_store(self) -> MemoryStore:
        store = MemoryStore()
        self.addCleanup(store.close)
        return store

    def test_close_frees_locks(self) -> None:
        """Closing the store drops its maildrop locks; a late release is a
        no-op and a new session fails StoreError, as with SQLite's closed
        lock file."""
        bob = self.pop_account()
        self.assertTrue(self.lock(bob, "a"))
        self.store.close()
        self.assertIsNone(self.ok(self.store.release_pop_lock(bob.id, "a")))
        error = self.fails(
            self.store.open_pop_session(bob.address, "b", FOLDERS), StoreError
        )
        self.assertEqual(str(error), "the maildrop locks of :memory: are closed")


class _OtherThreads:
    """A runner that runs each call on one of ``size`` threads in turn and
    waits for it, so SQL and connections live off the calling thread (as in
    the server) yet every Deferred has fired when the call returns, as the
    conformance suite requires."""

    def __init__(self, size: int) -> None:
        self._pools = [
            ThreadPoolExecutor(1, thread_name_prefix=f"zpop-test-db-{i}")
            for i in range(size)
        ]
        self._turn = 0

    def __call__(self, f: Callable[..., Any], *args: Any) -> defer.Deferred:
        pool = self._pools[self._turn % len(self._pools)]
        self._turn += 1
        try:
            return defer.succeed(pool.submit(f, *args).result())
        except Exception:
            return defer.fail()

    def shutdown(self) -> None:
        for pool in self._pools:
            pool.shutdown()


def memory_store(case: SynchronousTestCase) -> MemoryStore:
    """A MemoryStore closed at the end of ``case``: the first of the three
    stores every conformance suite (this one and each area's) runs on."""
    store = MemoryStore()
    case.addCleanup(store.close)
    return store


def threaded_sqlite_store(case: SynchronousTestCase) -> SQLiteStore:
    """A SQLiteStore on a fresh file, every call on another of three
    threads, each with its own connection (as in the server)."""
    threads = _OtherThreads(3)
    case.addCleanup(threads.shutdown)
    store = SQLiteStore(_fresh_database(case), threads)
    case.addCleanup(store.close)
    return store


def sqlite_store(case: SynchronousTestCase) -> SQLiteStore:
    """A SQLiteStore on a fresh file, called on the test's thread."""
    store = SQLiteStore(_fresh_database(case), run_synchronously)
    case.addCleanup(store.close)
    return store


class ThreadedSQLiteConformanceTests(StoreConformanceMixin, SynchronousTestCase):
    """The conformance suite on SQLiteStore with every call on another of
    three threads, each with its own connection."""

    def make_store(self) -> SQLiteStore:
        threads = _OtherThreads(3)
        self.addCleanup(threads.shutdown)
        store = SQLiteStore(_fresh_database(self), threads)
        self.addCleanup(store.close)
        return store


class SQLiteStoreTests(StoreConformanceMixin, SynchronousTestCase):
    """The conformance suite on SQLiteStore, called on this thread."""

    def make_store(self) -> SQLiteStore:
        store = SQLiteStore(_fresh_database(self), run_synchronously)
        self.addCleanup(store.close)
        return store

    def test_group_commit(self) -> None:
        """Acceptances made while a commit is under way share the next
        transaction; each fires after its own commit, and one that fails
        fails alone."""
        calls: list[tuple[Any, defer.Deferred]] = []

        def held(f: Any, *args: Any) -> defer.Deferred:
            d: defer.Deferred = defer.Deferred()
            calls.append((lambda: f(*args), d))
            return d

        def run_next() -> None:
            f, d = calls.pop(0)
            d.callback(f())

        bob = self.account()
        store = SQLiteStore(self.store.path, held)
        self.addCleanup(store.close)
        first = store.accept_message([(bob.id, _new(subject="1"))], None)
        second = store.accept_message([(bob.id, _new(subject="2"))], None)
        bad = store.accept_message([(bob.id + 999, _new(subject="x"))], None)
        third = store.accept_message([(bob.id, _new(subject="3"))], None)
        self.assertEqual(len(calls), 1)
        run_next()
        self.assertEqual(self.ok(first).messages[0].subject, "1")
        self.assertNoResult(second)
        self.assertEqual(len(calls), 1)
        run_next()
        self.assertEqual(
            (
                self.ok(second).messages[0].subject,
                self.ok(third).messages[0].subject,
                type(self.fails(bad, NotFound)),
                calls,
            ),
            ("2", "3", NotFound, []),
        )
        self.assertEqual(
            [m.subject for m in self.ok(self.store.list_messages(bob.id))],
            ["1", "2", "3"],
        )

    def test_uids_not_reused_after_messages_deleted(self) -> None:
        """Uids of deleted messages are never handed out again."""
        bob = self.account()
        stored = self.ok(self.store.store_messages(bob.id, [_new(), _new()]))
        conn = sqlite3.connect(self.store.path)
        conn.execute("PRAGMA foreign_keys = ON")
        with conn:
            conn.execute("DELETE FROM messages WHERE account_id = ?", (bob.id,))
        conn.close()
        self.assertEqual(self.ok(self.store.list_messages(bob.id)), [])
        later = self.ok(self.store.store_messages(bob.id, [_new()]))
        self.assertGreater(later[0].uid, max(m.uid for m in stored))

    def test_connection_pragmas(self) -> None:
        """Store connections use WAL, synchronous=FULL and foreign keys."""
        self.account()
        conn = self.store._conn()
        self.assertEqual(
            (
                conn.execute("PRAGMA journal_mode").fetchone()[0],
                conn.execute("PRAGMA synchronous").fetchone()[0],
                conn.execute("PRAGMA foreign_keys").fetchone()[0],
            ),
            ("wal", 2, 1),
        )

    def test_database_error_becomes_store_error(self) -> None:
        """A database failure surfaces as StoreError naming the file."""
        bob = self.account()
        conn = sqlite3.connect(self.store.path)
        with conn:
            conn.execute("DROP TABLE body_chunks")
        conn.close()
        error = self.fails(self.store.store_messages(bob.id, [_new()]), StoreError)
        self.assertEqual(
            str(error),
            f"database error in {self.store.path}: no such table: body_chunks",
        )
        self.assertEqual(self.ok(self.store.list_messages(bob.id)), [])

    def test_two_stores_share_a_file(self) -> None:
        """Two stores on one file (server and CLI) see each other's writes."""
        other = SQLiteStore(self.store.path, run_synchronously)
        self.addCleanup(other.close)
        bob = self.account()
        self.assertEqual(self.ok(other.get_account("bob@example.com")), bob)
        changed = self.ok(other.enable_pop("bob@example.com", "all", NOW))
        self.assertEqual(self.get(), changed)
        stored = self.ok(other.store_messages(bob.id, [_new()]))
        self.assertEqual(self.ok(self.store.list_messages(bob.id)), stored)
        self.assertTrue(self.lock(bob, "a"))
        self.assertFalse(self.lock(bob, "b", other))
        before = self.store.changes()
        self.ok(other.set_two_factor("bob@example.com", True))
        self.assertNotEqual(self.store.changes(), before)

    # -- maildrop locks (zpop.store.locks) -----------------------------------

    def count_trips(self, store: SQLiteStore | None = None) -> list[str]:
        """Patch the store's runner to record every database thread trip."""
        store = self.store if store is None else store
        trips: list[str] = []
        run = store._run

        def counted(f: Any, *args: Any) -> defer.Deferred:
            trips.append("trip")
            return run(f, *args)

        self.patch(store, "_run", counted)
        return trips

    def count_writes(self) -> list[bool]:
        """Patch the store to record every write transaction it opens."""
        writes: list[bool] = []
        write = self.store._write

        def counted(*args: Any, **kwargs: Any) -> Any:
            writes.append(True)
            return write(*args, **kwargs)

        self.patch(self.store, "_write", counted)
        return writes

    def test_lock_file_beside_database(self) -> None:
        """The lock file is made (0600) beside the database by the first POP
        session, not by opening the store (the zpop command)."""
        bob = self.pop_account()
        lock_path = f"{self.store.path}-pop-locks"
        self.assertFalse(os.path.exists(lock_path))
        self.assertTrue(self.lock(bob, "a"))
        self.assertEqual(stat.S_IMODE(os.stat(lock_path).st_mode), 0o600)

    def test_lock_held_by_another_process_refuses(self) -> None:
        """A lock held through another description of the file (another
        process: a worker, or the server beside a test) refuses the
        session; it is free as soon as that store closes (its process
        ends), with nothing to wait out."""
        bob = self.pop_account()
        other = SQLiteStore(self.store.path, run_synchronously)
        self.addCleanup(other.close)
        self.assertTrue(self.lock(bob, "a", other))
        opened = self.ok(self.store.open_pop_session(bob.address, "b", FOLDERS))
        self.assertEqual(
            (opened.account, opened.locked, opened.messages), (bob, False, ())
        )
        other.close()
        self.assertTrue(self.lock(bob, "b"))

    def test_close_frees_locks(self) -> None:
        """Closing the store drops the locks of its sessions."""
        bob = self.pop_account()
        other = SQLiteStore(self.store.path, run_synchronously)
        self.addCleanup(other.close)
        self.assertTrue(self.lock(bob, "a"))
        self.store.close()
        self.assertTrue(self.lock(bob, "b", other))
        self.assertIsNone(self.ok(self.store.release_pop_lock(bob.id, "a")))
        self.assertFalse(self.lock(bob, "c", other))

    def test_open_pop_session_reads_only(self) -> None:
        """Opening a session is one thread trip and writes nothing."""
        bob = self.pop_account()
        trips, writes = self.count_trips(), self.count_writes()
        self.assertTrue(self.lock(bob, "a"))
        self.assertFalse(self.lock(bob, "b"))
        self.assertEqual((trips, writes), (["trip", "trip"], []))

    def test_finish_without_deletions_no_database_call(self) -> None:
        """A session that deleted nothing ends without a database trip, and
        so does releasing a lock."""
        bob = self.pop_account()
        self.assertTrue(self.lock(bob, "a"))
        self.assertFalse(self.lock(bob, "c"))
        trips = self.count_trips()
        self.assertIsNone(
            self.ok(self.store.finish_pop_session(bob.id, "a", [], False))
        )
        self.fails(self.store.finish_pop_session(bob.id, "a", [], False), StoreError)
        self.assertIsNone(self.ok(self.store.release_pop_lock(bob.id, "a")))
        self.assertEqual(trips, [])
        self.assertTrue(self.lock(bob, "b"))

    def test_finish_with_deletions_one_write(self) -> None:
        """Deletions cost one thread trip and one write transaction."""
        bob = self.pop_account()
        (message,) = self.ok(self.store.store_messages(bob.id, [_new()]))
        self.assertTrue(self.lock(bob, "a"))
        trips, writes = self.count_trips(), self.count_writes()
        self.ok(self.store.finish_pop_session(bob.id, "a", [message.id], False))
        self.assertEqual((trips, writes), (["trip"], [True]))

    def test_finish_releases_after_commit(self) -> None:
        """The lock is released only once the deletions are committed: at
        that moment another connection already sees them."""
        bob = self.pop_account()
        stored = self.ok(self.store.store_messages(bob.id, [_new(), _new()]))
        self.assertTrue(self.lock(bob, "a"))
        seen: list[list[tuple[int, int]]] = []
        release = self.store._pop_locks.release

        def observed(account_id: int, owner: str) -> bool:
            conn = sqlite3.connect(self.store.path)
            try:
                seen.append(
                    conn.execute(
                        "SELECT id, pop_removed FROM messages ORDER BY id"
                    ).fetchall()
                )
            finally:
                conn.close()
            return release(account_id, owner)

        self.patch(self.store._pop_locks, "release", observed)
        self.ok(self.store.finish_pop_session(bob.id, "a", [stored[0].id], False))
        self.assertEqual(seen, [[(stored[0].id, 1), (stored[1].id, 0)]])

    def test_snapshot_read_after_lock(self) -> None:
        """The snapshot is read after the lock is taken, so it never misses
        the deletions of a session (here another process's) that committed
        and let the lock go just before."""
        bob = self.pop_account()
        stored = self.ok(self.store.store_messages(bob.id, [_new(), _new()]))
        other = SQLiteStore(self.store.path, run_synchronously)
        self.addCleanup(other.close)
        self.assertTrue(self.lock(bob, "a", other))
        acquire = self.store._pop_locks.acquire

        def after_other_finished(
            account_id: int, owner: str, device: int | None = None
        ) -> bool:
            # The other session commits its deletion and releases the lock
            # between this session's first look and its lock.
            self.ok(other.finish_pop_session(bob.id, "a", [stored[0].id], False))
            return acquire(account_id, owner, device)

        self.patch(self.store._pop_locks, "acquire", after_other_finished)
        opened = self.ok(self.store.open_pop_session(bob.address, "b", FOLDERS))
        self.assertEqual(
            (opened.locked, [entry.id for entry in opened.messages]),
            (True, [stored[1].id]),
        )

    def test_account_deleted_while_locking(self) -> None:
        """An account deleted between the first look and the snapshot gives
        None, and its lock is not kept."""
        bob = self.pop_account()
        acquire = self.store._pop_locks.acquire

        def deleted_first(
            account_id: int, owner: str, device: int | None = None
        ) -> bool:
            conn = sqlite3.connect(self.store.path)
            conn.execute("PRAGMA foreign_keys = ON")
            with conn:
                conn.execute("DELETE FROM accounts WHERE id = ?", (account_id,))
            conn.close()
            return acquire(account_id, owner, device)

        self.patch(self.store._pop_locks, "acquire", deleted_first)
        self.assertIsNone(
            self.ok(self.store.open_pop_session(bob.address, "a", FOLDERS))
        )
        self.assertFalse(self.store._pop_locks.holds(bob.id, "a"))

    def test_failed_commit_keeps_lock(self) -> None:
        """If the deletions cannot be committed, nothing is applied, the
        call fails StoreError and the session still holds its lock, for
        its end to release."""
        bob = self.pop_account()
        stored = self.ok(self.store.store_messages(bob.id, [_new()]))
        self.assertTrue(self.lock(bob, "a"))
        refuse_message_updates(self.store.path)
        error = self.fails(
            self.store.finish_pop_session(bob.id, "a", [stored[0].id], False),
            StoreError,
        )
        self.assertEqual(str(error), f"database error in {self.store.path}: disk full")
        self.assertEqual(self.ok(self.store.list_messages(bob.id)), stored)
        self.assertFalse(self.lock(bob, "b"))
        self.ok(self.store.release_pop_lock(bob.id, "a"))
        self.assertTrue(self.lock(bob, "b"))

    def test_unusable_lock_file(self) -> None:
        """A lock file that cannot be opened fails the session with
        StoreError naming it."""
        bob = self.pop_account()
        lock_path = f"{self.store.path}-pop-locks"
        os.mkdir(lock_path)
        error = self.fails(
            self.store.open_pop_session(bob.address, "a", FOLDERS), StoreError
        )
        self.assertEqual(
            str(error),
            f"cannot open the maildrop lock file {lock_path}: Is a directory",
        )

    def test_waits_for_a_busy_writer(self) -> None:
        """A write waits while another connection holds the write lock."""
        self.account()
        locked = threading.Event()
        released = []

        def hold() -> None:
            conn = sqlite3.connect(self.store.path, isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")
            locked.set()
            time.sleep(0.3)
            released.append(time.monotonic())
            conn.execute("COMMIT")
            conn.close()

        holder = threading.Thread(target=hold)
        holder.start()
        self.addCleanup(holder.join)
        self.assertTrue(locked.wait(10))
        start = time.monotonic()
        account = self.ok(self.store.set_two_factor("bob@example.com", True))
        finished = time.monotonic()
        holder.join()
        self.assertTrue(account.two_factor)
        self.assertGreaterEqual(finished, released[0])
        self.assertGreater(finished - start, 0.1)


class MigrationTests(SynchronousTestCase):
    """Creating and upgrading the SQLite database."""

    def directory(self) -> str:
        directory = self.mktemp()
        os.makedirs(directory)
        return directory

    def test_migrations_numbered(self) -> None:
        """Migrations are numbered 1..latest, in order."""
        numbers = [number for number, _ in migrations()]
        self.assertEqual(numbers, list(range(1, latest_version() + 1)))
        self.assertGreaterEqual(latest_version(), 1)

    def test_bodies_split_into_chunks(self) -> None:
        """Migration 005 moves every stored body into 256 KiB pieces, byte
        for byte, whatever its size."""
        path = os.path.join(self.directory(), "zpop.sqlite")
        migrate(path, to_version=4)
        sizes = [1, 262143, 262144, 262145, 3 * 262144 + 7]
        conn = sqlite3.connect(path)
        with conn:
            _seed_account(conn)
            for uid, size in enumerate(sizes, start=1):
                body = bytes((uid + i) % 251 for i in range(size))
                cursor = conn.execute(
                    "INSERT INTO messages (account_id, folder, uid, received,"
                    " size) VALUES (1, 'Inbox', ?, 0, ?)",
                    (uid, size),
                )
                conn.execute(
                    "INSERT INTO bodies (message_id, data) VALUES (?, ?)",
                    (cursor.lastrowid, body),
                )
        conn.close()
        self.assertEqual(migrate(path), latest_version())
        store = SQLiteStore(path, run_synchronously)
        self.addCleanup(store.close)
        for uid, size in enumerate(sizes, start=1):
            body = bytes((uid + i) % 251 for i in range(size))
            chunks = []
            for offset in range(0, size, 100000):
                d = store.read_body(uid, offset, 100000)
                chunks.append(self.successResultOf(d))
            self.assertEqual(b"".join(chunks), body, size)

    def test_pop_locks_table_dropped(self) -> None:
        """Migration 006 drops pop_locks, rows an older server left in it
        included: maildrop locks are kernel locks now."""
        path = os.path.join(self.directory(), "zpop.sqlite")
        migrate(path, to_version=5)
        conn = sqlite3.connect(path)
        with conn:
            _seed_account(conn)
            conn.execute(
                "INSERT INTO pop_locks (account_id, owner, expires)"
                " VALUES (1, 'old-server-1', 1e12)"
            )
        conn.close()
        self.assertEqual(migrate(path), latest_version())
        self.assertNotIn("pop_locks", [name for _, name, _ in _schema(path)])
        store = SQLiteStore(path, run_synchronously)
        self.addCleanup(store.close)
        self.successResultOf(store.enable_pop("a@example.com", "all", NOW))
        opened = self.successResultOf(
            store.open_pop_session("a@example.com", "s1", FOLDERS)
        )
        self.assertTrue(opened.locked)

    def test_creates_atomically(self) -> None:
        """migrate creates the database, WAL, leaving no temporary file."""
        directory = self.directory()
        path = os.path.join(directory, "zpop.sqlite")
        self.assertEqual(migrate(path), latest_version())
        self.assertEqual(os.listdir(directory), ["zpop.sqlite"])
        conn = sqlite3.connect(path)
        try:
            self.assertEqual(
                (
                    conn.execute("PRAGMA journal_mode").fetchone()[0],
                    conn.execute("SELECT version FROM zpop_version").fetchall(),
                ),
                ("wal", [(latest_version(),)]),
            )
        finally:
            conn.close()

    def test_replaces_stale_temporary_file(self) -> None:
        """A temporary file left by an earlier crash does not stop creation."""
        directory = self.directory()
        path = os.path.join(directory, "zpop.sqlite")
        with open(f"{path}.new-{os.getpid()}", "wb") as f:
            f.write(b"half a database")
        self.assertEqual(migrate(path), latest_version())
        self.assertEqual(os.listdir(directory), ["zpop.sqlite"])

    def test_failed_creation_leaves_nothing(self) -> None:
        """A creation that fails leaves neither a database nor a temporary file."""
        directory = self.directory()
        path = os.path.join(directory, "zpop.sqlite")
        self.patch(schema, "migrations", lambda: [(1, "CREATE TABLE broken (;")])
        self.assertRaises((sqlite3.Error, StoreError), migrate, path)
        self.assertEqual(os.listdir(directory), [])

    def test_migrate_is_idempotent(self) -> None:
        """Migrating an up-to-date database changes nothing."""
        path = os.path.join(self.directory(), "zpop.sqlite")
        migrate(path)
        before = _schema(path)
        self.assertEqual(migrate(path), latest_version())
        self.assertEqual(_schema(path), before)

    def test_upgraded_equals_fresh(self) -> None:
        """An upgraded database has the same schema as a fresh one."""
        fresh = os.path.join(self.directory(), "zpop.sqlite")
        migrate(fresh)
        expected = _schema(fresh)
        self.assertNotEqual(expected, [])
        for k in range(latest_version()):
            path = os.path.join(self.directory(), "zpop.sqlite")
            self.assertEqual(migrate(path, to_version=k), k)
            self.assertEqual(migrate(path), latest_version())
            self.assertEqual(_schema(path), expected, f"upgraded from version {k}")

    def test_newer_version_refused(self) -> None:
        """A database newer than this zpop is refused, naming the fix."""
        path = os.path.join(self.directory(), "zpop.sqlite")
        migrate(path)
        conn = sqlite3.connect(path)
        with conn:
            conn.execute("UPDATE zpop_version SET version = ?", (latest_version() + 1,))
        conn.close()
        error = self.assertRaises(SchemaError, migrate, path)
        self.assertEqual(
            str(error),
            f"database at {path} is version {latest_version() + 1}, this zpop"
            f" knows up to {latest_version()}: upgrade zpop",
        )

    def test_not_a_database_refused(self) -> None:
        """A file that is not an SQLite database is refused with SchemaError."""
        path = os.path.join(self.directory(), "zpop.sqlite")
        with open(path, "wb") as f:
            f.write(b"this is not a database\n" * 200)
        error = self.assertRaises(SchemaError, migrate, path)
        self.assertEqual(
            str(error), f"{path} is not a zpop database: file is not a database"
        )


class ThreadedSQLiteStoreTests(TestCase):
    """SQLiteStore through a real thread pool, with the real reactor."""

    def setUp(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "zpop.sqlite")
        migrate(path)
        self.pool = ThreadPoolService(REACTOR, "zpop-test-db", 3)
        self.pool.startService()
        self.store = SQLiteStore(path, self.pool)
        # Cleanups run last-in first-out: stop the pool, then close.
        self.addCleanup(self.store.close)
        self.addCleanup(self.pool.stopService)

    @defer.inlineCallbacks
    def test_accounts_and_errors(self) -> Any:
        """Adding, reading and refusing accounts works through the pool."""
        self.assertTrue(verifyObject(IStore, self.store))
        yield self.store.add_domain("example.com", False, NOW)
        bob = yield self.store.add_account("Bob@example.com", "paid", False, None, NOW)
        self.assertEqual((yield self.store.get_account("bob@example.com")), bob)
        error = yield self.assertFailure(
            self.store.add_account("bob@example.com", "paid", False, None, NOW),
            AlreadyExists,
        )
        self.assertEqual(str(error), "address bob@example.com is taken already")
        yield self.assertFailure(
            self.store.add_account("x@nowhere.example", "paid", False, None, NOW),
            NotFound,
        )

    @defer.inlineCallbacks
    def test_pop_session(self) -> Any:
        """Storing, reading and a whole POP session work through the pool."""
        yield self.store.add_domain("example.com", False, NOW)
        bob = yield self.store.add_account("bob@example.com", "paid", False, None, NOW)
        yield self.store.enable_pop("bob@example.com", "all", NOW)
        body = b"x" * 5000
        stored = yield self.store.store_messages(bob.id, [_new(body=body), _new()])
        first = yield self.store.open_pop_session(bob.address, "a", FOLDERS)
        second = yield self.store.open_pop_session(bob.address, "b", FOLDERS)
        self.assertEqual(
            (first.locked, len(first.messages), second.locked), (True, 2, False)
        )
        chunks = yield defer.gatherResults(
            [
                self.store.read_body(stored[0].id, offset, 1024)
                for offset in range(0, 5000, 1024)
            ]
        )
        self.assertEqual(b"".join(chunks), body)
        yield self.store.finish_pop_session(bob.id, "a", [stored[0].id], True)
        session = yield self.store.open_pop_session(bob.address, "c", FOLDERS)
        self.assertEqual(list(session.messages.ids), [stored[1].id])
        yield self.store.release_pop_lock(bob.id, "c")

    @defer.inlineCallbacks
    def test_concurrent_sessions_one_lock(self) -> Any:
        """Sessions opened at once on pool threads for one account: exactly
        one gets the lock, and once it ends exactly one of the next."""
        yield self.store.add_domain("example.com", False, NOW)
        bob = yield self.store.add_account("bob@example.com", "paid", False, None, NOW)
        yield self.store.enable_pop("bob@example.com", "all", NOW)
        opened = yield defer.gatherResults(
            [
                self.store.open_pop_session(bob.address, f"s{i}", FOLDERS)
                for i in range(12)
            ]
        )
        winners = [f"s{i}" for i, session in enumerate(opened) if session.locked]
        self.assertEqual(len(winners), 1)
        yield self.store.finish_pop_session(bob.id, winners[0], [], False)
        again = yield defer.gatherResults(
            [
                self.store.open_pop_session(bob.address, f"t{i}", FOLDERS)
                for i in range(12)
            ]
        )
        self.assertEqual(sum(session.locked for session in again), 1)

    @defer.inlineCallbacks
    def test_connections_per_thread(self) -> Any:
        """Concurrent calls run on pool threads, each with its own connection."""
        yield self.store.add_domain("example.com", False, NOW)
        results = yield defer.gatherResults(
            [
                self.store.add_account(f"u{i}@example.com", "free", False, None, NOW)
                for i in range(20)
            ]
        )
        self.assertEqual(len({a.id for a in results}), 20)
        listed = yield self.store.list_accounts()
        self.assertEqual(len(listed), 20)
        # The reactor thread never opened a connection; the pool threads did,
        # at most one each.
        self.assertIsNone(getattr(self.store._local, "conn", None))
        self.assertGreaterEqual(len(self.store._connections), 1)
        self.assertLessEqual(len(self.store._connections), 3)
