"""The credentials checker every protocol shares, and its refusals.

One checker decides whether a (full address, secret) pair is good: an
app-specific password always is; the primary password only while two-factor
authentication is off. Every failure costs exactly one bcrypt, whether the
account exists or not, so the answer and its timing tell an attacker nothing
about which addresses exist. Reasons that depend on the account's state are
raised only after the secret was verified.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.cred.error import LoginDenied, UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from zope.interface import Interface, implementer

from zpop import metrics
from zpop.accounts import passwords
from zpop.config import AuthConfig
from zpop.store import Account, IStore, LoginEvent
from zpop.store.changes import Verified
from zpop.threads import Runner
from zpop.wire import addresses

log = Logger()

#: Cached verifications kept at most (least recently used go first).
CACHE_ENTRIES = 65536


class LoginRefused(LoginDenied):
    """A refusal the client is told about, with its RFC 3206 response code.

    ``code`` is the POP3 response code (``AUTH``, ``IN-USE``, ``SYS/TEMP``);
    other protocols map it to their own replies.
    """

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


class AppPasswordRequired(LoginRefused):
    """The primary password was right, but two-factor authentication is on."""

    def __init__(self) -> None:
        super().__init__(
            "AUTH",
            "Application-specific password required (two-factor authentication is on)",
        )


class WrongSecret(UnauthorizedLogin):
    """Bad credentials for an account that exists (``address``): what the
    checker raises instead of a bare UnauthorizedLogin so the Authenticator
    can record the account's sign-in activity. Never told to the client,
    which sees the same refusal either way."""

    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address


class FullAddressRequired(LoginRefused):
    def __init__(self) -> None:
        super().__init__("AUTH", "Log in with your full email address")


#: The audit method and activity credential of a sign-in's second step,
#: and the reason a wrong code is recorded with.
SECOND_FACTOR = "two-factor code"
WRONG_CODE = "bad two-factor code"


class Identity(str):
    """An avatar ID: the account's address, and how the login proved itself.

    A ``str`` so realms can use it as the address; ``method`` is
    ``"primary"`` or ``"app password <label>"`` for the audit log,
    ``app_password_id`` lets a session notice that its password was revoked,
    and ``verified`` says when the credentials were last checked against
    the store, so that need not be done again while nothing changed.
    """

    method: str
    app_password_id: int | None
    verified: Verified | None

    def __new__(
        cls,
        address: str,
        method: str,
        app_password_id: int | None = None,
        verified: Verified | None = None,
    ) -> Identity:
        identity = super().__new__(cls, address)
        identity.method = method
        identity.app_password_id = app_password_id
        identity.verified = verified
        return identity


@dataclass(frozen=True, slots=True)
class CachedLogin:
    """A remembered verification: who, how, when it was last known current,
    the account generation it saw, until when. Plain fields rather than an
    Identity, which costs several times the memory, for every cached
    account in every process; ``as_dict``/``from_dict`` carry it to other
    processes."""

    address: str
    method: str
    app_password_id: int | None
    verified: Verified
    generation: int
    expires: float

    @classmethod
    def of(cls, identity: Identity, generation: int, expires: float) -> CachedLogin:
        assert identity.verified is not None
        return cls(
            str(identity),
            identity.method,
            identity.app_password_id,
            identity.verified,
            generation,
            expires,
        )

    def identity(self) -> Identity:
        return Identity(self.address, self.method, self.app_password_id, self.verified)

    def as_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "method": self.method,
            "app_password_id": self.app_password_id,
            "changes": self.verified.changes,
            "verified_at": self.verified.at,
            "generation": self.generation,
            "expires": self.expires,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CachedLogin:
        app = d["app_password_id"]
        return cls(
            str(d["address"]),
            str(d["method"]),
            None if app is None else int(app),
            Verified(int(d["changes"]), float(d["verified_at"])),
            int(d["generation"]),
            float(d["expires"]),
        )


class IPrimaryPassword(Interface):
    """Full address and primary password, and nothing else: what the web
    settings sign in with. App-specific passwords are never tried for it,
    and two-factor being on does not refuse it: the web asks for the code
    next (the primary password alone never reaches a mail protocol, which
    sends IUsernamePassword). Attributes as IUsernamePassword's."""


@implementer(IPrimaryPassword)
@dataclass(frozen=True)
class PrimaryPassword:
    """IPrimaryPassword credentials: UTF-8 ``username`` and ``password``."""

    username: bytes
    password: bytes


#: Where a process tells the others of a verification (key, entry).
Share = Callable[[bytes, "CachedLogin"], None]


def _remember_recent(cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    """Put ``key`` in ``cache`` as the newest entry, dropping the oldest
    beyond CACHE_ENTRIES."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > CACHE_ENTRIES:
        cache.popitem(last=False)


@implementer(ICredentialsChecker)
class AccountChecker:
    """Checks full-address/password credentials against the store.

    The avatar ID is the account's address. bcrypt runs on ``hashing`` (a
    thread pool in the server), never on the reactor thread.
    """

    credentialInterfaces = (IUsernamePassword, IPrimaryPassword)

    def __init__(
        self,
        store: IStore,
        key: bytes,
        hashing: Runner,
        clock: IReactorTime,
        bcrypt_cost: int,
        cache_time: float = 0.0,
        hash_password: Callable[[str, int], bytes] = passwords.hash_password,
        share: Share | None = None,
    ) -> None:
        self._store = store
        self._key = key
        self._hashing = hashing
        self._clock = clock
        self._cache_time = cache_time
        self._cache: OrderedDict[bytes, CachedLogin] = OrderedDict()
        # Told of every verification remembered here, so other processes
        # can learn it (zpop.cluster); ``learn`` takes theirs.
        self._share = share
        # A hash of a password nobody knows, checked for unknown users and
        # accounts without a primary password so they cost one bcrypt too.
        self._dummy_hash = hash_password(passwords.generate_app_password(), bcrypt_cost)

    def requestAvatarId(self, credentials: Any) -> Deferred:
        return Deferred.fromCoroutine(self._check(credentials))

    def _cache_key(self, address: str, secret: str) -> bytes:
        # Keyed, so the cache never holds anything a memory dump could
        # turn back into a password.
        message = f"{address}\0{secret}".encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def _remember(self, key: bytes, identity: Identity, account: Account) -> Identity:
        if self._cache_time > 0:
            expires = self._clock.seconds() + self._cache_time
            entry = CachedLogin.of(identity, account.generation, expires)
            _remember_recent(self._cache, key, entry)
            if self._share is not None:
                self._share(key, entry)
        return identity

    def learn(self, key: bytes, entry: CachedLogin) -> None:
        """Remember a verification another process made and shared."""
        if self._cache_time > 0 and entry.expires > self._clock.seconds():
            _remember_recent(self._cache, key, entry)

    async def _check(self, credentials: Any) -> Identity:
        try:
            address = credentials.username.decode("utf-8").strip().lower()
            secret = credentials.password.decode("utf-8")
        except UnicodeDecodeError:
            raise UnauthorizedLogin()
        if not addresses.is_login_name(address):
            raise FullAddressRequired()
        if IPrimaryPassword.providedBy(credentials):
            return await self._check_primary(address, secret)
        key = self._cache_key(address, secret)
        now = self._clock.seconds()
        cached = self._cache.get(key)
        if cached is not None and cached.expires <= now:
            del self._cache[key]
            cached = None
        if cached is not None and cached.verified.current(self._store, now):
            # Nothing changed anywhere since it was checked: no look-up.
            return cached.identity()
        verified = Verified.now(self._store, now)
        account: Account | None = await self._store.get_account(address)
        if cached is not None:
            # Any change to the account's credentials or settings bumps its
            # generation, also when made by `zpop` in another process.
            if account is not None and cached.generation == account.generation:
                cached = dataclasses.replace(cached, verified=verified)
                self._cache[key] = cached
                return cached.identity()
            self._cache.pop(key, None)
        if account is not None:
            digest = passwords.app_password_digest(self._key, account.id, secret)
            if digest is not None:
                used = await self._store.find_app_password(account.id, digest)
                if used is not None:
                    identity = Identity(
                        account.address, f"app password {used.label}", used.id, verified
                    )
                    return self._remember(key, identity, account)
        account = await self._primary_matches(account, secret)
        if account.two_factor:
            raise AppPasswordRequired()
        identity = Identity(account.address, "primary", None, verified)
        return self._remember(key, identity, account)

    async def _check_primary(self, address: str, secret: str) -> Identity:
        """The primary password alone (IPrimaryPassword): one bcrypt, known
        or not, and never the cache, which holds app-password and mail
        verifications under the same (address, secret) key."""
        account = await self._primary_matches(
            await self._store.get_account(address), secret
        )
        return Identity(account.address, "primary")

    async def _primary_matches(self, account: Account | None, secret: str) -> Account:
        """``account`` if ``secret`` is its primary password. One bcrypt
        either way (against a dummy hash for an unknown account or one
        without a password), so the answer's time tells nothing; raises
        WrongSecret for an existing account, else UnauthorizedLogin."""
        hashed = self._dummy_hash
        if account is not None and account.password_hash is not None:
            hashed = account.password_hash
        matched = await self._hashing(passwords.check_password, secret, hashed)
        if not matched or hashed is self._dummy_hash:
            if account is not None:
                raise WrongSecret(account.address)
            raise UnauthorizedLogin()
        assert account is not None
        return account


def avatar_address(avatar: Any, fallback: str) -> str:
    """The account address of a logged-in avatar (its Identity), else
    ``fallback``."""
    identity = getattr(avatar, "identity", None)
    return str(identity) if isinstance(identity, str) else fallback


class Authenticator:
    """Every protocol's way in: bans, the portal, slowed failures, audit log.

    ``login`` fires with the portal's ``(interface, avatar, logout)`` or
    fails with ``LoginRefused`` (told to the client with its code) or
    ``UnauthorizedLogin`` (bad credentials, answered only after a delay that
    grows with recent failures from that client address and, past a
    threshold, against that account). Counters and bans live in the store,
    so every process shares them and a restart keeps them.
    """

    def __init__(
        self,
        portal: Portal,
        store: IStore,
        clock: IReactorTime,
        config: AuthConfig,
        key: bytes,
        activity: Callable[[LoginEvent], None] | None = None,
    ) -> None:
        """``activity``: told each login outcome of a known account
        (zpop.accounts.activity); it must return at once."""
        self._portal = portal
        self._activity = activity
        self._key = key
        self._store = store
        self._clock = clock
        self._config = config
        # client -> (banned until or None, when that was read): bans change
        # rarely, and a ban by any process moves the store's change counter.
        self._bans: OrderedDict[str, tuple[float | None, Verified]] = OrderedDict()

    def exempt(self, client: str) -> bool:
        """Whether ``client`` is in a network the operator exempted from bans."""
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return False
        return any(address in network for network in self._config.allow_networks)

    def login(
        self,
        protocol: str,
        client: str,
        username: bytes,
        password: bytes,
        mind: Any,
        interface: Any,
        primary_only: bool = False,
    ) -> Deferred:
        """``primary_only``: sign in with the primary password alone
        (IPrimaryPassword, the web settings), never an app password."""
        return Deferred.fromCoroutine(
            self._login(
                protocol, client, username, password, mind, interface, primary_only
            )
        )

    async def _login(
        self,
        protocol: str,
        client: str,
        username: bytes,
        password: bytes,
        mind: Any,
        interface: Any,
        primary_only: bool = False,
    ) -> Any:
        account = username.decode("utf-8", "replace").strip().lower()
        now = self._clock.seconds()
        audit = {"protocol": protocol, "client": client, "account": account}
        if not self.exempt(client):
            until = await self._banned_until(client, now)
            if until is not None:
                self._audit("refused", audit, "-", "client banned")
                metrics.login(protocol, "banned")
                raise LoginRefused(
                    "SYS/TEMP", "Too many failed logins, try again later"
                )
        credentials: Any = (
            PrimaryPassword(username, password)
            if primary_only
            else UsernamePassword(username, password)
        )
        try:
            result = await self._portal.login(credentials, mind, interface)
        except LoginRefused as refusal:
            self._audit("refused", audit, "-", refusal.text)
            metrics.login(protocol, "refused")
            # Every refusal but this one comes after the secret was
            # verified, so the account exists.
            if not isinstance(refusal, FullAddressRequired):
                method = "primary" if isinstance(refusal, AppPasswordRequired) else "-"
                self._note(audit, account, method, "refused", refusal.text)
            raise
        except UnauthorizedLogin as failure:
            self._audit("failed", audit, "-", "bad credentials")
            metrics.login(protocol, "failed")
            if isinstance(failure, WrongSecret):
                self._note(audit, failure.address, "-", "failed", "bad credentials")
            await self._slow_down(client, account, self._tag(username, password))
            raise UnauthorizedLogin()
        _, avatar, _ = result
        identity = getattr(avatar, "identity", None)
        method = getattr(identity, "method", "-")
        self._audit("succeeded", audit, method, "-")
        metrics.login(protocol, "succeeded")
        address = avatar_address(avatar, account)
        used = getattr(identity, "app_password_id", None)
        self._note(audit, address, method, "succeeded", "-", used)
        return result

    def _note(
        self,
        fields: dict[str, str],
        address: str,
        method: str,
        result: str,
        reason: str,
        app_password_id: int | None = None,
    ) -> None:
        """Hand the outcome to the activity recorder, if any; never raises.
        The recorder also writes the app password's last use: even a login
        the credential cache answered is a use."""
        if self._activity is None:
            return
        event = LoginEvent(
            address,
            self._clock.seconds(),
            fields["protocol"],
            fields["client"],
            method,
            result,
            reason,
            app_password_id,
        )
        try:
            self._activity(event)
        except Exception:
            log.failure("recording sign-in activity")

    async def second_factor(
        self, protocol: str, client: str, address: str, code: str, accepted: bool
    ) -> None:
        """Audit and record the second step of a sign-in whose password was
        right (the web's two-factor code). A wrong ``code`` counts as a
        failed login of ``client`` and of the account, towards the delay
        and the ban: a stolen password must not buy unthrottled guesses."""
        audit = {"protocol": protocol, "client": client, "account": address}
        if accepted:
            self._audit("succeeded", audit, SECOND_FACTOR, "-")
            self._note(audit, address, SECOND_FACTOR, "succeeded", "-")
            return
        self._audit("failed", audit, SECOND_FACTOR, WRONG_CODE)
        self._note(audit, address, SECOND_FACTOR, "failed", WRONG_CODE)
        tag = self._tag(address.encode("utf-8"), b"code\0" + code.encode("utf-8"))
        await self._slow_down(client, address, tag)

    async def bearer(
        self,
        protocol: str,
        client: str,
        token: str,
        verify: Callable[[str], Deferred[Any]],
    ) -> Any:
        """A bearer token's record as ``verify`` finds it (None: no such
        token), under the login rules: LoginRefused while ``client`` is
        banned; an unknown token audited, counted towards the ban and
        slowed down like a wrong password, then UnauthorizedLogin."""
        now = self._clock.seconds()
        audit = {"protocol": protocol, "client": client, "account": "-"}
        if not self.exempt(client) and await self._banned_until(client, now):
            self._audit("refused", audit, "-", "client banned")
            raise LoginRefused("SYS/TEMP", "Too many failed logins, try again later")
        found = await verify(token)
        if found is None:
            self._audit("failed", audit, "-", "bad token")
            tag = self._tag(b"bearer", token.encode("utf-8", "surrogatepass"))
            await self._slow_down(client, "-", tag)
            raise UnauthorizedLogin()
        return found

    async def note_attempt(self, protocol: str, client: str, username: str) -> None:
        """Count a request that could be abused to probe or to flood (a
        "forgot password" form) like a failed login of ``client``: refused
        with LoginRefused while the client is banned, else counted towards
        its ban, slowed down as failures are, and audited (outcome
        ``requested``). Every request counts, even a repeat."""
        account = username.strip().lower()
        now = self._clock.seconds()
        audit = {"protocol": protocol, "client": client, "account": account}
        if not self.exempt(client):
            until = await self._banned_until(client, now)
            if until is not None:
                self._audit("refused", audit, "-", "client banned")
                raise LoginRefused(
                    "SYS/TEMP", "Too many failed logins, try again later"
                )
        self._audit("requested", audit, "-", "password reset")
        await self._slow_down(client, account, secrets.token_hex(16))

    async def _banned_until(self, client: str, now: float) -> float | None:
        known = self._bans.get(client)
        if known is not None and known[1].current(self._store, now):
            until = known[0]
        else:
            verified = Verified.now(self._store, now)
            until = await self._store.client_banned_until(client, now)
            _remember_recent(self._bans, client, (until, verified))
        return until if until is not None and until > now else None

    def _tag(self, username: bytes, password: bytes) -> str:
        """A keyed hash of the pair tried: what the store compares to spot
        a client retrying one wrong secret, never the secret itself."""
        message = b"login failure\0" + username + b"\0" + password
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]

    async def _slow_down(self, client: str, account: str, secret: str) -> None:
        # A repeat of one of the client's last failures (a mail client
        # retrying the same wrong password with each mechanism it knows)
        # is not counted again, so it adds no delay step and no ban count.
        cfg = self._config
        now = self._clock.seconds()
        by_client, by_account = await self._store.note_login_failure(
            client, account, secret, now, cfg.failure_window
        )
        exempt = self.exempt(client)
        if by_client >= cfg.ban_threshold and not exempt:
            await self._store.ban_client(client, now + cfg.ban_period)
            metrics.ban()
            log.warn(
                "login ban client={client} failures={failures} until={until}",
                client=client,
                failures=by_client,
                until=now + cfg.ban_period,
            )
        steps = by_client - 1
        over = by_account - cfg.account_failure_threshold
        steps = max(steps, over)
        delay = min(cfg.failure_delay * 2 ** min(steps, 32), cfg.failure_delay_max)
        if delay > 0:
            await deferLater(self._clock, delay, lambda: None)

    @staticmethod
    def _audit(outcome: str, fields: dict[str, str], method: str, reason: str) -> None:
        log.info(
            "login {outcome} protocol={protocol} client={client} account={account}"
            " method={method} reason={reason}",
            outcome=outcome,
            method=method,
            reason=reason,
            **fields,
        )
