"""The web settings sessions of MemoryStore (IWebSessionStore), as
SQLiteStore keeps them (``zpop.store.sqlite_web``): ids never reused, the
id's keyed hash unique, ended sessions dropped, rows gone with their
account."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

from twisted.internet.defer import Deferred

from zpop.store.memory_queue import settle
from zpop.store.records import WEB_SESSION_TOUCH, NotFound, StoreError, WebSession


class MemoryWebSessions:
    """A MemoryStore mixin; the account tables are MemoryStore's."""

    #: MemoryStore's: address -> account id, account id -> row.
    _addresses: dict[str, int]
    _accounts: dict[int, Any]
    path: str

    def __init__(self, path: str) -> None:
        super().__init__(path)  # type: ignore[call-arg]
        self._web_sessions: dict[bytes, WebSession] = {}
        self._web_session_ids = itertools.count(1)

    def _web_account_id(self, address: str) -> int:
        account_id = self._addresses.get(address.lower())
        if account_id is None:
            raise NotFound(f"no account {address.lower()}")
        return account_id

    def _web_session_alive(self, session: WebSession, now: float) -> bool:
        """Live, and its account not deleted (SQLite's ON DELETE CASCADE)."""
        return session.account_id in self._accounts and session.live(now)

    def add_web_session(
        self,
        address: str,
        digest: bytes,
        stage: str,
        client: str,
        user_agent: str,
        now: float,
        lifetime: float,
        idle: float,
    ) -> Deferred[WebSession]:
        def apply() -> WebSession:
            account_id = self._web_account_id(address)
            if digest in self._web_sessions:
                raise StoreError(
                    f"database error in {self.path}: UNIQUE constraint failed:"
                    " web_sessions.digest"
                )
            self._web_sessions = {
                d: s
                for d, s in self._web_sessions.items()
                if self._web_session_alive(s, now)
            }
            account = self._accounts[account_id].account
            session = WebSession(
                next(self._web_session_ids),
                account_id,
                account.address,
                stage,
                client,
                user_agent,
                float(now),
                float(now),
                float(now + lifetime),
                float(idle),
            )
            self._web_sessions[digest] = session
            return session

        return settle(apply)

    def use_web_session(self, digest: bytes, now: float) -> Deferred[WebSession | None]:
        def apply() -> WebSession | None:
            session = self._web_sessions.get(digest)
            if session is None:
                return None
            if not self._web_session_alive(session, now):
                del self._web_sessions[digest]
                return None
            if now - session.last_seen >= WEB_SESSION_TOUCH:
                session = replace(session, last_seen=float(now))
                self._web_sessions[digest] = session
            return session

        return settle(apply)

    def end_web_session(self, digest: bytes) -> Deferred[bool]:
        return settle(lambda: self._web_sessions.pop(digest, None) is not None)

    def list_web_sessions(self, address: str, now: float) -> Deferred[list[WebSession]]:
        def look() -> list[WebSession]:
            account_id = self._web_account_id(address)
            found = [
                s
                for s in self._web_sessions.values()
                if s.account_id == account_id and s.live(now)
            ]
            return sorted(found, key=lambda s: s.id)

        return settle(look)

    def revoke_web_session(self, address: str, session_id: int) -> Deferred[None]:
        def apply() -> None:
            account_id = self._web_account_id(address)
            for digest, session in self._web_sessions.items():
                if session.id == session_id and session.account_id == account_id:
                    del self._web_sessions[digest]
                    return
            raise NotFound(f"{address.lower()} has no web session {session_id}")

        return settle(apply)
