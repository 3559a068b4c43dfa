"""The realm: account-state refusals, the maildrop lock, and the POP view
each setting produces, against a real (synchronous) store."""

from __future__ import annotations

import datetime
from typing import Any

from twisted.cred.portal import IRealm
from twisted.internet.task import Clock
from twisted.mail.pop3 import IMailbox
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from zpop.accounts.credentials import LoginRefused
from zpop.accounts.maildrop import SPAM_FOLDERS
from zpop.accounts.realm import Realm, Session
from zpop.config import AccountsConfig, Config, ServerConfig
from zpop.store import StoreError
from zpop.test.stores import (
    add_account,
    deliver,
    make_store,
    read_message,
    result,
)

CONFIG = Config(
    server=ServerConfig(hostname="example.test"),
    accounts=AccountsConfig(
        free_pop_cutoff=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    ),
)
CUTOFF = CONFIG.accounts.free_pop_cutoff.timestamp()  # type: ignore[union-attr]


class _RealmCase:
    """Set-up and helpers of the realm tests, on the store ``make_store``
    gives: a MemoryStore here; a SQLite file in
    zpop.test.integration.test_realm_sqlite, for what only a file shows."""

    def make_store(self) -> Any:
        """The store of the test: a MemoryStore, no disk."""
        return make_store()

    def setUp(self) -> None:
        self.store = self.make_store()
        self.addCleanup(self.store.close)
        self.clock = Clock()
        self.clock.advance(CUTOFF + 1000)
        self.realm = Realm(self.store, CONFIG.hosts, CONFIG.accounts, self.clock)
        self.alice = add_account(self.store, "alice@example.com")
        self.carol = add_account(self.store, "carol@corp.example")

    def login(self, address: str = "alice@example.com", sni: str | None = None) -> Any:
        d = self.realm.requestAvatar(address, Session("127.0.0.1", sni), IMailbox)
        interface, maildrop, logout = result(d)
        self.assertIs(interface, IMailbox)
        self.addCleanup(maildrop.release)
        return maildrop

    def refusal(
        self, address: str = "alice@example.com", sni: str | None = None
    ) -> tuple[str, str]:
        d = self.realm.requestAvatar(address, Session("127.0.0.1", sni), IMailbox)
        failure = self.failureResultOf(d, LoginRefused)
        return failure.value.code, failure.value.text

    def enable(self, address: str = "alice@example.com", mode: str = "all") -> None:
        result(self.store.enable_pop(address, mode, self.clock.seconds()))

    def subjects(self, maildrop: Any) -> list[str]:
        bodies = []
        for i in range(len(maildrop.listMessages())):
            bodies.append(read_message(maildrop, i).split(b"\r\n")[0].decode())
        return [b.removeprefix("Subject: ") for b in bodies]


class RealmTests(_RealmCase, SynchronousTestCase):
    def test_interface(self) -> None:
        """The realm provides IRealm and its maildrops IMailbox."""
        self.assertTrue(verifyObject(IRealm, self.realm))
        self.enable()
        self.assertTrue(verifyObject(IMailbox, self.login()))

    def test_disabled(self) -> None:
        """POP is off by default: a login is refused with [AUTH]."""
        self.assertEqual(
            self.refusal(), ("AUTH", "POP access is disabled for this account")
        )

    def test_disable_takes_effect_at_next_login(self) -> None:
        """Disabling POP leaves an open session alone and refuses the next login."""
        self.enable()
        deliver(self.store, self.alice, "one")
        maildrop = self.login()
        result(self.store.disable_pop("alice@example.com"))
        self.assertEqual(self.subjects(maildrop), ["one"])
        result(maildrop.sync())
        self.assertEqual(
            self.refusal(), ("AUTH", "POP access is disabled for this account")
        )

    def test_free_plan_cutoff(self) -> None:
        """Free accounts made on/after the cut-off get no POP; older or paid ones do."""
        new = add_account(self.store, "new@example.com", plan="free", created=CUTOFF)
        old = add_account(
            self.store, "old@example.com", plan="free", created=CUTOFF - 1
        )
        for account in (new, old):
            self.enable(account.address)
        self.assertEqual(
            self.refusal("new@example.com"),
            ("AUTH", "POP access is not available on the Free plan"),
        )
        self.login("old@example.com")
        self.enable()
        self.login()

    def test_host_by_domain_kind(self) -> None:
        """SNI naming the other kind's POP host is refused with the right host."""
        self.enable()
        self.enable("carol@corp.example")
        self.assertEqual(
            self.refusal("carol@corp.example", "pop.example.test"),
            ("AUTH", "Organization accounts use poppro.example.test"),
        )
        self.assertEqual(
            self.refusal("alice@example.com", "poppro.example.test"),
            ("AUTH", "Personal accounts use pop.example.test"),
        )
        self.login("carol@corp.example", "poppro.example.test").release()
        self.login("alice@example.com", "pop.example.test").release()
        self.login("alice@example.com", None).release()

    def test_in_use(self) -> None:
        """A second session is refused [IN-USE] until the first ends."""
        self.enable()
        first = self.login()
        self.assertEqual(
            self.refusal(),
            ("IN-USE", "Another POP session is already using this mailbox"),
        )
        result(first.release())
        self.login()

    def test_long_session_keeps_lock(self) -> None:
        """A session keeps the maildrop however long it lasts, with no timer
        and no renewal."""
        self.enable()
        self.login()
        self.clock.advance(7 * 86400.0)
        self.assertEqual(
            (self.clock.getDelayedCalls(), self.refusal()[0]), ([], "IN-USE")
        )

    def test_owner_per_session(self) -> None:
        """Every session has its own lock owner, across realms of the
        process, so an ended session's stale release frees nobody's lock."""
        self.enable()
        first = self.login()
        result(first.release())
        second = Realm(self.store, CONFIG.hosts, CONFIG.accounts, self.clock)
        _, maildrop, _ = result(
            second.requestAvatar(
                "alice@example.com", Session("127.0.0.1", None), IMailbox
            )
        )
        self.addCleanup(maildrop.release)
        self.assertNotEqual(first._owner, maildrop._owner)
        result(self.store.release_pop_lock(self.alice.id, first._owner))
        self.assertEqual(self.refusal()[0], "IN-USE")

    def test_refused_login_keeps_no_lock(self) -> None:
        """A login refused for its account state (here the host name) does
        not keep the maildrop lock it took."""
        self.enable()
        self.assertEqual(
            self.refusal("alice@example.com", "poppro.example.test")[0], "AUTH"
        )
        self.login()

    def test_spam_policies(self) -> None:
        """exclude offers Inbox, include Inbox and Spam, only Spam; oldest first."""
        deliver(self.store, self.alice, "inbox1")
        deliver(self.store, self.alice, "spam1", folder="Spam")
        deliver(self.store, self.alice, "inbox2")
        deliver(self.store, self.alice, "sent", folder="Sent")
        self.enable()
        expected = {
            "exclude": ["inbox1", "inbox2"],
            "include": ["inbox1", "spam1", "inbox2"],
            "only": ["spam1"],
        }
        for policy, subjects in expected.items():
            result(self.store.set_pop_spam("alice@example.com", policy))
            maildrop = self.login()
            self.assertEqual(self.subjects(maildrop), subjects, policy)
            result(maildrop.release())

    def test_new_mode(self) -> None:
        """'new' offers only mail stored after enabling; re-enabling moves the start."""
        deliver(self.store, self.alice, "old")
        self.enable(mode="new")
        deliver(self.store, self.alice, "newer")
        maildrop = self.login()
        self.assertEqual(self.subjects(maildrop), ["newer"])
        result(maildrop.release())
        self.enable(mode="new")
        deliver(self.store, self.alice, "newest")
        maildrop = self.login()
        self.assertEqual(self.subjects(maildrop), ["newest"])

    def test_keep_policy(self) -> None:
        """With 'keep', deleted messages leave the POP queue but stay in the Inbox."""
        deliver(self.store, self.alice, "a", "b", "c")
        self.enable()
        maildrop = self.login()
        maildrop.deleteMessage(0)
        maildrop.deleteMessage(2)
        result(maildrop.sync())
        self.assertEqual(self.subjects(self.login()), ["b"])
        folders = [
            (m.subject, m.folder, m.pop_removed)
            for m in result(self.store.list_messages(self.alice.id))
        ]
        self.assertEqual(
            folders, [("a", "Inbox", True), ("b", "Inbox", False), ("c", "Inbox", True)]
        )

    def test_delete_policy(self) -> None:
        """With 'delete', deleted messages move to Trash."""
        deliver(self.store, self.alice, "a", "b")
        self.enable()
        result(self.store.set_pop_deletion("alice@example.com", "delete"))
        maildrop = self.login()
        maildrop.deleteMessage(0)
        result(maildrop.sync())
        folders = [
            (m.subject, m.folder)
            for m in result(self.store.list_messages(self.alice.id))
        ]
        self.assertEqual(folders, [("a", "Trash"), ("b", "Inbox")])

    def test_all_mode_brings_back_removed(self) -> None:
        """Re-enabling 'all' offers messages a client deleted earlier, if still kept."""
        deliver(self.store, self.alice, "a", "b")
        self.enable()
        maildrop = self.login()
        maildrop.deleteMessage(0)
        result(maildrop.sync())
        maildrop = self.login()
        self.assertEqual(self.subjects(maildrop), ["b"])
        result(maildrop.release())
        self.enable(mode="all")
        self.assertEqual(self.subjects(self.login()), ["a", "b"])

    def test_release_applies_nothing(self) -> None:
        """A session that ends without QUIT applies none of its deletions."""
        deliver(self.store, self.alice, "a")
        self.enable()
        maildrop = self.login()
        maildrop.deleteMessage(0)
        result(maildrop.release())
        self.assertEqual(self.subjects(self.login()), ["a"])

    def test_lost_lock_applies_nothing(self) -> None:
        """A session whose lock was taken over cannot commit its deletions."""
        deliver(self.store, self.alice, "a")
        self.enable()
        maildrop = self.login()
        maildrop.deleteMessage(0)
        result(self.store.release_pop_lock(self.alice.id, maildrop._owner))
        taken = result(
            self.store.open_pop_session("alice@example.com", "other", SPAM_FOLDERS)
        )
        self.assertTrue(taken.locked)
        self.assertRaises(StoreError, result, maildrop.sync())
        result(self.store.release_pop_lock(self.alice.id, "other"))
        self.assertEqual(self.subjects(self.login()), ["a"])

    def test_uidl_stable(self) -> None:
        """UIDLs are stable across sessions and re-enabling, unique per message."""
        deliver(self.store, self.alice, "a", "b")
        self.enable()
        maildrop = self.login()
        first = [maildrop.getUidl(i) for i in range(2)]
        result(maildrop.release())
        self.enable(mode="all")
        maildrop = self.login()
        self.assertEqual([maildrop.getUidl(i) for i in range(2)], first)
        self.assertEqual(len(set(first)), 2)
        self.assertEqual(first[0], f"{self.alice.uid_validity:x}-1")
