"""The realm: what a verified login gets, per protocol.

For POP3 that is a Maildrop snapshot, after the account-state checks that
may only be told once the secret was verified: the right host name for the
account's domain kind, the Free-plan cut-off, POP enabled, and no other POP
session holding the maildrop. For SMTP submission it is a ``Submitter``: the
account and the addresses it may send as. For IMAP an ``ImapAccount``, once
IMAP access is on and the Free-plan cut-off does not apply.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.mail.pop3 import IMailbox
from zope.interface import Attribute, Interface, implementer

from zpop.accounts.credentials import Identity, LoginRefused
from zpop.accounts.idle import IdleWatcher
from zpop.accounts.imap_account import IImapAccount, ImapAccount, imap_refusal
from zpop.accounts.maildrop import SPAM_FOLDERS, LogWriter, Maildrop
from zpop.accounts.settings import free_plan_blocked
from zpop.config import AccountsConfig, HostsConfig, PopConfig
from zpop.store import Account, IStore, PopSession, PopSessionLog

#: Maildrop lock owners. A lock belongs to the process that took it, so an
#: owner need only be unique among this process's sessions; one counter for
#: the process keeps two realms on one store from sharing names.
_owners = itertools.count(1)


@dataclass(frozen=True)
class Session:
    """What the protocol knows about the connection, passed as the mind."""

    client: str
    #: The TLS SNI name the client asked for, lower-case, or None.
    server_name: str | None = None


def pop_refusal(
    account: Account,
    hosts: HostsConfig,
    accounts: AccountsConfig,
    server_name: str | None,
) -> str | None:
    """Why this account may not use POP on this connection, or None."""
    if server_name == hosts.pop_personal and account.organization:
        return f"Organization accounts use {hosts.pop_organization}"
    if server_name == hosts.pop_organization and not account.organization:
        return f"Personal accounts use {hosts.pop_personal}"
    if free_plan_blocked(account, accounts):
        return "POP access is not available on the Free plan"
    if not account.pop.enabled:
        return "POP access is disabled for this account"
    return None


class ISubmitter(Interface):
    """A logged-in SMTP submitter: who they are and whom they may send as."""

    account: Any = Attribute("The Account record, read at login.")
    identity: Any = Attribute("The checker's Identity (address, login method).")
    addresses: Any = Attribute("Lower-case addresses it owns: its own, aliases.")

    def owns(address: str) -> bool:  # noqa: N805 - zope interface
        """Whether ``address`` (any case) is the account's or an alias."""


@implementer(ISubmitter)
@dataclass(frozen=True)
class Submitter:
    account: Account
    identity: Identity
    addresses: frozenset[str]

    def owns(self, address: str) -> bool:
        return address.lower() in self.addresses


class IWebAccount(Interface):
    """A web settings sign-in whose primary password was verified: the
    account as read at sign-in (two-factor state included, so the web
    knows whether a code is still due)."""

    account: Any = Attribute("The Account record, read at sign-in.")
    identity: Any = Attribute("The checker's Identity (address, login method).")


@implementer(IWebAccount)
@dataclass(frozen=True)
class WebAccount:
    account: Account
    identity: Identity


def _in_use(account: Account) -> str:
    if account.pop.queue == "per-device":
        return "Another POP session of this device is already using its mailbox"
    return "Another POP session is already using this mailbox"


@implementer(IRealm)
class Realm:
    def __init__(
        self,
        store: IStore,
        hosts: HostsConfig,
        accounts: AccountsConfig,
        clock: IReactorTime,
        pop: PopConfig | None = None,
        log_writer: LogWriter | None = None,
        max_message_size: int = 36 * 1024 * 1024,
    ) -> None:
        self._store = store
        self._hosts = hosts
        self._accounts = accounts
        self._clock = clock
        self._pop = PopConfig() if pop is None else pop
        #: Where sessions without a deletion hand their download log
        #: (zpop.accounts.pop_log.PopLogRecorder); None: written at once.
        self._log_writer = log_writer
        #: The largest message IMAP APPEND takes: the SMTP limit.
        self._max_message_size = max_message_size
        #: Every IDLE session of the process, watched by one timer.
        self._idle = IdleWatcher(store, clock)

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> Deferred:
        if IMailbox in interfaces:
            return Deferred.fromCoroutine(self._maildrop(avatarId, mind))
        if ISubmitter in interfaces:
            return Deferred.fromCoroutine(self._submitter(avatarId))
        if IWebAccount in interfaces:
            return Deferred.fromCoroutine(self._web_account(avatarId))
        if IImapAccount in interfaces:
            return Deferred.fromCoroutine(self._imap_account(avatarId))
        raise NotImplementedError(
            "zpop serves IMailbox, ISubmitter, IWebAccount and IImapAccount avatars"
        )

    async def _imap_account(self, identity: Any) -> Any:
        account: Account | None = await self._store.get_account(identity)
        if account is None:
            # Deleted between the password check and now.
            raise UnauthorizedLogin()
        refusal = imap_refusal(account, self._accounts)
        if refusal is not None:
            raise LoginRefused("AUTH", refusal)
        if not isinstance(identity, Identity):
            identity = Identity(account.address, "-")
        session = ImapAccount(
            self._store,
            account,
            identity,
            self._clock,
            self._max_message_size,
            self._idle,
        )
        return (IImapAccount, session, lambda: None)

    async def _web_account(self, identity: Any) -> Any:
        account: Account | None = await self._store.get_account(identity)
        if account is None:
            # Deleted between the password check and now.
            raise UnauthorizedLogin()
        if not isinstance(identity, Identity):
            identity = Identity(account.address, "-")
        return (IWebAccount, WebAccount(account, identity), lambda: None)

    async def _submitter(self, identity: Any) -> Any:
        account: Account | None = await self._store.get_account(identity)
        if account is None:
            # Deleted between the password check and now.
            raise UnauthorizedLogin()
        aliases = await self._store.list_aliases(account.address)
        if not isinstance(identity, Identity):
            identity = Identity(account.address, "-")
        submitter = Submitter(account, identity, frozenset([account.address, *aliases]))
        return (ISubmitter, submitter, lambda: None)

    async def _maildrop(self, address: str, session: Session | None) -> Any:
        owner = f"pop-{next(_owners)}"
        # One round trip: account, lock and snapshot.
        opened: PopSession | None = await self._store.open_pop_session(
            address,
            owner,
            SPAM_FOLDERS,
            getattr(address, "app_password_id", None),
            self._clock.seconds(),
        )
        if opened is None:
            # Deleted between the password check and now.
            raise UnauthorizedLogin()
        account = opened.account
        refusal = pop_refusal(
            account,
            self._hosts,
            self._accounts,
            session.server_name if session else None,
        )
        if refusal is not None:
            if opened.locked:
                await self._store.release_pop_lock(account.id, owner)
            raise LoginRefused("AUTH", refusal)
        if not opened.locked:
            raise LoginRefused("IN-USE", _in_use(account))
        delay = self._pop.login_delay(account.plan)
        since = None
        if delay > 0 and opened.last_login is not None:
            since = self._clock.seconds() - opened.last_login
        if since is not None and since < delay:
            # RFC 2449 LOGIN-DELAY: refused after the password was verified,
            # leaving everything (the last login time too) as it was.
            await self._store.release_pop_lock(account.id, owner)
            wait = max(1, int(delay - since + 0.999))
            raise LoginRefused(
                "LOGIN-DELAY",
                f"Logged in less than {delay} seconds ago: try again in {wait} seconds",
            )
        if delay > 0:
            # Durable before +OK, so neither a crash nor a quick second
            # login gets round the delay; logins are rare where it is on.
            try:
                login = PopSessionLog(
                    login_at=self._clock.seconds(), device=opened.device
                )
                await self._store.record_pop_logs([(account.id, login)])
            except BaseException:
                await self._store.release_pop_lock(account.id, owner)
                raise
        maildrop = Maildrop(
            self._store,
            account,
            opened.messages,
            owner,
            self._clock,
            address,
            session.client if session else "-",
            self._pop.log_days,
            delay,
            self._log_writer,
            opened.device,
        )
        return (IMailbox, maildrop, maildrop.release)
