"""Per-device POP queues in SQL (migration 017), inside the caller's
transaction: a device's queue at login, its deletions at QUIT, and the
messages that leave the POP queue once no device still has them in its
queue. ``zpop.store.sqlite_messages`` and ``sqlite_accounts`` call these;
``zpop.store.memory_pop_devices`` is the same rule for the MemoryStore."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

from zpop.store.records import Account, StoreError
from zpop.store.sqlite_folders import (
    move_messages,
    pop_folders,
    pop_order,
    trash_id,
)

#: A message some device of its account still has in its queue: a device
#: whose queue starts at or before the message and that has not deleted it.
_PENDING = """EXISTS (
    SELECT 1 FROM pop_devices d
    WHERE d.account_id = messages.account_id AND messages.uid >= d.start_uid
    AND NOT EXISTS (SELECT 1 FROM pop_device_removed r
                    WHERE r.device_id = d.id AND r.message_id = messages.id))"""


def find_device(
    conn: sqlite3.Connection, account_id: int, app_password_id: int | None
) -> tuple[int, int, float | None] | None:
    """The device's (id, start uid, last login), or None before its first
    login in per-device mode."""
    where = "app_password_id IS NULL"
    params: tuple[int, ...] = (account_id,)
    if app_password_id is not None:
        where, params = "app_password_id = ?", (account_id, app_password_id)
    row = conn.execute(
        "SELECT id, start_uid, last_login FROM pop_devices"
        f" WHERE account_id = ? AND {where}",
        params,
    ).fetchone()
    return None if row is None else (int(row[0]), int(row[1]), row[2])


def register_device(
    conn: sqlite3.Connection, account_id: int, app_password_id: int | None, now: float
) -> tuple[int, int, float | None]:
    """A device's first login: its queue starts where its app password's
    ``pop_start`` says (the account's setting, or the mail from now on)."""
    start = "0"
    if app_password_id is not None:
        found = conn.execute(
            "SELECT pop_start FROM app_passwords WHERE id = ? AND account_id = ?",
            (app_password_id, account_id),
        ).fetchone()
        if found is None:
            raise StoreError("the app password was revoked")
        if found[0] == "first-login":
            start = "(SELECT next_uid FROM accounts WHERE id = ?1)"
    conn.execute(
        "INSERT INTO pop_devices (account_id, app_password_id, start_uid,"
        f" first_login) VALUES (?1, ?2, {start}, ?3)",
        (account_id, app_password_id, now),
    )
    registered = find_device(conn, account_id, app_password_id)
    assert registered is not None
    return registered


def device_snapshot(
    conn: sqlite3.Connection,
    account: Account,
    folders: Sequence[str],
    device: int,
    start_uid: int,
) -> list[tuple[int, int, int]]:
    """The device's POP queue, oldest first, as (id, uid, size) rows."""
    where, ids = pop_folders(conn, account.id, folders)
    rows: list[tuple[int, int, int]] = conn.execute(
        f"SELECT id, uid, size FROM messages WHERE {where}"
        " AND pop_removed = 0 AND uid >= ?"
        " AND NOT EXISTS (SELECT 1 FROM pop_device_removed r"
        " WHERE r.device_id = ? AND r.message_id = messages.id)"
        f" ORDER BY {pop_order(folders)}",
        (*ids, max(account.pop.start_uid, start_uid), device),
    ).fetchall()
    return rows


def remove_for_device(
    conn: sqlite3.Connection,
    account_id: int,
    device: int,
    message_ids: Sequence[int],
    to_trash: bool,
) -> None:
    """A device's QUIT: the messages leave its queue; those no other device
    still has leave the POP queue (to Trash if ``to_trash``)."""
    if (
        conn.execute(
            "SELECT 1 FROM pop_devices WHERE id = ? AND account_id = ?",
            (device, account_id),
        ).fetchone()
        is None
    ):
        raise StoreError("the device's app password was revoked")
    conn.executemany(
        "INSERT OR IGNORE INTO pop_device_removed (device_id, message_id)"
        " SELECT ?, id FROM messages WHERE id = ? AND account_id = ?",
        [(device, mid, account_id) for mid in message_ids],
    )
    settle_deleted(conn, account_id, message_ids, to_trash)


def settle_deleted(
    conn: sqlite3.Connection,
    account_id: int,
    message_ids: Iterable[int] | None,
    to_trash: bool,
) -> None:
    """Of ``message_ids`` (None: every message some device deleted), those
    that no device still has in its queue leave the POP queue; their
    per-device rows, which nothing needs any more, go."""
    if message_ids is None:
        message_ids = [
            row[0]
            for row in conn.execute(
                "SELECT DISTINCT r.message_id FROM pop_device_removed r"
                " JOIN pop_devices d ON d.id = r.device_id WHERE d.account_id = ?",
                (account_id,),
            )
        ]
    ids = [(mid, account_id) for mid in message_ids]
    settled = [
        (mid,)
        for mid, _ in ids
        if conn.execute(
            "UPDATE messages SET pop_removed = 1 WHERE id = ?1 AND account_id = ?2"
            f" AND pop_removed = 0 AND NOT {_PENDING} RETURNING id",
            (mid, account_id),
        ).fetchone()
    ]
    if to_trash:
        move_messages(
            conn, account_id, trash_id(conn, account_id), [m for (m,) in settled]
        )
    conn.executemany(
        "DELETE FROM pop_device_removed WHERE message_id = ?1 AND EXISTS"
        " (SELECT 1 FROM messages WHERE id = ?1 AND account_id = ?2"
        " AND pop_removed = 1)",
        ids,
    )
