"""The app-password area of MemoryStore, as SQLiteStore keeps it
(``zpop.store.sqlite_accounts``, migrations 001, 008 and 014): digests
unique across accounts, ids never reused, each change bumping the
account's generation, and the last use recorded with the sign-in activity
(``zpop.store.memory_login_events``)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed

from zpop.store.memory_pop_devices import forget_device, settle_deleted
from zpop.store.memory_queue import check_in, schema_error, settle
from zpop.store.records import POP_STARTS, AppPassword, NotFound

if TYPE_CHECKING:
    from zpop.store.memory import MemoryChangeCounter


@dataclass(slots=True)
class AppPasswordRow:
    record: AppPassword
    digest: bytes


class MemoryAppPasswords:
    """A MemoryStore mixin; the account tables are MemoryStore's."""

    #: MemoryStore's: address -> account id, account id -> row (each row
    #: holds its account's ``app_passwords``: id -> AppPasswordRow).
    _addresses: dict[str, int]
    _accounts: dict[int, Any]
    _changes: MemoryChangeCounter
    path: str

    def __init__(self, path: str) -> None:
        super().__init__(path)  # type: ignore[call-arg]
        self._app_passwords: dict[int, AppPasswordRow] = {}
        self._digests: dict[bytes, int] = {}
        self._app_password_ids = itertools.count(1)

    def _row(self, address: str) -> Any:
        """MemoryStore's: the account row of ``address``, else NotFound."""
        raise NotImplementedError

    def _changed(self, row: Any) -> None:
        row.account = replace(row.account, generation=row.account.generation + 1)
        self._changes.bump()

    def _forget_app_passwords(self, row: Any) -> None:
        """What the schema's ON DELETE CASCADE does when the account goes."""
        for password_id, password in row.app_passwords.items():
            del self._app_passwords[password_id]
            del self._digests[password.digest]

    def add_app_password(
        self,
        address: str,
        label: str,
        digest: bytes,
        now: float,
        pop_start: str = "setting",
    ) -> Deferred[AppPassword]:
        def apply() -> AppPassword:
            row = self._row(address)
            check_in(self.path, "pop_start", pop_start, POP_STARTS)
            digest_bytes = bytes(digest)
            if digest_bytes in self._digests:
                raise schema_error(
                    self.path, "UNIQUE constraint failed: app_passwords.digest"
                )
            record = AppPassword(
                id=next(self._app_password_ids),
                account_id=row.account.id,
                label=label,
                created=now,
                last_used=None,
                pop_start=pop_start,
            )
            stored = AppPasswordRow(replace(record, created=float(now)), digest_bytes)
            row.app_passwords[record.id] = stored
            self._app_passwords[record.id] = stored
            self._digests[digest_bytes] = record.id
            self._changed(row)
            return record

        return settle(apply)

    def list_app_passwords(self, address: str) -> Deferred[list[AppPassword]]:
        return settle(
            lambda: [p.record for p in self._row(address).app_passwords.values()]
        )

    def revoke_app_password(self, address: str, password_id: int) -> Deferred[None]:
        def apply() -> None:
            row = self._row(address)
            password = row.app_passwords.pop(password_id, None)
            if password is None:
                raise NotFound(
                    f"no app password {password_id} for {row.account.address}"
                )
            del self._app_passwords[password_id]
            del self._digests[password.digest]
            # Its device's queue goes too: what only it still had leaves
            # the POP queue now.
            forget_device(row, password_id)
            settle_deleted(row, None, row.account.pop.deletion == "delete")
            self._changed(row)

        return settle(apply)

    def find_app_password(
        self, account_id: int, digest: bytes
    ) -> Deferred[AppPassword | None]:
        password_id = self._digests.get(bytes(digest))
        if password_id is None:
            return succeed(None)
        password = self._app_passwords[password_id]
        if password.record.account_id != account_id:
            return succeed(None)
        return succeed(password.record)

    def app_password_exists(self, password_id: int) -> Deferred[bool]:
        return succeed(password_id in self._app_passwords)

    def _note_app_password_use(
        self, account_id: int, password_id: int, at: float, client: str
    ) -> int | None:
        """Record a login's use of the password (unless a later one is
        recorded); ``password_id``, or None once it is revoked."""
        password = self._app_passwords.get(password_id)
        if password is None or password.record.account_id != account_id:
            return None
        last = password.record.last_used
        if last is None or last <= at:
            password.record = replace(
                password.record, last_used=float(at), last_used_from=client
            )
        return password_id
