"""Two-factor authentication as the operator switches it: while it is on,
the mail protocols refuse the primary password and take only app-specific
passwords."""

from __future__ import annotations

from dataclasses import dataclass

from zpop.accounts import service
from zpop.accounts.accounts import require_account
from zpop.store import Account, IStore


@dataclass(frozen=True)
class TwoFactorChange:
    """The account after the switch; ``needs_app_password`` when turning it
    on left the account without any app-specific password, so its mail
    clients cannot sign in until one is created."""

    account: Account
    needs_app_password: bool


@service
async def set_two_factor(store: IStore, address: str, enabled: bool) -> TwoFactorChange:
    """Turn two-factor on or off for the account at ``address``."""
    account = await require_account(store, address)
    account = await store.set_two_factor(account.address, enabled)
    needs = False
    if enabled:
        needs = not await store.list_app_passwords(account.address)
    return TwoFactorChange(account, needs)
