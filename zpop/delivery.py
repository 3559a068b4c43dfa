"""Local delivery: turn raw message bytes into a stored message.

Every path that stores mail (``zpop deliver``, ``zpop import``, SMTP) comes
through here, so every stored body has CRLF line ends and a final CRLF: its
size is then exactly the octets a POP client receives.

``deliver_local`` and ``import_messages`` are the services behind ``zpop
deliver`` and ``zpop import`` (and any web page or API that stores mail by
hand): the size limit, the checks, the folders, the import's batching and
its skipping of bad files live there, so every front end refuses the same
messages with the same words.

For SMTP, ``SMTPDelivery`` routes recipients (hosted account, unknown
hosted address, remote) and commits a received message everywhere it goes
in one store transaction: the recipients' Inbox (or Spam, when an upstream
filter flagged it on the MX), the sender's Sent folder, and the outbound
queue. The header helpers add what RFC 5321 and RFC 6409 ask of a receiving
or submission server (Received:, Date:, Message-ID:). No protocol code
lives here: the SMTP session hands over addresses and bytes.
"""

from __future__ import annotations

import datetime
import email.errors
import email.header
import email.parser
import email.policy
import email.utils
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import IO, TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from zpop import metrics
from zpop.accounts import Clock, service
from zpop.config import SubmissionConfig
from zpop.mailauth.verdict import InboundMessage, Verdict
from zpop.maildir import Entry
from zpop.store import (
    FOLDERS,
    Accepted,
    Account,
    IStore,
    Message,
    NewMessage,
    NotFound,
    QueuedMessage,
    StorageFull,
)
from zpop.wire.addresses import domain_of
from zpop.wire.lines import to_crlf

if TYPE_CHECKING:
    # Only their types: the CLI imports this module and need not load
    # dkimpy, pyspf and the public suffix list.
    from zpop.mailauth.dkim import Signer
    from zpop.mailauth.inbound import InboundChecks

__all__ = ["StorageFull"]  # what SMTP tells a client as 452 4.3.1

_HEADER_NAME = re.compile(rb"^[\x21-\x39\x3b-\x7e]+:")
# The first Subject field with its folded continuation lines.
_SUBJECT = re.compile(rb"(?:^|\r\n)subject:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", re.I)


class MalformedMessage(ValueError):  # noqa: N818 - public name, used widely
    """The bytes are not an Internet message; the text says why."""


def normalize(raw: bytes) -> bytes:
    """``raw`` with every line ending (CR, LF, CRLF) made CRLF, ending in CRLF."""
    body = to_crlf(raw)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body


def check(body: bytes, size_limit: int | None = None) -> None:
    """Raise MalformedMessage unless ``body`` (normalised) is a message."""
    if not body.strip():
        raise MalformedMessage("the message is empty")
    if size_limit is not None and len(body) > size_limit:
        raise MalformedMessage(
            f"the message is {len(body)} bytes, over the limit of {size_limit}"
        )
    if b"\0" in body:
        raise MalformedMessage("the message contains a NUL byte")
    # Not header_section: a blank first line is a header line here, and
    # refused, where header_section sees no header at all.
    end = body.find(b"\r\n\r\n")
    header = body if end < 0 else body[: end + 2]
    for number, line in enumerate(header.split(b"\r\n")[:-1], start=1):
        if line[:1] in (b" ", b"\t") and number > 1:
            continue
        if not _HEADER_NAME.match(line):
            raise MalformedMessage(
                f"header line {number} is not a header field: {line[:40]!r}"
            )


def subject_of(body: bytes) -> str:
    """The decoded Subject header, for listings; empty if there is none."""
    header = header_section(body)
    # Fast path, with the parser's answer for any header that check()
    # accepts: a plain ASCII subject without encoded words needs no parser,
    # and ``zpop import`` spent half its time in it.
    match = _SUBJECT.search(header)
    if match is None:
        return ""
    value = match.group(1)
    if value.isascii() and b"=?" not in value:
        return " ".join(value.decode("ascii").split())
    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(
        header
    )
    raw = parsed.get("Subject")
    if raw is None:
        return ""
    try:
        text = str(email.header.make_header(email.header.decode_header(str(raw))))
    except (email.errors.HeaderParseError, LookupError, UnicodeDecodeError):
        text = str(raw)
    return " ".join(text.split())


def prepare(
    raw: bytes,
    folder: str = "Inbox",
    received: float | None = None,
    seen: bool = False,
    size_limit: int | None = None,
) -> NewMessage:
    """Normalise and check raw bytes; raises MalformedMessage."""
    if folder not in FOLDERS:
        raise ValueError(f"unknown folder {folder!r}")
    body = normalize(raw)
    check(body, size_limit)
    return NewMessage(
        folder=folder,
        body=body,
        subject=subject_of(body),
        received=time.time() if received is None else received,
        seen=seen,
    )


# -- local delivery and import: ``zpop deliver``, ``zpop import`` -------------

#: The folders mail may be delivered to by hand (``zpop deliver``): Sent and
#: Trash only ever get mail from the account's own actions.
LOCAL_FOLDERS = ("Inbox", "Spam")
#: An import commits after this many messages or bytes, whichever first: a
#: batch is one transaction, and memory stays bounded however big the import.
IMPORT_BATCH_MESSAGES = 1000
IMPORT_BATCH_BYTES = 32 * 1024 * 1024


class DeliveryRefused(Exception):
    """A message that was not stored; ``str()`` is the one-line reason, fit
    for an operator, saying that nothing was stored."""


class UnknownRecipient(DeliveryRefused):
    """No account or alias at the address."""

    def __init__(self, address: str) -> None:
        super().__init__(f"no account or alias {address}")
        self.address = address


@dataclass(frozen=True)
class Delivered:
    """A message stored by local delivery, and the account it went to."""

    account: Account
    message: Message


@service
async def deliver_local(
    store: IStore,
    clock: Clock,
    address: str,
    raw: bytes | IO[bytes],
    folder: str,
    size_limit: int,
) -> Delivered:
    """Store one message in ``folder`` of the account ``address`` delivers
    to (the account, or an alias's owner), received now.

    ``raw`` is the message or a stream to read it from: read only once the
    recipient is known, and never more than one byte past ``size_limit``,
    which is enough to refuse it. Raises UnknownRecipient, or
    DeliveryRefused for a message over the limit or malformed (its
    normalised size counts): then nothing is stored.
    """
    if folder not in LOCAL_FOLDERS:
        raise DeliveryRefused(
            f"mail is delivered to {' or '.join(LOCAL_FOLDERS)}, not {folder}:"
            " nothing stored"
        )
    account: Account | None = await store.get_account_for_recipient(address)
    if account is None:
        raise UnknownRecipient(address)
    if not isinstance(raw, bytes):
        raw = raw.read(size_limit + 1)
    if len(raw) > size_limit:
        raise DeliveryRefused(
            f"the message is over the size limit of {size_limit} bytes: nothing stored"
        )
    try:
        message = prepare(raw, folder, clock.seconds(), size_limit=size_limit)
    except MalformedMessage as e:
        raise DeliveryRefused(f"malformed message: {e}: nothing stored") from None
    [stored] = await store.store_messages(account.id, [message])
    return Delivered(account, stored)


class SkipReason(StrEnum):
    """Why an import left a file out."""

    #: Not a message zpop can store (empty, NUL, no header, over the limit):
    #: it never will be as it is.
    MALFORMED = "malformed"
    #: The file could not be read (gone, permissions): the operator can fix it.
    UNREADABLE = "unreadable"


@dataclass(frozen=True)
class Skipped:
    """A file an import left out, and why."""

    entry: Entry
    reason: SkipReason
    #: What is wrong: the MalformedMessage text, or the OS error's.
    detail: str


@dataclass(frozen=True)
class ImportTally:
    """What an import did."""

    account: Account
    #: Messages stored per zpop folder, every folder, in FOLDERS order.
    per_folder: dict[str, int]
    #: The files left out, in the order they were met.
    skipped: tuple[Skipped, ...]

    @property
    def imported(self) -> int:
        return sum(self.per_folder.values())

    @property
    def malformed(self) -> int:
        return sum(s.reason is SkipReason.MALFORMED for s in self.skipped)

    @property
    def unreadable(self) -> int:
        return sum(s.reason is SkipReason.UNREADABLE for s in self.skipped)


def read_file(entry: Entry, size: int) -> bytes:
    """Up to ``size`` bytes of the entry's file; raises OSError."""
    with open(entry.path, "rb") as f:
        return f.read(size)


@service
async def import_messages(
    store: IStore,
    account: Account,
    entries: Iterable[Entry],
    size_limit: int,
    read: Callable[[Entry, int], bytes] = read_file,
    on_skip: Callable[[Skipped], None] | None = None,
    batch_messages: int = IMPORT_BATCH_MESSAGES,
    batch_bytes: int = IMPORT_BATCH_BYTES,
) -> ImportTally:
    """Store ``entries`` (``zpop.maildir``'s, in arrival order) in the
    account, with their folder, time and seen flag, one transaction per
    batch of ``batch_messages`` messages or ``batch_bytes`` bytes.

    A file that cannot be read or is no message is left out and the rest
    is imported: one bad file costs one report (``on_skip``, as it is met,
    and in the tally), not the import. ``read(entry, size)`` gives up to
    ``size`` bytes of an entry, synchronously (the CLI's files). Importing
    the same entries twice stores them twice.
    """
    per_folder = dict.fromkeys(FOLDERS, 0)
    skipped: list[Skipped] = []

    def skip(entry: Entry, reason: SkipReason, detail: str) -> None:
        skipped.append(Skipped(entry, reason, detail))
        if on_skip is not None:
            on_skip(skipped[-1])

    async def commit(batch: list[NewMessage]) -> None:
        for stored in await store.store_messages(account.id, batch):
            per_folder[stored.folder] += 1

    batch: list[NewMessage] = []
    size = 0
    for entry in entries:
        try:
            raw = read(entry, size_limit + 1)
        except OSError as e:
            skip(entry, SkipReason.UNREADABLE, e.strerror or str(e))
            continue
        try:
            if len(raw) > size_limit:
                raise MalformedMessage(f"over the size limit of {size_limit} bytes")
            message = prepare(raw, entry.folder, entry.received, entry.seen, size_limit)
        except MalformedMessage as e:
            skip(entry, SkipReason.MALFORMED, str(e))
            continue
        batch.append(message)
        size += len(message.body)
        if len(batch) >= batch_messages or size >= batch_bytes:
            await commit(batch)
            batch, size = [], 0
    if batch:
        await commit(batch)
    return ImportTally(account, per_folder, tuple(skipped))


# -- SMTP: headers ------------------------------------------------------------

# Characters allowed in the HELO name and protocol words of a Received:
# field: printable ASCII without the comment delimiters.
_TRACE_UNSAFE = re.compile(rb"[^\x21-\x27\x2a-\x7e]")


def header_section(body: bytes) -> bytes:
    """The header lines of a CRLF body, each ending in CRLF (no blank line)."""
    if body.startswith(b"\r\n"):
        return b""
    end = body.find(b"\r\n\r\n")
    return body if end < 0 else body[: end + 2]


def header_values(body: bytes, name: str) -> list[bytes]:
    """Every value of header field ``name`` (any case), unfolded, stripped."""
    pattern = re.compile(
        rb"(?:^|\r\n)" + re.escape(name.encode("ascii")) + rb"[ \t]*:"
        rb"([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)",
        re.I,
    )
    return [
        re.sub(rb"\r\n(?=[ \t])", b"", m.group(1)).strip()
        for m in pattern.finditer(header_section(body))
    ]


def spam_flagged(body: bytes) -> bool:
    """Whether an upstream filter marked the message ``X-Spam-Flag: YES``."""
    return any(v.upper() == b"YES" for v in header_values(body, "X-Spam-Flag"))


def from_addresses(body: bytes) -> list[str] | None:
    """The addresses in the From: fields, lower-case; None if there is none.

    An unparsable From: gives ``[""]`` so a check of ownership refuses it.
    """
    values = header_values(body, "From")
    if not values:
        return None
    texts = []
    for value in values:
        text = value.decode("utf-8", "replace")
        try:
            text = str(email.header.make_header(email.header.decode_header(text)))
        except (email.errors.HeaderParseError, LookupError, UnicodeDecodeError):
            pass
        texts.append(text)
    found = [addr.lower() for _, addr in email.utils.getaddresses(texts)]
    return found or [""]


def add_fields(body: bytes, top: bytes = b"", bottom: bytes = b"") -> bytes:
    """``body`` with header lines added before and after its header fields.

    ``top`` and ``bottom`` are complete CRLF-terminated field lines.
    """
    header = header_section(body)
    return top + header + bottom + body[len(header) :]


def format_date(now: float) -> str:
    """An RFC 5322 date in UTC (``+0000``, a known zone, unlike ``-0000``)."""
    return email.utils.format_datetime(
        datetime.datetime.fromtimestamp(now, datetime.UTC)
    )


def new_message_id(hostname: str) -> str:
    return f"<{secrets.token_hex(16)}@{hostname}>"


def submission_fields(body: bytes, sender: str, hostname: str, now: float) -> bytes:
    """What RFC 6409 section 8 lets a submission server add: a Date: and a
    Message-ID: if missing, and a From: naming the envelope sender if the
    client sent none."""
    bottom = b""
    if not header_values(body, "From"):
        bottom += f"From: <{sender}>\r\n".encode()
    if not header_values(body, "Date"):
        bottom += f"Date: {format_date(now)}\r\n".encode()
    if not header_values(body, "Message-ID"):
        bottom += f"Message-ID: {new_message_id(hostname)}\r\n".encode()
    return add_fields(body, bottom=bottom)


def received_field(
    helo: str, client: str, hostname: str, protocol: str, queue_id: str, now: float
) -> bytes:
    """A Received: field (RFC 5321 section 4.4) for a message taken in.

    Names the client's HELO and address, this server's public host name and
    the protocol (RFC 3848: ESMTP, ESMTPS, ESMTPSA); never the login, the
    credentials, or any internal host or software name.
    """
    name = _TRACE_UNSAFE.sub(b"?", helo.encode("utf-8", "replace"))[:255]
    address = _TRACE_UNSAFE.sub(b"?", client.encode("utf-8", "replace"))[:64]
    return (
        b"Received: from "
        + (name or b"unknown")
        + b" (["
        + address
        + b"])\r\n\tby "
        + hostname.encode("ascii", "replace")
        + b" with "
        + protocol.encode("ascii")
        + b" id "
        + queue_id.encode("ascii")
        + b";\r\n\t"
        + format_date(now).encode("ascii")
        + b"\r\n"
    )


# -- SMTP: routing and the commit ---------------------------------------------


class RouteKind(StrEnum):
    """Where a recipient's mail goes."""

    #: A hosted account or alias.
    LOCAL = "local"
    #: A hosted domain without that address.
    UNKNOWN = "unknown"
    #: Any other domain: the outbound queue.
    REMOTE = "remote"


@dataclass(frozen=True)
class Route:
    """Where one recipient address goes."""

    kind: RouteKind
    account: Account | None = None


@dataclass(frozen=True)
class Envelope:
    """A message's envelope once every recipient was routed."""

    #: MAIL FROM, "" for the null sender.
    sender: str
    #: Hosted recipient accounts, one entry per account.
    local: tuple[Account, ...]
    #: Remote recipient addresses, for the outbound queue.
    remote: tuple[str, ...] = ()
    #: The logged-in submitter's account (gets the Sent copy), or None (MX).
    submitter: Account | None = None
    #: Honour an upstream filter's ``X-Spam-Flag: YES`` (the MX does).
    spam_filtering: bool = False
    #: What the MX's checks (zpop.mailauth.inbound) look at, or None.
    inbound: InboundMessage | None = None


class SMTPDelivery:
    """Routes SMTP recipients and commits received messages durably."""

    def __init__(
        self,
        store: IStore,
        submission: SubmissionConfig,
        queue_lifetime: float,
        clock: IReactorTime,
        on_queued: Callable[[], None] | None = None,
        inbound: InboundChecks | None = None,
        signer: Signer | None = None,
    ) -> None:
        self._store = store
        #: The MX's SPF/DKIM/DMARC and spam checks, before the 250.
        self._inbound = inbound
        self._submission = submission
        #: Seconds the outbound queue keeps trying a message it accepts.
        self._queue_lifetime = queue_lifetime
        self._clock = clock
        #: Called after a commit that queued mail for remote recipients
        #: (the outbound relay's wake-up), so it need not wait for a scan.
        self._on_queued = on_queued
        #: DKIM-signs what submission queues (zpop.mailauth.dkim).
        self._signer = signer

    def route(self, address: str) -> Deferred:
        """Fires with the Route for ``address`` (a syntactically valid one)."""
        return Deferred.fromCoroutine(self._route(address))

    async def _route(self, address: str) -> Route:
        account = await self._store.get_account_for_recipient(address)
        if account is not None:
            return Route(RouteKind.LOCAL, account)
        domain = address.rpartition("@")[2].lower()
        try:
            await self._store.get_domain(domain)
        except NotFound:
            return Route(RouteKind.REMOTE)
        return Route(RouteKind.UNKNOWN)

    def commit(self, envelope: Envelope, body: bytes, trace: bytes) -> Deferred:
        """Store ``body`` everywhere ``envelope`` sends it, in one transaction.

        ``body`` is the CRLF message as the client sent it (plus anything
        RFC 6409 lets submission add); ``trace`` the Received: field that the
        recipients' copies get above it. With ``envelope.inbound`` the MX's
        checks decide first: they may refuse it (zpop.mailauth.verdict.Refused),
        choose its folder and add fields above the trace. Fires with the
        store's Accepted once every copy and queue entry is durable.
        """
        return Deferred.fromCoroutine(self._commit(envelope, body, trace))

    async def _commit(self, envelope: Envelope, body: bytes, trace: bytes) -> Any:
        verdict = Verdict()
        if envelope.inbound is not None and self._inbound is not None:
            verdict = await self._inbound.check(envelope.inbound)
        if verdict.body is not None:
            body = verdict.body
        now = self._clock.seconds()
        delivered = verdict.fields + trace + body
        subject = subject_of(body)
        folder = verdict.folder or "Inbox"
        if verdict.folder is None and envelope.spam_filtering and spam_flagged(body):
            folder = "Spam"
        local: list[tuple[int, NewMessage]] = []
        seen: set[int] = set()
        for account in envelope.local:
            if account.id in seen:
                continue
            seen.add(account.id)
            local.append((account.id, NewMessage(folder, delivered, subject, now)))
        if envelope.submitter is not None and self._submission.save_sent_copy:
            local.append(
                (
                    envelope.submitter.id,
                    NewMessage("Sent", body, subject, now, seen=True),
                )
            )
        queued = None
        if envelope.remote:
            outgoing = delivered
            # Only what a logged-in user submitted (its From: checked as
            # theirs): mail from outside claiming a hosted From: must never
            # carry our signature.
            if envelope.submitter is not None and self._signer is not None:
                outgoing = await self._signer.sign(delivered)
            queued = QueuedMessage(
                sender=envelope.sender,
                recipients=tuple(dict.fromkeys(envelope.remote)),
                body=outgoing,
                created=now,
                expires=now + self._queue_lifetime,
                account_id=(
                    envelope.submitter.id if envelope.submitter is not None else None
                ),
            )
        accepted = await self._store.accept_message(local, queued)
        metrics.delivered(folder, len(seen), queued is not None)
        if queued is not None and self._on_queued is not None:
            self._on_queued()
        return accepted


@service
async def send_system_mail(
    store: IStore,
    clock: Clock,
    sender: str,
    recipient: str,
    body: bytes,
    queue_lifetime: float,
    signer: Signer | None = None,
) -> Accepted:
    """Send a message the server itself writes (a password-reset link):
    into the Inbox of a hosted recipient, else onto the outbound queue,
    as SMTP routes it, DKIM-signed by ``signer``. ``body`` is the whole
    message (any line ends). Raises UnknownRecipient for a hosted domain
    without that address."""
    now = clock.seconds()
    body = normalize(body)
    account = await store.get_account_for_recipient(recipient)
    if account is not None:
        local = [(account.id, NewMessage("Inbox", body, subject_of(body), now))]
        accepted: Accepted = await store.accept_message(local, None)
        return accepted
    try:
        await store.get_domain(domain_of(recipient))
    except NotFound:
        if signer is not None:
            body = await signer.sign(body)
        queued = QueuedMessage(
            sender=sender,
            recipients=(recipient,),
            body=body,
            created=now,
            expires=now + queue_lifetime,
        )
        accepted = await store.accept_message([], queued)
        return accepted
    raise UnknownRecipient(recipient)
