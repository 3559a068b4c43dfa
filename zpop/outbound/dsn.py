"""Delivery status notifications (RFC 3464): the bounce of a failed message.

``build_dsn`` writes a ``multipart/report; report-type=delivery-status``
message (RFC 6522) with three parts: a short text for people, the
machine-readable ``message/delivery-status`` with one block per failed
recipient, and the original message's header section
(``text/rfc822-headers``). It is sent from the null sender (RFC 5321
section 4.5.5) and marked ``Auto-Submitted: auto-replied`` (RFC 3834), so
nothing answers it and it is never bounced itself.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence

from zpop.delivery import format_date, header_section, new_message_id
from zpop.store.records import OutboundRecipient

SUBJECT = "Undelivered Mail Returned to Sender"

#: The original header section is cut here (RFC 3462 lets a report include
#: just the headers; a pathological header must not make a huge bounce).
MAX_HEADERS = 64 * 1024

_UNSAFE = re.compile(r"[\x00-\x1f\x7f]+")
# ASCII digits, whole string: "\d" also matches other scripts' digits and
# "$" a final newline, which would end the Status: line early.
_STATUS = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}", re.ASCII)
#: RFC 5322 section 2.1.1: a line is at most 998 octets.
MAX_LINE = 998


def _clean(text: str, limit: int = 900) -> str:
    """One line of printable text: no CR, LF or other controls."""
    return _UNSAFE.sub(" ", text).strip()[:limit]


def _mta_name(remote_mta: str) -> str:
    """``mx.example.net[192.0.2.1]`` -> ``mx.example.net`` (the DNS name)."""
    return remote_mta.split("[", 1)[0] or remote_mta


def dsn_status(recipient: OutboundRecipient) -> str:
    """The RFC 3463 status for a failed recipient's DSN."""
    if recipient.status and _STATUS.fullmatch(recipient.status):
        return recipient.status
    return "5.0.0"


def build_dsn(
    hostname: str,
    sender: str,
    failed: Sequence[OutboundRecipient],
    original: bytes,
    arrival: float,
    now: float,
) -> bytes:
    """The DSN telling ``sender`` that ``failed`` recipients got nothing.

    ``original`` is (the start of) the failed message; its header section is
    attached. CRLF line ends throughout.
    """
    # RFC 2046 5.1.1: at most 70 characters, from a small set.
    boundary = f"{secrets.token_hex(12)}/{re.sub(r'[^A-Za-z0-9.-]', '', hostname)}"
    boundary = boundary[:70]
    lines = [
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>",
        f"To: <{_clean(sender)}>",
        f"Subject: {SUBJECT}",
        f"Date: {format_date(now)}",
        f"Message-ID: {new_message_id(hostname)}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        f'\tboundary="{boundary}"',
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "Content-Description: Notification",
        "",
        f"This is the mail system at host {hostname}.",
        "",
        "Your message could not be delivered to one or more recipients.",
        "The reasons are given below.",
        "",
    ]
    for r in failed:
        reason = _clean(r.last_error or "delivery failed")
        lines.append(f"<{_clean(r.recipient)}>: {reason}"[:MAX_LINE])
    lines += [
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "Content-Description: Delivery report",
        "",
        f"Reporting-MTA: dns; {hostname}",
        f"Arrival-Date: {format_date(arrival)}",
    ]
    for r in failed:
        lines += [
            "",
            f"Final-Recipient: rfc822; {_clean(r.recipient)}",
            "Action: failed",
            f"Status: {dsn_status(r)}",
        ]
        if r.remote_mta:
            lines.append(f"Remote-MTA: dns; {_clean(_mta_name(r.remote_mta))}")
        if r.diagnostic:
            lines.append(f"Diagnostic-Code: smtp; {_clean(r.diagnostic)}")
        else:
            reason = _clean(r.last_error or "delivery failed")
            lines.append(f"Diagnostic-Code: X-zpop; {reason}")
        lines.append(f"Last-Attempt-Date: {format_date(r.next_attempt)}")
    lines += [
        "",
        f"--{boundary}",
        "Content-Type: text/rfc822-headers",
        "Content-Description: Undelivered Message Headers",
        "",
    ]
    headers = header_section(original[:MAX_HEADERS])
    if len(original) > MAX_HEADERS and len(headers) == len(original[:MAX_HEADERS]):
        # Cut inside a header: keep whole lines only.
        headers = headers[: headers.rfind(b"\r\n") + 2]
    text = "\r\n".join(lines).encode("ascii", "replace") + b"\r\n"
    return text + headers + f"\r\n--{boundary}--\r\n".encode("ascii")
