"""The password-reset area of MemoryStore (IPasswordResetStore), as
SQLiteStore keeps it (``zpop.store.sqlite_resets``, migration 012): a
recovery address per account, reset digests unique, each link spent once,
rows gone with their account."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred

from zpop.store.memory_queue import schema_error, settle
from zpop.store.records import NotFound


@dataclass(slots=True)
class _Reset:
    account_id: int
    created: float
    expires: float
    used: float | None = None


class MemoryPasswordResets:
    """A MemoryStore mixin; the account tables are MemoryStore's."""

    #: MemoryStore's: address -> account id, account id -> row.
    _addresses: dict[str, int]
    _accounts: dict[int, Any]
    path: str

    def __init__(self, path: str) -> None:
        super().__init__(path)  # type: ignore[call-arg]
        self._recovery_addresses: dict[int, str] = {}
        self._resets: dict[bytes, _Reset] = {}

    def _reset_account_id(self, address: str) -> int:
        account_id = self._addresses.get(address.lower())
        if account_id is None:
            raise NotFound(f"no account {address.lower()}")
        return account_id

    def _live_reset(self, digest: bytes, now: float) -> tuple[_Reset, str] | None:
        reset = self._resets.get(bytes(digest))
        if reset is None or reset.used is not None or reset.expires <= now:
            return None
        row = self._accounts.get(reset.account_id)
        if row is None:
            # SQLite's ON DELETE CASCADE.
            del self._resets[bytes(digest)]
            return None
        return reset, str(row.account.address)

    def set_recovery_address(self, address: str, email: str | None) -> Deferred[None]:
        def apply() -> None:
            account_id = self._reset_account_id(address)
            if email is None:
                self._recovery_addresses.pop(account_id, None)
            else:
                self._recovery_addresses[account_id] = email

        return settle(apply)

    def get_recovery_address(self, address: str) -> Deferred[str | None]:
        def look() -> str | None:
            return self._recovery_addresses.get(self._reset_account_id(address))

        return settle(look)

    def add_password_reset(
        self, address: str, digest: bytes, now: float, expires: float
    ) -> Deferred[None]:
        def apply() -> None:
            account_id = self._reset_account_id(address)
            # Rows of deleted accounts go first, as the cascade had done.
            self._resets = {
                d: r for d, r in self._resets.items() if r.account_id in self._accounts
            }
            if bytes(digest) in self._resets:
                raise schema_error(
                    self.path, "UNIQUE constraint failed: password_resets.digest"
                )
            self._resets[bytes(digest)] = _Reset(account_id, float(now), float(expires))

        return settle(apply)

    def find_password_reset(self, digest: bytes, now: float) -> Deferred[str | None]:
        def look() -> str | None:
            live = self._live_reset(digest, now)
            return None if live is None else live[1]

        return settle(look)

    def use_password_reset(self, digest: bytes, now: float) -> Deferred[str | None]:
        def apply() -> str | None:
            live = self._live_reset(digest, now)
            if live is None:
                return None
            live[0].used = float(now)
            return live[1]

        return settle(apply)
