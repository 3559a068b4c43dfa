"""IMailboxStore in memory, as SQLiteStore keeps it (migration 018): each
MemoryStore account row holds its folders; a message row knows its folder
by id. The module functions are what every message path shares (delivery,
POP's move to Trash, IMAP)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from twisted.internet.defer import Deferred, succeed

from zpop.store.mailbox import (
    DELETED,
    DELIMITER,
    INBOX,
    Appended,
    Copied,
    FlagChanges,
    Folder,
    FolderChanges,
    FolderView,
    MailboxEntry,
    StoreOp,
    role_name,
)
from zpop.store.memory_queue import settle
from zpop.store.records import (
    FOLDERS,
    SEEN,
    AlreadyExists,
    FolderRefused,
    Message,
    NewMessage,
    NotFound,
)

#: Folder ids, never reused (AUTOINCREMENT), shared by every MemoryStore.
_folder_ids = itertools.count(1)


@dataclass(slots=True)
class FolderRow:
    id: int
    account_id: int
    name: str
    role: str | None
    uid_validity: int
    next_uid: int = 1
    highest_modseq: int = 1
    subscribed: bool = True
    #: (modseq, uid) of every message that left the folder.
    expunges: list[tuple[int, int]] = field(default_factory=list)

    def record(self, counts: tuple[int, int, int] = (0, 0, 0)) -> Folder:
        return Folder(
            self.id,
            self.account_id,
            self.name,
            self.role,
            self.uid_validity,
            self.next_uid,
            self.highest_modseq,
            self.subscribed,
            *counts,
        )

    @property
    def label(self) -> str:
        """Message.folder for the folder's messages."""
        return self.role or self.name


def new_validity(row: Any, now: float) -> int:
    row.folder_validity = max(int(now), 1, row.folder_validity + 1)
    return int(row.folder_validity)


def create_built_in(row: Any, now: float) -> None:
    validity = new_validity(row, now)
    for role in FOLDERS:
        folder = FolderRow(
            next(_folder_ids), row.account.id, role_name(role), role, validity
        )
        row.folders[folder.id] = folder


def folder_named(row: Any, name: str) -> FolderRow:
    """The folder ``name``: a role or an IMAP name (INBOX in any case)."""
    folder: FolderRow
    for folder in row.folders.values():
        if name in FOLDERS and folder.role == name:
            return folder
        if name not in FOLDERS and (
            folder.name == name or (name.upper() == INBOX and folder.role == "Inbox")
        ):
            return folder
    raise NotFound(f"no folder {name}")


def _exists(row: Any, name: str) -> bool:
    try:
        folder_named(row, name)
    except NotFound:
        return False
    return True


def take_uids(folder: FolderRow, count: int = 1) -> tuple[int, int]:
    first = folder.next_uid
    folder.next_uid += count
    folder.highest_modseq += 1
    return first, folder.highest_modseq


def record_expunged(folder: FolderRow, uids: Sequence[int]) -> None:
    if uids:
        folder.highest_modseq += 1
        folder.expunges.extend((folder.highest_modseq, uid) for uid in uids)


def entries_of(row: Any, folder_id: int) -> list[Any]:
    """The folder's message rows by UID."""
    found = [m for m in row.messages.values() if m.folder_id == folder_id]
    return sorted(found, key=lambda m: m.message.imap_uid)


def move_to(
    row: Any, target: FolderRow, message_ids: Iterable[int]
) -> list[tuple[int, int]]:
    """Move the account's messages to ``target`` in (folder, UID) order, each
    leaving an expunge behind; (old UID, new UID) pairs."""
    moving = sorted(
        (row.messages[i] for i in set(message_ids) if i in row.messages),
        key=lambda m: (m.folder_id, m.message.imap_uid),
    )
    moving = [m for m in moving if m.folder_id != target.id]
    if not moving:
        return []
    for folder_id in dict.fromkeys(m.folder_id for m in moving):
        uids = [m.message.imap_uid for m in moving if m.folder_id == folder_id]
        record_expunged(row.folders[folder_id], uids)
    first, modseq = take_uids(target, len(moving))
    pairs = []
    for i, stored in enumerate(moving):
        pairs.append((stored.message.imap_uid, first + i))
        stored.folder_id = target.id
        stored.message = replace(
            stored.message, folder=target.label, imap_uid=first + i, modseq=modseq
        )
    return pairs


def entry(stored: Any) -> MailboxEntry:
    m: Message = stored.message
    return MailboxEntry(
        m.id, m.imap_uid, m.modseq, m.flags, m.keywords, m.size, m.received
    )


def _merge(
    old: MailboxEntry, op: str, flags: int, keywords: Sequence[str]
) -> tuple[int, tuple[str, ...]]:
    if op == StoreOp.REPLACE:
        return flags, tuple(dict.fromkeys(keywords))
    if op == StoreOp.ADD:
        lowered = {k.lower() for k in old.keywords}
        added = (k for k in dict.fromkeys(keywords) if k.lower() not in lowered)
        return old.flags | flags, (*old.keywords, *added)
    gone = {k.lower() for k in keywords}
    return old.flags & ~flags, tuple(k for k in old.keywords if k.lower() not in gone)


class MemoryMailboxes:
    """A MemoryStore mixin; the account and message rows are MemoryStore's."""

    _accounts: dict[int, Any]
    _messages: dict[int, Any]
    _message_ids: Iterator[int]

    def _row_by_id(self, account_id: int) -> Any:
        """MemoryStore's."""
        raise NotImplementedError

    def _insert_message(
        self,
        account_id: int,
        new: NewMessage,
        where: tuple[FolderRow, int, int] | None = None,
    ) -> Message:
        """Store one message with the account's next uid, in its folder at
        that folder's next UID and MODSEQ, or at ``where`` (folder, UID,
        MODSEQ) taken already; the account and folder exist."""
        row = self._accounts[account_id]
        if where is None:
            folder = folder_named(row, new.folder)
            imap_uid, modseq = take_uids(folder)
        else:
            folder, imap_uid, modseq = where
        body = bytes(new.body)
        message = Message(
            id=next(self._message_ids),
            account_id=account_id,
            folder=folder.label,
            uid=row.next_uid,
            received=float(new.received),
            size=len(body),
            subject=new.subject,
            pop_removed=False,
            imap_uid=imap_uid,
            modseq=modseq,
            flags=new.flag_bits,
            keywords=tuple(new.keywords),
        )
        row.next_uid += 1
        stored = self._message_row(message, body, folder.id)
        row.messages[message.id] = stored
        self._messages[message.id] = stored
        return message

    def _message_row(self, message: Message, body: bytes, folder_id: int) -> Any:
        """MemoryStore's."""
        raise NotImplementedError

    def _check_new(self, account_id: int, message: NewMessage) -> None:
        """Fail as SQLiteStore would before storing the message anywhere."""
        folder_named(self._row_by_id(account_id), message.folder)

    def _folder_row(self, folder_id: int) -> tuple[Any, FolderRow]:
        for row in self._accounts.values():
            if folder_id in row.folders:
                return row, row.folders[folder_id]
        raise NotFound("the folder no longer exists")

    def _create(self, row: Any, name: str, now: float) -> FolderRow:
        if _exists(row, name):
            raise AlreadyExists(f"folder {name} exists already")
        parts = name.split(DELIMITER)
        for depth in range(1, len(parts) + 1):
            path = DELIMITER.join(parts[:depth])
            if depth < len(parts) and _exists(row, path):
                continue
            folder = FolderRow(
                next(_folder_ids), row.account.id, path, None, new_validity(row, now)
            )
            row.folders[folder.id] = folder
        return folder

    def list_folders(self, account_id: int) -> Deferred[list[Folder]]:
        row = self._accounts.get(account_id)
        folders = (
            [] if row is None else sorted(row.folders.values(), key=lambda f: f.name)
        )
        return succeed([f.record() for f in folders])

    def get_folder(self, account_id: int, name: str) -> Deferred[Folder]:
        def look() -> Folder:
            row = self._row_by_id(account_id)
            folder = folder_named(row, name)
            stored = entries_of(row, folder.id)
            unseen = sum(1 for m in stored if not m.message.flags & SEEN)
            size = sum(m.message.size for m in stored)
            return folder.record((len(stored), unseen, size))

        return settle(look)

    def create_folder(self, account_id: int, name: str, now: float) -> Deferred[Folder]:
        return settle(
            lambda: self._create(self._row_by_id(account_id), name, now).record()
        )

    def rename_folder(
        self, account_id: int, name: str, new_name: str
    ) -> Deferred[Folder]:
        def apply() -> Folder:
            row = self._row_by_id(account_id)
            old = folder_named(row, name)
            if _exists(row, new_name):
                raise AlreadyExists(f"folder {new_name} exists already")
            if old.role == "Inbox":
                target = self._create(row, new_name, 0)
                move_to(row, target, [m.message.id for m in entries_of(row, old.id)])
                return target.record()
            if old.role is not None:
                raise FolderRefused(f"{old.name} is a built-in folder")
            if new_name.startswith(old.name + DELIMITER):
                raise FolderRefused(f"{old.name} cannot move below itself")
            parent = new_name.rpartition(DELIMITER)[0]
            if parent and not _exists(row, parent):
                self._create(row, parent, 0)
            was = old.name
            for folder in row.folders.values():
                if folder is old or folder.name.startswith(was + DELIMITER):
                    folder.name = new_name + folder.name[len(was) :]
                    for stored in entries_of(row, folder.id):
                        stored.message = replace(stored.message, folder=folder.label)
            return old.record()

        return settle(apply)

    def delete_folder(self, account_id: int, name: str) -> Deferred[None]:
        def apply() -> None:
            row = self._row_by_id(account_id)
            old = folder_named(row, name)
            if old.role is not None:
                raise FolderRefused(f"{old.name} is a built-in folder")
            if any(
                f.name.startswith(old.name + DELIMITER) for f in row.folders.values()
            ):
                raise FolderRefused(f"{old.name} has folders below it")
            for stored in entries_of(row, old.id):
                self._drop_message(row, stored.message.id)
            del row.folders[old.id]

        return settle(apply)

    def _drop_message(self, row: Any, message_id: int) -> None:
        """What ON DELETE CASCADE does when a message goes."""
        del row.messages[message_id]
        del self._messages[message_id]
        for device in row.pop_devices.values():
            device.removed.discard(message_id)

    def subscribe_folder(
        self, account_id: int, name: str, subscribed: bool
    ) -> Deferred[Folder]:
        def apply() -> Folder:
            folder = folder_named(self._row_by_id(account_id), name)
            folder.subscribed = bool(subscribed)
            return folder.record()

        return settle(apply)

    def open_folder(self, folder_id: int) -> Deferred[FolderView]:
        def look() -> FolderView:
            row, folder = self._folder_row(folder_id)
            return FolderView(
                folder.record(), tuple(map(entry, entries_of(row, folder_id)))
            )

        return settle(look)

    def folder_changes(self, folder_id: int, since: int) -> Deferred[FolderChanges]:
        def look() -> FolderChanges:
            row, folder = self._folder_row(folder_id)
            changed = tuple(
                entry(m) for m in entries_of(row, folder_id) if m.message.modseq > since
            )
            gone = tuple(
                sorted(uid for modseq, uid in folder.expunges if modseq > since)
            )
            return FolderChanges(folder.record(), changed, gone)

        return settle(look)

    def folder_modseqs(self, folder_ids: Sequence[int]) -> Deferred[dict[int, int]]:
        found = {}
        for folder_id in folder_ids:
            try:
                found[folder_id] = self._folder_row(folder_id)[1].highest_modseq
            except NotFound:
                pass
        return succeed(found)

    def append_message(
        self, account_id: int, name: str, message: NewMessage
    ) -> Deferred[Appended]:
        def apply() -> Appended:
            folder = folder_named(self._row_by_id(account_id), name)
            stored = self._insert_message(account_id, message)
            return Appended(folder.uid_validity, stored.imap_uid, stored.id)

        return settle(apply)

    def store_flags(
        self,
        folder_id: int,
        uids: Sequence[int],
        op: str,
        flags: int,
        keywords: Sequence[str],
        unchanged_since: int | None = None,
    ) -> Deferred[FlagChanges]:
        def apply() -> FlagChanges:
            how = StoreOp(op)
            row, folder = self._folder_row(folder_id)
            wanted = set(uids)
            modified: list[int] = []
            updates: list[tuple[Any, int, tuple[str, ...]]] = []
            for stored in entries_of(row, folder_id):
                found = entry(stored)
                if found.uid not in wanted:
                    continue
                if unchanged_since is not None and found.modseq > unchanged_since:
                    modified.append(found.uid)
                    continue
                bits, words = _merge(found, how, flags, keywords)
                if (bits, words) != (found.flags, found.keywords):
                    updates.append((stored, bits, words))
            if not updates:
                return FlagChanges((), tuple(modified), folder.highest_modseq)
            folder.highest_modseq += 1
            for stored, bits, words in updates:
                stored.message = replace(
                    stored.message,
                    flags=bits,
                    keywords=words,
                    modseq=folder.highest_modseq,
                )
            changed = tuple(entry(s) for s, _, _ in updates)
            return FlagChanges(changed, tuple(modified), folder.highest_modseq)

        return settle(apply)

    def copy_messages(
        self, folder_id: int, uids: Sequence[int], target: str, move: bool
    ) -> Deferred[Copied]:
        def apply() -> Copied:
            row, source = self._folder_row(folder_id)
            destination = folder_named(row, target)
            wanted = set(uids)
            found = [
                m for m in entries_of(row, folder_id) if m.message.imap_uid in wanted
            ]
            if move:
                pairs = move_to(row, destination, [m.message.id for m in found])
                return Copied(destination.uid_validity, tuple(pairs))
            placed = take_uids(destination, len(found)) if found else (0, 0)
            pairs = []
            for i, stored in enumerate(found):
                m = stored.message
                new = NewMessage(
                    destination.label,
                    stored.body,
                    m.subject,
                    m.received,
                    flags=m.flags,
                    keywords=m.keywords,
                )
                where = (destination, placed[0] + i, placed[1])
                self._insert_message(row.account.id, new, where)
                pairs.append((m.imap_uid, placed[0] + i))
            return Copied(destination.uid_validity, tuple(pairs))

        return settle(apply)

    def expunge(
        self, folder_id: int, uids: Sequence[int] | None = None
    ) -> Deferred[tuple[int, ...]]:
        def apply() -> tuple[int, ...]:
            row, folder = self._folder_row(folder_id)
            gone = [
                m
                for m in entries_of(row, folder_id)
                if m.message.flags & DELETED
                and (uids is None or m.message.imap_uid in set(uids))
            ]
            for stored in gone:
                self._drop_message(row, stored.message.id)
            expunged = tuple(m.message.imap_uid for m in gone)
            record_expunged(folder, expunged)
            return expunged

        return settle(apply)
