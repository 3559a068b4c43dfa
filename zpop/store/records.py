"""The store's records: frozen dataclasses, the vocabularies they use and
the store's errors. What every layer may hold; no behaviour."""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple, overload


class FolderRole(StrEnum):
    """The built-in folders (zpop.store.mailbox); the user's have none."""

    INBOX = "Inbox"
    SPAM = "Spam"
    SENT = "Sent"
    TRASH = "Trash"
    DRAFTS = "Drafts"


class Plan(StrEnum):
    FREE = "free"
    PAID = "paid"


class PopMode(StrEnum):
    """``all`` mail, or mail received from ``new`` on (DESIGN §1)."""

    ALL = "all"
    NEW = "new"


class SpamPolicy(StrEnum):
    """Whether POP offers the Inbox, the Inbox and Spam, or Spam only."""

    EXCLUDE = "exclude"
    INCLUDE = "include"
    ONLY = "only"


class DeletionPolicy(StrEnum):
    """What a client's DELE does to the original: ``keep`` or move to Trash."""

    KEEP = "keep"
    DELETE = "delete"


class PopQueue(StrEnum):
    """One POP queue for the account, or one per device (its password)."""

    SHARED = "shared"
    PER_DEVICE = "per-device"


class PopStart(StrEnum):
    """Where an app password's own POP queue starts (``per-device``): where
    the account's all/new setting says, or at the device's first login."""

    SETTING = "setting"
    FIRST_LOGIN = "first-login"


class RecipientState(StrEnum):
    """An outbound recipient: waiting, delivered, or failed for good."""

    QUEUED = "queued"
    DELIVERED = "delivered"
    FAILED = "failed"


# The values in order, as plain strings: the schema's CHECK lists (a test
# keeps them equal) and the CLI's choices.
FOLDERS = tuple(v.value for v in FolderRole)
PLANS = tuple(v.value for v in Plan)
POP_MODES = tuple(v.value for v in PopMode)
SPAM_POLICIES = tuple(v.value for v in SpamPolicy)
DELETION_POLICIES = tuple(v.value for v in DeletionPolicy)
POP_QUEUES = tuple(v.value for v in PopQueue)
POP_STARTS = tuple(v.value for v in PopStart)
OUTBOUND_STATES = tuple(v.value for v in RecipientState)
#: How many of a client's latest failed logins a repeat is compared with.
REPEATED_FAILURES = 10


class StoreError(Exception):
    """Base of the store's errors; the text is fit for an operator."""


class StorageFull(StoreError):
    """The disk holding the store is full: nothing was written, and the same
    request can succeed once space is freed."""


class NotFound(StoreError):
    """The named domain, account, alias or app password does not exist."""


class AlreadyExists(StoreError):
    """A domain, account or alias of that name exists already."""


class FolderRefused(StoreError):
    """The folder cannot be renamed or deleted: built in, or has folders
    below it."""


class SchemaError(StoreError):
    """The database is of a schema version this zpop cannot use."""


@dataclass(frozen=True)
class Domain:
    id: int
    name: str
    organization: bool
    created: float


@dataclass(frozen=True)
class PopSettings:
    """An account's POP access settings (DESIGN §1)."""

    enabled: bool
    mode: str | None
    enabled_at: float | None
    #: In ``new`` mode only messages with a uid at least this are offered.
    start_uid: int
    spam: str
    deletion: str
    #: ``shared`` or ``per-device`` (migration 017).
    queue: str = "shared"


@dataclass(frozen=True)
class Account:
    id: int
    address: str
    domain: str
    organization: bool
    plan: str
    created: float
    password_hash: bytes | None
    federated: bool
    #: Two-factor is required or on: the mail protocols refuse the primary
    #: password (DESIGN §1). Which of the two is ``totp_enrolled``.
    two_factor: bool
    pop: PopSettings
    #: Bumped on every change to credentials or settings, so caches keyed on
    #: it (credential cache, other processes) notice the change.
    generation: int
    #: A random number fixed at creation, prefixed to UIDLs so a deleted and
    #: re-created account never offers a UIDL a client has seen.
    uid_validity: int
    #: The operator requires two-factor (``zpop twofactor enable``): the
    #: account must enrol and cannot turn it off itself.
    two_factor_required: bool = False
    #: The account has a TOTP secret (two-factor "on"); the secret itself is
    #: never part of the record (``ITwoFactorStore.get_totp_secret``).
    totp_enrolled: bool = False
    #: IMAP access on (DESIGN §1 "IMAP"; migration 011): on by default,
    #: stored and shown before zpop serves IMAP.
    imap_enabled: bool = True


@dataclass(frozen=True)
class AppPassword:
    id: int
    account_id: int
    label: str
    created: float
    last_used: float | None
    #: The client address of that last use.
    last_used_from: str | None = None
    #: Where its POP queue starts when the account's queue is per-device.
    pop_start: str = "setting"


class WebSessionStage(StrEnum):
    """How far a web sign-in got: the password was right and the second
    factor is still due (``code``), or signed in (``full``)."""

    CODE = "code"
    FULL = "full"


#: Login event results (LoginEvent.result).
LOGIN_RESULTS = ("succeeded", "failed", "refused")

#: Login events kept per account (ILoginEventStore).
LOGIN_EVENTS_KEPT = 100


@dataclass(frozen=True)
class LoginEvent:
    """One login over any protocol, for the account's sign-in activity.

    ``credential`` is how it proved itself, as the audit line's method
    (``"primary"``, ``"app password <label>"``, ``"-"`` when no credential
    matched); ``result`` one of LOGIN_RESULTS and ``reason`` the audit
    line's reason (``"bad credentials"``, a refusal's text, ``"-"``).
    ``app_password_id`` is the app password a successful login used (None
    otherwise, and once that password is revoked): recording the event
    records the password's last use too."""

    address: str
    at: float
    protocol: str
    client: str
    credential: str
    result: str
    reason: str
    app_password_id: int | None = None


#: POP download log actions (PopDownload.action).
POP_ACTIONS = ("retr", "dele")


@dataclass(frozen=True)
class PopDownload:
    """One entry of an account's POP download log: a message a POP client
    retrieved whole (RETR, or a TOP that sent all of it) or deleted (a DELE
    applied at QUIT). ``credential`` is the device: the login's method
    (``"primary"``, ``"app password <label>"``); ``uidl`` the message's
    UIDL; ``subject`` is filled in by the store from the message when the
    entry is written ("" if it is gone) and kept, so the log outlives it."""

    at: float
    action: str
    credential: str
    client: str
    message_id: int
    uidl: str
    subject: str = ""


@dataclass(frozen=True)
class PopSessionLog:
    """What a POP session writes as it ends, with its deletions or its
    release: its download log entries, the entries older than
    ``kept_since`` pruned; ``login_at`` (when not None) as the account's
    last POP login, for LOGIN-DELAY, or the device's (``device``, a
    per-device queue's PopSession.device)."""

    downloads: tuple[PopDownload, ...] = ()
    kept_since: float = 0.0
    login_at: float | None = None
    device: int | None = None

    def __bool__(self) -> bool:
        return bool(self.downloads) or self.login_at is not None


#: What an API token may do: ``read`` only GETs, ``write`` everything its
#: owner (an account, or the operator for an admin token) may.
API_SCOPES = ("read", "write")


@dataclass(frozen=True)
class ApiToken:
    """A settings API token: ``address`` is its account's, None for an
    admin token. Only its keyed hash is stored."""

    id: int
    address: str | None
    scope: str
    label: str
    created: float
    last_used: float | None

    @property
    def admin(self) -> bool:
        return self.address is None


#: A web session's last-seen time is written at most this often, so page
#: views do not each cost a durable write; idle expiry is that much early.
WEB_SESSION_TOUCH = 60.0


@dataclass(frozen=True)
class WebSession:
    """A server-side web settings session (the id itself is never stored,
    only its keyed hash). It ends ``idle`` seconds after ``last_seen`` or at
    ``expires``, whichever is first."""

    id: int
    account_id: int
    address: str
    stage: str
    client: str
    user_agent: str
    created: float
    last_seen: float
    expires: float
    idle: float

    def live(self, now: float) -> bool:
        """Whether the session is still usable at ``now``."""
        return now < self.expires and now < self.last_seen + self.idle


@dataclass(frozen=True)
class TotpSecret:
    """An account's TOTP secret, sealed (``zpop.accounts.totp.seal``), and
    the last time step a code was accepted for (None: none yet)."""

    account_id: int
    sealed: bytes
    last_step: int | None
    enrolled: float


@dataclass(frozen=True)
class RecoveryCode:
    """One of an enrolment's single-use recovery codes (never the code: it
    is stored as a keyed hash); ``used`` is when it was spent, or None."""

    id: int
    account_id: int
    created: float
    used: float | None


#: The \Seen bit of Message.flags (all of them: zpop.store.mailbox).
SEEN = 1


@dataclass(frozen=True)
class Message:
    id: int
    account_id: int
    #: Its folder: the role for a built-in one ("Inbox", FOLDERS), else the
    #: user folder's name.
    folder: str
    #: Account-wide and never changed, wherever the message moves: POP's
    #: UIDL is made of it.
    uid: int
    received: float
    size: int
    subject: str
    #: The message left the POP queue (a client deleted it with DELE+QUIT).
    pop_removed: bool
    #: Its UID in its folder (IMAP), and its MODSEQ there.
    imap_uid: int = 0
    modseq: int = 0
    #: System flag bits (zpop.store.mailbox.FLAG_BITS) and keywords.
    flags: int = 0
    keywords: tuple[str, ...] = ()

    @property
    def seen(self) -> bool:
        return bool(self.flags & SEEN)


class PopEntry(NamedTuple):
    """One message of a POP queue snapshot: all a session needs of it.

    A tuple, not a dataclass: a snapshot of 100,000 messages is built at
    every login.
    """

    id: int
    uid: int
    size: int


class PopSnapshot(Sequence[PopEntry]):
    """A POP queue snapshot, oldest first, in three packed arrays.

    About 24 bytes a message instead of ~150 as tuples (every open session
    holds one), made without a Python object per message (a 100,000-message
    login); hot paths read ``ids``, ``uids`` and ``sizes`` directly.
    """

    __slots__ = ("ids", "uids", "sizes")

    def __init__(
        self,
        ids: Iterable[int] = (),
        uids: Iterable[int] = (),
        sizes: Iterable[int] = (),
    ) -> None:
        self.ids = array("q", ids)
        self.uids = array("q", uids)
        self.sizes = array("q", sizes)
        if not len(self.ids) == len(self.uids) == len(self.sizes):
            raise ValueError("ids, uids and sizes differ in length")

    @classmethod
    def from_rows(cls, rows: list[tuple[int, int, int]]) -> PopSnapshot:
        """From (id, uid, size) rows."""
        if not rows:
            return cls()
        ids, uids, sizes = zip(*rows, strict=True)
        return cls(ids, uids, sizes)

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, index: int) -> PopEntry: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[PopEntry]: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return tuple(self)[index]
        return PopEntry(self.ids[index], self.uids[index], self.sizes[index])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return tuple(self) == tuple(other)

    def __repr__(self) -> str:
        return f"PopSnapshot({list(self)!r})"


@dataclass(frozen=True)
class PopSession:
    """What ``open_pop_session`` found, in one database round trip."""

    account: Account
    #: Whether this session now holds the maildrop lock (False when POP is
    #: disabled or another session holds it).
    locked: bool
    #: The POP queue snapshot, oldest first (empty unless locked).
    messages: PopSnapshot
    #: When the account's (or in a per-device queue, the device's) last POP
    #: session that recorded it logged in (PopSessionLog.login_at), or None.
    last_login: float | None = None
    #: The device whose own queue this is (``queue`` per-device), else None.
    device: int | None = None


@dataclass(frozen=True)
class NewMessage:
    """A message to be stored: body with CRLF line ends, and its metadata."""

    folder: str
    body: bytes
    subject: str
    received: float
    seen: bool = False
    #: More flags and keywords (IMAP APPEND); ``seen`` adds \Seen.
    flags: int = 0
    keywords: tuple[str, ...] = ()

    @property
    def flag_bits(self) -> int:
        return self.flags | (SEEN if self.seen else 0)


@dataclass(frozen=True)
class QueuedMessage:
    """A message for recipients outside the hosted domains (outbound queue)."""

    #: Envelope sender (MAIL FROM); "" for the null sender.
    sender: str
    #: Remote recipients, each queued on its own.
    recipients: tuple[str, ...]
    #: The message as it leaves: CRLF line ends, trace headers added.
    body: bytes
    created: float
    #: When the relay gives up and bounces the message.
    expires: float
    #: The submitting account, if any.
    account_id: int | None = None


@dataclass(frozen=True)
class QueuedRecipient:
    """One recipient's row in the outbound queue."""

    recipient: str
    state: str
    attempts: int
    next_attempt: float
    last_error: str | None


@dataclass(frozen=True)
class Accepted:
    """What ``accept_message`` committed."""

    #: The local copies, in the order given.
    messages: tuple[Message, ...]
    #: The outbound queue id, or None if nothing was queued.
    queue_id: int | None
    #: The queued recipients' rows as written, in the order given.
    queued: tuple[QueuedRecipient, ...] = ()


@dataclass(frozen=True)
class OutboundJob:
    """Claimed recipients of one queued message, all in one domain."""

    message_id: int
    sender: str
    #: The recipients' domain, lower-case.
    domain: str
    recipients: tuple[str, ...]
    size: int
    created: float
    expires: float
    #: Attempts made so far, per recipient (same order).
    attempts: tuple[int, ...]


@dataclass(frozen=True)
class RecipientResult:
    """The outcome of one attempt for one recipient."""

    recipient: str
    #: ``delivered``, ``failed`` (final), or ``queued`` (retry later).
    state: str
    #: When to try again (``queued``); ignored otherwise.
    next_attempt: float = 0.0
    #: One line for operators (``zpop queue list``) and the DSN's text.
    error: str | None = None
    #: RFC 3463 enhanced status code, e.g. ``5.1.1``.
    status: str | None = None
    #: The host that answered, e.g. ``mx.example.net[192.0.2.1]``.
    remote_mta: str | None = None
    #: That host's SMTP reply, e.g. ``550 5.1.1 no such user``.
    diagnostic: str | None = None


@dataclass(frozen=True)
class OutboundRecipient:
    """One recipient's row in the outbound queue, with its last result."""

    recipient: str
    state: str
    attempts: int
    next_attempt: float
    last_error: str | None
    status: str | None
    remote_mta: str | None
    diagnostic: str | None


@dataclass(frozen=True)
class OutboundMessage:
    """A queued message (without its body) and its recipients."""

    id: int
    sender: str
    account_id: int | None
    size: int
    created: float
    expires: float
    recipients: tuple[OutboundRecipient, ...]
