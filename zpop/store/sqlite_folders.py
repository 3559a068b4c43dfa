"""The SQL of folders that every message path shares (migration 018):
finding a folder, giving out its UIDs and MODSEQs, moving messages between
folders. Each function runs inside the caller's transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from zpop.store.mailbox import INBOX, Folder, MailboxEntry, role_name
from zpop.store.records import FOLDERS, NotFound

FOLDER_COLUMNS = (
    "f.id, f.account_id, f.name, f.role, f.uid_validity, f.next_uid,"
    " f.highest_modseq, f.subscribed"
)

#: Message.folder: the role of a built-in folder, else its name.
MESSAGE_COLUMNS = """
    m.id, m.account_id, COALESCE(f.role, f.name), m.uid, m.received, m.size,
    m.subject, m.pop_removed, m.imap_uid, m.modseq, m.flags, m.keywords
"""
MESSAGE_FROM = "messages m JOIN folders f ON f.id = m.folder_id"

ENTRY_COLUMNS = "id, imap_uid, modseq, flags, keywords, size, received"


def folder_record(row: Sequence[Any], counts: Sequence[Any] = (0, 0, 0)) -> Folder:
    return Folder(
        id=row[0],
        account_id=row[1],
        name=row[2],
        role=row[3],
        uid_validity=row[4],
        next_uid=row[5],
        highest_modseq=row[6],
        subscribed=bool(row[7]),
        messages=counts[0] or 0,
        unseen=counts[1] or 0,
        size=counts[2] or 0,
    )


def keywords_of(text: str) -> tuple[str, ...]:
    return tuple(text.split()) if text else ()


def entry(row: Sequence[Any]) -> MailboxEntry:
    return MailboxEntry(
        row[0], row[1], row[2], row[3], keywords_of(row[4]), row[5], row[6]
    )


def next_validity(conn: sqlite3.Connection, account_id: int, now: float) -> int:
    """A UIDVALIDITY the account never gave: max(now, last + 1)."""
    row = conn.execute(
        "UPDATE accounts SET folder_validity = MAX(?, folder_validity + 1)"
        " WHERE id = ? RETURNING folder_validity",
        (max(int(now), 1), account_id),
    ).fetchone()
    if row is None:
        raise NotFound(f"no account with id {account_id}")
    return int(row[0])


def create_built_in(conn: sqlite3.Connection, account_id: int, now: float) -> None:
    """A new account's five folders."""
    validity = next_validity(conn, account_id, now)
    conn.executemany(
        "INSERT INTO folders (account_id, name, role, uid_validity, next_uid,"
        " highest_modseq) VALUES (?, ?, ?, ?, 1, 1)",
        [(account_id, role_name(role), role, validity) for role in FOLDERS],
    )


def _named(account_id: int, name: str) -> tuple[str, tuple[Any, ...]]:
    """The condition for the account's folder ``name``: a role ("Inbox", as
    the store's other areas name folders) or an IMAP name (INBOX in any
    case), and its parameters."""
    if name in FOLDERS:
        return "account_id = ? AND role = ?", (account_id, name)
    if name.upper() == INBOX:
        return "account_id = ? AND role = 'Inbox'", (account_id,)
    return "account_id = ? AND name = ?", (account_id, name)


def folder_for(conn: sqlite3.Connection, account_id: int, name: str) -> tuple[int, str]:
    """The id and Message.folder label of the account's folder ``name``;
    NotFound."""
    where, params = _named(account_id, name)
    row = conn.execute(
        f"SELECT id, COALESCE(role, name) FROM folders WHERE {where}", params
    ).fetchone()
    if row is None:
        raise NotFound(f"no folder {name}")
    return int(row[0]), str(row[1])


def take_uid_in(
    conn: sqlite3.Connection, account_id: int, name: str
) -> tuple[int, str, int, int]:
    """Reserve the next UID and MODSEQ of the account's folder ``name`` in
    one statement (delivery's path): (folder id, label, UID, MODSEQ)."""
    where, params = _named(account_id, name)
    row = conn.execute(
        "UPDATE folders SET next_uid = next_uid + 1, highest_modseq ="
        f" highest_modseq + 1 WHERE {where}"
        " RETURNING id, COALESCE(role, name), next_uid - 1, highest_modseq",
        params,
    ).fetchone()
    if row is None:
        raise NotFound(f"no folder {name}")
    return int(row[0]), str(row[1]), int(row[2]), int(row[3])


def take_uids(
    conn: sqlite3.Connection, folder_id: int, count: int = 1
) -> tuple[int, int]:
    """Reserve ``count`` UIDs and one MODSEQ in the folder: (first, modseq)."""
    row = conn.execute(
        "UPDATE folders SET next_uid = next_uid + ?, highest_modseq ="
        " highest_modseq + 1 WHERE id = ? RETURNING next_uid, highest_modseq",
        (count, folder_id),
    ).fetchone()
    if row is None:
        raise NotFound(f"no folder with id {folder_id}")
    return int(row[0]) - count, int(row[1])


def take_modseq(conn: sqlite3.Connection, folder_id: int) -> int:
    row = conn.execute(
        "UPDATE folders SET highest_modseq = highest_modseq + 1 WHERE id = ?"
        " RETURNING highest_modseq",
        (folder_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no folder with id {folder_id}")
    return int(row[0])


def record_expunged(
    conn: sqlite3.Connection, folder_id: int, uids: Sequence[int]
) -> None:
    """Note that ``uids`` left the folder, at its next MODSEQ."""
    if not uids:
        return
    modseq = take_modseq(conn, folder_id)
    conn.executemany(
        "INSERT INTO folder_expunges (folder_id, modseq, imap_uid) VALUES (?, ?, ?)",
        [(folder_id, modseq, uid) for uid in uids],
    )


def pop_folders(
    conn: sqlite3.Connection, account_id: int, roles: Sequence[str]
) -> tuple[str, tuple[int, ...]]:
    """The condition for messages in the account's folders of these roles
    (POP's spam policy), and its parameters. The folder ids are read first:
    over one folder the messages then come in index order, where an IN
    over a subquery makes SQLite sort them."""
    marks = ", ".join("?" for _ in roles)
    ids = tuple(
        row[0]
        for row in conn.execute(
            f"SELECT id FROM folders WHERE account_id = ? AND role IN ({marks})",
            (account_id, *roles),
        )
    )
    return f"folder_id IN ({', '.join('?' for _ in ids)})", ids


def pop_order(roles: Sequence[str]) -> str:
    """POP's oldest-first order: within one folder its UIDs (the index
    order), over several the account-wide uid."""
    return "imap_uid" if len(roles) == 1 else "uid"


def move_messages(
    conn: sqlite3.Connection,
    account_id: int,
    target_id: int,
    message_ids: Iterable[int],
) -> list[tuple[int, int]]:
    """Move the account's messages (any folders) to the target folder in
    (folder, UID) order, each leaving an expunge behind; (old UID, new UID) pairs of
    the messages that moved. Messages there already stay as they are."""
    rows = sorted(
        {
            row
            for mid in message_ids
            for row in conn.execute(
                "SELECT id, folder_id, imap_uid FROM messages WHERE id = ?"
                " AND account_id = ? AND folder_id != ?",
                (mid, account_id, target_id),
            )
        },
        key=lambda row: (row[1], row[2]),
    )
    if not rows:
        return []
    by_folder: dict[int, list[int]] = {}
    for _, folder_id, uid in rows:
        by_folder.setdefault(folder_id, []).append(uid)
    for folder_id, uids in by_folder.items():
        record_expunged(conn, folder_id, sorted(uids))
    first, modseq = take_uids(conn, target_id, len(rows))
    conn.executemany(
        "UPDATE messages SET folder_id = ?, imap_uid = ?, modseq = ? WHERE id = ?",
        [(target_id, first + i, modseq, row[0]) for i, row in enumerate(rows)],
    )
    return [(row[2], first + i) for i, row in enumerate(rows)]


def trash_id(conn: sqlite3.Connection, account_id: int) -> int:
    return folder_for(conn, account_id, "Trash")[0]
