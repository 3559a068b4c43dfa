"""Per-device POP queues through the realm and the maildrop, on a
MemoryStore: each device's own lock, queue, deletions and LOGIN-DELAY."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.mail.pop3 import IMailbox
from twisted.trial.unittest import SynchronousTestCase

from zpop.accounts.credentials import Identity, LoginRefused
from zpop.accounts.realm import Realm, Session
from zpop.config import AccountsConfig, HostsConfig, PopConfig
from zpop.store import AppPassword
from zpop.test.stores import add_account, deliver, make_store, result

ALICE = "alice@example.com"


class PerDeviceRealmTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = make_store()
        self.addCleanup(self.store.close)
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.pop = PopConfig(login_delay_paid=300)
        self.realm = Realm(
            self.store, HostsConfig(), AccountsConfig(), self.clock, self.pop
        )
        self.alice = add_account(self.store, ALICE)
        result(self.store.enable_pop(ALICE, "all", self.clock.seconds()))
        result(self.store.set_pop_deletion(ALICE, "delete"))
        result(self.store.set_pop_queue(ALICE, "per-device"))
        self.phone = self.app_password("phone")
        self.laptop = self.app_password("laptop")
        deliver(self.store, self.alice, "one", "two")

    def app_password(self, label: str) -> AppPassword:
        digest = label.encode().ljust(32, b"-")
        return result(  # type: ignore[no-any-return]
            self.store.add_app_password(ALICE, label, digest, 1.0)
        )

    def identity(self, password: AppPassword | None) -> Identity:
        if password is None:
            return Identity(ALICE, "primary")
        return Identity(ALICE, f"app password {password.label}", password.id)

    def login(self, password: AppPassword | None) -> Any:
        d = self.realm.requestAvatar(
            self.identity(password), Session("192.0.2.7"), IMailbox
        )
        _, maildrop, _ = result(d)
        self.addCleanup(maildrop.release)
        return maildrop

    def refusal(self, password: AppPassword | None) -> tuple[str, str]:
        d = self.realm.requestAvatar(
            self.identity(password), Session("192.0.2.7"), IMailbox
        )
        failure = self.failureResultOf(d, LoginRefused)
        return failure.value.code, failure.value.text

    def folder_of(self, subject: str) -> str:
        [message] = [
            m
            for m in result(self.store.list_messages(self.alice.id))
            if m.subject == subject
        ]
        return message.folder  # type: ignore[no-any-return]

    def test_two_devices_at_once(self) -> None:
        """Two devices are served at once, each with every message under the
        same UIDLs; a second session of one device is refused [IN-USE]."""
        phone = self.login(self.phone)
        laptop = self.login(self.laptop)
        uidls = [phone.getUidl(i) for i in range(2)]
        self.assertEqual([laptop.getUidl(i) for i in range(2)], uidls)
        self.assertEqual(
            self.refusal(self.phone),
            (
                "IN-USE",
                "Another POP session of this device is already using its mailbox",
            ),
        )

    def test_dele_is_per_device(self) -> None:
        """A DELE applied at the phone's QUIT leaves the laptop's queue as
        it was; the original moves to Trash after the laptop deletes too."""
        self.login(self.laptop).release()
        phone = self.login(self.phone)
        phone.deleteMessage(0)
        result(phone.sync())
        self.assertEqual(self.folder_of("one"), "Inbox")
        self.clock.advance(300)
        self.assertEqual(len(self.login(self.phone).listMessages()), 1)
        laptop = self.login(self.laptop)
        self.assertEqual(len(laptop.listMessages()), 2)
        laptop.deleteMessage(0)
        result(laptop.sync())
        self.assertEqual(self.folder_of("one"), "Trash")

    def test_login_delay_per_device(self) -> None:
        """LOGIN-DELAY counts each device's own logins: the phone is refused
        within the delay, the laptop and the primary password are not."""
        self.login(self.phone).release()
        self.clock.advance(10)
        code, _ = self.refusal(self.phone)
        self.assertEqual(code, "LOGIN-DELAY")
        self.login(self.laptop).release()
        self.login(None).release()
        self.clock.advance(300)
        self.assertEqual(len(self.login(self.phone).listMessages()), 2)

    def test_shared_queue_is_one_maildrop(self) -> None:
        """Back in ``shared`` mode the devices share one lock and a DELE
        takes the message from every device."""
        result(self.store.set_pop_queue(ALICE, "shared"))
        phone = self.login(self.phone)
        self.assertEqual(
            self.refusal(self.laptop),
            ("IN-USE", "Another POP session is already using this mailbox"),
        )
        phone.deleteMessage(0)
        result(phone.sync())
        self.assertEqual(self.folder_of("one"), "Trash")
        self.clock.advance(300)
        self.assertEqual(len(self.login(self.laptop).listMessages()), 1)
