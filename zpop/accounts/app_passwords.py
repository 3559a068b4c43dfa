"""App-specific passwords (DESIGN §1 "Credentials", CONVENTIONS 19): made
by the server, shown exactly once, stored as a keyed hash with a label,
created and last-used time, each revocable on its own."""

from __future__ import annotations

from zpop.accounts import Clock, passwords, service
from zpop.accounts.accounts import require_account
from zpop.accounts.errors import InvalidInput, UnknownAppPassword
from zpop.store import POP_STARTS as POP_STARTS
from zpop.store import AppPassword, IStore
from zpop.wire.addresses import CONTROL

MAX_LABEL = 100


class InvalidLabel(InvalidInput, ValueError):
    """A label the rules refuse; ``reason`` names the rule broken
    (``empty``, ``control``, ``long``) for a front end that words it in its
    own language. A ValueError too, so argparse takes it as a type error."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def parse_label(text: str) -> str:
    """A label with its white space collapsed; raises InvalidLabel saying
    what is wrong (a label is shown in listings: no control characters)."""
    label = " ".join(text.split())
    if not label:
        raise InvalidLabel("empty", "the label is empty")
    if CONTROL.search(label):
        raise InvalidLabel("control", "the label contains control characters")
    if len(label) > MAX_LABEL:
        raise InvalidLabel("long", f"the label is longer than {MAX_LABEL} characters")
    return label


@service
async def create(
    store: IStore,
    clock: Clock,
    key: bytes,
    address: str,
    label: str,
    pop_start: str = "setting",
) -> tuple[AppPassword, str]:
    """A new app-specific password for the account, and its text: the only
    time it is seen; only its keyed hash (under the server ``key``) is
    stored. ``pop_start`` is where the device's own POP queue starts when
    the account's queue is per-device: as the account's all/new setting
    says (``setting``), or with the mail that arrives after its first
    login (``first-login``)."""
    account = await require_account(store, address)
    label = parse_label(label)
    if pop_start not in POP_STARTS:
        raise InvalidInput(f"the POP start must be one of {', '.join(POP_STARTS)}")
    password = passwords.generate_app_password()
    digest = passwords.app_password_digest(key, account.id, password)
    assert digest is not None
    record: AppPassword = await store.add_app_password(
        account.address, label, digest, clock.seconds(), pop_start
    )
    return record, password


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
