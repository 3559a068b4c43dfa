"""The records of IMAP's mailbox model (IMailboxStore; migration 018).

One mailbox for POP and IMAP: a message is in exactly one folder, with its
UID there (``imap_uid``), its flags and its MODSEQ; its account-wide
``uid`` (POP's UIDL) never changes. Flags are bits so SQL can count and
filter them (UNSEEN, SEARCH, EXPUNGE); keywords are names.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from zpop.store.records import SEEN, FolderRole

ANSWERED = 2
FLAGGED = 4
DELETED = 8
DRAFT = 16

#: The system flags a message can hold (RFC 3501 §2.3.2; \Recent is not
#: stored: zpop gives it to no one, as RFC 9051 allows).
FLAG_BITS = {
    "\\Seen": SEEN,
    "\\Answered": ANSWERED,
    "\\Flagged": FLAGGED,
    "\\Deleted": DELETED,
    "\\Draft": DRAFT,
}

ALL_FLAGS = sum(FLAG_BITS.values())

#: A user-folder path's separator (IMAP's hierarchy delimiter).
DELIMITER = "/"

#: IMAP's name for the Inbox; the other built-in folders are named as their
#: role.
INBOX = "INBOX"

#: SPECIAL-USE attributes (RFC 6154) of the built-in folders.
SPECIAL_USE: dict[str, str] = {
    FolderRole.SPAM: "\\Junk",
    FolderRole.SENT: "\\Sent",
    FolderRole.TRASH: "\\Trash",
    FolderRole.DRAFTS: "\\Drafts",
}

#: Most keywords one message holds; a client setting more is refused.
MAX_KEYWORDS = 64


def role_name(role: str) -> str:
    """The IMAP name of a built-in folder."""
    return INBOX if role == FolderRole.INBOX else role


def flag_names(bits: int, keywords: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The flags and keywords of ``bits`` and ``keywords``, system first."""
    return (*(name for name, bit in FLAG_BITS.items() if bits & bit), *keywords)


class StoreOp(StrEnum):
    """What STORE does with the flags it names (RFC 3501 §6.4.6)."""

    REPLACE = "replace"
    ADD = "add"
    REMOVE = "remove"


@dataclass(frozen=True)
class Folder:
    id: int
    account_id: int
    #: The IMAP name (INBOX for the Inbox), "/"-separated.
    name: str
    #: A FolderRole value for a built-in folder, None for the user's own.
    role: str | None
    uid_validity: int
    #: The UID the next message in the folder gets (UIDNEXT).
    next_uid: int
    highest_modseq: int
    subscribed: bool
    #: Counts when the store was asked for them (``list_folders``), else 0.
    messages: int = 0
    unseen: int = 0
    size: int = 0


class MailboxEntry(NamedTuple):
    """One message as an IMAP session holds it; a tuple, since a SELECT of
    a 100,000-message folder makes one each."""

    id: int
    uid: int
    modseq: int
    flags: int
    keywords: tuple[str, ...]
    size: int
    received: float


@dataclass(frozen=True)
class FolderView:
    """A folder and its messages by UID, read in one transaction."""

    folder: Folder
    entries: tuple[MailboxEntry, ...]


@dataclass(frozen=True)
class FolderChanges:
    """What changed in a folder after a MODSEQ: the messages added or whose
    flags changed (by UID) and the UIDs that left it."""

    folder: Folder
    changed: tuple[MailboxEntry, ...]
    expunged: tuple[int, ...]


@dataclass(frozen=True)
class FlagChanges:
    """STORE's result: the entries it changed, and the UIDs it left alone
    because they changed after UNCHANGEDSINCE (RFC 7162 §3.1.3)."""

    changed: tuple[MailboxEntry, ...]
    modified: tuple[int, ...]
    highest_modseq: int


@dataclass(frozen=True)
class Copied:
    """COPY's or MOVE's result (UIDPLUS COPYUID): the target's UIDVALIDITY
    and each source UID with the UID its copy got, in source order."""

    uid_validity: int
    uids: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Appended:
    """APPEND's result (UIDPLUS APPENDUID)."""

    uid_validity: int
    uid: int
    message_id: int
