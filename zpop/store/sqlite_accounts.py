"""The SQLite store's domains, accounts, their settings, app passwords
and aliases."""

from __future__ import annotations

import secrets
import sqlite3

from twisted.internet.defer import Deferred

from zpop.store.records import (
    Account,
    AlreadyExists,
    AppPassword,
    Domain,
    NotFound,
)
from zpop.store.sqlite_base import (
    _ACCOUNT_COLUMNS,
    _ACCOUNT_FROM,
    APP_PASSWORD_COLUMNS,
    SQLiteBase,
    _account,
    _app_password,
    _domain,
)
from zpop.store.sqlite_folders import create_built_in
from zpop.store.sqlite_pop_devices import settle_deleted


class SQLiteAccounts(SQLiteBase):
    """The SQLite store's domains, accounts, their settings, app passwords"""

    # -- domains ------------------------------------------------------------

    def add_domain(self, name: str, organization: bool, now: float) -> Deferred:
        def thd() -> Domain:
            with self._write() as conn:
                try:
                    conn.execute(
                        "INSERT INTO domains (name, organization, created)"
                        " VALUES (?, ?, ?)",
                        (name.lower(), int(organization), now),
                    )
                except sqlite3.IntegrityError:
                    raise AlreadyExists(f"domain {name.lower()} exists already")
                return _domain(
                    conn.execute(
                        "SELECT id, name, organization, created FROM domains"
                        " WHERE name = ?",
                        (name.lower(),),
                    ).fetchone()
                )

        return self._call(thd)

    def get_domain(self, name: str) -> Deferred:
        def thd() -> Domain:
            with self._read() as conn:
                row = conn.execute(
                    "SELECT id, name, organization, created FROM domains"
                    " WHERE name = ?",
                    (name.lower(),),
                ).fetchone()
            if row is None:
                raise NotFound(f"no hosted domain {name.lower()}")
            return _domain(row)

        return self._call(thd)

    def list_domains(self) -> Deferred:
        def thd() -> list[Domain]:
            with self._read() as conn:
                rows = conn.execute(
                    "SELECT id, name, organization, created FROM domains ORDER BY name"
                ).fetchall()
            return [_domain(r) for r in rows]

        return self._call(thd)

    # -- accounts -----------------------------------------------------------

    def add_account(
        self,
        address: str,
        plan: str,
        federated: bool,
        password_hash: bytes | None,
        now: float,
    ) -> Deferred:
        address = address.lower()

        def thd() -> Account:
            with self._write() as conn:
                domain_id = self._claim_address(conn, address)
                conn.execute(
                    "INSERT INTO accounts (address, domain_id, plan, created,"
                    " password_hash, federated, uid_validity)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        address,
                        domain_id,
                        plan,
                        now,
                        password_hash,
                        int(federated),
                        secrets.randbits(31),
                    ),
                )
                account = self._account_row(conn, address)
                create_built_in(conn, account.id, now)
                return account

        return self._call(thd)

    def get_account(self, address: str) -> Deferred:
        def thd() -> Account | None:
            with self._read() as conn:
                try:
                    return self._account_row(conn, address)
                except NotFound:
                    return None

        return self._call(thd)

    def get_account_for_recipient(self, address: str) -> Deferred:
        def thd() -> Account | None:
            with self._read() as conn:
                row = conn.execute(
                    f"SELECT {_ACCOUNT_COLUMNS} FROM {_ACCOUNT_FROM}"
                    " WHERE a.address = ?1 OR a.id ="
                    " (SELECT account_id FROM aliases WHERE alias = ?1)",
                    (address.lower(),),
                ).fetchone()
            return None if row is None else _account(row)

        return self._call(thd)

    def list_accounts(self) -> Deferred:
        def thd() -> list[Account]:
            with self._read() as conn:
                rows = conn.execute(
                    f"SELECT {_ACCOUNT_COLUMNS} FROM {_ACCOUNT_FROM} ORDER BY a.address"
                ).fetchall()
            return [_account(r) for r in rows]

        return self._call(thd)

    def delete_account(self, address: str) -> Deferred:
        def thd() -> None:
            with self._write(changes=True) as conn:
                account = self._account_row(conn, address)
                conn.execute("DELETE FROM accounts WHERE id = ?", (account.id,))

        return self._call(thd)

    def set_password(self, address: str, password_hash: bytes | None) -> Deferred:
        return self._update_account(address, "password_hash = ?", password_hash)

    def set_two_factor(self, address: str, enabled: bool) -> Deferred:
        # Off is a reset: migration 009's trigger deletes the TOTP secret
        # and the recovery codes.
        on = int(enabled)
        return self._update_account(
            address, "two_factor = ?, two_factor_required = ?", on, on
        )

    def set_plan(self, address: str, plan: str) -> Deferred:
        return self._update_account(address, "plan = ?", plan)

    def set_imap(self, address: str, enabled: bool) -> Deferred:
        return self._update_account(address, "imap_enabled = ?", int(enabled))

    def enable_pop(self, address: str, mode: str, now: float) -> Deferred:
        def thd() -> Account:
            with self._write(changes=True) as conn:
                account = self._account_row(conn, address)
                if mode == "all":
                    start = "0"
                    conn.execute(
                        "UPDATE messages SET pop_removed = 0 WHERE account_id = ?",
                        (account.id,),
                    )
                    conn.execute(
                        "DELETE FROM pop_device_removed WHERE device_id IN"
                        " (SELECT id FROM pop_devices WHERE account_id = ?)",
                        (account.id,),
                    )
                else:
                    start = "next_uid"
                conn.execute(
                    "UPDATE accounts SET pop_enabled = 1, pop_mode = ?,"
                    f" pop_enabled_at = ?, pop_start_uid = {start},"
                    " generation = generation + 1 WHERE id = ?",
                    (mode, now, account.id),
                )
                return self._account_row(conn, address)

        return self._call(thd)

    def disable_pop(self, address: str) -> Deferred:
        return self._update_account(address, "pop_enabled = ?", 0)

    def set_pop_spam(self, address: str, policy: str) -> Deferred:
        return self._update_account(address, "pop_spam = ?", policy)

    def set_pop_deletion(self, address: str, policy: str) -> Deferred:
        return self._update_account(address, "pop_deletion = ?", policy)

    def set_pop_queue(self, address: str, queue: str) -> Deferred:
        return self._update_account(address, "pop_queue = ?", queue)

    # -- app-specific passwords ----------------------------------------------

    def add_app_password(
        self,
        address: str,
        label: str,
        digest: bytes,
        now: float,
        pop_start: str = "setting",
    ) -> Deferred:
        def thd() -> AppPassword:
            with self._write(changes=True) as conn:
                account = self._account_row(conn, address)
                cursor = conn.execute(
                    "INSERT INTO app_passwords (account_id, label, digest, created,"
                    " pop_start) VALUES (?, ?, ?, ?, ?)",
                    (account.id, label, digest, now, pop_start),
                )
                conn.execute(
                    "UPDATE accounts SET generation = generation + 1 WHERE id = ?",
                    (account.id,),
                )
                return AppPassword(
                    id=int(cursor.lastrowid or 0),
                    account_id=account.id,
                    label=label,
                    created=now,
                    last_used=None,
                    pop_start=pop_start,
                )

        return self._call(thd)

    def list_app_passwords(self, address: str) -> Deferred:
        def thd() -> list[AppPassword]:
            with self._read() as conn:
                account = self._account_row(conn, address)
                rows = conn.execute(
                    f"SELECT {APP_PASSWORD_COLUMNS} FROM app_passwords"
                    " WHERE account_id = ? ORDER BY id",
                    (account.id,),
                ).fetchall()
            return [_app_password(r) for r in rows]

        return self._call(thd)

    def revoke_app_password(self, address: str, password_id: int) -> Deferred:
        def thd() -> None:
            with self._write(changes=True) as conn:
                account = self._account_row(conn, address)
                cursor = conn.execute(
                    "DELETE FROM app_passwords WHERE id = ? AND account_id = ?",
                    (password_id, account.id),
                )
                if cursor.rowcount != 1:
                    raise NotFound(
                        f"no app password {password_id} for {account.address}"
                    )
                # Its device's queue went with it (ON DELETE CASCADE): what
                # only it still had leaves the POP queue now.
                settle_deleted(conn, account.id, None, account.pop.deletion == "delete")
                conn.execute(
                    "UPDATE accounts SET generation = generation + 1 WHERE id = ?",
                    (account.id,),
                )

        return self._call(thd)

    def find_app_password(self, account_id: int, digest: bytes) -> Deferred:
        def thd() -> AppPassword | None:
            with self._read() as conn:
                row = conn.execute(
                    f"SELECT {APP_PASSWORD_COLUMNS} FROM app_passwords"
                    " WHERE account_id = ? AND digest = ?",
                    (account_id, digest),
                ).fetchone()
            return None if row is None else _app_password(row)

        return self._call(thd)

    def app_password_exists(self, password_id: int) -> Deferred:
        def thd() -> bool:
            with self._read() as conn:
                row = conn.execute(
                    "SELECT 1 FROM app_passwords WHERE id = ?", (password_id,)
                ).fetchone()
            return row is not None

        return self._call(thd)

    # -- aliases --------------------------------------------------------------

    def add_alias(self, address: str, alias: str) -> Deferred:
        alias = alias.lower()

        def thd() -> None:
            with self._write() as conn:
                account = self._account_row(conn, address)
                self._claim_address(conn, alias)
                conn.execute(
                    "INSERT INTO aliases (alias, account_id) VALUES (?, ?)",
                    (alias, account.id),
                )

        return self._call(thd)

    def list_aliases(self, address: str) -> Deferred:
        def thd() -> list[str]:
            with self._read() as conn:
                account = self._account_row(conn, address)
                rows = conn.execute(
                    "SELECT alias FROM aliases WHERE account_id = ? ORDER BY alias",
                    (account.id,),
                ).fetchall()
            return [r[0] for r in rows]

        return self._call(thd)
