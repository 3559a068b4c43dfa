"""POP access settings (DESIGN §1 "POP access settings"): enable with the
Free-plan gate, disable, spam and deletion policy, and what the next POP
session would offer of a message; and the IMAP access switch.

Every change takes effect at the next login; the store bumps the
account's generation, which forgets cached verifications.
"""

from __future__ import annotations

import datetime

from zpop.accounts import Clock, service
from zpop.accounts.accounts import require_account
from zpop.accounts.errors import InvalidInput, NotAllowed
from zpop.accounts.maildrop import pop_folders
from zpop.config import AccountsConfig
from zpop.store import DELETION_POLICIES as DELETION_POLICIES
from zpop.store import POP_MODES as POP_MODES
from zpop.store import POP_QUEUES as POP_QUEUES
from zpop.store import SPAM_POLICIES as SPAM_POLICIES
from zpop.store import Account, IStore, Message


def free_plan_blocked(account: Account, config: AccountsConfig) -> bool:
    """Free-plan accounts created on or after the cut-off get no POP."""
    cutoff = config.free_pop_cutoff
    return (
        account.plan == "free"
        and cutoff is not None
        and account.created >= cutoff.timestamp()
    )


def blocked_since(account: Account, config: AccountsConfig) -> datetime.date | None:
    """The cut-off date that keeps this account from POP, or None if POP is
    open to it: what a front end tells the account's owner."""
    if not free_plan_blocked(account, config):
        return None
    assert config.free_pop_cutoff is not None
    return config.free_pop_cutoff.date()


@service
async def enable_pop(
    store: IStore, config: AccountsConfig, clock: Clock, address: str, mode: str
) -> Account:
    """Enable POP in ``mode`` (``all`` or ``new``, from now on), unless the
    Free-plan cut-off keeps the account from it (NotAllowed)."""
    account = await require_account(store, address)
    cutoff = blocked_since(account, config)
    if cutoff is not None:
        raise NotAllowed(
            "POP access is not available on the Free plan for accounts created "
            f"on or after {cutoff.isoformat()}"
        )
    enabled: Account = await store.enable_pop(account.address, mode, clock.seconds())
    return enabled


@service
async def disable_pop(store: IStore, address: str) -> Account:
    """Disable POP from the next login; an open session finishes normally."""
    account = await require_account(store, address)
    disabled: Account = await store.disable_pop(account.address)
    return disabled


@service
async def set_pop_spam(store: IStore, address: str, policy: str) -> Account:
    """Which folders POP offers: ``exclude``, ``include`` or ``only`` Spam."""
    account = await require_account(store, address)
    changed: Account = await store.set_pop_spam(account.address, policy)
    return changed


@service
async def set_pop_deletion(store: IStore, address: str, policy: str) -> Account:
    """What a POP client's delete does to the original: ``keep`` or ``delete``."""
    account = await require_account(store, address)
    changed: Account = await store.set_pop_deletion(account.address, policy)
    return changed


@service
async def set_pop_queue(store: IStore, address: str, queue: str) -> Account:
    """One POP queue for every device (``shared``), or one per device
    (``per-device``: each app password, and the primary password, gets
    every message once, and a DELE removes it from that device's queue)."""
    account = await require_account(store, address)
    _check_choice("POP queue", queue, POP_QUEUES)
    changed: Account = await store.set_pop_queue(account.address, queue)
    return changed


#: "Leave this setting as it is" for change_pop (None means "disabled").
UNCHANGED = "unchanged"


def _check_choice(what: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InvalidInput(f"the {what} must be one of {', '.join(allowed)}")


@service
async def change_pop(
    store: IStore,
    config: AccountsConfig,
    clock: Clock,
    address: str,
    mode: str | None = UNCHANGED,
    spam: str = UNCHANGED,
    deletion: str = UNCHANGED,
    queue: str = UNCHANGED,
) -> Account:
    """Apply a POP settings form or API change: ``mode`` ``all``/``new``
    enables, None disables; each setting changes only if it differs, so
    saving the spam policy does not move a "from now on" moment (POP is
    re-enabled only when its state or mode changes). Values outside the
    vocabularies are InvalidInput, enabling on a blocked Free plan
    NotAllowed, both before anything changes."""
    account = await require_account(store, address)
    if mode not in (None, UNCHANGED):
        _check_choice("POP mode", mode, POP_MODES)
    if spam != UNCHANGED:
        _check_choice("spam policy", spam, SPAM_POLICIES)
    if deletion != UNCHANGED:
        _check_choice("deletion policy", deletion, DELETION_POLICIES)
    if queue != UNCHANGED:
        _check_choice("POP queue", queue, POP_QUEUES)
    address = account.address
    if mode is None:
        if account.pop.enabled:
            account = await disable_pop(store, address)
    elif mode != UNCHANGED and (not account.pop.enabled or account.pop.mode != mode):
        account = await enable_pop(store, config, clock, address, mode)
    if spam != UNCHANGED and spam != account.pop.spam:
        account = await set_pop_spam(store, address, spam)
    if deletion != UNCHANGED and deletion != account.pop.deletion:
        account = await set_pop_deletion(store, address, deletion)
    if queue != UNCHANGED and queue != account.pop.queue:
        account = await set_pop_queue(store, address, queue)
    return account


@service
async def enable_imap(store: IStore, address: str) -> Account:
    """Turn IMAP access on from the next IMAP login (DESIGN §1 "IMAP"; the
    switch is stored and shown before zpop serves IMAP)."""
    account = await require_account(store, address)
    changed: Account = await store.set_imap(account.address, True)
    return changed


@service
async def disable_imap(store: IStore, address: str) -> Account:
    """Turn IMAP access off from the next IMAP login."""
    account = await require_account(store, address)
    changed: Account = await store.set_imap(account.address, False)
    return changed


def pop_state(account: Account, message: Message) -> str:
    """Whether the next POP session would offer ``message``, and if not why.

    The queue rule of the POP snapshot (zpop.accounts.maildrop): the spam policy
    picks the folders, ``new`` mode offers uids from the enabling moment on,
    and a client's DELE removes a message from the queue for good (until
    POP is re-enabled in ``all``).
    """
    pop = account.pop
    if message.pop_removed:
        return "removed"
    if not pop.enabled:
        return "POP disabled"
    if message.folder not in pop_folders(account):
        return "not offered (folder)"
    if pop.mode == "new" and message.uid < pop.start_uid:
        return "not offered (before enable)"
    return "queued"
