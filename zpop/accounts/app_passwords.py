"""App-specific passwords (DESIGN §1 "Credentials", CONVENTIONS 19): made
by the server, shown exactly once, stored as a keyed hash with a label,
created and last-used time, each revocable on its own."""

from __future__ import annotations

from zpop.accounts import Clock, passwords, service
from zpop.accounts.accounts import require_account
from zpop.accounts.errors import InvalidInput, UnknownAppPassword
from zpop.store import AppPassword, IStore
from zpop.wire.addresses import CONTROL

MAX_LABEL = 100


def parse_label(text: str) -> str:
    """A label with its white space collapsed; raises ValueError saying what
    is wrong (a label is shown in listings: no control characters)."""
    label = " ".join(text.split())
    if not label:
        raise ValueError("the label is empty")
    if CONTROL.search(label):
        raise ValueError("the label contains control characters")
    if len(label) > MAX_LABEL:
        raise ValueError(f"the label is longer than {MAX_LABEL} characters")
    return label


@service
async def create(
    store: IStore, clock: Clock, key: bytes, address: str, label: str
) -> str:
    """A new app-specific password for the account: the only time it is
    seen; only its keyed hash (under the server ``key``) is stored."""
    account = await require_account(store, address)
    try:
        label = parse_label(label)
    except ValueError as e:
        raise InvalidInput(str(e)) from None
    password = passwords.generate_app_password()
    digest = passwords.app_password_digest(key, account.id, password)
    assert digest is not None
    await store.add_app_password(account.address, label, digest, clock.seconds())
    return password


@service
async def list_app_passwords(store: IStore, address: str) -> list[AppPassword]:
    """The account's app-specific passwords (never the passwords)."""
    account = await require_account(store, address)
    found: list[AppPassword] = await store.list_app_passwords(account.address)
    return found


@service
async def revoke(store: IStore, address: str, password_id: int) -> str:
    """Revoke one app-specific password; returns its label."""
    account = await require_account(store, address)
    labels = {p.id: p.label for p in await store.list_app_passwords(account.address)}
    if password_id not in labels:
        raise UnknownAppPassword(account.address, password_id)
    await store.revoke_app_password(account.address, password_id)
    return labels[password_id]
