"""The outbound queue as an operator sees it: list it, make mail due now,
delete a message without a bounce (``zpop queue``, and the web pages or API
to come: DESIGN §2, CONVENTIONS 16).

The scheduler (``zpop.outbound.service``) delivers what these leave due;
nothing here speaks SMTP.
"""

from __future__ import annotations

from typing import NamedTuple

from zpop import owners
from zpop.accounts import service
from zpop.store import IStore, NotFound
from zpop.store.records import OutboundMessage


class QueueError(Exception):
    """A refused queue operation; ``str()`` is the one-line reason."""


class UnknownQueuedMessage(QueueError):
    """No message with that id is in the queue (delivered, bounced,
    deleted, or never there)."""

    def __init__(self, message_id: int) -> None:
        super().__init__(f"no queued message {message_id}")
        self.message_id = message_id


class Retried(NamedTuple):
    """What a retry did."""

    #: Queued recipients made due now.
    due: int
    #: Deliveries interrupted by a process that is gone, released.
    released: int


@service
async def list_queue(store: IStore) -> list[OutboundMessage]:
    """Every queued message with its recipients, oldest first."""
    found: list[OutboundMessage] = await store.list_outbound()
    return found


@service
async def summary(store: IStore) -> tuple[int, float | None]:
    """How many messages are queued, and when the oldest was queued."""
    found: tuple[int, float | None] = await store.outbound_summary()
    return found


@service
async def retry(store: IStore, message_id: int | None, now: float) -> Retried:
    """Make the queued recipients of one message (None: of every message)
    due at ``now``; raises UnknownQueuedMessage.

    "Due now" must hold for deliveries a crashed server was making too, so
    the claims of processes of this host that are gone are released
    (``zpop.owners``); claims of live or other hosts' processes stand.
    """
    try:
        due: int = await store.retry_outbound(message_id, now)
    except NotFound:
        assert message_id is not None
        raise UnknownQueuedMessage(message_id) from None
    released: int = await owners.release_dead_leases(store)
    return Retried(due, released)


@service
async def delete(store: IStore, message_id: int) -> int:
    """Remove a message from the queue without a bounce; returns its number
    of recipients; raises UnknownQueuedMessage."""
    try:
        count: int = await store.delete_outbound(message_id)
    except NotFound:
        raise UnknownQueuedMessage(message_id) from None
    return count
