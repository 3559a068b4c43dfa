"""The Store API: what zpop keeps, as frozen records behind Deferreds.

Protocols, the realm and the ``zpop`` command talk to a store only through
``IStore``; the SQL behind it is the business of an implementation
(``zpop.store.sqlite``), so another database can be added without touching
them. Every method returns a Deferred that fires after the change is
committed, so a reply sent from its callback promises nothing that a crash
could take back.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, overload

from zope.interface import Attribute, Interface

FOLDERS = ("Inbox", "Spam", "Sent", "Trash")
PLANS = ("free", "paid")
POP_MODES = ("all", "new")
SPAM_POLICIES = ("exclude", "include", "only")
DELETION_POLICIES = ("keep", "delete")
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
    two_factor: bool
    pop: PopSettings
    #: Bumped on every change to credentials or settings, so caches keyed on
    #: it (credential cache, other processes) notice the change.
    generation: int
    #: A random number fixed at creation, prefixed to UIDLs so a deleted and
    #: re-created account never offers a UIDL a client has seen.
    uid_validity: int


@dataclass(frozen=True)
class AppPassword:
    id: int
    account_id: int
    label: str
    created: float
    last_used: float | None


@dataclass(frozen=True)
class Message:
    id: int
    account_id: int
    folder: str
    uid: int
    received: float
    size: int
    subject: str
    seen: bool
    #: The message left the POP queue (a client deleted it with DELE+QUIT).
    pop_removed: bool


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


@dataclass(frozen=True)
class NewMessage:
    """A message to be stored: body with CRLF line ends, and its metadata."""

    folder: str
    body: bytes
    subject: str
    received: float
    seen: bool = False


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


class IStore(Interface):
    """Durable state of zpop. Every method returns a Deferred."""

    path: Any = Attribute("Where the data lives, for messages to operators.")

    def changes() -> int:
        """A number that moves after every committed change to credentials,
        account settings or bans, made by any process; no I/O, so callable
        on the reactor thread (``zpop.store.changes``)."""

    # domains
    def add_domain(name: str, organization: bool, now: float) -> Any:
        """Add a hosted domain; fires with a Domain or fails AlreadyExists."""

    def get_domain(name: str) -> Any:
        """Fires with the Domain or fails NotFound."""

    def list_domains() -> Any:
        """Fires with every Domain, by name."""

    # accounts
    def add_account(
        address: str,
        plan: str,
        federated: bool,
        password_hash: bytes | None,
        now: float,
    ) -> Any:
        """Add an account in a hosted domain; fires with the Account.

        Fails NotFound if the domain is not hosted, AlreadyExists if the
        address is taken by an account or an alias.
        """

    def get_account(address: str) -> Any:
        """Fires with the Account for an address (any case) or None."""

    def get_account_for_recipient(address: str) -> Any:
        """Fires with the Account an address or alias delivers to, or None."""

    def list_accounts() -> Any:
        """Fires with every Account, by address."""

    def delete_account(address: str) -> Any:
        """Delete an account and everything it owns; fails NotFound."""

    def set_password(address: str, password_hash: bytes | None) -> Any:
        """Set or clear the primary password hash; fires with the Account."""

    def set_two_factor(address: str, enabled: bool) -> Any:
        """Turn two-factor authentication on or off; fires with the Account."""

    def enable_pop(address: str, mode: str, now: float) -> Any:
        """Enable POP in ``all`` or ``new`` mode; fires with the Account.

        ``all`` puts every message of the account back in the POP queue;
        ``new`` offers only mail stored from now on.
        """

    def disable_pop(address: str) -> Any:
        """Disable POP access; fires with the Account."""

    def set_pop_spam(address: str, policy: str) -> Any:
        """Set the spam policy; fires with the Account."""

    def set_pop_deletion(address: str, policy: str) -> Any:
        """Set the deletion policy; fires with the Account."""

    # app-specific passwords
    def add_app_password(address: str, label: str, digest: bytes, now: float) -> Any:
        """Store a new app password's keyed digest; fires with AppPassword."""

    def list_app_passwords(address: str) -> Any:
        """Fires with the account's AppPasswords, oldest first."""

    def revoke_app_password(address: str, password_id: int) -> Any:
        """Delete one app password; fails NotFound if it is not the account's."""

    def use_app_password(account_id: int, digest: bytes, now: float) -> Any:
        """Fires with the matching AppPassword (recording its use, to the
        minute) or None."""

    def app_password_exists(password_id: int) -> Any:
        """Fires True while the app password has not been revoked."""

    # aliases
    def add_alias(address: str, alias: str) -> Any:
        """Let the account send as (and receive for) ``alias``."""

    def list_aliases(address: str) -> Any:
        """Fires with the account's aliases, sorted."""

    # messages
    def store_messages(account_id: int, messages: list[NewMessage]) -> Any:
        """Store messages in one transaction, in order; fires with Messages."""

    def accept_message(
        local: list[tuple[int, NewMessage]], queued: QueuedMessage | None
    ) -> Any:
        """Store a received message everywhere it goes, in one transaction.

        ``local`` holds (account id, message) for every local copy (the
        recipients' Inbox or Spam, the sender's Sent); ``queued`` is the copy
        for remote recipients, written to the outbound queue with each
        recipient ``queued``, due now. Fires with ``Accepted`` once all of it
        is durable; on any failure (NotFound for an unknown account id,
        StoreError) nothing was stored.
        """

    def list_messages(account_id: int, folder: str | None = None) -> Any:
        """Fires with the account's Messages (in one folder), oldest first."""

    def read_body(message_id: int, offset: int, length: int) -> Any:
        """Fires with up to ``length`` bytes of a body from ``offset``.

        Fails NotFound if the message no longer exists.
        """

    def read_bodies(message_ids: Sequence[int]) -> Any:
        """Fires with {message id: whole body} for the given messages, in one
        look-up; meant for small bodies. Messages that no longer exist, and
        empty bodies, are left out."""

    # POP sessions
    #
    # A session holds its account's maildrop lock from open_pop_session to
    # finish_pop_session or release_pop_lock, so at most one session, in any
    # process using the store, reads and changes a maildrop at a time. The
    # lock belongs to the process that took it, under the ``owner`` name the
    # caller chose (unique among that process's sessions): it is not kept in
    # the database and ends with the process, however the process ends, so
    # it has no lease to renew and nothing of it survives a crash.
    def open_pop_session(
        address: str, owner: str, folders_for: Mapping[str, tuple[str, ...]]
    ) -> Any:
        """Start a POP session: the account, its maildrop lock, its queue.

        Fires with None for an unknown address, else a PopSession: if POP is
        enabled and no other session (of this process or another) holds the
        lock, ``owner`` now holds it and ``messages`` are the account's
        messages in ``folders_for[spam policy]`` that are still in the POP
        queue, from its start uid on, read after the lock was taken (so
        they reflect every deletion committed by an earlier session).
        """

    def release_pop_lock(account_id: int, owner: str) -> Any:
        """Give the lock up without applying anything; a no-op if ``owner``
        does not hold it, so a late or repeated release never frees a newer
        session's lock. Fires once released."""

    def finish_pop_session(
        account_id: int, owner: str, message_ids: list[int], to_trash: bool
    ) -> Any:
        """Apply a POP session's deletions, then release its lock.

        Each message leaves the POP queue (and moves to Trash if
        ``to_trash``), in one transaction; the lock is released only once
        that is committed, so the next session never sees a message whose
        removal is not durable, and the Deferred fires after both. Fails
        StoreError, applying nothing, if ``owner`` does not hold the lock;
        if the transaction fails, nothing is applied and the lock is still
        held: the caller releases it (``release_pop_lock``).
        """

    # login throttling
    def note_login_failure(
        client: str, account: str, secret: str, now: float, window: float
    ) -> Any:
        """Record a failed login; fires with (client failures, account
        failures) within the last ``window`` seconds, this one included.

        ``secret`` is a keyed hash of the (address, secret) pair tried. A
        failure repeating one of the client's last ``REPEATED_FAILURES``
        is not recorded again: the counts are those before it."""

    def ban_client(client: str, until: float) -> Any:
        """Refuse logins from ``client`` until ``until``."""

    def client_banned_until(client: str, now: float) -> Any:
        """Fires with the end of the client's ban, or None if not banned."""

    # outbound relay (zpop.outbound)
    def claim_outbound(owner: str, now: float, lease: float, limit: int) -> Any:
        """Claim due outbound work for ``owner`` until ``now + lease``.

        Takes up to ``limit`` recipients that are ``queued``, due
        (``next_attempt <= now``) and not claimed by a live lease, oldest
        first; fires with OutboundJobs, one per (message, recipient domain).
        """

    def renew_outbound_leases(owner: str, now: float, lease: float) -> Any:
        """Extend every claim ``owner`` holds to ``now + lease``; fires with
        the number of recipients still claimed."""

    def outbound_lease_owners() -> Any:
        """Fires with the owners holding claims (``zpop.owners``), sorted."""

    def release_outbound_leases(owner: str) -> Any:
        """Drop ``owner``'s claims (the recipients stay due); fires with the
        number released."""

    def read_outbound_body(message_id: int, offset: int, length: int) -> Any:
        """Fires with up to ``length`` bytes of a queued message from
        ``offset``; fails NotFound if it is no longer queued."""

    def record_outbound_results(
        owner: str, message_id: int, results: list[RecipientResult], now: float
    ) -> Any:
        """Record one delivery attempt's RecipientResults and drop their
        claims. Rows already final are left alone. Fires True when no
        recipient of the message is ``queued`` any more."""

    def finished_outbound(limit: int) -> Any:
        """Fires with the ids of queued messages none of whose recipients is
        ``queued`` (all delivered or failed), oldest first."""

    def get_outbound(message_id: int) -> Any:
        """Fires with the OutboundMessage or fails NotFound."""

    def list_outbound() -> Any:
        """Fires with every OutboundMessage, oldest first."""

    def finish_outbound(message_id: int, bounce: Bounce | None) -> Any:
        """Remove a message from the queue and store its bounce, atomically.

        The bounce goes to the Inbox of the account (or alias) it is for, or
        into the queue from the null sender for a remote address; one for an
        unknown address of a hosted domain is dropped. Fires with where it
        went: ``local``, ``queued``, ``dropped`` or ``none`` (no bounce);
        ``gone`` (nothing stored) if the message had already been removed.
        """

    def retry_outbound(message_id: int | None, now: float) -> Any:
        """Make the ``queued`` recipients of one message (None: of every
        message) due at ``now``; fires with how many. Fails NotFound for an
        unknown message id."""

    def delete_outbound(message_id: int) -> Any:
        """Remove a message from the queue without a bounce; fires with its
        number of recipients; fails NotFound."""


# -- outbound relay records -------------------------------------------------

#: States of an outbound recipient.
OUTBOUND_STATES = ("queued", "delivered", "failed")


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


@dataclass(frozen=True)
class Bounce:
    """A delivery status notification to store when a message leaves."""

    #: The failed message's envelope sender, who gets the DSN.
    recipient: str
    #: The DSN, CRLF line ends.
    body: bytes
    subject: str
    created: float
    #: When the relay gives up on the DSN itself, if it is queued.
    expires: float
