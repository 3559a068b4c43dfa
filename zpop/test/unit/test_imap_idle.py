"""zpop.accounts.idle: one look-up a second for every IDLE session of the
process, waking only those whose folder moved; on MemoryStore and Clock."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from zpop.accounts.idle import INTERVAL, IdleWatcher
from zpop.store import StoreError
from zpop.store.mailbox import StoreOp
from zpop.store.memory import MemoryStore
from zpop.store.records import SEEN, NewMessage

NOW = 1_800_000_000.0


class CountingStore(MemoryStore):
    """MemoryStore counting folder_modseqs look-ups; ``broken`` fails them."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0
        self.broken = False

    def folder_modseqs(self, folder_ids: Any) -> Deferred[dict[int, int]]:
        self.lookups += 1
        if self.broken:
            return fail(StoreError("database is locked"))
        return super().folder_modseqs(folder_ids)


class IdleWatcherTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = CountingStore()
        self.clock = Clock()
        self.successResultOf(self.store.add_domain("example.com", False, NOW))
        self.account = self.successResultOf(
            self.store.add_account("bob@example.com", "paid", False, None, NOW)
        )
        self.watcher = IdleWatcher(self.store, self.clock)
        self.inbox = self.successResultOf(
            self.store.get_folder(self.account.id, "INBOX")
        )
        self.spam = self.successResultOf(self.store.get_folder(self.account.id, "Spam"))
        self.woken: list[tuple[str, int | None]] = []

    def wake(self, name: str) -> Any:
        return lambda modseq: self.woken.append((name, modseq))

    def deliver(self, folder: str = "Inbox") -> None:
        new = NewMessage(folder, b"Subject: x\r\n\r\n", "x", NOW)
        self.successResultOf(self.store.store_messages(self.account.id, [new]))

    def test_one_lookup_for_every_session(self) -> None:
        """Many sessions, one look-up a second; only the moved folder's
        sessions wake, with its new MODSEQ, once."""
        for i in range(50):
            self.watcher.watch(
                self.inbox.id, self.inbox.highest_modseq, self.wake(f"i{i}")
            )
        self.watcher.watch(self.spam.id, self.spam.highest_modseq, self.wake("spam"))
        self.deliver()
        self.clock.advance(INTERVAL)
        self.assertEqual(self.store.lookups, 1)
        self.assertEqual(sorted(self.woken), sorted((f"i{i}", 2) for i in range(50)))
        self.woken.clear()
        self.clock.advance(INTERVAL)
        self.assertEqual((self.store.lookups, self.woken), (2, []))

    def test_flag_changes_and_gone_folders_wake(self) -> None:
        self.deliver()
        inbox = self.successResultOf(self.store.get_folder(self.account.id, "INBOX"))
        made = self.successResultOf(self.store.create_folder(self.account.id, "X", NOW))
        self.watcher.watch(inbox.id, inbox.highest_modseq, self.wake("inbox"))
        self.watcher.watch(made.id, made.highest_modseq, self.wake("x"))
        self.successResultOf(
            self.store.store_flags(inbox.id, [1], StoreOp.ADD, SEEN, [])
        )
        self.successResultOf(self.store.delete_folder(self.account.id, "X"))
        self.clock.advance(INTERVAL)
        self.assertEqual(sorted(self.woken), [("inbox", 3), ("x", None)])

    def test_unwatched_sessions_stop_the_timer(self) -> None:
        watch = self.watcher.watch(self.inbox.id, 1, self.wake("a"))
        self.watcher.unwatch(watch)
        self.deliver()
        self.clock.advance(INTERVAL)
        self.assertEqual((self.store.lookups, self.woken), (0, []))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_store_failure_waits_for_the_next_look(self) -> None:
        self.watcher.watch(self.inbox.id, 1, self.wake("a"))
        self.store.broken = True
        self.deliver()
        self.clock.advance(INTERVAL)
        self.assertEqual(self.woken, [])
        self.store.broken = False
        self.clock.advance(INTERVAL)
        self.assertEqual(self.woken, [("a", 2)])
