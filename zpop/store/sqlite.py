"""The embedded store: SQLite in the data directory, SQL only in threads.

Every public method hands a ``_thd_*`` function to the runner (a database
thread pool in the server, the calling thread in the ``zpop`` command); the
function opens its own transaction and commits before returning, so the
Deferred fires only once the change is on disk (WAL, ``synchronous=FULL``).
Each thread keeps its own connection: sqlite3 connections stay on the thread
that made them. One module per area (``sqlite_accounts``, ``sqlite_messages``,
``sqlite_throttle``, ``sqlite_queue``) over the connection handling and row
helpers of ``sqlite_base``; ``SQLiteStore`` is all of them.
"""

from __future__ import annotations

from zope.interface import implementer

from zpop.store.interface import IStore
from zpop.store.schema import (  # noqa: F401 (migrate and friends live here too)
    BUSY_TIMEOUT,
    connect,
    latest_version,
    migrate,
    migrations,
)
from zpop.store.sqlite_accounts import SQLiteAccounts
from zpop.store.sqlite_api_tokens import SQLiteApiTokens
from zpop.store.sqlite_base import BODY_CHUNK  # noqa: F401
from zpop.store.sqlite_login_events import SQLiteLoginEvents
from zpop.store.sqlite_mailboxes import SQLiteMailboxes
from zpop.store.sqlite_messages import SQLiteMessages
from zpop.store.sqlite_pop_log import SQLitePopLog
from zpop.store.sqlite_queue import SQLiteQueue
from zpop.store.sqlite_resets import SQLitePasswordResets
from zpop.store.sqlite_throttle import SQLiteThrottle
from zpop.store.sqlite_two_factor import SQLiteTwoFactor
from zpop.store.sqlite_web import SQLiteWebSessions


@implementer(IStore)
class SQLiteStore(
    SQLiteAccounts,
    SQLiteMessages,
    SQLiteMailboxes,
    SQLiteThrottle,
    SQLiteQueue,
    SQLiteWebSessions,
    SQLiteTwoFactor,
    SQLitePasswordResets,
    SQLiteLoginEvents,
    SQLiteApiTokens,
    SQLitePopLog,
):
    """IStore on one SQLite file, shared safely by the server and the CLI."""
