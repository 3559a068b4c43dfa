"""Per-device POP queues in the Store API (migration 017): a conformance
suite run on MemoryStore, on SQLiteStore synchronously and with its SQL on
other threads; then the upgrade of a version 16 database."""

from __future__ import annotations

import os
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from zpop.accounts.maildrop import SPAM_FOLDERS
from zpop.store import schema
from zpop.store.memory import MemoryStore
from zpop.store.records import (
    Account,
    NewMessage,
    PopSession,
    PopSessionLog,
    StoreError,
)
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


class PopDeviceStoreMixin(_MixinBase):
    """Tests any store must pass for per-device POP queues."""

    def make_store(self) -> Any:
        raise NotImplementedError("make_store")

    def setUp(self) -> None:
        super().setUp()
        self.store = self.make_store()
        self.ok(self.store.add_domain("example.com", False, NOW))
        self.ok(self.store.add_account(BOB, "paid", False, None, NOW))
        self.ok(self.store.enable_pop(BOB, "all", NOW))
        self.ok(self.store.set_pop_deletion(BOB, "delete"))
        self.bob: Account = self.ok(self.store.set_pop_queue(BOB, "per-device"))
        self.phone = self.app_password("phone")
        self.laptop = self.app_password("laptop")
        self.first, self.second = self.deliver("one", "two")
        self.owners = iter(range(1, 1000))

    def ok(self, d: Any) -> Any:
        return self.successResultOf(d)

    def app_password(self, label: str, pop_start: str = "setting") -> int:
        digest = label.encode().ljust(32, b"-")
        record = self.ok(
            self.store.add_app_password(BOB, label, digest, NOW, pop_start)
        )
        self.assertEqual(record.pop_start, pop_start)
        return int(record.id)

    def deliver(self, *subjects: str) -> list[int]:
        stored = self.ok(
            self.store.store_messages(
                self.bob.id,
                [
                    NewMessage("Inbox", f"Subject: {s}\r\n\r\n{s}\r\n".encode(), s, NOW)
                    for s in subjects
                ],
            )
        )
        return [m.id for m in stored]

    def login(self, device: int | None) -> tuple[PopSession, str]:
        owner = f"owner-{next(self.owners)}"
        opened = self.ok(
            self.store.open_pop_session(BOB, owner, SPAM_FOLDERS, device, NOW + 1)
        )
        return opened, owner

    def fetch(self, device: int | None, delete: list[int] | None = None) -> list[int]:
        """One whole session of ``device``: the ids offered, then QUIT
        deleting ``delete``."""
        opened, owner = self.login(device)
        self.assertTrue(opened.locked)
        self.assertIsNotNone(opened.device)
        offered = list(opened.messages.ids)
        self.ok(
            self.store.finish_pop_session(
                self.bob.id, owner, delete or [], True, None, opened.device
            )
        )
        return offered

    def folders(self) -> dict[int, tuple[str, bool]]:
        return {
            m.id: (m.folder, m.pop_removed)
            for m in self.ok(self.store.list_messages(self.bob.id))
        }

    def test_queue_setting(self) -> None:
        """The queue is ``shared`` until set; a value outside the vocabulary
        is refused, changing nothing."""
        other = self.ok(
            self.store.add_account("al@example.com", "paid", False, None, 1)
        )
        self.assertEqual(other.pop.queue, "shared")
        self.assertEqual(self.bob.pop.queue, "per-device")
        self.failureResultOf(self.store.set_pop_queue(BOB, "mine"), StoreError)
        self.assertEqual(self.ok(self.store.get_account(BOB)).pop.queue, "per-device")
        generation = self.ok(self.store.get_account(BOB)).generation
        changed = self.ok(self.store.set_pop_queue(BOB, "shared"))
        self.assertEqual(
            (changed.pop.queue, changed.generation), ("shared", generation + 1)
        )

    def test_each_device_gets_every_message(self) -> None:
        """Both devices are offered both messages with the same uids; a DELE
        by one leaves the other's queue as it was, and the original in the
        Inbox until the other deleted it too: then it moves to Trash."""
        phone, phone_owner = self.login(self.phone)
        laptop, laptop_owner = self.login(self.laptop)
        self.assertEqual(list(phone.messages.uids), list(laptop.messages.uids))
        self.assertNotEqual(phone.device, laptop.device)
        self.ok(self.store.release_pop_lock(self.bob.id, phone_owner))
        self.ok(self.store.release_pop_lock(self.bob.id, laptop_owner))
        self.assertEqual(
            self.fetch(self.phone, [self.first]), [self.first, self.second]
        )
        self.assertEqual(self.fetch(self.phone), [self.second])
        self.assertEqual(self.folders()[self.first], ("Inbox", False))
        self.assertEqual(
            self.fetch(self.laptop, [self.first]), [self.first, self.second]
        )
        self.assertEqual(self.folders()[self.first], ("Trash", True))
        self.assertEqual(self.fetch(self.laptop), [self.second])
        self.assertEqual(self.fetch(self.phone), [self.second])

    def test_devices_lock_apart(self) -> None:
        """Two devices hold their locks at once; a second session of one
        device is refused; the primary password is one more device."""
        phone, _ = self.login(self.phone)
        laptop, _ = self.login(self.laptop)
        primary, _ = self.login(None)
        again, _ = self.login(self.phone)
        self.assertEqual(
            (phone.locked, laptop.locked, primary.locked, again.locked),
            (True, True, True, False),
        )

    def test_lock_released_by_its_owner(self) -> None:
        """release_pop_lock frees exactly the owner's device lock."""
        phone, owner = self.login(self.phone)
        self.ok(self.store.release_pop_lock(self.bob.id, "someone else"))
        self.assertFalse(self.login(self.phone)[0].locked)
        self.ok(self.store.release_pop_lock(self.bob.id, owner))
        self.assertTrue(self.login(self.phone)[0].locked)

    def test_device_without_a_login_does_not_hold_mail(self) -> None:
        """A device has a queue from its first login: until the laptop
        logs in, the phone's DELE is the last one and moves the mail."""
        self.fetch(self.phone, [self.first])
        self.assertEqual(self.folders()[self.first], ("Trash", True))
        self.assertEqual(self.fetch(self.laptop), [self.second])

    def test_first_login_start(self) -> None:
        """A device made with ``first-login`` starts with the mail that
        arrives after its first login, and does not hold older mail."""
        tablet = self.app_password("tablet", "first-login")
        self.assertEqual(self.fetch(tablet), [])
        [third] = self.deliver("three")
        self.assertEqual(self.fetch(tablet), [third])
        self.assertEqual(
            self.fetch(self.phone, [self.first]), [self.first, self.second, third]
        )
        self.assertEqual(self.folders()[self.first], ("Trash", True))
        self.fetch(self.phone, [third])
        self.assertEqual(self.folders()[third], ("Inbox", False))
        self.fetch(tablet, [third])
        self.assertEqual(self.folders()[third], ("Trash", True))

    def test_new_mode_applies_to_every_device(self) -> None:
        """``new`` mode's start holds on every device's queue."""
        self.ok(self.store.enable_pop(BOB, "new", NOW + 5))
        [third] = self.deliver("three")
        self.assertEqual(self.fetch(self.phone), [third])
        self.assertEqual(self.fetch(None), [third])

    def test_revoked_device_releases_its_mail(self) -> None:
        """Revoking the laptop's password, whose queue still had the
        message, moves it on: only the phone had deleted it."""
        self.fetch(self.laptop)
        self.fetch(self.phone, [self.first])
        self.assertEqual(self.folders()[self.first], ("Inbox", False))
        self.ok(self.store.revoke_app_password(BOB, self.laptop))
        self.assertEqual(self.folders()[self.first], ("Trash", True))
        self.assertEqual(self.folders()[self.second], ("Inbox", False))

    def test_keep_policy(self) -> None:
        """With ``keep`` the message leaves every queue once all deleted it,
        and stays in the Inbox."""
        self.ok(self.store.set_pop_deletion(BOB, "keep"))
        self.fetch(self.laptop)
        opened, owner = self.login(self.phone)
        self.ok(
            self.store.finish_pop_session(
                self.bob.id, owner, [self.first], False, None, opened.device
            )
        )
        opened, owner = self.login(self.laptop)
        self.ok(
            self.store.finish_pop_session(
                self.bob.id, owner, [self.first], False, None, opened.device
            )
        )
        self.assertEqual(self.folders()[self.first], ("Inbox", True))
        self.assertEqual(self.fetch(None), [self.second])

    def test_revoked_during_session(self) -> None:
        """A session whose app password was revoked applies nothing at
        QUIT and fails; its lock is still the caller's to release."""
        self.fetch(self.laptop)
        opened, owner = self.login(self.phone)
        self.ok(self.store.revoke_app_password(BOB, self.phone))
        self.failureResultOf(
            self.store.finish_pop_session(
                self.bob.id, owner, [self.first], True, None, opened.device
            ),
            StoreError,
        )
        self.assertEqual(self.folders()[self.first], ("Inbox", False))
        self.ok(self.store.release_pop_lock(self.bob.id, owner))
        self.assertEqual(self.fetch(self.laptop), [self.first, self.second])

    def test_revoked_before_first_login(self) -> None:
        """A revoked password's first login opens no queue: StoreError."""
        opened, owner = self.login(self.phone)
        self.ok(self.store.release_pop_lock(self.bob.id, owner))
        self.ok(self.store.revoke_app_password(BOB, self.laptop))
        self.failureResultOf(
            self.store.open_pop_session(BOB, "late", SPAM_FOLDERS, self.laptop, NOW),
            StoreError,
        )
        self.assertEqual(self.fetch(self.phone), [self.first, self.second])

    def test_reenable_all_offers_everything_again(self) -> None:
        """Re-enabling in ``all`` mode clears every device's deletions."""
        self.ok(self.store.set_pop_deletion(BOB, "keep"))
        self.fetch(self.laptop)
        opened, owner = self.login(self.phone)
        self.ok(
            self.store.finish_pop_session(
                self.bob.id, owner, [self.first], False, None, opened.device
            )
        )
        self.ok(self.store.enable_pop(BOB, "all", NOW + 9))
        self.assertEqual(self.fetch(self.phone), [self.first, self.second])

    def test_shared_and_per_device(self) -> None:
        """Back in ``shared`` mode the one queue holds what not every
        device deleted; a shared DELE takes it from every device."""
        self.fetch(self.laptop)
        self.fetch(self.phone, [self.first])
        self.ok(self.store.set_pop_queue(BOB, "shared"))
        opened, owner = self.login(self.phone)
        self.assertIsNone(opened.device)
        self.assertEqual(list(opened.messages.ids), [self.first, self.second])
        self.ok(self.store.finish_pop_session(self.bob.id, owner, [self.second], True))
        self.ok(self.store.set_pop_queue(BOB, "per-device"))
        self.assertEqual(self.fetch(self.laptop), [self.first])
        self.assertEqual(self.fetch(self.phone), [])

    def test_login_delay_per_device(self) -> None:
        """A login recorded for a device is that device's last login only."""
        phone, owner = self.login(self.phone)
        self.ok(
            self.store.record_pop_logs(
                [(self.bob.id, PopSessionLog(login_at=NOW + 3, device=phone.device))]
            )
        )
        self.ok(self.store.release_pop_lock(self.bob.id, owner))
        self.assertEqual(self.login(self.phone)[0].last_login, NOW + 3)
        self.assertIsNone(self.login(self.laptop)[0].last_login)
        self.assertIsNone(self.login(None)[0].last_login)

    def test_bad_pop_start(self) -> None:
        """A pop_start outside the vocabulary is refused, adding nothing."""
        before = self.ok(self.store.list_app_passwords(BOB))
        self.failureResultOf(
            self.store.add_app_password(BOB, "x", b"x" * 32, NOW, "sometime"),
            StoreError,
        )
        self.assertEqual(self.ok(self.store.list_app_passwords(BOB)), before)


class MemoryPopDeviceTests(PopDeviceStoreMixin, SynchronousTestCase):
    """The per-device suite on MemoryStore."""

    def make_store(self) -> MemoryStore:
        return memory_store(self)


class ThreadedSQLitePopDeviceTests(PopDeviceStoreMixin, SynchronousTestCase):
    """The per-device suite on SQLiteStore, calls on threads."""

    def make_store(self) -> SQLiteStore:
        return threaded_sqlite_store(self)


class SQLitePopDeviceTests(PopDeviceStoreMixin, SynchronousTestCase):
    """The per-device suite on SQLiteStore, on this thread."""

    def make_store(self) -> SQLiteStore:
        return sqlite_store(self)


class Migration017Tests(SynchronousTestCase):
    def test_version_16_upgrades(self) -> None:
        """A version 16 database upgrades: its accounts share one queue and
        its app passwords follow the setting."""
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "zpop.sqlite")
        schema.migrate(path, to_version=16)
        seed_old_database(path, BOB, "phone", NOW)
        schema.migrate(path)
        self.assertEqual(schema.check(path), schema.latest_version())
        store = SQLiteStore(path, run_synchronously)
        self.addCleanup(store.close)
        self.assertEqual(
            self.successResultOf(store.get_account(BOB)).pop.queue, "shared"
        )
        [password] = self.successResultOf(store.list_app_passwords(BOB))
        self.assertEqual(password.pop_start, "setting")
