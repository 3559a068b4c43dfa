"""IMAP's mailbox model in the Store API (IMailboxStore, migration 018): a
conformance suite run on MemoryStore, on SQLiteStore synchronously and on
SQLiteStore with its SQL on other threads; then the upgrade of a version 17
database, whose POP UIDLs must not change."""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from zpop.accounts.maildrop import SPAM_FOLDERS, uidl
from zpop.store import schema
from zpop.store.mailbox import ANSWERED, DELETED, FLAGGED, Folder, StoreOp
from zpop.store.memory import MemoryStore
from zpop.store.records import (
    SEEN,
    Account,
    AlreadyExists,
    FolderRefused,
    NewMessage,
    NotFound,
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
BUILT_IN = ["Drafts", "INBOX", "Sent", "Spam", "Trash"]


def _new(folder: str = "Inbox", text: str = "hi", **kw: Any) -> NewMessage:
    body = f"Subject: {text}\r\n\r\n{text}\r\n".encode()
    return NewMessage(folder, body, text, kw.pop("received", NOW), **kw)


class MailboxStoreMixin(_MixinBase):
    """Tests any IStore must pass for IMAP's folders, through the store API
    alone; ``make_store`` gives a store whose Deferreds have fired by the
    time the call returns."""

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

    def fails(self, d: defer.Deferred, kind: type[Exception]) -> Exception:
        error: Exception = self.failureResultOf(d, kind).value
        return error

    def folder(self, name: str) -> Folder:
        found: Folder = self.ok(self.store.get_folder(self.bob.id, name))
        return found

    def deliver(self, *messages: NewMessage) -> list[Any]:
        return list(self.ok(self.store.store_messages(self.bob.id, list(messages))))

    def uids(self, name: str) -> list[int]:
        view = self.ok(self.store.open_folder(self.folder(name).id))
        return [e.uid for e in view.entries]

    def test_built_in_folders(self) -> None:
        """A new account has the five built-in folders, empty, subscribed,
        with one UIDVALIDITY of at least its creation time."""
        folders = self.ok(self.store.list_folders(self.bob.id))
        self.assertEqual(
            [
                (f.name, f.role, f.next_uid, f.highest_modseq, f.subscribed)
                for f in folders
            ],
            [
                ("Drafts", "Drafts", 1, 1, True),
                ("INBOX", "Inbox", 1, 1, True),
                ("Sent", "Sent", 1, 1, True),
                ("Spam", "Spam", 1, 1, True),
                ("Trash", "Trash", 1, 1, True),
            ],
        )
        self.assertEqual({f.uid_validity for f in folders}, {int(NOW)})
        self.assertEqual(self.ok(self.store.list_folders(self.bob.id + 99)), [])

    def test_delivery_takes_folder_uids(self) -> None:
        """Each folder numbers its own messages from 1; the POP uid stays
        account-wide; each message takes its folder's next MODSEQ."""
        stored = self.deliver(_new(), _new("Spam"), _new(), _new("Sent", seen=True))
        self.assertEqual(
            [(m.folder, m.uid, m.imap_uid, m.modseq, m.flags) for m in stored],
            [
                ("Inbox", 1, 1, 2, 0),
                ("Spam", 2, 1, 2, 0),
                ("Inbox", 3, 2, 3, 0),
                ("Sent", 4, 1, 2, SEEN),
            ],
        )
        inbox = self.folder("inbox")
        self.assertEqual(
            (inbox.name, inbox.next_uid, inbox.highest_modseq, inbox.messages),
            ("INBOX", 3, 3, 2),
        )
        self.assertEqual(
            (inbox.unseen, inbox.size), (2, sum(m.size for m in stored[::2]))
        )
        self.assertEqual(self.ok(self.store.list_messages(self.bob.id)), stored)

    def test_create_folder(self) -> None:
        """CREATE makes the folders above the name too, each with a new
        UIDVALIDITY; a name taken (INBOX in any case, a built-in one) is
        AlreadyExists; an unknown account NotFound."""
        made = self.ok(self.store.create_folder(self.bob.id, "Work/2026", NOW))
        work = self.folder("Work")
        self.assertEqual(
            (made.name, made.role, made.next_uid, work.role),
            ("Work/2026", None, 1, None),
        )
        self.assertEqual(
            (work.uid_validity, made.uid_validity), (int(NOW) + 1, int(NOW) + 2)
        )
        for taken in ("Work", "Work/2026", "inbox", "INBOX", "Trash"):
            self.fails(self.store.create_folder(self.bob.id, taken, NOW), AlreadyExists)
        self.fails(self.store.create_folder(self.bob.id + 9, "X", NOW), NotFound)
        names = [f.name for f in self.ok(self.store.list_folders(self.bob.id))]
        self.assertEqual(names, sorted([*BUILT_IN, "Work", "Work/2026"]))

    def test_validity_never_repeats(self) -> None:
        """A folder deleted and created again at the same time gets another
        UIDVALIDITY."""
        first = self.ok(self.store.create_folder(self.bob.id, "X", NOW))
        self.ok(self.store.delete_folder(self.bob.id, "X"))
        again = self.ok(self.store.create_folder(self.bob.id, "X", NOW))
        self.assertEqual(again.uid_validity, first.uid_validity + 1)
        self.assertNotEqual(again.id, first.id)

    def test_rename(self) -> None:
        """RENAME moves the folder and those below it, keeping ids, UIDs and
        UIDVALIDITY; the messages' folder follows."""
        work = self.ok(self.store.create_folder(self.bob.id, "Work/2026", NOW))
        [message] = self.deliver(_new("Work/2026"))
        renamed = self.ok(self.store.rename_folder(self.bob.id, "Work", "Jobs/Old"))
        self.assertEqual(renamed.name, "Jobs/Old")
        moved = self.folder("Jobs/Old/2026")
        self.assertEqual((moved.id, moved.uid_validity), (work.id, work.uid_validity))
        self.fails(self.store.get_folder(self.bob.id, "Work"), NotFound)
        self.folder("Jobs")
        [listed] = self.ok(self.store.list_messages(self.bob.id))
        self.assertEqual(
            (listed.id, listed.folder, listed.imap_uid),
            (message.id, "Jobs/Old/2026", 1),
        )

    def test_rename_refused(self) -> None:
        self.ok(self.store.create_folder(self.bob.id, "A", NOW))
        self.ok(self.store.create_folder(self.bob.id, "B", NOW))
        self.fails(self.store.rename_folder(self.bob.id, "A", "B"), AlreadyExists)
        self.fails(self.store.rename_folder(self.bob.id, "A", "A/x"), FolderRefused)
        self.fails(self.store.rename_folder(self.bob.id, "Spam", "X"), FolderRefused)
        self.fails(self.store.rename_folder(self.bob.id, "Nope", "X"), NotFound)
        self.assertEqual(self.folder("A").name, "A")

    def test_rename_inbox(self) -> None:
        """Renaming INBOX moves its messages into a new folder, numbered
        from 1 there, with their POP uids; INBOX stays, empty, and records
        them as expunged."""
        stored = self.deliver(_new(), _new(), _new("Spam"))
        before = self.folder("INBOX")
        old = self.ok(self.store.rename_folder(self.bob.id, "INBOX", "Old mail"))
        self.assertEqual((old.name, old.role, old.next_uid), ("Old mail", None, 3))
        self.assertEqual(self.uids("Old mail"), [1, 2])
        self.assertEqual(self.uids("INBOX"), [])
        changes = self.ok(self.store.folder_changes(before.id, before.highest_modseq))
        self.assertEqual(changes.expunged, (1, 2))
        listed = self.ok(self.store.list_messages(self.bob.id, "Old mail"))
        self.assertEqual([m.uid for m in listed], [stored[0].uid, stored[1].uid])

    def test_delete(self) -> None:
        """DELETE removes a user folder and its messages; built-in folders
        and folders with folders below them are refused."""
        self.ok(self.store.create_folder(self.bob.id, "A/B", NOW))
        [message] = self.deliver(_new("A/B"))
        for name in ("INBOX", "Trash", "A"):
            self.fails(self.store.delete_folder(self.bob.id, name), FolderRefused)
        self.ok(self.store.delete_folder(self.bob.id, "A/B"))
        self.fails(self.store.delete_folder(self.bob.id, "A/B"), NotFound)
        self.assertEqual(self.ok(self.store.list_messages(self.bob.id)), [])
        self.fails(self.store.read_body(message.id, 0, 10), NotFound)
        self.ok(self.store.delete_folder(self.bob.id, "A"))

    def test_subscribe(self) -> None:
        off = self.ok(self.store.subscribe_folder(self.bob.id, "Spam", False))
        self.assertFalse(off.subscribed)
        self.assertFalse(self.folder("Spam").subscribed)
        self.assertTrue(
            self.ok(self.store.subscribe_folder(self.bob.id, "Spam", True)).subscribed
        )
        self.fails(self.store.subscribe_folder(self.bob.id, "Nope", True), NotFound)

    def test_append(self) -> None:
        """APPEND stores flags and keywords and answers the UID; appended to
        INBOX, the message is in the POP queue with a new POP uid."""
        self.deliver(_new())
        appended = self.ok(
            self.store.append_message(
                self.bob.id,
                "INBOX",
                _new("INBOX", "up", flags=FLAGGED, keywords=("$Label1",), seen=True),
            )
        )
        self.assertEqual(
            (appended.uid_validity, appended.uid),
            (self.folder("INBOX").uid_validity, 2),
        )
        view = self.ok(self.store.open_folder(self.folder("INBOX").id))
        last = view.entries[-1]
        self.assertEqual(
            (last.id, last.uid, last.flags, last.keywords),
            (appended.message_id, 2, FLAGGED | SEEN, ("$Label1",)),
        )
        self.assertEqual(
            self.ok(self.store.read_body(appended.message_id, 0, 100)),
            b"Subject: up\r\n\r\nup\r\n",
        )
        session = self.ok(self.store.open_pop_session(BOB, "o", SPAM_FOLDERS))
        self.assertEqual(list(session.messages.uids), [])  # POP is off
        self.ok(self.store.enable_pop(BOB, "all", NOW))
        session = self.ok(self.store.open_pop_session(BOB, "o", SPAM_FOLDERS))
        self.assertEqual(list(session.messages.uids), [1, 2])
        self.fails(self.store.append_message(self.bob.id, "Nope", _new()), NotFound)

    def test_store_flags(self) -> None:
        """STORE adds, removes or replaces flags and keywords (keywords
        matched in any case); only the messages it changes take the one
        new MODSEQ; UNCHANGEDSINCE leaves newer messages alone."""
        self.deliver(_new(), _new(), _new())
        inbox = self.folder("INBOX")
        added = self.ok(
            self.store.store_flags(inbox.id, [1, 2, 9], StoreOp.ADD, SEEN, ["Work"])
        )
        self.assertEqual(
            [(e.uid, e.flags, e.keywords, e.modseq) for e in added.changed],
            [(1, SEEN, ("Work",), 5), (2, SEEN, ("Work",), 5)],
        )
        self.assertEqual((added.modified, added.highest_modseq), ((), 5))
        again = self.ok(
            self.store.store_flags(inbox.id, [1], StoreOp.ADD, SEEN, ["work"])
        )
        self.assertEqual((again.changed, again.highest_modseq), ((), 5))
        removed = self.ok(
            self.store.store_flags(inbox.id, [1, 3], StoreOp.REMOVE, SEEN, ["WORK"])
        )
        self.assertEqual(
            [(e.uid, e.flags, e.keywords, e.modseq) for e in removed.changed],
            [(1, 0, (), 6)],
        )
        guarded = self.ok(
            self.store.store_flags(
                inbox.id, [1, 2, 3], StoreOp.REPLACE, ANSWERED, ["a", "b"], 5
            )
        )
        self.assertEqual(
            [(e.uid, e.flags, e.keywords, e.modseq) for e in guarded.changed],
            [(2, ANSWERED, ("a", "b"), 7), (3, ANSWERED, ("a", "b"), 7)],
        )
        self.assertEqual(guarded.modified, (1,))
        self.assertEqual(self.folder("INBOX").highest_modseq, 7)
        self.assertEqual(
            [m.seen for m in self.ok(self.store.list_messages(self.bob.id))],
            [False, False, False],
        )

    def test_copy(self) -> None:
        """COPY makes new messages (new ids and POP uids) in UID order at
        the target's next UIDs, flags and bodies kept; the source keeps
        its own."""
        self.ok(self.store.create_folder(self.bob.id, "Keep", NOW))
        first, second = self.deliver(_new(text="one"), _new(text="two", seen=True))
        inbox = self.folder("INBOX")
        copied = self.ok(self.store.copy_messages(inbox.id, [2, 1, 7], "Keep", False))
        keep = self.folder("Keep")
        self.assertEqual(
            (copied.uid_validity, copied.uids), (keep.uid_validity, ((1, 1), (2, 2)))
        )
        copies = self.ok(self.store.list_messages(self.bob.id, "Keep"))
        self.assertEqual(
            [(m.uid, m.imap_uid, m.seen, m.subject) for m in copies],
            [(3, 1, False, "one"), (4, 2, True, "two")],
        )
        self.assertEqual(
            self.ok(self.store.read_body(copies[1].id, 0, 100)),
            self.ok(self.store.read_body(second.id, 0, 100)),
        )
        self.assertEqual(self.uids("INBOX"), [1, 2])
        self.fails(self.store.copy_messages(inbox.id, [1], "Nope", False), NotFound)

    def test_move(self) -> None:
        """MOVE keeps the message (id, POP uid, flags), gives it the
        target's next UID and records it expunged in the source."""
        stored = self.deliver(_new(), _new(), _new())
        inbox = self.folder("INBOX")
        moved = self.ok(self.store.copy_messages(inbox.id, [1, 3], "Spam", True))
        self.assertEqual(moved.uids, ((1, 1), (3, 2)))
        self.assertEqual(self.uids("INBOX"), [2])
        spam = self.ok(self.store.list_messages(self.bob.id, "Spam"))
        self.assertEqual(
            [(m.id, m.uid, m.imap_uid) for m in spam],
            [(stored[0].id, 1, 1), (stored[2].id, 3, 2)],
        )
        changes = self.ok(self.store.folder_changes(inbox.id, inbox.highest_modseq))
        self.assertEqual((changes.changed, changes.expunged), ((), (1, 3)))

    def test_expunge(self) -> None:
        """EXPUNGE deletes the \\Deleted messages (among the UIDs given);
        POP's next snapshot no longer has them and their bodies are gone."""
        self.ok(self.store.enable_pop(BOB, "all", NOW))
        stored = self.deliver(_new(), _new(), _new())
        inbox = self.folder("INBOX")
        self.ok(self.store.store_flags(inbox.id, [1, 2, 3], StoreOp.ADD, DELETED, []))
        self.assertEqual(self.ok(self.store.expunge(inbox.id, [2, 3])), (2, 3))
        self.assertEqual(self.uids("INBOX"), [1])
        session = self.ok(self.store.open_pop_session(BOB, "o", SPAM_FOLDERS))
        self.assertEqual(list(session.messages.ids), [stored[0].id])
        self.ok(self.store.release_pop_lock(self.bob.id, "o"))
        self.fails(self.store.read_body(stored[1].id, 0, 10), NotFound)
        self.assertEqual(self.ok(self.store.expunge(inbox.id)), (1,))
        self.assertEqual(self.ok(self.store.expunge(inbox.id)), ())

    def test_folder_changes(self) -> None:
        """folder_changes gives what was added or re-flagged, and what left,
        after a MODSEQ."""
        self.deliver(_new(), _new())
        inbox = self.folder("INBOX")
        mark = inbox.highest_modseq
        self.ok(self.store.store_flags(inbox.id, [1], StoreOp.ADD, DELETED, []))
        self.deliver(_new())
        self.ok(self.store.expunge(inbox.id))
        changes = self.ok(self.store.folder_changes(inbox.id, mark))
        self.assertEqual([e.uid for e in changes.changed], [3])
        self.assertEqual(changes.expunged, (1,))
        self.assertEqual(changes.folder.highest_modseq, mark + 3)
        latest = self.ok(
            self.store.folder_changes(inbox.id, changes.folder.highest_modseq)
        )
        self.assertEqual((latest.changed, latest.expunged), ((), ()))

    def test_pop_delete_to_trash(self) -> None:
        """POP's deletion 'delete' moves to Trash as IMAP sees it: a new UID
        there, an expunge in INBOX, the POP uid kept."""
        self.ok(self.store.enable_pop(BOB, "all", NOW))
        stored = self.deliver(_new(), _new())
        inbox = self.folder("INBOX")
        self.ok(self.store.open_pop_session(BOB, "o", SPAM_FOLDERS))
        self.ok(self.store.finish_pop_session(self.bob.id, "o", [stored[1].id], True))
        trash = self.ok(self.store.list_messages(self.bob.id, "Trash"))
        self.assertEqual(
            [(m.id, m.uid, m.imap_uid, m.pop_removed) for m in trash],
            [(stored[1].id, 2, 1, True)],
        )
        changes = self.ok(self.store.folder_changes(inbox.id, inbox.highest_modseq))
        self.assertEqual(changes.expunged, (2,))

    def test_deleted_folder_is_gone(self) -> None:
        made = self.ok(self.store.create_folder(self.bob.id, "X", NOW))
        self.ok(self.store.delete_folder(self.bob.id, "X"))
        self.fails(self.store.open_folder(made.id), NotFound)
        self.fails(self.store.folder_changes(made.id, 0), NotFound)
        self.fails(self.store.store_flags(made.id, [1], "add", SEEN, []), NotFound)
        self.fails(self.store.expunge(made.id), NotFound)


class MemoryMailboxTests(MailboxStoreMixin, SynchronousTestCase):
    """The mailbox suite on MemoryStore."""

    def make_store(self) -> MemoryStore:
        return memory_store(self)


class ThreadedSQLiteMailboxTests(MailboxStoreMixin, SynchronousTestCase):
    """The mailbox suite on SQLiteStore, calls on threads."""

    def make_store(self) -> SQLiteStore:
        return threaded_sqlite_store(self)


class SQLiteMailboxTests(MailboxStoreMixin, SynchronousTestCase):
    """The mailbox suite on SQLiteStore, on this thread."""

    def make_store(self) -> SQLiteStore:
        return sqlite_store(self)


class Migration018Tests(SynchronousTestCase):
    def test_version_17_upgrades(self) -> None:
        """A version 17 database upgrades without changing a POP UIDL, a
        message id, a folder, a \\Seen flag, a device's deletion or the
        message id sequence; IMAP numbers each message by its POP uid."""
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "zpop.sqlite")
        schema.migrate(path, to_version=17)
        account, password = seed_old_database(path, BOB, "phone", NOW)
        rows = [
            ("Inbox", 1, 0, 0),
            ("Spam", 2, 1, 0),
            ("Inbox", 4, 0, 0),
            ("Trash", 5, 1, 1),
            ("Inbox", 6, 0, 0),
        ]
        with closing(sqlite3.connect(path)) as conn, conn:
            conn.execute(
                "UPDATE accounts SET uid_validity = 48879, next_uid = 8,"
                " pop_enabled = 1, pop_mode = 'all', pop_spam = 'include',"
                " pop_queue = 'per-device' WHERE id = ?",
                (account,),
            )
            for folder, uid, seen, removed in rows:
                conn.execute(
                    "INSERT INTO messages (account_id, folder, uid, received, size,"
                    " subject, seen, pop_removed) VALUES (?, ?, ?, ?, 3, 's', ?, ?)",
                    (account, folder, uid, NOW + uid, seen, removed),
                )
                conn.execute(
                    "INSERT INTO body_chunks VALUES (last_insert_rowid(), 0, 'abc')"
                )
            # A newer message was deleted: its id must not come back.
            conn.execute(
                "INSERT INTO messages (account_id, folder, uid, received, size)"
                " VALUES (?, 'Inbox', 7, 0, 0)",
                (account,),
            )
            conn.execute("DELETE FROM messages WHERE uid = 7")
            conn.execute(
                "INSERT INTO pop_devices (account_id, app_password_id, start_uid,"
                " first_login) VALUES (?, ?, 0, ?)",
                (account, password, NOW),
            )
            conn.execute(
                "INSERT INTO pop_device_removed SELECT last_insert_rowid(), id"
                " FROM messages WHERE uid = 4"
            )
            before = [
                (r[0], r[1], f"{r[2]:x}-{r[3]}")
                for r in conn.execute(
                    "SELECT m.id, m.folder, a.uid_validity, m.uid FROM messages m"
                    " JOIN accounts a ON a.id = m.account_id ORDER BY m.id"
                )
            ]
        upgraded = schema.upgrade(path)
        self.assertEqual(
            (upgraded.before, upgraded.after), (17, schema.latest_version())
        )
        store = SQLiteStore(path, run_synchronously)
        self.addCleanup(store.close)
        bob = self.successResultOf(store.get_account(BOB))
        messages = self.successResultOf(store.list_messages(bob.id))
        self.assertEqual([(m.id, m.folder, uidl(bob, m.uid)) for m in messages], before)
        self.assertEqual(
            [(m.imap_uid, m.seen, m.pop_removed, m.modseq) for m in messages],
            [
                (1, False, False, 1),
                (2, True, False, 1),
                (4, False, False, 1),
                (5, True, True, 1),
                (6, False, False, 1),
            ],
        )
        session = self.successResultOf(
            store.open_pop_session(BOB, "o", SPAM_FOLDERS, password, NOW)
        )
        self.assertEqual(
            [uidl(bob, uid) for uid in session.messages.uids],
            ["beef-1", "beef-2", "beef-6"],
        )
        folders = self.successResultOf(store.list_folders(bob.id))
        self.assertEqual(
            [(f.name, f.next_uid) for f in folders],
            [("Drafts", 8), ("INBOX", 8), ("Sent", 8), ("Spam", 8), ("Trash", 8)],
        )
        [new] = self.successResultOf(store.store_messages(bob.id, [_new()]))
        self.assertEqual((new.id, new.uid, new.imap_uid, new.modseq), (7, 8, 8, 2))
        later = self.successResultOf(store.create_folder(bob.id, "X", 0))
        self.assertEqual(later.uid_validity, folders[0].uid_validity + 1)
