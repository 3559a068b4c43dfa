"""The SQLite store's IMAP mailboxes (IMailboxStore; migration 018)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from twisted.internet.defer import Deferred

from zpop.store.mailbox import (
    DELIMITER,
    Appended,
    Copied,
    FlagChanges,
    Folder,
    FolderChanges,
    FolderView,
    MailboxEntry,
    StoreOp,
)
from zpop.store.records import AlreadyExists, FolderRefused, NewMessage, NotFound
from zpop.store.sqlite_base import SQLiteBase
from zpop.store.sqlite_folders import (
    ENTRY_COLUMNS,
    FOLDER_COLUMNS,
    entry,
    folder_for,
    folder_record,
    move_messages,
    next_validity,
    record_expunged,
    take_modseq,
    take_uids,
)

_COUNTS = (
    "SELECT COUNT(*), SUM((flags & 1) = 0), SUM(size) FROM messages WHERE folder_id = ?"
)


def _folder(conn: sqlite3.Connection, folder_id: int, counts: bool = False) -> Folder:
    row = conn.execute(
        f"SELECT {FOLDER_COLUMNS} FROM folders f WHERE f.id = ?", (folder_id,)
    ).fetchone()
    if row is None:
        raise NotFound("the folder no longer exists")
    if not counts:
        return folder_record(row)
    return folder_record(row, conn.execute(_COUNTS, (folder_id,)).fetchone())


def _named(conn: sqlite3.Connection, account_id: int, name: str) -> Folder:
    return _folder(conn, folder_for(conn, account_id, name)[0])


def _exists(conn: sqlite3.Connection, account_id: int, name: str) -> bool:
    try:
        folder_for(conn, account_id, name)
    except NotFound:
        return False
    return True


def _create(conn: sqlite3.Connection, account_id: int, name: str, now: float) -> int:
    """Create ``name`` and any missing folder above it; the new folder's id."""
    if _exists(conn, account_id, name):
        raise AlreadyExists(f"folder {name} exists already")
    parts = name.split(DELIMITER)
    for depth in range(1, len(parts) + 1):
        path = DELIMITER.join(parts[:depth])
        if depth < len(parts) and _exists(conn, account_id, path):
            continue
        cursor = conn.execute(
            "INSERT INTO folders (account_id, name, uid_validity, next_uid,"
            " highest_modseq) VALUES (?, ?, ?, 1, 1)",
            (account_id, path, next_validity(conn, account_id, now)),
        )
    return int(cursor.lastrowid or 0)


def _selected(
    conn: sqlite3.Connection, folder_id: int, uids: Sequence[int]
) -> list[MailboxEntry]:
    """The folder's entries among ``uids``, by UID."""
    if not uids:
        return []
    wanted = set(uids)
    rows = conn.execute(
        f"SELECT {ENTRY_COLUMNS} FROM messages WHERE folder_id = ?"
        " AND imap_uid BETWEEN ? AND ? ORDER BY imap_uid",
        (folder_id, min(wanted), max(wanted)),
    )
    return [entry(r) for r in rows if r[1] in wanted]


def _merge_keywords(
    old: tuple[str, ...], op: str, named: Sequence[str]
) -> tuple[str, ...]:
    if op == StoreOp.REPLACE:
        return tuple(dict.fromkeys(named))
    if op == StoreOp.ADD:
        lowered = {k.lower() for k in old}
        return (*old, *(k for k in dict.fromkeys(named) if k.lower() not in lowered))
    gone = {k.lower() for k in named}
    return tuple(k for k in old if k.lower() not in gone)


def _new_flags(old: int, op: str, flags: int) -> int:
    if op == StoreOp.REPLACE:
        return flags
    return old | flags if op == StoreOp.ADD else old & ~flags


class SQLiteMailboxes(SQLiteBase):
    """Folders, UIDs, flags and MODSEQs in SQL."""

    def list_folders(self, account_id: int) -> Deferred:
        def thd() -> list[Folder]:
            with self._read() as conn:
                rows = conn.execute(
                    f"SELECT {FOLDER_COLUMNS} FROM folders f WHERE f.account_id = ?"
                    " ORDER BY f.name",
                    (account_id,),
                ).fetchall()
            return [folder_record(r) for r in rows]

        return self._call(thd)

    def get_folder(self, account_id: int, name: str) -> Deferred:
        def thd() -> Folder:
            with self._read() as conn:
                return _folder(conn, folder_for(conn, account_id, name)[0], True)

        return self._call(thd)

    def create_folder(self, account_id: int, name: str, now: float) -> Deferred:
        def thd() -> Folder:
            with self._write() as conn:
                return _folder(conn, _create(conn, account_id, name, now))

        return self._call(thd)

    def rename_folder(self, account_id: int, name: str, new_name: str) -> Deferred:
        def thd() -> Folder:
            with self._write() as conn:
                old = _named(conn, account_id, name)
                if _exists(conn, account_id, new_name):
                    raise AlreadyExists(f"folder {new_name} exists already")
                if old.role == "Inbox":
                    target = _create(conn, account_id, new_name, 0)
                    ids = [
                        r[0]
                        for r in conn.execute(
                            "SELECT id FROM messages WHERE folder_id = ?"
                            " ORDER BY imap_uid",
                            (old.id,),
                        )
                    ]
                    move_messages(conn, account_id, target, ids)
                    return _folder(conn, target)
                if old.role is not None:
                    raise FolderRefused(f"{old.name} is a built-in folder")
                if new_name.startswith(old.name + DELIMITER):
                    raise FolderRefused(f"{old.name} cannot move below itself")
                parent = new_name.rpartition(DELIMITER)[0]
                if parent and not _exists(conn, account_id, parent):
                    _create(conn, account_id, parent, 0)
                prefix = old.name + DELIMITER
                conn.execute(
                    "UPDATE folders SET name = ? || substr(name, ?)"
                    " WHERE account_id = ? AND (id = ? OR substr(name, 1, ?) = ?)",
                    (
                        new_name,
                        len(old.name) + 1,
                        account_id,
                        old.id,
                        len(prefix),
                        prefix,
                    ),
                )
                return _folder(conn, old.id)

        return self._call(thd)

    def delete_folder(self, account_id: int, name: str) -> Deferred:
        def thd() -> None:
            with self._write() as conn:
                old = _named(conn, account_id, name)
                if old.role is not None:
                    raise FolderRefused(f"{old.name} is a built-in folder")
                prefix = old.name + DELIMITER
                below = conn.execute(
                    "SELECT 1 FROM folders WHERE account_id = ?"
                    " AND substr(name, 1, ?) = ?",
                    (account_id, len(prefix), prefix),
                ).fetchone()
                if below is not None:
                    raise FolderRefused(f"{old.name} has folders below it")
                conn.execute("DELETE FROM folders WHERE id = ?", (old.id,))

        return self._call(thd)

    def subscribe_folder(
        self, account_id: int, name: str, subscribed: bool
    ) -> Deferred:
        def thd() -> Folder:
            with self._write() as conn:
                folder_id = folder_for(conn, account_id, name)[0]
                conn.execute(
                    "UPDATE folders SET subscribed = ? WHERE id = ?",
                    (int(subscribed), folder_id),
                )
                return _folder(conn, folder_id)

        return self._call(thd)

    def open_folder(self, folder_id: int) -> Deferred:
        def thd() -> FolderView:
            with self._read() as conn:
                folder = _folder(conn, folder_id)
                rows = conn.execute(
                    f"SELECT {ENTRY_COLUMNS} FROM messages WHERE folder_id = ?"
                    " ORDER BY imap_uid",
                    (folder_id,),
                ).fetchall()
            return FolderView(folder, tuple(map(entry, rows)))

        return self._call(thd)

    def folder_changes(self, folder_id: int, since: int) -> Deferred:
        def thd() -> FolderChanges:
            with self._read() as conn:
                folder = _folder(conn, folder_id)
                if folder.highest_modseq <= since:
                    return FolderChanges(folder, (), ())
                rows = conn.execute(
                    f"SELECT {ENTRY_COLUMNS} FROM messages WHERE folder_id = ?"
                    " AND modseq > ? ORDER BY imap_uid",
                    (folder_id, since),
                ).fetchall()
                gone = conn.execute(
                    "SELECT imap_uid FROM folder_expunges WHERE folder_id = ?"
                    " AND modseq > ? ORDER BY imap_uid",
                    (folder_id, since),
                ).fetchall()
            return FolderChanges(
                folder, tuple(map(entry, rows)), tuple(r[0] for r in gone)
            )

        return self._call(thd)

    def folder_modseqs(self, folder_ids: Sequence[int]) -> Deferred:
        def thd() -> dict[int, int]:
            found: dict[int, int] = {}
            ids = list(dict.fromkeys(folder_ids))
            with self._read() as conn:
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    marks = ", ".join("?" for _ in chunk)
                    found.update(
                        conn.execute(
                            "SELECT id, highest_modseq FROM folders"
                            f" WHERE id IN ({marks})",
                            chunk,
                        ).fetchall()
                    )
            return found

        return self._call(thd)

    def append_message(
        self, account_id: int, name: str, message: NewMessage
    ) -> Deferred:
        def thd() -> Appended:
            with self._write() as conn:
                folder = _named(conn, account_id, name)
                stored = self._insert_message(conn, account_id, message)
                return Appended(folder.uid_validity, stored.imap_uid, stored.id)

        return self._call(thd)

    def store_flags(
        self,
        folder_id: int,
        uids: Sequence[int],
        op: str,
        flags: int,
        keywords: Sequence[str],
        unchanged_since: int | None = None,
    ) -> Deferred:
        op = StoreOp(op)

        def thd() -> FlagChanges:
            with self._write() as conn:
                folder = _folder(conn, folder_id)
                modified: list[int] = []
                updates: list[MailboxEntry] = []
                for found in _selected(conn, folder_id, uids):
                    if unchanged_since is not None and found.modseq > unchanged_since:
                        modified.append(found.uid)
                        continue
                    bits = _new_flags(found.flags, op, flags)
                    words = _merge_keywords(found.keywords, op, keywords)
                    if (bits, words) != (found.flags, found.keywords):
                        updates.append(found._replace(flags=bits, keywords=words))
                if not updates:
                    return FlagChanges((), tuple(modified), folder.highest_modseq)
                modseq = take_modseq(conn, folder_id)
                changed = tuple(u._replace(modseq=modseq) for u in updates)
                conn.executemany(
                    "UPDATE messages SET flags = ?, keywords = ?, modseq = ?"
                    " WHERE id = ?",
                    [(c.flags, " ".join(c.keywords), modseq, c.id) for c in changed],
                )
                return FlagChanges(changed, tuple(modified), modseq)

        return self._call(thd)

    def copy_messages(
        self, folder_id: int, uids: Sequence[int], target: str, move: bool
    ) -> Deferred:
        def thd() -> Copied:
            with self._write() as conn:
                source = _folder(conn, folder_id)
                destination = _named(conn, source.account_id, target)
                found = _selected(conn, folder_id, uids)
                if move:
                    pairs = move_messages(
                        conn, source.account_id, destination.id, [e.id for e in found]
                    )
                else:
                    pairs = self._copy(conn, source.account_id, destination.id, found)
                return Copied(destination.uid_validity, tuple(pairs))

        return self._call(thd)

    @staticmethod
    def _copy(
        conn: sqlite3.Connection,
        account_id: int,
        target_id: int,
        found: list[MailboxEntry],
    ) -> list[tuple[int, int]]:
        if not found:
            return []
        first, modseq = take_uids(conn, target_id, len(found))
        row = conn.execute(
            "UPDATE accounts SET next_uid = next_uid + ? WHERE id = ?"
            " RETURNING next_uid",
            (len(found), account_id),
        ).fetchone()
        pop_uid = int(row[0]) - len(found)
        for i, e in enumerate(found):
            cursor = conn.execute(
                "INSERT INTO messages (account_id, folder_id, uid, imap_uid, modseq,"
                " received, size, subject, flags, keywords)"
                " SELECT account_id, ?, ?, ?, ?, received, size, subject, flags,"
                " keywords FROM messages WHERE id = ?",
                (target_id, pop_uid + i, first + i, modseq, e.id),
            )
            conn.execute(
                "INSERT INTO body_chunks (message_id, seq, data)"
                " SELECT ?, seq, data FROM body_chunks WHERE message_id = ?",
                (cursor.lastrowid, e.id),
            )
        return [(e.uid, first + i) for i, e in enumerate(found)]

    def expunge(self, folder_id: int, uids: Sequence[int] | None = None) -> Deferred:
        def thd() -> tuple[int, ...]:
            with self._write() as conn:
                _folder(conn, folder_id)
                rows = conn.execute(
                    "SELECT id, imap_uid FROM messages WHERE folder_id = ?"
                    " AND flags & 8 ORDER BY imap_uid",
                    (folder_id,),
                ).fetchall()
                if uids is not None:
                    wanted = set(uids)
                    rows = [r for r in rows if r[1] in wanted]
                conn.executemany(
                    "DELETE FROM messages WHERE id = ?", [(r[0],) for r in rows]
                )
                gone = tuple(r[1] for r in rows)
                record_expunged(conn, folder_id, gone)
                return gone

        return self._call(thd)
