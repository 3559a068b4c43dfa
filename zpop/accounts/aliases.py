"""Send-as aliases: an alias receives mail for its account, which may send
as it. An alias must be in a hosted domain and not in use."""

from __future__ import annotations

from zpop.accounts import service
from zpop.accounts.accounts import require_account, require_unused
from zpop.store import Account, IStore


@service
async def add_alias(store: IStore, address: str, alias: str) -> Account:
    """Let the account at ``address`` send as and receive for ``alias``."""
    account = await require_account(store, address)
    await require_unused(store, alias, "is in use already")
    await store.add_alias(account.address, alias)
    return account
