"""The settings API tokens of MemoryStore (IApiTokenStore), as SQLiteStore
keeps them (``zpop.store.sqlite_api_tokens``, migration 015): ids never
reused, digests unique, the schema's scope check, a user's tokens gone with
their account, admin tokens with none."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any

from twisted.internet.defer import Deferred

from zpop.store.memory_queue import check_in, schema_error, settle
from zpop.store.records import API_SCOPES, ApiToken, NotFound


@dataclass(slots=True)
class _TokenRow:
    account_id: int | None
    token: ApiToken
    digest: bytes


class MemoryApiTokens:
    """A MemoryStore mixin; the account tables are MemoryStore's."""

    #: MemoryStore's: address -> account id, account id -> row.
    _addresses: dict[str, int]
    _accounts: dict[int, Any]
    path: str

    def __init__(self, path: str) -> None:
        super().__init__(path)  # type: ignore[call-arg]
        self._api_tokens: dict[int, _TokenRow] = {}
        self._api_token_ids = itertools.count(1)

    def _live_tokens(self) -> dict[int, _TokenRow]:
        """The tokens whose account still exists (ON DELETE CASCADE)."""
        for token_id, row in list(self._api_tokens.items()):
            if row.account_id is not None and row.account_id not in self._accounts:
                del self._api_tokens[token_id]
        return self._api_tokens

    def _token_account(self, address: str) -> int:
        account_id = self._addresses.get(address.lower())
        if account_id is None:
            raise NotFound(f"no account {address.lower()}")
        return account_id

    def _shown(self, row: _TokenRow) -> ApiToken:
        """The token with its account's address as it is now."""
        if row.account_id is None:
            return row.token
        address = self._accounts[row.account_id].account.address
        return replace(row.token, address=str(address))

    def add_api_token(
        self, address: str | None, scope: str, label: str, digest: bytes, now: float
    ) -> Deferred[ApiToken]:
        def apply() -> ApiToken:
            check_in(self.path, "scope", scope, API_SCOPES)
            account_id = None if address is None else self._token_account(address)
            digest_bytes = bytes(digest)
            tokens = self._live_tokens()
            if any(r.digest == digest_bytes for r in tokens.values()):
                raise schema_error(
                    self.path, "UNIQUE constraint failed: api_tokens.digest"
                )
            token = ApiToken(
                next(self._api_token_ids), None, scope, label, float(now), None
            )
            row = _TokenRow(account_id, token, digest_bytes)
            tokens[token.id] = row
            return self._shown(row)

        return settle(apply)

    def find_api_token(self, digest: bytes) -> Deferred[ApiToken | None]:
        def look() -> ApiToken | None:
            for row in self._live_tokens().values():
                if row.digest == bytes(digest):
                    return self._shown(row)
            return None

        return settle(look)

    def list_api_tokens(self, address: str | None = None) -> Deferred[list[ApiToken]]:
        def look() -> list[ApiToken]:
            rows = list(self._live_tokens().values())
            if address is not None:
                account_id = self._token_account(address)
                rows = [r for r in rows if r.account_id == account_id]
            return [self._shown(r) for r in rows]

        return settle(look)

    def revoke_api_token(self, token_id: int) -> Deferred[ApiToken]:
        def apply() -> ApiToken:
            row = self._live_tokens().pop(token_id, None)
            if row is None:
                raise NotFound(f"no API token {token_id}")
            return self._shown(row)

        return settle(apply)

    def touch_api_token(self, token_id: int, now: float) -> Deferred[None]:
        def apply() -> None:
            row = self._live_tokens().get(token_id)
            if row is not None:
                last = row.token.last_used
                if last is None or last < now:
                    row.token = replace(row.token, last_used=float(now))

        return settle(apply)
