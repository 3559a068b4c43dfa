"""Settings API tokens (DESIGN §1 "Settings API"): a user's personal tokens
and the operator's admin tokens, made by the server, shown exactly once,
stored as a keyed hash with a scope and a label, last use recorded,
revocable. A token only ever opens the API: no mail protocol takes it.

A token is ``zpop_`` and 32 characters of APP_PASSWORD_ALPHABET (160
bits), so it is recognised in logs and secret scanners, and a string of
any other shape is refused without a store look-up. Its store key is
HMAC-SHA256 under the server key, so a database copy holds nothing that
opens the API.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from zpop.accounts import Clock, service
from zpop.accounts.accounts import require_account
from zpop.accounts.app_passwords import parse_label
from zpop.accounts.errors import AccountError, InvalidInput
from zpop.accounts.passwords import APP_PASSWORD_ALPHABET
from zpop.store import API_SCOPES as API_SCOPES
from zpop.store import ApiToken, IStore, NotFound

PREFIX = "zpop_"
LENGTH = 32
#: A token's last use is written at most this often, so a script polling
#: every second does not cost a durable write each time.
TOUCH_INTERVAL = 60.0


class UnknownApiToken(AccountError):
    """No such token (or not one of this account's)."""

    def __init__(self, token_id: int) -> None:
        super().__init__(f"no API token {token_id}")
        self.token_id = token_id


class InvalidScope(InvalidInput, ValueError):
    """A scope other than API_SCOPES."""


def parse_scope(text: str) -> str:
    """``read`` or ``write``; InvalidScope naming the choices otherwise."""
    if text not in API_SCOPES:
        raise InvalidScope(f"the scope must be one of {', '.join(API_SCOPES)}")
    return text


def token_digest(key: bytes, token: str) -> bytes | None:
    """The store key of ``token``, or None if it cannot be a token."""
    body = token.removeprefix(PREFIX)
    if (
        not token.startswith(PREFIX)
        or len(body) != LENGTH
        or not set(body) <= set(APP_PASSWORD_ALPHABET)
    ):
        return None
    return hmac.new(key, b"api token\0" + token.encode(), hashlib.sha256).digest()


def generate_token() -> str:
    return PREFIX + "".join(
        secrets.choice(APP_PASSWORD_ALPHABET) for _ in range(LENGTH)
    )


@service
async def create(
    store: IStore,
    clock: Clock,
    key: bytes,
    address: str | None,
    scope: str,
    label: str,
) -> tuple[ApiToken, str]:
    """A new token for the account (None: an admin token) and its text, the
    only time it is seen."""
    scope = parse_scope(scope)
    label = parse_label(label)
    if address is not None:
        address = (await require_account(store, address)).address
    token = generate_token()
    digest = token_digest(key, token)
    assert digest is not None
    record: ApiToken = await store.add_api_token(
        address, scope, label, digest, clock.seconds()
    )
    return record, token


@service
async def authenticate(
    store: IStore, clock: Clock, key: bytes, token: str
) -> ApiToken | None:
    """The token's record, its use recorded (to TOUCH_INTERVAL), or None."""
    digest = token_digest(key, token)
    if digest is None:
        return None
    found: ApiToken | None = await store.find_api_token(digest)
    if found is None:
        return None
    now = clock.seconds()
    if found.last_used is None or now - found.last_used >= TOUCH_INTERVAL:
        await store.touch_api_token(found.id, now)
    return found


@service
async def list_tokens(store: IStore, address: str | None = None) -> list[ApiToken]:
    """The account's tokens (every token, for None), oldest first."""
    if address is not None:
        address = (await require_account(store, address)).address
    found: list[ApiToken] = await store.list_api_tokens(address)
    return found


@service
async def revoke(store: IStore, token_id: int, address: str | None = None) -> ApiToken:
    """Revoke a token: any (the operator) or, with ``address``, only one of
    that account's; UnknownApiToken otherwise."""
    if address is not None:
        mine = {t.id for t in await list_tokens(store, address)}
        if token_id not in mine:
            raise UnknownApiToken(token_id)
    try:
        revoked: ApiToken = await store.revoke_api_token(token_id)
    except NotFound:
        raise UnknownApiToken(token_id) from None
    return revoked
