"""Forgot password (DESIGN §1 "Self-service web settings"): one-time "set
your password" links, good for an hour and once, kept only as the keyed
hash of their token; the recovery address they are mailed to.

``make_reset_link`` is the operator's (``zpop account reset-link``, the
federated users' way to a first password); ``request_reset`` the web
form's, answering the same whatever the address; ``use_reset`` sets the
password through the one ``set_password`` path and signs the account's
browsers out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zpop.accounts import Clock, passwords, service, web_sessions
from zpop.accounts.accounts import check_password, require_account, set_password
from zpop.accounts.errors import InvalidInput
from zpop.config import AccountsConfig
from zpop.delivery import DeliveryRefused, format_date, new_message_id, send_system_mail
from zpop.store import IStore
from zpop.threads import Runner
from zpop.wire.addresses import parse_address

if TYPE_CHECKING:
    from zpop.mailauth.dkim import Signer

#: Seconds a reset link is good for.
LIFETIME = 3600.0
#: Characters of the unambiguous alphabet in a token: 32 of 32 symbols,
#: 160 bits.
TOKEN_LENGTH = 32
#: The path a link opens on the web listener.
RESET_PATH = "/reset"


class InvalidResetLink(InvalidInput):
    """A reset token that is not live: mistyped, expired or used already
    (one reason for all, so the page tells nothing more)."""

    def __init__(self) -> None:
        super().__init__("the link is invalid or has expired")


def new_token() -> str:
    """A fresh token, as it goes into the link (no spaces)."""
    return "".join(passwords.generate_secret(TOKEN_LENGTH).split())


def token_digest(key: bytes, token: str) -> bytes | None:
    """The keyed hash a token is stored as, or None if it can't be one."""
    canonical = passwords.normalize_secret(token, TOKEN_LENGTH)
    if canonical is None:
        return None
    return passwords.keyed_digest(key, "reset", 0, canonical)


def link_for(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}{RESET_PATH}?token={token}"


async def _new_link(
    store: IStore, key: bytes, clock: Clock, address: str, base_url: str
) -> str:
    token = new_token()
    digest = token_digest(key, token)
    assert digest is not None
    now = clock.seconds()
    await store.add_password_reset(address, digest, now, now + LIFETIME)
    return link_for(base_url, token)


@service
async def make_reset_link(
    store: IStore, key: bytes, clock: Clock, address: str, base_url: str
) -> str:
    """A new one-time link setting the account's password (UnknownAccount
    if there is none)."""
    account = await require_account(store, address)
    return await _new_link(store, key, clock, account.address, base_url)


def compose_reset_mail(
    sender: str, recipient: str, account: str, link: str, hostname: str, now: float
) -> bytes:
    """The plain-text mail carrying a reset link."""
    lines = [
        f"From: <{sender}>",
        f"To: <{recipient}>",
        f"Subject: Set your password for {account}",
        f"Date: {format_date(now)}",
        f"Message-ID: {new_message_id(hostname)}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "Auto-Submitted: auto-generated",
        "",
        f"Someone asked to set a new password for {account}.",
        "",
        "Open this link within one hour to choose it (it works once):",
        "",
        link,
        "",
        "If you did not ask for this, ignore this message: your password",
        "stays as it is.",
        "",
    ]
    return "\r\n".join(lines).encode("utf-8")


@service
async def request_reset(
    store: IStore,
    key: bytes,
    clock: Clock,
    hostname: str,
    queue_lifetime: float,
    address: str,
    base_url: str,
    signer: Signer | None = None,
) -> None:
    """The web form's "Forgot password": when ``address`` is an account with
    a recovery address, mail that address a new link (from
    no-reply@``hostname``, through the server's own delivery or outbound
    queue). Returns nothing, and the same, in every case, so the caller
    cannot tell whether the address exists."""
    try:
        address = parse_address(address.strip())
    except ValueError:
        return None
    account = await store.get_account(address)
    if account is None:
        return None
    recovery = await store.get_recovery_address(account.address)
    if recovery is None:
        return None
    link = await _new_link(store, key, clock, account.address, base_url)
    sender = f"no-reply@{hostname}"
    body = compose_reset_mail(
        sender, recovery, account.address, link, hostname, clock.seconds()
    )
    try:
        await send_system_mail(
            store, clock, sender, recovery, body, queue_lifetime, signer
        )
    except DeliveryRefused:
        return None
    return None


@service
async def check_reset(store: IStore, key: bytes, clock: Clock, token: str) -> str:
    """The account a live token would reset (spending nothing), or
    InvalidResetLink."""
    digest = token_digest(key, token)
    found = None
    if digest is not None:
        found = await store.find_password_reset(digest, clock.seconds())
    if found is None:
        raise InvalidResetLink()
    return str(found)


@service
async def use_reset(
    store: IStore,
    key: bytes,
    clock: Clock,
    hashing: Runner,
    config: AccountsConfig,
    token: str,
    new_password: str,
) -> str:
    """Set the primary password with a live token, spending it (once, even
    between processes) and ending the account's web sessions; the account's
    address. InvalidResetLink for a token that is not live, WeakPassword
    for a password the rules refuse (the link is then not spent)."""
    address = await check_reset(store, key, clock, token)
    check_password(new_password, address)
    digest = token_digest(key, token)
    assert digest is not None
    spent = await store.use_password_reset(digest, clock.seconds())
    if spent is None:
        raise InvalidResetLink()
    await set_password(store, config, hashing, spent, lambda: new_password)
    await web_sessions.revoke_others(store, clock, spent, None)
    return str(spent)


@service
async def set_recovery_address(store: IStore, address: str, email: str) -> str:
    """Set where the account's reset links go; the address as stored.
    InvalidInput for one that is not an address, or delivers to the
    account itself (its address or an alias: a link mailed there is no use
    to someone locked out)."""
    account = await require_account(store, address)
    try:
        recovery = parse_address(email.strip())
    except ValueError as e:
        raise InvalidInput(str(e)) from None
    owner = await store.get_account_for_recipient(recovery)
    if owner is not None and owner.id == account.id:
        raise InvalidInput(
            "the recovery address must be another mailbox than the account's own"
        )
    await store.set_recovery_address(account.address, recovery)
    return recovery


@service
async def get_recovery_address(store: IStore, address: str) -> str | None:
    """The account's recovery address, or None."""
    account = await require_account(store, address)
    found: str | None = await store.get_recovery_address(account.address)
    return found
