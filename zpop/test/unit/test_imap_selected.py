"""zpop.imap.selected: a session's numbering of its folder, caught up with
the store at the points IMAP allows; on MemoryStore."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from zpop.imap.selected import Selected
from zpop.imap.values import Atom, encode
from zpop.store.mailbox import DELETED, FLAGGED, StoreOp
from zpop.store.memory import MemoryStore
from zpop.store.records import SEEN, NewMessage

NOW = 1_800_000_000.0


def line(response: Any) -> bytes:
    """An untagged response's text after ``* ``."""
    return b" ".join(encode(v) for v in response)


def _new(n: int, **kw: Any) -> NewMessage:
    return NewMessage("Inbox", b"Subject: %d\r\n\r\n" % n, str(n), NOW + n, **kw)


class SelectedTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = MemoryStore()
        self.successResultOf(self.store.add_domain("example.com", False, NOW))
        self.account = self.successResultOf(
            self.store.add_account("bob@example.com", "paid", False, None, NOW)
        )
        self.deliver(_new(1), _new(2, seen=True), _new(3))
        self.inbox = self.successResultOf(
            self.store.get_folder(self.account.id, "INBOX")
        )
        view = self.successResultOf(self.store.open_folder(self.inbox.id))
        self.selected = Selected.open(view, read_only=False)

    def deliver(self, *messages: NewMessage) -> None:
        self.successResultOf(self.store.store_messages(self.account.id, list(messages)))

    def catch_up(self, expunges: bool = True) -> list[bytes]:
        changes = self.successResultOf(
            self.store.folder_changes(self.inbox.id, self.selected.highest_modseq)
        )
        return [line(r) for r in self.selected.catch_up(changes, expunges)]

    def test_open(self) -> None:
        s = self.selected
        self.assertEqual(
            (len(s), list(s.uids), s.uid_next, s.largest_uid()), (3, [1, 2, 3], 4, 3)
        )
        self.assertEqual(s.flag_value(1), (Atom("\\Seen"),))
        self.assertEqual(s.indexes_for_uids([(2, 9)]), [1, 2])
        self.assertEqual(s.indexes_for_numbers([(1, 1), (3, 3), (1, 2)]), [0, 1, 2])
        self.assertEqual((s.index_of(2), s.index_of(7)), (1, None))

    def test_nothing_changed(self) -> None:
        self.assertEqual(self.catch_up(), [])

    def test_new_mail_and_flags(self) -> None:
        """Another session's flag change comes as FETCH FLAGS, new mail as
        one EXISTS with the new count."""
        self.successResultOf(
            self.store.store_flags(self.inbox.id, [1], StoreOp.ADD, FLAGGED, ["Work"])
        )
        self.deliver(_new(4), _new(5))
        self.assertEqual(
            self.catch_up(),
            [b"1 FETCH (FLAGS (\\Flagged Work))", b"5 EXISTS"],
        )
        self.assertEqual((len(self.selected), self.selected.uid_next), (5, 6))
        self.assertEqual(self.catch_up(), [])

    def test_expunges_highest_first(self) -> None:
        """Expunges come highest number first, so each number is right
        when it is sent."""
        self.successResultOf(
            self.store.store_flags(self.inbox.id, [1, 3], StoreOp.ADD, DELETED, [])
        )
        self.successResultOf(self.store.expunge(self.inbox.id))
        self.assertEqual(
            self.catch_up(),
            [b"3 EXPUNGE", b"1 EXPUNGE"],
        )
        self.assertEqual(list(self.selected.uids), [2])

    def test_expunges_wait(self) -> None:
        """While answering FETCH, STORE or SEARCH nothing is removed; the
        next catch-up that may remove does."""
        self.successResultOf(
            self.store.store_flags(self.inbox.id, [2], StoreOp.ADD, DELETED, [])
        )
        self.successResultOf(self.store.expunge(self.inbox.id))
        self.deliver(_new(4))
        self.assertEqual(self.catch_up(expunges=False), [b"4 EXISTS"])
        self.assertEqual(list(self.selected.uids), [1, 2, 3, 4])
        self.assertEqual(self.catch_up(), [b"2 EXPUNGE"])
        self.assertEqual(list(self.selected.uids), [1, 3, 4])
        self.assertEqual(self.catch_up(), [])

    def test_condstore_flags_carry_modseq(self) -> None:
        self.selected.condstore = True
        changed = self.successResultOf(
            self.store.store_flags(self.inbox.id, [3], StoreOp.ADD, SEEN, [])
        )
        self.assertEqual(
            self.catch_up(),
            [b"3 FETCH (FLAGS (\\Seen) MODSEQ (%d))" % changed.highest_modseq],
        )

    def test_own_expunge(self) -> None:
        self.assertEqual(
            [line(r) for r in self.selected.forget([3, 1])],
            [b"3 EXPUNGE", b"1 EXPUNGE"],
        )
        self.assertEqual(list(self.selected.uids), [2])
