"""The credentials checker every protocol shares, and its refusals.

One checker decides whether a (full address, secret) pair is good: an
app-specific password always is; the primary password only while two-factor
authentication is off. Every failure costs exactly one bcrypt, whether the
account exists or not, so the answer and its timing tell an attacker nothing
about which addresses exist. Reasons that depend on the account's state are
raised only after the secret was verified.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import LoginDenied, UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from zpop import passwords
from zpop.store import Account, IStore
from zpop.threads import Runner

log = Logger()

# Deliberately loose: the store decides whether an account exists. This only
# tells a person who typed "alice" that the full address is needed.
_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$|^[^@\s]+@localhost$")


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


class FullAddressRequired(LoginRefused):
    def __init__(self) -> None:
        super().__init__("AUTH", "Log in with your full email address")


@implementer(ICredentialsChecker)
class AccountChecker:
    """Checks full-address/password credentials against the store.

    The avatar ID is the account's address. bcrypt runs on ``hashing`` (a
    thread pool in the server), never on the reactor thread.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(
        self,
        store: IStore,
        key: bytes,
        hashing: Runner,
        clock: IReactorTime,
        bcrypt_cost: int,
        hash_password: Callable[[str, int], bytes] = passwords.hash_password,
    ) -> None:
        self._store = store
        self._key = key
        self._hashing = hashing
        self._clock = clock
        # A hash of a password nobody knows, checked for unknown users and
        # accounts without a primary password so they cost one bcrypt too.
        self._dummy_hash = hash_password(passwords.generate_app_password(), bcrypt_cost)

    def requestAvatarId(self, credentials: Any) -> Deferred:
        return Deferred.fromCoroutine(self._check(credentials))

    async def _check(self, credentials: Any) -> str:
        try:
            address = credentials.username.decode("utf-8").strip().lower()
            secret = credentials.password.decode("utf-8")
        except UnicodeDecodeError:
            raise UnauthorizedLogin()
        if not _ADDRESS.match(address):
            raise FullAddressRequired()
        account: Account | None = await self._store.get_account(address)
        if account is not None:
            digest = passwords.app_password_digest(self._key, account.id, secret)
            if digest is not None:
                used = await self._store.use_app_password(
                    account.id, digest, self._clock.seconds()
                )
                if used is not None:
                    log.debug(
                        "login {address} with app password {label}",
                        address=address,
                        label=used.label,
                    )
                    return account.address
        hashed = self._dummy_hash
        if account is not None and account.password_hash is not None:
            hashed = account.password_hash
        matched = await self._hashing(passwords.check_password, secret, hashed)
        if not matched or hashed is self._dummy_hash:
            raise UnauthorizedLogin()
        assert account is not None
        if account.two_factor:
            raise AppPasswordRequired()
        return account.address
