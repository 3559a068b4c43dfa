"""The Store API: what zpop keeps, as frozen records behind Deferreds.

Protocols, the realm and the ``zpop`` command talk to a store only through
``IStore``; the SQL behind it is the business of an implementation
(``zpop.store.sqlite``), so another database can be added without touching
them. Every method returns a Deferred that fires after the change is
committed, so a reply sent from its callback promises nothing that a crash
could take back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zope.interface import Attribute, Interface

FOLDERS = ("Inbox", "Spam", "Sent", "Trash")
PLANS = ("free", "paid")
POP_MODES = ("all", "new")
SPAM_POLICIES = ("exclude", "include", "only")
DELETION_POLICIES = ("keep", "delete")


class StoreError(Exception):
    """Base of the store's errors; the text is fit for an operator."""


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


@dataclass(frozen=True)
class NewMessage:
    """A message to be stored: body with CRLF line ends, and its metadata."""

    folder: str
    body: bytes
    subject: str
    received: float
    seen: bool = False


class IStore(Interface):
    """Durable state of zpop. Every method returns a Deferred."""

    path: Any = Attribute("Where the data lives, for messages to operators.")

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
        """Fires with the matching AppPassword (recording its use) or None."""

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

    def list_messages(account_id: int, folder: str | None = None) -> Any:
        """Fires with the account's Messages (in one folder), oldest first."""

    def pop_messages(account_id: int, folders: tuple[str, ...], min_uid: int) -> Any:
        """Fires with the Messages in the POP queue, oldest first."""

    def read_body(message_id: int, offset: int, length: int) -> Any:
        """Fires with up to ``length`` bytes of a body from ``offset``.

        Fails NotFound if the message no longer exists.
        """

    # POP sessions
    def acquire_pop_lock(account_id: int, owner: str, now: float, lease: float) -> Any:
        """Fires True if ``owner`` now holds the account's maildrop lock."""

    def renew_pop_lock(account_id: int, owner: str, now: float, lease: float) -> Any:
        """Extend the lease; fires False if ``owner`` no longer holds it."""

    def release_pop_lock(account_id: int, owner: str) -> Any:
        """Give the lock up (no-op if ``owner`` does not hold it)."""

    def finish_pop_session(
        account_id: int, owner: str, message_ids: list[int], to_trash: bool
    ) -> Any:
        """Apply a POP session's deletions and release its lock, atomically.

        Each message leaves the POP queue (and moves to Trash if
        ``to_trash``). Fails StoreError, applying nothing, if ``owner`` no
        longer holds the lock.
        """

    # login throttling
    def note_login_failure(client: str, account: str, now: float, window: float) -> Any:
        """Record a failed login; fires with (client failures, account
        failures) within the last ``window`` seconds, this one included."""

    def ban_client(client: str, until: float) -> Any:
        """Refuse logins from ``client`` until ``until``."""

    def client_banned_until(client: str, now: float) -> Any:
        """Fires with the end of the client's ban, or None if not banned."""
