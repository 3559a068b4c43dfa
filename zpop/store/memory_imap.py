"""The IMAP access switch of MemoryStore (``IStore.set_imap``), as
SQLiteStore keeps it (migration 011): a flag on the account record whose
change bumps the account's generation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from twisted.internet.defer import Deferred

from zpop.store.records import Account


class MemoryImap:
    """A MemoryStore mixin; the account rows are MemoryStore's."""

    def _update_account(
        self, address: str, change: Callable[[Account], Account]
    ) -> Deferred[Account]:
        """MemoryStore's (see MemoryTwoFactor._update_account)."""
        raise NotImplementedError

    def set_imap(self, address: str, enabled: bool) -> Deferred[Account]:
        on = bool(enabled)
        return self._update_account(address, lambda a: replace(a, imap_enabled=on))
