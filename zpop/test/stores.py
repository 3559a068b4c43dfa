"""Stores for tests: a MemoryStore, or a synchronous SQLiteStore in a temp
dir where a test needs the database file, and helpers to fill them."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.python.failure import Failure

from zpop.accounts import passwords
from zpop.store import Account, MemoryStore, NewMessage, SQLiteStore, migrate
from zpop.threads import run_synchronously

KEY = b"k" * 32
COST = 4


def result(d: Deferred) -> Any:
    """The result of an already-fired Deferred; raises its failure."""
    box: list[Any] = []
    d.addBoth(box.append)
    if not box:
        raise AssertionError(f"{d!r} has not fired")
    if isinstance(box[0], Failure):
        box[0].raiseException()
    return box[0]


def _with_domains(store: Any) -> Any:
    result(store.add_domain("example.com", False, 0.0))
    result(store.add_domain("corp.example", True, 0.0))
    return store


def make_store() -> MemoryStore:
    """A MemoryStore with two hosted domains: no disk, no threads."""
    return _with_domains(MemoryStore())  # type: ignore[no-any-return]


def make_sqlite_store(directory: str) -> SQLiteStore:
    """A migrated SQLiteStore under ``directory`` with two hosted domains,
    for what only a database file shows (other processes, raw SQL)."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "zpop.sqlite")
    migrate(path)
    return _with_domains(SQLiteStore(path, run_synchronously))  # type: ignore[no-any-return]


def add_account(
    store: SQLiteStore,
    address: str,
    password: str | None = "primary-secret",
    plan: str = "paid",
    federated: bool = False,
    created: float = 1.0,
) -> Account:
    hashed = None if password is None else passwords.hash_password(password, COST)
    return result(store.add_account(address, plan, federated, hashed, created))


def add_app_password(store: SQLiteStore, account: Account, label: str = "phone") -> str:
    secret = passwords.generate_app_password()
    digest = passwords.app_password_digest(KEY, account.id, secret)
    assert digest is not None
    result(store.add_app_password(account.address, label, digest, 5.0))
    return secret


def deliver(
    store: SQLiteStore, account: Account, *subjects: str, folder: str = "Inbox"
) -> None:
    result(
        store.store_messages(
            account.id,
            [
                NewMessage(folder, f"Subject: {s}\r\n\r\n{s}\r\n".encode(), s, 10.0)
                for s in subjects
            ],
        )
    )


def read_message(mailbox: Any, index: int) -> bytes:
    """The whole body of a message, read as the POP3 server reads it."""
    reader = result(maybeDeferred(mailbox.getMessage, index))
    parts = []
    while True:
        data = result(maybeDeferred(reader.read, 1 << 20))
        if not data:
            return b"".join(parts)
        parts.append(data)


def refuse_message_updates(path: str) -> None:
    """Make every later UPDATE of messages in the database at ``path`` fail,
    as a full disk would fail a commit."""
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "CREATE TRIGGER refuse BEFORE UPDATE ON messages"
            " BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
    conn.close()
