"""Accounts: look one up, create, set the primary password, delete, and
what ``account show`` tells about one.

Primary passwords are chosen by people, so they are checked here and
hashed with bcrypt on the ``hashing`` runner (never on the reactor).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from zpop.accounts import Clock, password_rules, passwords, service
from zpop.accounts.domains import require_hosted
from zpop.accounts.errors import AddressTaken, InvalidInput, UnknownAccount
from zpop.config import AccountsConfig
from zpop.store import PLANS as PLANS
from zpop.store import Account, AppPassword, IStore
from zpop.threads import Runner
from zpop.wire.addresses import domain_of

#: The rule itself lives in zpop.accounts.password_rules.
MIN_PASSWORD_LENGTH = password_rules.MIN_PASSWORD_LENGTH


@dataclass(frozen=True)
class AccountDetails:
    """An account with what is kept beside it."""

    account: Account
    aliases: list[str]
    app_passwords: list[AppPassword]


def check_password(password: str, address: str) -> str:
    """A new primary password for ``address``, or InvalidInput (a
    WeakPassword) saying what is wrong with it."""
    return password_rules.check_new_password(password, address)


@service
async def require_account(store: IStore, address: str) -> Account:
    """The account at ``address``, or UnknownAccount (naming the owner when
    ``address`` is an alias)."""
    account: Account | None = await store.get_account(address)
    if account is None:
        owner: Account | None = await store.get_account_for_recipient(address)
        raise UnknownAccount(address, owner.address if owner is not None else None)
    return account


@service
async def require_unused(store: IStore, address: str, taken: str) -> None:
    """Refuse an address outside the hosted domains (NotHosted) or already
    in use (AddressTaken, ``taken`` saying why it matters), naming what
    holds it (the store would only say "taken")."""
    await require_hosted(store, domain_of(address))
    owner: Account | None = await store.get_account_for_recipient(address)
    if owner is not None:
        what = (
            "an account" if owner.address == address else f"an alias of {owner.address}"
        )
        raise AddressTaken(f"{address} {taken} as {what}")


@service
async def add_account(
    store: IStore,
    config: AccountsConfig,
    hashing: Runner,
    clock: Clock,
    address: str,
    plan: str | None,
    federated: bool,
    password: Callable[[], str] | None,
) -> Account:
    """Create an account on ``plan`` (default: the configured one).

    ``password`` is called only once the address is known to be free, so
    a taken address is reported before the password is asked for; without
    one (and always when ``federated``) the account has no primary password.
    """
    await require_unused(store, address, "exists already")
    password_hash = None
    if password is not None:
        password_hash = await hashing(
            passwords.hash_password,
            check_password(password(), address),
            config.bcrypt_cost,
        )
    account: Account = await store.add_account(
        address, plan or config.default_plan, federated, password_hash, clock.seconds()
    )
    return account


@service
async def set_password(
    store: IStore,
    config: AccountsConfig,
    hashing: Runner,
    address: str,
    password: Callable[[], str],
) -> Account:
    """Set the primary password (``password`` is called once the account is
    found)."""
    account = await require_account(store, address)
    password_hash = await hashing(
        passwords.hash_password,
        check_password(password(), account.address),
        config.bcrypt_cost,
    )
    changed: Account = await store.set_password(account.address, password_hash)
    return changed


def parse_plan(text: str) -> str:
    """One of PLANS, else InvalidInput naming them."""
    if text not in PLANS:
        raise InvalidInput(f"the plan must be one of {', '.join(PLANS)}")
    return text


@service
async def set_plan(store: IStore, address: str, plan: str) -> Account:
    """Move the account to another plan (the Free-plan POP gate applies
    from the next enable; POP already on stays on, as the seed's plans do)."""
    plan = parse_plan(plan)
    account = await require_account(store, address)
    changed: Account = await store.set_plan(account.address, plan)
    return changed


@service
async def delete_account(store: IStore, address: str) -> Account:
    """Delete an account with its messages, aliases and app passwords."""
    account = await require_account(store, address)
    await store.delete_account(account.address)
    return account


@service
async def list_accounts(store: IStore) -> list[Account]:
    """Every account."""
    found: list[Account] = await store.list_accounts()
    return found


@service
async def show_account(store: IStore, address: str) -> AccountDetails:
    """The account with its aliases and app-specific passwords."""
    account = await require_account(store, address)
    aliases: list[str] = await store.list_aliases(account.address)
    app_passwords: list[AppPassword] = await store.list_app_passwords(account.address)
    return AccountDetails(account, aliases, app_passwords)
