"""The SQLite schema: numbered migrations, upgrades with a backup first, and
the version check every other opener makes.

Migrations are immutable SQL files shipped in ``zpop/store/migrations``.
``migrate`` (``zpop init``, ``zpop upgrade`` and server start) creates a new
database atomically (a temporary file renamed into place) or brings an
existing one up to date after copying it to a backup beside it; each
migration runs in its own write transaction, which reads the version it
starts from, so two upgraders never apply one twice. Everything else opens
with ``check``: a database of another version is refused with a message
naming the fix, so a newer ``zpop`` binary never upgrades a database under
an older running server.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from importlib import resources
from typing import NamedTuple

from zpop.files import fsync_directory
from zpop.store.records import (
    SchemaError,
)

BUSY_TIMEOUT = 30.0


def migrations() -> list[tuple[int, str]]:
    """The numbered migration scripts shipped with zpop, in order."""
    found = []
    for entry in resources.files("zpop.store").joinpath("migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:3].isdigit():
            found.append((int(name[:3]), entry.read_text(encoding="utf-8")))
    found.sort()
    for expected, (number, _) in enumerate(found, start=1):
        if number != expected:
            raise RuntimeError(f"migration {expected:03d} is missing")
    return found


def latest_version() -> int:
    return len(migrations())


def connect(path: str) -> sqlite3.Connection:
    """A connection with zpop's settings: foreign keys, durable commits."""
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
    except BaseException:
        conn.close()
        raise
    return conn


def _version(conn: sqlite3.Connection) -> int:
    row = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'zpop_version'"
    ).fetchone()
    if row is None:
        return 0
    (version,) = conn.execute("SELECT version FROM zpop_version").fetchone()
    return int(version)


def _statements(script: str) -> Iterator[str]:
    """The statements of a migration script, one at a time."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            if statement.strip():
                yield statement
            statement = ""
    if statement.strip() and not statement.strip().startswith("--"):
        raise RuntimeError(f"incomplete statement in a migration: {statement!r}")


#: The first line of a migration that rebuilds a table others reference:
#: it runs with foreign keys off (they cannot change inside a transaction)
#: and commits only if every reference still holds.
FOREIGN_KEYS_OFF = "-- zpop: foreign keys off\n"


def _apply(conn: sqlite3.Connection, path: str, number: int, script: str) -> bool:
    """Apply migration ``number`` in one write transaction, if the database
    (read under the write lock) is just before it; whether it was applied."""
    rebuilds = script.startswith(FOREIGN_KEYS_OFF)
    if rebuilds:
        conn.execute("PRAGMA foreign_keys = OFF")
    try:
        return _apply_in_transaction(conn, path, number, script, rebuilds)
    finally:
        if rebuilds:
            conn.execute("PRAGMA foreign_keys = ON")


def _apply_in_transaction(
    conn: sqlite3.Connection, path: str, number: int, script: str, rebuilds: bool
) -> bool:
    conn.execute("BEGIN IMMEDIATE")
    try:
        if _version(conn) != number - 1:
            conn.execute("ROLLBACK")
            return False
        for statement in _statements(script):
            conn.execute(statement)
        if rebuilds:
            _check_foreign_keys(conn, path)
        if number == 1:
            conn.execute("CREATE TABLE zpop_version (version INTEGER NOT NULL)")
            conn.execute("INSERT INTO zpop_version VALUES (1)")
        else:
            conn.execute("UPDATE zpop_version SET version = ?", (number,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return True


def _refuse_newer(path: str, current: int, known: int) -> None:
    if current > known:
        raise SchemaError(
            f"database at {path} is version {current}, this zpop knows up to "
            f"{known}: upgrade zpop"
        )


def _upgrade(conn: sqlite3.Connection, path: str, target: int) -> None:
    scripts = migrations()
    _refuse_newer(path, _version(conn), len(scripts))
    for number, script in scripts[:target]:
        _apply(conn, path, number, script)


def _create(path: str, target: int) -> None:
    tmp = f"{path}.new-{os.getpid()}"
    leftovers = (tmp, tmp + "-wal", tmp + "-shm", tmp + "-journal")
    for leftover in leftovers:
        if os.path.exists(leftover):
            os.unlink(leftover)
    try:
        conn = connect(tmp)
        try:
            _upgrade(conn, path, target)
            conn.execute("PRAGMA journal_mode = WAL")
        finally:
            conn.close()
    except BaseException:
        for leftover in leftovers:
            if os.path.exists(leftover):
                os.unlink(leftover)
        raise
    os.replace(tmp, path)
    fsync_directory(os.path.dirname(os.path.abspath(path)))


def backup(conn: sqlite3.Connection, path: str, version: int) -> str:
    """A consistent copy of the open database beside it; returns its path."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = f"{path}.v{version}-{stamp}.backup"
    copy = sqlite3.connect(target)
    try:
        conn.backup(copy)
    finally:
        copy.close()
    return target


class Upgraded(NamedTuple):
    before: int
    after: int
    #: Where the database was copied before it changed (None: no change).
    backup: str | None


def upgrade(
    path: str, to_version: int | None = None, check_references: bool = False
) -> Upgraded:
    """Create the database at ``path`` or bring it up to date; blocking.

    Before changing an existing database it is copied to a backup beside
    it. Raises SchemaError (a newer database, a damaged file, a failure on
    the way, with the file named).

    Every reference is checked after a migration (which may rebuild
    tables) and when ``check_references`` (``zpop upgrade``), not on every
    open: the check reads the whole database, minutes for a large one,
    and with foreign keys enforced on every connection zpop itself cannot
    break one.
    """
    target = latest_version() if to_version is None else to_version
    try:
        if not os.path.exists(path):
            _create(path, target)
            return Upgraded(0, target, None)
        conn = connect(path)
        try:
            before = _version(conn)
            _refuse_newer(path, before, latest_version())
            saved = None
            if before < target:
                saved = backup(conn, path, before)
                _upgrade(conn, path, target)
            after = _version(conn)
            if saved is not None or check_references:
                _check_foreign_keys(conn, path)
            return Upgraded(before, after, saved)
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise _error(path, e) from e


def migrate(path: str, to_version: int | None = None) -> int:
    """``upgrade``, returning the schema version."""
    return upgrade(path, to_version).after


def check(path: str) -> int:
    """The database's version, if it is this zpop's; else SchemaError naming
    the fix (``zpop upgrade``, or a newer zpop)."""
    try:
        conn = connect(path)
        try:
            current = _version(conn)
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise _error(path, e) from e
    known = latest_version()
    _refuse_newer(path, current, known)
    if current < known:
        raise SchemaError(
            f"database at {path} is version {current}, this zpop needs {known}:"
            " run 'zpop upgrade' (stop the server first; it upgrades at start too)"
        )
    return current


def _error(path: str, e: sqlite3.Error) -> SchemaError:
    code = getattr(e, "sqlite_errorcode", None)
    if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        return SchemaError(f"{path} is not a zpop database: {e}")
    return SchemaError(f"database error in {path}: {e}")


def _check_foreign_keys(conn: sqlite3.Connection, path: str) -> None:
    # One line per broken reference: a row may have several.
    broken = {(row[0], row[1]) for row in conn.execute("PRAGMA foreign_key_check")}
    if broken:
        tables = sorted({table for table, _ in broken})
        raise SchemaError(
            f"database at {path} has {len(broken)} rows whose references are"
            f" broken (in {', '.join(tables)}): restore it from a backup"
        )
