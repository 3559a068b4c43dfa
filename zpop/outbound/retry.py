"""The retry policy of the outbound relay: what an attempt means for a
recipient.

Every recipient's result is recorded on its own: ``delivered`` (2xx),
``failed`` (5xx, a permanent error such as a null MX, or expired) or
``queued`` again with a back-off growing from ``retry_min`` (5 minutes) to
``retry_max`` (an hour) until ``lifetime`` (5 days).
"""

from __future__ import annotations

from zpop.config import OutboundConfig
from zpop.outbound.client import DeliveryError, RemoteReply
from zpop.store.records import RecipientResult


def retry_delay(attempts: int, minimum: float, maximum: float) -> float:
    """Back-off after ``attempts`` failed attempts: doubling from ``minimum``
    up to ``maximum`` (300, 600, 1200, 2400, 3600, 3600, ...)."""
    return min(minimum * 2.0 ** max(attempts - 1, 0), maximum)


def outcome(
    recipient: str,
    attempts: int,
    now: float,
    expires: float,
    config: OutboundConfig,
    reply: RemoteReply | None = None,
    error: DeliveryError | None = None,
    remote_mta: str | None = None,
) -> RecipientResult:
    """The RecipientResult of one attempt (``attempts`` counts it)."""
    if reply is not None and 200 <= reply.code < 300:
        return RecipientResult(recipient, "delivered", remote_mta=remote_mta)
    status: str | None
    diagnostic: str | None
    if reply is not None:
        permanent = 500 <= reply.code < 600
        where = f"host {remote_mta} said: " if remote_mta else ""
        text = f"{where}{reply.text}"
        status, diagnostic = reply.status, reply.text
        if not 400 <= reply.code < 600:
            status = "4.5.0"
    else:
        assert error is not None
        permanent = error.permanent
        text, status = error.text, error.status
        diagnostic = error.reply.text if error.reply else None
        remote_mta = error.remote_mta or remote_mta
    if permanent:
        return RecipientResult(
            recipient, "failed", 0.0, text, status, remote_mta, diagnostic
        )
    if now >= expires:
        return RecipientResult(
            recipient,
            "failed",
            0.0,
            f"delivery time expired: {text}",
            "4.4.7",
            remote_mta,
            diagnostic,
        )
    delay = retry_delay(attempts, config.retry_min, config.retry_max)
    return RecipientResult(
        recipient,
        "queued",
        min(now + delay, expires),
        text,
        status,
        remote_mta,
        diagnostic,
    )
