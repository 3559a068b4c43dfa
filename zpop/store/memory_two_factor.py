"""The two-factor area of MemoryStore (ITwoFactorStore), as SQLiteStore
keeps it (``zpop.store.sqlite_two_factor``, migration 009): one sealed
secret per enrolled account, recovery codes that go with it, digests
unique, code ids never reused, rows gone with their account, and turning
two-factor off deleting the enrolment (the schema's trigger)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from twisted.internet.defer import Deferred, succeed

from zpop.store.memory_queue import schema_error, settle
from zpop.store.records import (
    Account,
    AlreadyExists,
    NotFound,
    RecoveryCode,
    TotpSecret,
)


@dataclass(slots=True)
class _Code:
    record: RecoveryCode
    digest: bytes


@dataclass(slots=True)
class _Enrolment:
    sealed: bytes
    last_step: int | None
    enrolled: float
    codes: list[_Code]


class MemoryTwoFactor:
    """A MemoryStore mixin; the account tables are MemoryStore's."""

    #: MemoryStore's: address -> account id, account id -> row.
    _addresses: dict[str, int]
    _accounts: dict[int, Any]
    path: str

    def __init__(self, path: str) -> None:
        super().__init__(path)  # type: ignore[call-arg]
        self._enrolments: dict[int, _Enrolment] = {}
        self._recovery_ids = itertools.count(1)

    def _update_account(
        self, address: str, change: Callable[[Account], Account]
    ) -> Deferred[Account]:
        """MemoryStore's: apply ``change`` to the account's record (which
        may refuse by raising before it changes anything), bumping its
        generation and the change counter."""
        raise NotImplementedError

    def _enrolment(self, account_id: int) -> _Enrolment | None:
        """The live enrolment of an account (SQLite's ON DELETE CASCADE: an
        enrolment outliving its account is dropped here)."""
        if account_id not in self._accounts:
            self._enrolments.pop(account_id, None)
            return None
        return self._enrolments.get(account_id)

    def _account_id(self, address: str) -> int:
        account_id = self._addresses.get(address.lower())
        if account_id is None:
            raise NotFound(f"no account {address.lower()}")
        return account_id

    def _check_digests(self, digests: Sequence[bytes], skip: int | None) -> None:
        """The schema's UNIQUE (digest), among the live enrolments but the
        one of account ``skip`` (whose codes are being replaced)."""
        taken: set[bytes] = set()
        for account_id in list(self._enrolments):
            enrolment = self._enrolment(account_id)
            if enrolment is not None and account_id != skip:
                taken.update(code.digest for code in enrolment.codes)
        if len(set(digests)) != len(digests) or taken.intersection(digests):
            raise schema_error(
                self.path, "UNIQUE constraint failed: recovery_codes.digest"
            )

    def _new_codes(
        self, account_id: int, digests: Sequence[bytes], now: float
    ) -> list[_Code]:
        return [
            _Code(
                RecoveryCode(next(self._recovery_ids), account_id, float(now), None),
                bytes(digest),
            )
            for digest in digests
        ]

    def enrol_two_factor(
        self,
        address: str,
        sealed: bytes,
        step: int,
        digests: Sequence[bytes],
        now: float,
    ) -> Deferred[Account]:
        digests = [bytes(d) for d in digests]

        def change(account: Account) -> Account:
            if self._enrolment(account.id) is not None:
                raise AlreadyExists(
                    f"{account.address} is enrolled in two-factor"
                    " authentication already"
                )
            self._check_digests(digests, None)
            self._enrolments[account.id] = _Enrolment(
                bytes(sealed),
                step,
                float(now),
                self._new_codes(account.id, digests, now),
            )
            return replace(account, two_factor=True, totp_enrolled=True)

        return self._update_account(address, change)

    def get_totp_secret(self, account_id: int) -> Deferred[TotpSecret | None]:
        enrolment = self._enrolment(account_id)
        if enrolment is None:
            return succeed(None)
        return succeed(
            TotpSecret(
                account_id, enrolment.sealed, enrolment.last_step, enrolment.enrolled
            )
        )

    def accept_totp_step(self, account_id: int, step: int) -> Deferred[bool]:
        enrolment = self._enrolment(account_id)
        if enrolment is None or (
            enrolment.last_step is not None and enrolment.last_step >= step
        ):
            return succeed(False)
        enrolment.last_step = step
        return succeed(True)

    def use_recovery_code(
        self, account_id: int, digest: bytes, now: float
    ) -> Deferred[bool]:
        enrolment = self._enrolment(account_id)
        codes = [] if enrolment is None else enrolment.codes
        for code in codes:
            if code.digest == digest and code.record.used is None:
                code.record = replace(code.record, used=float(now))
                return succeed(True)
        return succeed(False)

    def list_recovery_codes(self, address: str) -> Deferred[list[RecoveryCode]]:
        def look() -> list[RecoveryCode]:
            enrolment = self._enrolment(self._account_id(address))
            return [] if enrolment is None else [c.record for c in enrolment.codes]

        return settle(look)

    def replace_recovery_codes(
        self, address: str, digests: Sequence[bytes], now: float
    ) -> Deferred[None]:
        digests = [bytes(d) for d in digests]

        def apply() -> None:
            account_id = self._account_id(address)
            enrolment = self._enrolment(account_id)
            if enrolment is None:
                raise NotFound(
                    f"{address.lower()} is not enrolled in two-factor authentication"
                )
            self._check_digests(digests, account_id)
            enrolment.codes = self._new_codes(account_id, digests, now)

        return settle(apply)

    def reset_two_factor(self, address: str) -> Deferred[Account]:
        def change(account: Account) -> Account:
            self._enrolments.pop(account.id, None)
            return replace(
                account,
                two_factor=False,
                two_factor_required=False,
                totp_enrolled=False,
            )

        return self._update_account(address, change)
