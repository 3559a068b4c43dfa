"""IMAP's view of an account (DESIGN §1 "IMAP"): who may use IMAP, which
folder names and keywords a client may use, and the logged-in session's
one way to the store; it hands the protocol the mailbox vocabulary
(zpop.store.mailbox) too, as protocols import no store module.

The rules of the mailbox (one mailbox for POP and IMAP, UIDs that never
repeat, the POP uid kept across moves) are the store's; what a client may
ask for (names, keyword counts, message sizes) is checked here, so the web
and API front ends that manage folders later call the same checks.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import Attribute, Interface, implementer

from zpop.accounts.errors import InvalidInput
from zpop.accounts.idle import IdleWatcher, Watch
from zpop.accounts.settings import free_plan_blocked
from zpop.config import AccountsConfig
from zpop.store import Account, IStore
from zpop.store.changes import Verified
from zpop.store.mailbox import DELETED as DELETED
from zpop.store.mailbox import DELIMITER as DELIMITER
from zpop.store.mailbox import FLAG_BITS as FLAG_BITS
from zpop.store.mailbox import INBOX as INBOX
from zpop.store.mailbox import MAX_KEYWORDS as MAX_KEYWORDS
from zpop.store.mailbox import SPECIAL_USE as SPECIAL_USE
from zpop.store.mailbox import Appended as Appended
from zpop.store.mailbox import Copied as Copied
from zpop.store.mailbox import FlagChanges as FlagChanges
from zpop.store.mailbox import Folder as Folder
from zpop.store.mailbox import FolderChanges as FolderChanges
from zpop.store.mailbox import FolderView as FolderView
from zpop.store.mailbox import MailboxEntry as MailboxEntry
from zpop.store.mailbox import StoreOp as StoreOp
from zpop.store.mailbox import flag_names as flag_names
from zpop.store.records import SEEN as SEEN
from zpop.store.records import AlreadyExists as AlreadyExists
from zpop.store.records import FolderRefused as FolderRefused
from zpop.store.records import NewMessage
from zpop.store.records import NotFound as NotFound
from zpop.store.records import StoreError as StoreError

#: Longest folder name, in characters, and deepest folder path: far beyond
#: what clients make, small enough that every name fits in a reply line.
MAX_NAME = 255
MAX_DEPTH = 16


class FolderNameError(InvalidInput):
    """A folder name no client should be allowed to create."""


def imap_refusal(account: Account, config: AccountsConfig) -> str | None:
    """Why this account may not use IMAP, or None."""
    if free_plan_blocked(account, config):
        return "IMAP access is not available on the Free plan"
    if not account.imap_enabled:
        return "IMAP access is disabled for this account"
    return None


def canonical_name(name: str) -> str:
    """INBOX in any case, alone or as the first level, is spelled INBOX."""
    first, sep, rest = name.partition(DELIMITER)
    if first.upper() == INBOX:
        return INBOX + sep + rest
    return name


def check_folder_name(name: str) -> str:
    """The canonical form of a folder name a client may create or rename
    to; FolderNameError saying what is wrong with it."""
    if not name:
        raise FolderNameError("the folder name is empty")
    if len(name) > MAX_NAME:
        raise FolderNameError(f"a folder name is at most {MAX_NAME} characters")
    parts = name.split(DELIMITER)
    if len(parts) > MAX_DEPTH:
        raise FolderNameError(f"folders nest at most {MAX_DEPTH} levels deep")
    if any(not part for part in parts):
        raise FolderNameError(
            "a folder name has no empty level"
            f" (no leading, trailing or doubled {DELIMITER})"
        )
    for ch in name:
        if ch in "*%":
            raise FolderNameError("a folder name has no * or % (LIST wildcards)")
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            raise FolderNameError(
                "a folder name has no control or unassigned characters"
            )
    return canonical_name(name)


def check_keywords(keywords: Sequence[str]) -> None:
    if len(set(k.lower() for k in keywords)) > MAX_KEYWORDS:
        raise InvalidInput(f"a message holds at most {MAX_KEYWORDS} keywords")


class IImapAccount(Interface):
    """A logged-in IMAP session's account (zpop.imap)."""

    account: Any = Attribute("The Account record, read at login.")
    identity: Any = Attribute("The checker's Identity (address, login method).")


@implementer(IImapAccount)
class ImapAccount:
    """The store calls of one IMAP session, on the account it logged in to.

    ``max_size`` is the largest message APPEND takes (the SMTP limit).
    """

    def __init__(
        self,
        store: IStore,
        account: Account,
        identity: Any,
        clock: IReactorTime,
        max_size: int,
        idle: IdleWatcher | None = None,
    ) -> None:
        self.account = account
        self.identity = identity
        self.max_size = max_size
        self._store = store
        self._clock = clock
        self._idle = IdleWatcher(store, clock) if idle is None else idle
        self._app_password_id: int | None = getattr(identity, "app_password_id", None)
        self._verified: Verified | None = getattr(identity, "verified", None)

    # -- credentials, as POP's Maildrop checks them ------------------------

    def credentials_current(self) -> bool:
        """True if the session's credentials surely still stand, without
        I/O (nothing changed, or a primary password, which is not revoked
        while a session runs)."""
        if self._app_password_id is None:
            return True
        verified = self._verified
        return verified is not None and verified.current(
            self._store, self._clock.seconds()
        )

    def credentials_valid(self) -> Deferred[bool]:
        """Fires False once the app password this session used is revoked."""
        if self._app_password_id is None:
            return succeed(True)
        verified = Verified.now(self._store, self._clock.seconds())

        def checked(exists: bool) -> bool:
            if exists:
                self._verified = verified
            return exists

        d: Deferred[bool] = self._store.app_password_exists(self._app_password_id)
        return d.addCallback(checked)

    # -- folders -----------------------------------------------------------

    def list_folders(self) -> Deferred[list[Folder]]:
        return self._store.list_folders(self.account.id)

    def get_folder(self, name: str) -> Deferred[Folder]:
        return self._store.get_folder(self.account.id, canonical_name(name))

    def create_folder(self, name: str) -> Deferred[Folder]:
        try:
            checked = check_folder_name(name)
        except FolderNameError:
            return fail()
        return self._store.create_folder(
            self.account.id, checked, self._clock.seconds()
        )

    def rename_folder(self, name: str, new_name: str) -> Deferred[Folder]:
        try:
            checked = check_folder_name(new_name)
        except FolderNameError:
            return fail()
        return self._store.rename_folder(self.account.id, canonical_name(name), checked)

    def delete_folder(self, name: str) -> Deferred[None]:
        return self._store.delete_folder(self.account.id, canonical_name(name))

    def subscribe_folder(self, name: str, subscribed: bool) -> Deferred[Folder]:
        return self._store.subscribe_folder(
            self.account.id, canonical_name(name), subscribed
        )

    # -- a folder's messages -----------------------------------------------

    def open_folder(self, folder_id: int) -> Deferred[FolderView]:
        return self._store.open_folder(folder_id)

    def folder_changes(self, folder_id: int, since: int) -> Deferred[FolderChanges]:
        return self._store.folder_changes(folder_id, since)

    def append(
        self,
        name: str,
        body: bytes,
        flags: int,
        keywords: Sequence[str],
        received: float | None,
        subject: str,
    ) -> Deferred[Appended]:
        """Store a message in a folder; the caller has checked its size
        against ``max_size`` before reading it."""
        try:
            check_keywords(keywords)
        except InvalidInput:
            return fail()
        when = self._clock.seconds() if received is None else received
        message = NewMessage(
            canonical_name(name),
            body,
            subject,
            when,
            flags=flags,
            keywords=tuple(keywords),
        )
        return self._store.append_message(self.account.id, message.folder, message)

    def store_flags(
        self,
        folder_id: int,
        uids: Sequence[int],
        op: str,
        flags: int,
        keywords: Sequence[str],
        unchanged_since: int | None = None,
    ) -> Deferred[FlagChanges]:
        try:
            check_keywords(keywords)
        except InvalidInput:
            return fail()
        return self._store.store_flags(
            folder_id, uids, op, flags, keywords, unchanged_since
        )

    def copy(
        self, folder_id: int, uids: Sequence[int], target: str, move: bool
    ) -> Deferred[Copied]:
        return self._store.copy_messages(folder_id, uids, canonical_name(target), move)

    def expunge(
        self, folder_id: int, uids: Sequence[int] | None = None
    ) -> Deferred[tuple[int, ...]]:
        return self._store.expunge(folder_id, uids)

    def watch(
        self, folder_id: int, modseq: int, wake: Callable[[int | None], object]
    ) -> Watch:
        """Call ``wake`` once the folder's MODSEQ moves past ``modseq``
        (IDLE), until ``unwatch``."""
        return self._idle.watch(folder_id, modseq, wake)

    def unwatch(self, watch: Watch) -> None:
        self._idle.unwatch(watch)

    def read_body(self, message_id: int, offset: int, length: int) -> Deferred[bytes]:
        return self._store.read_body(message_id, offset, length)
