"""The Store API: what zpop keeps, as frozen records behind Deferreds.

One interface per area (accounts, messages, POP sessions, throttle,
outbound queue, two-factor); ``IStore`` is all of them. The records are in
``zpop.store.records``.

Protocols, the realm and the ``zpop`` command talk to a store only through
``IStore``; the SQL behind it is the business of an implementation
(``zpop.store.sqlite``), so another database can be added without touching
them. Every method returns a Deferred that fires after the change is
committed, so a reply sent from its callback promises nothing that a crash
could take back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

from zpop.store.mailbox import (
    Appended,
    Copied,
    FlagChanges,
    Folder,
    FolderChanges,
    FolderView,
)
from zpop.store.records import (
    Accepted,
    Account,
    AppPassword,
    Domain,
    Message,
    NewMessage,
    OutboundJob,
    OutboundMessage,
    PopSession,
    PopSessionLog,
    QueuedMessage,
    RecipientResult,
    RecoveryCode,
    TotpSecret,
    WebSession,
)


class IAccountStore(Interface):
    """Domains, accounts and their settings, app passwords, aliases."""

    # domains
    def add_domain(name: str, organization: bool, now: float) -> Deferred[Domain]:
        """Add a hosted domain; fires with a Domain or fails AlreadyExists."""

    def get_domain(name: str) -> Deferred[Domain]:
        """Fires with the Domain or fails NotFound."""

    def list_domains() -> Deferred[list[Domain]]:
        """Fires with every Domain, by name."""

    # accounts
    def add_account(
        address: str,
        plan: str,
        federated: bool,
        password_hash: bytes | None,
        now: float,
    ) -> Deferred[Account]:
        """Add an account in a hosted domain; fires with the Account.

        Fails NotFound if the domain is not hosted, AlreadyExists if the
        address is taken by an account or an alias.
        """

    def get_account(address: str) -> Deferred[Account | None]:
        """Fires with the Account for an address (any case) or None."""

    def get_account_for_recipient(address: str) -> Deferred[Account | None]:
        """Fires with the Account an address or alias delivers to, or None."""

    def list_accounts() -> Deferred[list[Account]]:
        """Fires with every Account, by address."""

    def delete_account(address: str) -> Deferred[None]:
        """Delete an account and everything it owns; fails NotFound."""

    def set_password(address: str, password_hash: bytes | None) -> Deferred[Account]:
        """Set or clear the primary password hash; fires with the Account."""

    def set_two_factor(address: str, enabled: bool) -> Deferred[Account]:
        """The operator's switch; fires with the Account. On: two-factor is
        required (``two_factor`` and ``two_factor_required``), an enrolment
        is kept. Off: ``ITwoFactorStore.reset_two_factor``."""

    def set_plan(address: str, plan: str) -> Deferred[Account]:
        """Move the account to ``plan`` (one of PLANS); fires with the
        Account (its generation bumped); fails NotFound."""

    def set_imap(address: str, enabled: bool) -> Deferred[Account]:
        """Turn IMAP access on or off from the next IMAP login; fires with
        the Account (its generation bumped); fails NotFound."""

    def enable_pop(address: str, mode: str, now: float) -> Deferred[Account]:
        """Enable POP in ``all`` or ``new`` mode; fires with the Account.

        ``all`` puts every message of the account back in the POP queue;
        ``new`` offers only mail stored from now on.
        """

    def disable_pop(address: str) -> Deferred[Account]:
        """Disable POP access; fires with the Account."""

    def set_pop_spam(address: str, policy: str) -> Deferred[Account]:
        """Set the spam policy; fires with the Account."""

    def set_pop_deletion(address: str, policy: str) -> Deferred[Account]:
        """Set the deletion policy; fires with the Account."""

    def set_pop_queue(address: str, queue: str) -> Deferred[Account]:
        """One POP queue (``shared``) or one per device (``per-device``);
        fires with the Account. Each device's state is kept across changes."""

    # app-specific passwords
    def add_app_password(
        address: str, label: str, digest: bytes, now: float, pop_start: str = "setting"
    ) -> Deferred[AppPassword]:
        """Store a new app password's keyed digest and where its own POP
        queue starts (POP_STARTS, default ``setting``); fires with
        AppPassword."""

    def list_app_passwords(address: str) -> Deferred[list[AppPassword]]:
        """Fires with the account's AppPasswords, oldest first."""

    def revoke_app_password(address: str, password_id: int) -> Deferred[None]:
        """Delete one app password; fails NotFound if it is not the account's."""

    def find_app_password(
        account_id: int, digest: bytes
    ) -> Deferred[AppPassword | None]:
        """Fires with the account's AppPassword of that digest, or None. A
        look-up only: its use is recorded with the login's activity event
        (ILoginEventStore.record_login_events)."""

    def app_password_exists(password_id: int) -> Deferred[bool]:
        """Fires True while the app password has not been revoked."""

    # aliases
    def add_alias(address: str, alias: str) -> Deferred[None]:
        """Let the account send as (and receive for) ``alias``."""

    def list_aliases(address: str) -> Deferred[list[str]]:
        """Fires with the account's aliases, sorted."""


class IMessageStore(Interface):
    """Messages and their bodies."""

    # messages
    def store_messages(
        account_id: int, messages: list[NewMessage]
    ) -> Deferred[list[Message]]:
        """Store messages in one transaction, in order; fires with Messages."""

    def accept_message(
        local: list[tuple[int, NewMessage]], queued: QueuedMessage | None
    ) -> Deferred[Accepted]:
        """Store a received message everywhere it goes, in one transaction.

        ``local`` holds (account id, message) for every local copy (the
        recipients' Inbox or Spam, the sender's Sent); ``queued`` is the copy
        for remote recipients, written to the outbound queue with each
        recipient ``queued``, due now. Fires with ``Accepted`` once all of it
        is durable; on any failure (NotFound for an unknown account id,
        StoreError) nothing was stored.
        """

    def list_messages(
        account_id: int, folder: str | None = None
    ) -> Deferred[list[Message]]:
        """Fires with the account's Messages (in one folder), oldest first."""

    def read_body(message_id: int, offset: int, length: int) -> Deferred[bytes]:
        """Fires with up to ``length`` bytes of a body from ``offset``.

        Fails NotFound if the message no longer exists.
        """

    def read_bodies(message_ids: Sequence[int]) -> Deferred[dict[int, bytes]]:
        """Fires with {message id: whole body} for the given messages, in one
        look-up; meant for small bodies. Messages that no longer exist, and
        empty bodies, are left out."""


class IPopStore(Interface):
    """POP sessions: the maildrop lock and the POP queue."""

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
        address: str,
        owner: str,
        folders_for: Mapping[str, tuple[str, ...]],
        app_password_id: int | None = None,
        now: float = 0.0,
    ) -> Deferred[PopSession | None]:
        """Start a POP session: the account, its maildrop lock, its queue.

        Fires with None for an unknown address, else a PopSession: if POP is
        enabled and no other session (of this process or another) holds the
        lock, ``owner`` now holds it and ``messages`` are the account's
        messages in ``folders_for[spam policy]`` that are still in the POP
        queue, from its start uid on, read after the lock was taken (so
        they reflect every deletion committed by an earlier session), and
        ``last_login`` the account's last recorded POP login.

        With the account's queue ``per-device`` the maildrop is the
        device's, the one that logged in with ``app_password_id`` (None:
        the primary password): its own lock and its own queue, which its
        first login (at ``now``) starts (PopSession.device).
        """

    def release_pop_lock(account_id: int, owner: str) -> Deferred[None]:
        """Give the lock up without applying anything; a no-op if ``owner``
        does not hold it, so a late or repeated release never frees a newer
        session's lock. Fires once released."""

    def finish_pop_session(
        account_id: int,
        owner: str,
        message_ids: list[int],
        to_trash: bool,
        log: PopSessionLog | None = None,
        device: int | None = None,
    ) -> Deferred[None]:
        """Apply a POP session's deletions, then release its lock.

        With ``device`` (a per-device session's PopSession.device) the
        messages leave that device's queue, and the POP queue (and move to
        Trash if ``to_trash``) only once every device whose queue holds
        them has deleted them; fails StoreError if the device's app
        password was revoked meanwhile.

        Each message leaves the POP queue (and moves to Trash if
        ``to_trash``), in one transaction; the lock is released only once
        that is committed, so the next session never sees a message whose
        removal is not durable, and the Deferred fires after both. Fails
        StoreError, applying nothing, if ``owner`` does not hold the lock;
        if the transaction fails, nothing is applied and the lock is still
        held: the caller releases it (``release_pop_lock``). A non-empty
        ``log`` is written in the same transaction, so a DELE's log entry
        is exactly as durable as the deletion.
        """

    def record_pop_logs(logs: Sequence[tuple[int, PopSessionLog]]) -> Deferred[None]:
        """Write the (account id, PopSessionLog) pairs in one transaction:
        the POP sessions that ended without a deletion, batched
        (zpop.accounts.pop_log), and the logins LOGIN-DELAY records; pairs
        of accounts deleted since are dropped."""

    def list_pop_downloads(address: str, limit: int = 100) -> Deferred[list[Any]]:
        """The account's newest ``limit`` PopDownloads (migration 016),
        newest first; [] for an unknown address."""


class IThrottleStore(Interface):
    """Failed logins and bans, shared by every process."""

    # login throttling
    def note_login_failure(
        client: str, account: str, secret: str, now: float, window: float
    ) -> Deferred[tuple[int, int]]:
        """Record a failed login; fires with (client failures, account
        failures) within the last ``window`` seconds, this one included.

        ``secret`` is a keyed hash of the (address, secret) pair tried. A
        failure repeating one of the client's last ``REPEATED_FAILURES``
        is not recorded again: the counts are those before it."""

    def ban_client(client: str, until: float) -> Deferred[None]:
        """Refuse logins from ``client`` until ``until``."""

    def client_banned_until(client: str, now: float) -> Deferred[float | None]:
        """Fires with the end of the client's ban, or None if not banned."""


class IQueueStore(Interface):
    """The outbound queue and its leases (zpop.outbound)."""

    # outbound relay (zpop.outbound)
    def claim_outbound(
        owner: str, now: float, lease: float, limit: int
    ) -> Deferred[list[OutboundJob]]:
        """Claim due outbound work for ``owner`` until ``now + lease``.

        Takes up to ``limit`` recipients that are ``queued``, due
        (``next_attempt <= now``) and not claimed by a live lease, oldest
        first; fires with OutboundJobs, one per (message, recipient domain).
        """

    def renew_outbound_leases(owner: str, now: float, lease: float) -> Deferred[int]:
        """Extend every claim ``owner`` holds to ``now + lease``; fires with
        the number of recipients still claimed."""

    def outbound_lease_owners() -> Deferred[list[str]]:
        """Fires with the owners holding claims (``zpop.owners``), sorted."""

    def release_outbound_leases(owner: str) -> Deferred[int]:
        """Drop ``owner``'s claims (the recipients stay due); fires with the
        number released."""

    def read_outbound_body(
        message_id: int, offset: int, length: int
    ) -> Deferred[bytes]:
        """Fires with up to ``length`` bytes of a queued message from
        ``offset``; fails NotFound if it is no longer queued."""

    def record_outbound_results(
        owner: str, message_id: int, results: list[RecipientResult], now: float
    ) -> Deferred[bool]:
        """Record one delivery attempt's RecipientResults and drop their
        claims. Rows already final are left alone. Fires True when no
        recipient of the message is ``queued`` any more."""

    def finished_outbound(limit: int) -> Deferred[list[int]]:
        """Fires with the ids of queued messages none of whose recipients is
        ``queued`` (all delivered or failed), oldest first."""

    def get_outbound(message_id: int) -> Deferred[OutboundMessage]:
        """Fires with the OutboundMessage or fails NotFound."""

    def list_outbound() -> Deferred[list[OutboundMessage]]:
        """Fires with every OutboundMessage, oldest first."""

    def outbound_summary() -> Deferred[tuple[int, float | None]]:
        """Fires with how many messages are queued and when the oldest was
        (None when none is): what a metrics scrape asks, without reading
        every message."""

    def finish_outbound(
        message_id: int,
        local: tuple[int, NewMessage] | None = None,
        queued: QueuedMessage | None = None,
    ) -> Deferred[bool]:
        """Remove a message from the queue and, in the same transaction,
        store what its removal produces: a message for an account
        ``(account id, message)`` and/or one to queue (a bounce; where it
        goes is the relay's decision, zpop.outbound). Fires False, storing
        nothing, if the message had already been removed.
        """

    def retry_outbound(message_id: int | None, now: float) -> Deferred[int]:
        """Make the ``queued`` recipients of one message (None: of every
        message) due at ``now``; fires with how many. Fails NotFound for an
        unknown message id."""

    def delete_outbound(message_id: int) -> Deferred[int]:
        """Remove a message from the queue without a bounce; fires with its
        number of recipients; fails NotFound."""


class IWebSessionStore(Interface):
    """Web settings sessions (zpop.accounts.web_sessions), shared by every
    process and node. ``digest`` is a keyed hash of the session id: the id
    itself, what the browser's cookie holds, is never stored."""

    def add_web_session(
        address: str,
        digest: bytes,
        stage: str,
        client: str,
        user_agent: str,
        now: float,
        lifetime: float,
        idle: float,
    ) -> Deferred[WebSession]:
        """Start a session for the account, ending at ``now + lifetime`` or
        after ``idle`` seconds unused; sessions of any account that ended
        are dropped on the way. Fails NotFound for an unknown account."""

    def use_web_session(digest: bytes, now: float) -> Deferred[WebSession | None]:
        """Fires with the live session of ``digest``, its use recorded
        (to ``WEB_SESSION_TOUCH`` seconds), or None; one that ended is
        dropped."""

    def end_web_session(digest: bytes) -> Deferred[bool]:
        """Drop the session of ``digest``; fires with whether there was one."""

    def list_web_sessions(address: str, now: float) -> Deferred[list[WebSession]]:
        """Fires with the account's live sessions, oldest first; fails
        NotFound for an unknown account."""

    def revoke_web_session(address: str, session_id: int) -> Deferred[None]:
        """Drop one of the account's sessions; fails NotFound if it is not
        the account's."""


class ITwoFactorStore(Interface):
    """TOTP secrets (sealed by the caller, ``zpop.accounts.totp``), the last
    accepted time step, and single-use recovery codes (keyed hashes) of
    accounts enrolled in two-factor authentication (zpop.accounts.two_factor).
    An account is enrolled while it has a secret (``Account.totp_enrolled``);
    its recovery codes go with the secret."""

    def enrol_two_factor(
        address: str, sealed: bytes, step: int, digests: Sequence[bytes], now: float
    ) -> Deferred[Account]:
        """In one transaction: store the sealed secret with ``step`` (the
        step of the code that confirmed it) as its last accepted step, the
        recovery codes' ``digests``, and turn two-factor on. Fires with the
        Account; fails NotFound for an unknown account, AlreadyExists if it
        is enrolled already (nothing changes)."""

    def get_totp_secret(account_id: int) -> Deferred[TotpSecret | None]:
        """Fires with the account's TotpSecret, or None if not enrolled."""

    def accept_totp_step(account_id: int, step: int) -> Deferred[bool]:
        """Compare-and-set: record ``step`` as the last accepted step if no
        step as late was accepted before. Fires True if this call did (the
        code counts), False otherwise (a replay, a race lost to another
        process, or no enrolment)."""

    def use_recovery_code(account_id: int, digest: bytes, now: float) -> Deferred[bool]:
        """Spend the account's unused recovery code of ``digest`` at ``now``;
        fires True if this call did, False if there is none (or it was used,
        by this call's rival too)."""

    def list_recovery_codes(address: str) -> Deferred[list[RecoveryCode]]:
        """Fires with the account's RecoveryCodes, used ones included, in the
        order made; fails NotFound for an unknown account."""

    def replace_recovery_codes(
        address: str, digests: Sequence[bytes], now: float
    ) -> Deferred[None]:
        """Replace every recovery code of the account by new ones, in one
        transaction; fails NotFound if the account is unknown or not
        enrolled."""

    def reset_two_factor(address: str) -> Deferred[Account]:
        """Delete the secret and recovery codes and turn two-factor off
        (required no more either); fires with the Account; NotFound."""


# -- outbound relay records -------------------------------------------------

#: States of an outbound recipient.


class IPasswordResetStore(Interface):
    """Forgot password (migration 012): each account's recovery address and
    one-time reset links, kept as the keyed hash of their token
    (zpop.accounts.password_resets). A link is live until ``expires`` and
    spent once; its rows go with the account."""

    def set_recovery_address(address: str, email: str | None) -> Deferred[None]:
        """Set (None: clear) where the account's reset links are sent;
        NotFound for an unknown account."""

    def get_recovery_address(address: str) -> Deferred[str | None]:
        """The account's recovery address or None; NotFound if no account."""

    def add_password_reset(
        address: str, digest: bytes, now: float, expires: float
    ) -> Deferred[None]:
        """Keep a new reset link of the account by its token's ``digest``
        (unique); NotFound for an unknown account."""

    def find_password_reset(digest: bytes, now: float) -> Deferred[str | None]:
        """The address of the account whose live (unused, unexpired) link has
        ``digest``, or None; spends nothing."""

    def use_password_reset(digest: bytes, now: float) -> Deferred[str | None]:
        """Spend the live link of ``digest`` at ``now`` (compare-and-set: of
        two uses at once exactly one wins); the account's address, or None
        if there was no such live link."""


class ILoginEventStore(Interface):
    """Sign-in activity (migrations 013, 014): each account's last
    LOGIN_EVENTS_KEPT logins (zpop.accounts.activity)."""

    def record_login_events(events: Sequence[Any]) -> Deferred[None]:
        """Keep ``events`` (LoginEvent) in one transaction, pruning each
        account's events beyond the newest LOGIN_EVENTS_KEPT; events of
        addresses with no account are dropped. An event with an
        ``app_password_id`` sets that password's last use (time and client)
        unless a later one is already recorded; a revoked id is kept as
        None."""

    def list_login_events(address: str, limit: int = 100) -> Deferred[list[Any]]:
        """The account's newest ``limit`` LoginEvents, newest first; [] for
        an unknown address."""


class IApiTokenStore(Interface):
    """Settings API tokens (migration 015; zpop.accounts.api_tokens)."""

    def add_api_token(
        address: str | None, scope: str, label: str, digest: bytes, now: float
    ) -> Deferred[Any]:
        """Store a new token's keyed digest for the account (None: an admin
        token); fires with the ApiToken; NotFound for an unknown account."""

    def find_api_token(digest: bytes) -> Deferred[Any]:
        """Fires with the ApiToken of that digest, or None."""

    def list_api_tokens(address: str | None = None) -> Deferred[list[Any]]:
        """The account's ApiTokens (every token, admin ones too, for None),
        oldest first; NotFound for an unknown account."""

    def revoke_api_token(token_id: int) -> Deferred[Any]:
        """Delete a token; fires with the ApiToken it was; NotFound if none."""

    def touch_api_token(token_id: int, now: float) -> Deferred[None]:
        """Record a use of the token at ``now`` (nothing if it is gone)."""


class IMailboxStore(Interface):
    """IMAP's folders, UIDs, flags and MODSEQs (zpop.store.mailbox).

    Folders are named by their IMAP name ("INBOX", "Spam", "Work/2026");
    a selected folder by its id, so a rename meanwhile changes nothing for
    the session and a deletion fails NotFound. ``uids`` are IMAP UIDs in
    that folder; a UID not (or no longer) there is skipped. Every change
    takes the folder's next MODSEQ; a message leaving a folder is recorded
    there as expunged at it.
    """

    def list_folders(account_id: int) -> Deferred[list[Folder]]:
        """The account's folders by name (no counts: LIST)."""

    def get_folder(account_id: int, name: str) -> Deferred[Folder]:
        """One folder with its counts; fails NotFound."""

    def create_folder(account_id: int, name: str, now: float) -> Deferred[Folder]:
        """A new user folder with a UIDVALIDITY the account never gave;
        fails AlreadyExists (a name in any case for INBOX) or NotFound."""

    def rename_folder(account_id: int, name: str, new_name: str) -> Deferred[Folder]:
        """Rename a user folder and the folders below it, keeping their
        UIDs; renaming INBOX moves its messages into a new folder (RFC 3501
        §6.3.5). Fails NotFound, AlreadyExists, or FolderRefused for a
        built-in folder other than INBOX."""

    def delete_folder(account_id: int, name: str) -> Deferred[None]:
        """Delete a user folder and its messages; FolderRefused for a
        built-in one or one with folders below it."""

    def subscribe_folder(
        account_id: int, name: str, subscribed: bool
    ) -> Deferred[Folder]:
        """Set the folder's subscription; fails NotFound."""

    def open_folder(folder_id: int) -> Deferred[FolderView]:
        """The folder and every message in it by UID (SELECT)."""

    def folder_changes(folder_id: int, since: int) -> Deferred[FolderChanges]:
        """What changed in the folder after MODSEQ ``since``."""

    def folder_modseqs(folder_ids: Sequence[int]) -> Deferred[dict[int, int]]:
        """{folder id: highest MODSEQ} of the folders that still exist, in
        one look-up (IDLE's watch over every waiting session)."""

    def append_message(
        account_id: int, name: str, message: NewMessage
    ) -> Deferred[Appended]:
        """Store a message in the named folder (APPEND); NotFound."""

    def store_flags(
        folder_id: int,
        uids: Sequence[int],
        op: str,
        flags: int,
        keywords: Sequence[str],
        unchanged_since: int | None = None,
    ) -> Deferred[FlagChanges]:
        """Replace, add or remove (StoreOp) flags and keywords in one
        transaction; a message whose MODSEQ is above ``unchanged_since`` is
        left alone and reported. A message whose flags do not change keeps
        its MODSEQ."""

    def copy_messages(
        folder_id: int, uids: Sequence[int], target: str, move: bool
    ) -> Deferred[Copied]:
        """Copy (or move) the messages to the folder named ``target``, in
        UID order, in one transaction. A copy is a new message (its own
        POP uid); a moved message keeps its id and POP uid. Fails NotFound
        for a missing target."""

    def expunge(
        folder_id: int, uids: Sequence[int] | None = None
    ) -> Deferred[tuple[int, ...]]:
        """Delete the folder's \\Deleted messages (among ``uids`` if given:
        UID EXPUNGE); fires with their UIDs, ascending."""


class IStore(
    IAccountStore,
    IMessageStore,
    IMailboxStore,
    IPopStore,
    IThrottleStore,
    IQueueStore,
    IWebSessionStore,
    ITwoFactorStore,
    IPasswordResetStore,
    ILoginEventStore,
    IApiTokenStore,
):
    """Durable state of zpop. Every method returns a Deferred."""

    path: Any = Attribute("Where the data lives, for messages to operators.")

    def changes() -> int:
        """A number that moves after every committed change to credentials,
        account settings or bans, made by any process; no I/O, so callable
        on the reactor thread (``zpop.store.changes``)."""
