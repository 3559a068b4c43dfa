"""zpop's durable state: the Store API, its SQLite implementation and an
in-memory one (MemoryStore) for tests."""

from zpop.store.interface import IStore
from zpop.store.memory import MemoryStore
from zpop.store.records import (
    DELETION_POLICIES,
    FOLDERS,
    PLANS,
    POP_MODES,
    SPAM_POLICIES,
    Accepted,
    Account,
    AlreadyExists,
    AppPassword,
    Domain,
    LoginEvent,
    Message,
    NewMessage,
    NotFound,
    PopEntry,
    PopSession,
    PopSettings,
    PopSnapshot,
    QueuedMessage,
    QueuedRecipient,
    RecoveryCode,
    SchemaError,
    StorageFull,
    StoreError,
    TotpSecret,
    WebSession,
)
from zpop.store.schema import migrate
from zpop.store.sqlite import SQLiteStore

DATABASE_NAME = "zpop.sqlite"

__all__ = [
    "DATABASE_NAME",
    "Accepted",
    "DELETION_POLICIES",
    "FOLDERS",
    "PLANS",
    "POP_MODES",
    "SPAM_POLICIES",
    "Account",
    "AlreadyExists",
    "AppPassword",
    "Domain",
    "IStore",
    "LoginEvent",
    "MemoryStore",
    "Message",
    "NewMessage",
    "NotFound",
    "PopEntry",
    "PopSession",
    "PopSnapshot",
    "PopSettings",
    "QueuedMessage",
    "QueuedRecipient",
    "RecoveryCode",
    "SQLiteStore",
    "SchemaError",
    "StorageFull",
    "StoreError",
    "TotpSecret",
    "WebSession",
    "migrate",
]
