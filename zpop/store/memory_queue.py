"""The outbound queue of MemoryStore, and what the in-memory store shares.

Kept apart from ``zpop.store.memory`` to hold each module to a readable
size; it is also the in-memory half of the outbound-queue area, ready to
stand alone behind its own interface. Semantics are SQLiteStore's
(``zpop.store.sqlite``): ids never reused, claims ordered by due time,
message and recipient, leases that exclude other owners until they run out.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from twisted.internet.defer import Deferred, fail, succeed

from zpop.store.records import (
    OUTBOUND_STATES,
    NotFound,
    OutboundJob,
    OutboundMessage,
    OutboundRecipient,
    RecipientResult,
    StoreError,
)

T = TypeVar("T")


def settle(f: Callable[[], T]) -> Deferred[T]:
    """Call ``f`` now; a Deferred already fired with its result or error,
    as SQLiteStore's are with a synchronous runner."""
    try:
        return succeed(f())
    except Exception:
        return fail()


def schema_error(path: str, text: str) -> StoreError:
    """The StoreError SQLite gives when its schema refuses a change."""
    return StoreError(f"database error in {path}: {text}")


def check_in(path: str, column: str, value: object, allowed: Iterable[str]) -> None:
    """The schema's CHECK (column IN (...)), with SQLite's words."""
    allowed = tuple(allowed)
    if value not in allowed:
        listed = ", ".join(f"'{v}'" for v in allowed)
        raise schema_error(path, f"CHECK constraint failed: {column} IN ({listed})")


@dataclass(slots=True)
class _RecipientRow:
    id: int
    recipient: str
    next_attempt: float
    state: str = "queued"
    attempts: int = 0
    last_error: str | None = None
    status: str | None = None
    remote_mta: str | None = None
    diagnostic: str | None = None
    lease_owner: str | None = None
    lease_until: float | None = None

    def record(self) -> OutboundRecipient:
        return OutboundRecipient(
            self.recipient,
            self.state,
            self.attempts,
            self.next_attempt,
            self.last_error,
            self.status,
            self.remote_mta,
            self.diagnostic,
        )


@dataclass(slots=True)
class _QueuedRow:
    id: int
    sender: str
    account_id: int | None
    body: bytes
    created: float
    expires: float
    #: In id order.
    recipients: list[_RecipientRow]

    def record(self) -> OutboundMessage:
        return OutboundMessage(
            id=self.id,
            sender=self.sender,
            account_id=self.account_id,
            size=len(self.body),
            created=self.created,
            expires=self.expires,
            recipients=tuple(r.record() for r in self.recipients),
        )


def limited(items: list[T], limit: int) -> list[T]:
    """SQL's LIMIT: a negative limit means none."""
    return items if limit < 0 else items[:limit]


class MemoryOutboundQueue:
    """The outbound-queue methods of IStore, in memory (MemoryStore's base).

    ``finish_outbound`` is MemoryStore's: a bounce may go to a mailbox.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._queue: dict[int, _QueuedRow] = {}
        self._queue_ids = itertools.count(1)
        self._recipient_ids = itertools.count(1)

    def _enqueue(
        self,
        sender: str,
        account_id: int | None,
        body: bytes,
        created: float,
        expires: float,
        recipients: list[str],
    ) -> _QueuedRow:
        row = _QueuedRow(
            id=next(self._queue_ids),
            sender=sender,
            account_id=account_id,
            body=bytes(body),
            created=float(created),
            expires=float(expires),
            recipients=[
                _RecipientRow(next(self._recipient_ids), r, float(created))
                for r in recipients
            ],
        )
        self._queue[row.id] = row
        return row

    def _all_recipients(self) -> Iterable[tuple[_QueuedRow, _RecipientRow]]:
        for message in self._queue.values():
            for recipient in message.recipients:
                yield message, recipient

    def claim_outbound(
        self, owner: str, now: float, lease: float, limit: int
    ) -> Deferred[list[OutboundJob]]:
        due = sorted(
            (
                (message, r)
                for message, r in self._all_recipients()
                if r.state == "queued"
                and r.next_attempt <= now
                and (r.lease_until is None or r.lease_until <= now)
            ),
            key=lambda pair: (pair[1].next_attempt, pair[0].id, pair[1].id),
        )
        groups: dict[tuple[int, str], list[tuple[_QueuedRow, _RecipientRow]]] = {}
        for message, recipient in limited(due, limit):
            recipient.lease_owner, recipient.lease_until = owner, now + lease
            domain = recipient.recipient.rpartition("@")[2].lower()
            groups.setdefault((message.id, domain), []).append((message, recipient))
        return succeed(
            [
                OutboundJob(
                    message_id=message_id,
                    sender=group[0][0].sender,
                    domain=domain,
                    recipients=tuple(r.recipient for _, r in group),
                    size=len(group[0][0].body),
                    created=group[0][0].created,
                    expires=group[0][0].expires,
                    attempts=tuple(r.attempts for _, r in group),
                )
                for (message_id, domain), group in groups.items()
            ]
        )

    def renew_outbound_leases(
        self, owner: str, now: float, lease: float
    ) -> Deferred[int]:
        renewed = 0
        for _, recipient in self._all_recipients():
            if recipient.lease_owner == owner and recipient.state == "queued":
                recipient.lease_until = now + lease
                renewed += 1
        return succeed(renewed)

    def outbound_lease_owners(self) -> Deferred[list[str]]:
        return succeed(
            sorted(
                {
                    r.lease_owner
                    for _, r in self._all_recipients()
                    if r.lease_owner is not None
                }
            )
        )

    def release_outbound_leases(self, owner: str) -> Deferred[int]:
        released = 0
        for _, recipient in self._all_recipients():
            if recipient.lease_owner == owner:
                recipient.lease_owner = recipient.lease_until = None
                released += 1
        return succeed(released)

    def read_outbound_body(
        self, message_id: int, offset: int, length: int
    ) -> Deferred[bytes]:
        message = self._queue.get(message_id)
        if message is None:
            return fail(NotFound(f"queued message {message_id} no longer exists"))
        return succeed(message.body[offset : offset + length])

    def record_outbound_results(
        self,
        owner: str,
        message_id: int,
        results: list[RecipientResult],
        now: float,
    ) -> Deferred[bool]:
        def apply() -> bool:
            for result in results:
                check_in(self.path, "state", result.state, OUTBOUND_STATES)
            message = self._queue.get(message_id)
            recipients = [] if message is None else message.recipients
            # Like SQLite's executemany, result by result, queued rows only
            # (any owner's: the claim is not checked).
            for result in results:
                for row in recipients:
                    if row.recipient == result.recipient and row.state == "queued":
                        row.state = result.state
                        row.attempts += 1
                        row.next_attempt = float(
                            result.next_attempt if result.state == "queued" else now
                        )
                        row.last_error = result.error
                        row.status = result.status
                        row.remote_mta = result.remote_mta
                        row.diagnostic = result.diagnostic
                        row.lease_owner = row.lease_until = None
            return not any(r.state == "queued" for r in recipients)

        return settle(apply)

    def finished_outbound(self, limit: int) -> Deferred[list[int]]:
        return succeed(
            limited(
                [
                    m.id
                    for m in self._queue.values()
                    if not any(r.state == "queued" for r in m.recipients)
                ],
                limit,
            )
        )

    def get_outbound(self, message_id: int) -> Deferred[OutboundMessage]:
        message = self._queue.get(message_id)
        if message is None:
            return fail(NotFound(f"no queued message {message_id}"))
        return succeed(message.record())

    def list_outbound(self) -> Deferred[list[OutboundMessage]]:
        return succeed([m.record() for m in self._queue.values()])

    def outbound_summary(self) -> Deferred[tuple[int, float | None]]:
        oldest = min((m.created for m in self._queue.values()), default=None)
        return succeed((len(self._queue), oldest))

    def retry_outbound(self, message_id: int | None, now: float) -> Deferred[int]:
        if message_id is None:
            messages = list(self._queue.values())
        elif message_id in self._queue:
            messages = [self._queue[message_id]]
        else:
            return fail(NotFound(f"no queued message {message_id}"))
        made_due = 0
        for message in messages:
            for recipient in message.recipients:
                if recipient.state == "queued":
                    recipient.next_attempt = float(now)
                    made_due += 1
        return succeed(made_due)

    def delete_outbound(self, message_id: int) -> Deferred[int]:
        message = self._queue.pop(message_id, None)
        if message is None:
            return fail(NotFound(f"no queued message {message_id}"))
        return succeed(len(message.recipients))
