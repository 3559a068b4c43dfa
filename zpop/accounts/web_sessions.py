"""Web settings sessions (DESIGN §1 "Self-service web settings", CONVENTIONS
19): made by the server, kept in the store so every process and node sees
them, stored only as a keyed hash of the id the browser holds, ending after
30 minutes idle or 12 hours at most, listed per account and revocable.

A session starts at the ``code`` stage when the primary password was right
and a second factor is still due, and at ``full`` when signed in; each
step up is a new session (a new id, the old one ended), so an id fixed in a
browser before sign-in never becomes a signed-in one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from zpop.accounts import Clock, service
from zpop.accounts.accounts import require_account
from zpop.accounts.errors import AccountError
from zpop.store import IStore, NotFound, WebSession
from zpop.store.records import WebSessionStage

#: Seconds unused after which a session ends.
IDLE = 30 * 60.0
#: Seconds after its start at which a session ends however busy.
LIFETIME = 12 * 3600.0
#: Bytes of randomness in a session id (256 bits).
ID_BYTES = 32
#: Longest User-Agent kept with a session (for the sessions list).
MAX_USER_AGENT = 200

CODE = WebSessionStage.CODE.value
FULL = WebSessionStage.FULL.value


class UnknownWebSession(AccountError):
    """The account has no web session with that id."""


def new_session_id() -> str:
    """A fresh session id for the cookie: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(ID_BYTES)


def well_formed(session_id: str) -> bool:
    """Whether a cookie value can be a session id at all (so junk costs no
    store look-up)."""
    return (
        len(session_id) == 43
        and session_id.isascii()
        and all(c.isalnum() or c in "-_" for c in session_id)
    )


def session_digest(key: bytes, session_id: str) -> bytes:
    """What the store keeps of a session id: HMAC-SHA256 under the server
    key, so a copy of the database signs nobody in."""
    return hmac.new(
        key, b"web session\0" + session_id.encode("ascii"), hashlib.sha256
    ).digest()


@service
async def start(
    store: IStore,
    key: bytes,
    clock: Clock,
    address: str,
    stage: str,
    client: str,
    user_agent: str,
) -> tuple[str, WebSession]:
    """A new session for the account: its id (for the cookie, never kept)
    and the stored record."""
    session_id = new_session_id()
    session: WebSession = await store.add_web_session(
        address,
        session_digest(key, session_id),
        stage,
        client,
        " ".join(user_agent.split())[:MAX_USER_AGENT],
        clock.seconds(),
        LIFETIME,
        IDLE,
    )
    return session_id, session


@service
async def resume(
    store: IStore, key: bytes, clock: Clock, session_id: str
) -> WebSession | None:
    """The live session a cookie names, its use recorded; None if it is
    malformed, unknown, ended or revoked."""
    if not well_formed(session_id):
        return None
    found: WebSession | None = await store.use_web_session(
        session_digest(key, session_id), clock.seconds()
    )
    return found


@service
async def end(store: IStore, key: bytes, session_id: str) -> bool:
    """End the session a cookie names (sign-out, or the step to the next
    stage); whether there was one."""
    if not well_formed(session_id):
        return False
    ended: bool = await store.end_web_session(session_digest(key, session_id))
    return ended


@service
async def list_sessions(store: IStore, clock: Clock, address: str) -> list[WebSession]:
    """The account's live web sessions, oldest first."""
    account = await require_account(store, address)
    found: list[WebSession] = await store.list_web_sessions(
        account.address, clock.seconds()
    )
    return found


@service
async def revoke(store: IStore, address: str, session_id: int) -> None:
    """End one of the account's sessions (signing another browser out)."""
    account = await require_account(store, address)
    try:
        await store.revoke_web_session(account.address, session_id)
    except NotFound:
        raise UnknownWebSession(
            f"{account.address} has no web session {session_id}"
        ) from None


@service
async def revoke_others(
    store: IStore, clock: Clock, address: str, keep: int | None
) -> int:
    """End every live session of the account but ``keep`` (the browser
    that changed the password); how many were ended."""
    ended = 0
    for session in await list_sessions(store, clock, address):
        if session.id == keep:
            continue
        try:
            await store.revoke_web_session(session.address, session.id)
        except NotFound:
            continue  # it ended meanwhile
        ended += 1
    return ended
