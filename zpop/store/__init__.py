"""zpop's durable state: the Store API and its SQLite implementation."""

from zpop.store.interface import (
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
    IStore,
    Message,
    NewMessage,
    NotFound,
    PopSession,
    PopSettings,
    QueuedMessage,
    QueuedRecipient,
    SchemaError,
    StoreError,
)
from zpop.store.sqlite import SQLiteStore, migrate

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
    "Message",
    "NewMessage",
    "NotFound",
    "PopSession",
    "PopSettings",
    "QueuedMessage",
    "QueuedRecipient",
    "SQLiteStore",
    "SchemaError",
    "StoreError",
    "migrate",
]
