"""zpop.accounts.imap_account: who may use IMAP, the folder names and
keywords a client may use, and the realm's IMAP avatar; on MemoryStore."""

from __future__ import annotations

from typing import Any

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from zpop.accounts.credentials import Identity, LoginRefused
from zpop.accounts.errors import InvalidInput
from zpop.accounts.imap_account import (
    MAX_DEPTH,
    MAX_NAME,
    FolderNameError,
    IImapAccount,
    ImapAccount,
    canonical_name,
    check_folder_name,
)
from zpop.accounts.realm import Realm
from zpop.config import AccountsConfig, HostsConfig
from zpop.store.mailbox import MAX_KEYWORDS, StoreOp
from zpop.store.memory import MemoryStore

BOB = "bob@example.com"
NOW = 1_800_000_000.0


class FolderNameTests(SynchronousTestCase):
    def test_canonical(self) -> None:
        """INBOX in any case, alone or first, becomes INBOX; nothing else
        changes case."""
        self.assertEqual(
            [canonical_name(n) for n in ("inbox", "Inbox/Sub", "INBOXES", "work/x")],
            ["INBOX", "INBOX/Sub", "INBOXES", "work/x"],
        )

    def test_accepted(self) -> None:
        self.assertEqual(
            [check_folder_name(n) for n in ("Work", "a/b/c", "Entwürfe", "日本語")],
            ["Work", "a/b/c", "Entwürfe", "日本語"],
        )
        self.assertEqual(check_folder_name("x" * MAX_NAME), "x" * MAX_NAME)

    def test_refused(self) -> None:
        """Each bad name is refused with what is wrong with it."""
        cases = {
            "": "the folder name is empty",
            "x" * (MAX_NAME + 1): f"a folder name is at most {MAX_NAME} characters",
            "/".join("a" * (MAX_DEPTH + 1)): f"folders nest at most {MAX_DEPTH}"
            " levels deep",
            "/top": "a folder name has no empty level (no leading, trailing or"
            " doubled /)",
            "a//b": "a folder name has no empty level (no leading, trailing or"
            " doubled /)",
            "a/": "a folder name has no empty level (no leading, trailing or"
            " doubled /)",
            "a*": "a folder name has no * or % (LIST wildcards)",
            "50%": "a folder name has no * or % (LIST wildcards)",
            "tab\there": "a folder name has no control or unassigned characters",
            "rtl\u202e": "a folder name has no control or unassigned characters",
        }
        for name, text in cases.items():
            with self.assertRaises(FolderNameError) as caught:
                check_folder_name(name)
            self.assertEqual(str(caught.exception), text, name)


class ImapAccountTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = MemoryStore()
        self.clock = Clock()
        self.clock.advance(NOW)
        self.successResultOf(self.store.add_domain("example.com", False, NOW))
        account = self.successResultOf(
            self.store.add_account(BOB, "paid", False, None, NOW)
        )
        self.session = ImapAccount(
            self.store, account, Identity(BOB, "primary"), self.clock, 1000
        )

    def test_create_checks_the_name(self) -> None:
        made = self.successResultOf(self.session.create_folder("inbox/Later"))
        self.assertEqual(made.name, "INBOX/Later")
        failure = self.failureResultOf(
            self.session.create_folder("bad/"), FolderNameError
        )
        self.assertEqual(
            str(failure.value),
            "a folder name has no empty level (no leading, trailing or doubled /)",
        )

    def test_append_and_keywords(self) -> None:
        """APPEND stores at the clock's time when no date is given; more
        keywords than a message may hold are refused before the store."""
        appended = self.successResultOf(
            self.session.append("inbox", b"Subject: x\r\n\r\n", 0, ["$Junk"], None, "x")
        )
        [message] = self.successResultOf(self.store.list_messages(1))
        self.assertEqual(
            (message.id, message.folder, message.received, message.keywords),
            (appended.message_id, "Inbox", NOW, ("$Junk",)),
        )
        many = [f"k{i}" for i in range(MAX_KEYWORDS + 1)]
        failure = self.failureResultOf(
            self.session.store_flags(1, [1], StoreOp.ADD, 0, many), InvalidInput
        )
        self.assertEqual(
            str(failure.value), f"a message holds at most {MAX_KEYWORDS} keywords"
        )

    def test_credentials_of_a_revoked_app_password(self) -> None:
        """A session on an app password learns it was revoked."""
        password = self.successResultOf(
            self.store.add_app_password(BOB, "phone", b"d" * 32, NOW)
        )
        account = self.successResultOf(self.store.get_account(BOB))
        session = ImapAccount(
            self.store,
            account,
            Identity(BOB, "app password phone", password.id),
            self.clock,
            1000,
        )
        self.assertTrue(self.successResultOf(session.credentials_valid()))
        self.successResultOf(self.store.revoke_app_password(BOB, password.id))
        self.assertFalse(session.credentials_current())
        self.assertFalse(self.successResultOf(session.credentials_valid()))


class RealmTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = MemoryStore()
        self.successResultOf(self.store.add_domain("example.com", False, NOW))
        self.successResultOf(self.store.add_account(BOB, "free", False, None, NOW))
        self.clock = Clock()

    def realm(self, **accounts: Any) -> Realm:
        return Realm(
            self.store,
            HostsConfig(),
            AccountsConfig(**accounts),
            self.clock,
            max_message_size=4321,
        )

    def test_avatar(self) -> None:
        iface, avatar, logout = self.successResultOf(
            self.realm().requestAvatar(Identity(BOB, "primary"), None, IImapAccount)
        )
        self.assertIs(iface, IImapAccount)
        self.assertEqual(
            (avatar.account.address, avatar.identity.method, avatar.max_size),
            (BOB, "primary", 4321),
        )
        self.assertIsNone(logout())

    def test_refusals(self) -> None:
        """IMAP switched off, or the Free-plan cut-off, refuses the login
        after the password with the reason; a deleted account is a plain
        failure."""
        import datetime

        cutoff = datetime.datetime.fromtimestamp(NOW - 1, datetime.UTC)
        failure = self.failureResultOf(
            self.realm(free_pop_cutoff=cutoff).requestAvatar(BOB, None, IImapAccount),
            LoginRefused,
        )
        self.assertEqual(
            (failure.value.code, failure.value.text),
            ("AUTH", "IMAP access is not available on the Free plan"),
        )
        self.successResultOf(self.store.set_imap(BOB, False))
        failure = self.failureResultOf(
            self.realm().requestAvatar(BOB, None, IImapAccount), LoginRefused
        )
        self.assertEqual(failure.value.text, "IMAP access is disabled for this account")
        self.successResultOf(self.store.delete_account(BOB))
        self.failureResultOf(
            self.realm().requestAvatar(BOB, None, IImapAccount), UnauthorizedLogin
        )
