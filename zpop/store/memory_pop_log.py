"""The POP download log and last POP logins of MemoryStore, as SQLiteStore
keeps them (``zpop.store.sqlite_pop_log``, migration 016): written with a
session's deletions or in batches, subjects copied from the messages then, entries older
than the log's ``kept_since`` pruned, rows gone with their account."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from twisted.internet.defer import Deferred

from zpop.store.memory_queue import check_in, settle
from zpop.store.records import POP_ACTIONS, PopDownload, PopSessionLog


class MemoryPopLog:
    """A MemoryStore mixin; the account tables are MemoryStore's."""

    #: MemoryStore's: address -> account id, account id -> row.
    _addresses: dict[str, int]
    _accounts: dict[int, Any]
    path: str

    def __init__(self, path: str) -> None:
        super().__init__(path)  # type: ignore[call-arg]
        # account id -> [(row id, entry)], in insertion order
        self._pop_downloads: dict[int, list[tuple[int, PopDownload]]] = {}
        self._pop_download_ids = itertools.count(1)
        self._pop_logins: dict[int, float] = {}

    def _forget_gone_pop_log(self) -> None:
        """Rows of deleted accounts go, as the cascade had done."""
        for table in (self._pop_downloads, self._pop_logins):
            for gone in [i for i in table if i not in self._accounts]:
                del table[gone]

    def _check_pop_log(self, log: PopSessionLog | None) -> None:
        """The schema's checks, before anything changes."""
        for download in log.downloads if log else ():
            check_in(self.path, "action", download.action, POP_ACTIONS)

    def _write_pop_log(self, account_id: int, log: PopSessionLog | None) -> None:
        """Write ``log`` for the account (checked by ``_check_pop_log``)."""
        self._forget_gone_pop_log()
        row = self._accounts.get(account_id)
        if not log or row is None:
            return
        if log.downloads:
            kept = self._pop_downloads.setdefault(account_id, [])
            for download in log.downloads:
                stored = row.messages.get(download.message_id)
                subject = "" if stored is None else stored.message.subject
                kept.append(
                    (next(self._pop_download_ids), replace(download, subject=subject))
                )
            kept[:] = [(i, d) for i, d in kept if d.at >= log.kept_since]
        device = row.pop_devices.get(log.device) if log.device else None
        if log.login_at is not None and device is not None:
            last = device.last_login
            device.last_login = (
                log.login_at if last is None else max(last, log.login_at)
            )
        elif log.login_at is not None and log.device is None:
            before = self._pop_logins.get(account_id)
            self._pop_logins[account_id] = (
                log.login_at if before is None else max(before, log.login_at)
            )

    def _last_pop_login(self, account_id: int) -> float | None:
        self._forget_gone_pop_log()
        return self._pop_logins.get(account_id)

    def record_pop_logs(
        self, logs: Sequence[tuple[int, PopSessionLog]]
    ) -> Deferred[None]:
        def apply() -> None:
            for _, log in logs:
                self._check_pop_log(log)
            for account_id, log in logs:
                self._write_pop_log(account_id, log)

        return settle(apply)

    def list_pop_downloads(
        self, address: str, limit: int = 100
    ) -> Deferred[list[PopDownload]]:
        def look() -> list[PopDownload]:
            self._forget_gone_pop_log()
            account_id = self._addresses.get(address.lower())
            if account_id is None or limit <= 0:
                return []
            kept = self._pop_downloads.get(account_id, [])
            newest = sorted(kept, key=lambda e: (e[1].at, e[0]), reverse=True)
            return [d for _, d in newest[:limit]]

        return settle(look)
