"""The SMTP mail transaction: MAIL, RCPT, DATA, and the commit behind the
250, as a mixin of ``zpop.smtp.SMTPServer``.

The end of data is only CRLF "." CRLF; a bare CR or LF marks the message
for refusal (SMTP smuggling); past the size limit bytes are counted, not
kept; the ``250`` is sent only once the message is durably stored.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.mail import smtp

from zpop import metrics
from zpop.config import Config
from zpop.delivery import (
    Envelope,
    MalformedMessage,
    Route,
    SMTPDelivery,
    StorageFull,
    check,
    from_addresses,
    received_field,
    submission_fields,
)
from zpop.mailauth.verdict import InboundMessage, Refused
from zpop.smtp_reply import Reply, Role
from zpop.wire.paths import AddressError, parse_path

log = Logger(namespace="zpop.smtp")

COMMAND, DATA = smtp.COMMAND, smtp.DATA

_SIZE = re.compile(rb"[0-9]{1,20}")


def split_path(argument: bytes, keyword: bytes) -> tuple[bytes, list[bytes]]:
    """(the address inside <...>, the ESMTP parameters) of a MAIL/RCPT
    argument such as ``FROM:<a@b> SIZE=10``; raises Reply 501."""
    usage = Reply(501, "5.5.4", f"Syntax: {keyword.decode()}<address> [parameters]")
    if argument[: len(keyword)].upper() != keyword:
        raise usage
    rest = argument[len(keyword) :].lstrip(b" ")
    if not rest.startswith(b"<"):
        raise usage
    # Find the closing bracket outside quoted strings.
    quoted = escaped = False
    for index in range(1, len(rest)):
        char = rest[index : index + 1]
        if escaped:
            escaped = False
        elif char == b"\\" and quoted:
            escaped = True
        elif char == b'"':
            quoted = not quoted
        elif char == b">" and not quoted:
            params = rest[index + 1 :]
            if params and not params.startswith(b" "):
                raise usage
            return rest[1:index], params.split()
    raise usage


@dataclass(frozen=True)
class SMTPSettings:
    """What an SMTP session uses of the configuration."""

    hostname: str
    timeout: float
    session_deadline: float
    login_deadline: float
    line_length: int
    message_size: int
    recipients: int
    #: Where the domain-less RCPT TO:<postmaster> goes.
    postmaster: str

    @classmethod
    def from_config(cls, config: Config) -> SMTPSettings:
        limits = config.limits
        return cls(
            hostname=config.hosts.smtp,
            timeout=limits.smtp_timeout,
            session_deadline=limits.smtp_session,
            login_deadline=config.auth.login_deadline,
            line_length=limits.line_length,
            message_size=limits.message_size,
            recipients=limits.recipients,
            postmaster=config.server.postmaster_address,
        )


class MailTransaction:
    """MAIL, RCPT and DATA for an SMTPServer, which provides the rest."""

    role: Role
    settings: SMTPSettings
    clock: IReactorTime
    router: SMTPDelivery
    authenticated: bool
    mode: Any
    _buffer: bytes
    _helo: str | None
    _esmtp: bool
    _tls: bool
    _client: str
    _account: str
    _accepted: int
    _submitter: Any
    _sender: str | None
    _recipients: list[tuple[str, Route]]
    _parts: list[bytes]
    _size: int
    _line_start: bool
    _bare: bool
    _oversize: bool
    _ok: Callable[[int, str, str], None]
    _send: Callable[[Reply], None]
    _write: Callable[[str | bytes], None]
    _run: Callable[..., None]
    _reset_transaction: Callable[[], None]

    @property
    def host_name(self) -> str:
        raise NotImplementedError

    def _require_ready(self) -> None:
        if self._helo is None:
            raise Reply(503, "5.5.1", "Send EHLO or HELO first")
        if self.role.submission and not self.authenticated:
            if not self._tls:
                raise Reply(530, "5.7.0", "Must issue a STARTTLS command first")
            raise Reply(530, "5.7.0", "Authentication required")

    def do_MAIL(self, argument: bytes) -> None:
        # Upstream accepts any Address its tokenizer can split (source routes
        # silently stripped), ignores ESMTP parameters (no SIZE) and checks
        # no ownership of the sender.
        self._require_ready()
        if self._sender is not None:
            raise Reply(503, "5.5.1", "Sender already specified")
        path, params = split_path(argument, b"FROM:")
        for param in params:
            key, _, value = param.partition(b"=")
            key = key.upper()
            if key == b"SIZE" and _SIZE.fullmatch(value):
                if int(value) > self.settings.message_size:
                    raise Reply(
                        552,
                        "5.3.4",
                        "Message size exceeds fixed maximum message size",
                    )
            elif key == b"BODY" and value.upper() in (b"7BIT", b"8BITMIME"):
                pass
            else:
                name = key.decode("ascii", "replace")
                raise Reply(555, "5.5.4", f"Unsupported MAIL parameter {name}")
        if not path:
            if self.role.submission:
                raise Reply(553, "5.7.1", "Null sender not allowed on submission")
            sender = ""
        else:
            try:
                sender = parse_path(path)
            except AddressError:
                raise Reply(501, "5.1.7", "Bad sender address syntax")
            if self.role.submission and not self._submitter.owns(sender):
                raise Reply(
                    553, "5.7.1", f"Sender address not owned by {self._account}"
                )
        self._sender = sender
        self._ok(250, "2.1.0", "Sender OK")

    def do_RCPT(self, argument: bytes) -> Any:
        if self._sender is None:
            raise Reply(503, "5.5.1", "Need MAIL command first")
        path, params = split_path(argument, b"TO:")
        if params:
            name = params[0].partition(b"=")[0].decode("ascii", "replace").upper()
            raise Reply(555, "5.5.4", f"Unsupported RCPT parameter {name}")
        if len(self._recipients) >= self.settings.recipients:
            raise Reply(452, "4.5.3", "Too many recipients")
        if path.lower() == b"postmaster":
            # RFC 5321 4.5.1: accepted without a domain, on every listener,
            # and only ever delivered locally.
            return self._route(self.settings.postmaster, local_only=True)
        try:
            address = parse_path(path)
        except AddressError as e:
            if e.trick and not self.role.submission:
                raise Reply(554, "5.7.1", "Relay access denied")
            if e.trick:
                raise Reply(
                    553,
                    "5.1.3",
                    "Address form not accepted (source route, %, ! or quoted @)",
                )
            raise Reply(501, "5.1.3", "Bad recipient address syntax")
        return self._route(address)

    async def _route(self, address: str, local_only: bool = False) -> None:
        route: Route = await self.router.route(address)
        if route.kind == "unknown" or (local_only and route.kind != "local"):
            raise Reply(550, "5.1.1", "Recipient address rejected: User unknown")
        if route.kind == "remote" and not self.role.submission:
            raise Reply(554, "5.7.1", "Relay access denied")
        self._recipients.append((address, route))
        self._ok(250, "2.1.5", "Recipient OK")

    def do_DATA(self, argument: bytes) -> None:
        # Upstream ends DATA at a bare-LF dot line through LineOnlyReceiver's
        # line splitting variants, hands each line to per-recipient IMessage
        # objects, and replies 250 before anything is durable.
        if argument:
            raise Reply(501, "5.5.4", "Syntax: DATA (no parameters)")
        if self._sender is None:
            raise Reply(503, "5.5.1", "Need MAIL command first")
        if not self._recipients:
            raise Reply(554, "5.5.1", "No valid recipients")
        self._write("354 End data with <CR><LF>.<CR><LF>")
        self.mode = DATA

    def _data_step(self) -> bool:
        """Consume message data; True once the end-of-data line was read.

        The end is only CRLF "." CRLF. A CR or LF not part of a CRLF marks
        the message for refusal (SMTP smuggling), a line of any length stays
        message data, and past the size limit bytes are counted, not kept.
        """
        buf = self._buffer
        pos = 0
        while True:
            end = buf.find(b"\r\n", pos)
            if end < 0:
                rest = buf[pos:]
                if self._line_start and rest in (b".", b".\r"):
                    self._buffer = rest
                    return False
                keep = b"\r" if rest.endswith(b"\r") else b""
                piece = rest[: len(rest) - len(keep)]
                if piece:
                    if self._line_start and piece.startswith(b"."):
                        piece = piece[1:]
                    self._add(piece)
                    self._line_start = False
                self._buffer = keep
                return False
            line = buf[pos:end]
            pos = end + 2
            if self._line_start:
                if line == b".":
                    self._buffer = buf[pos:]
                    self._end_of_data()
                    return True
                if line.startswith(b"."):
                    line = line[1:]
            self._add(line)
            self._add(b"\r\n")
            self._line_start = True

    def _add(self, piece: bytes) -> None:
        if piece != b"\r\n" and (b"\r" in piece or b"\n" in piece):
            self._bare = True
        self._size += len(piece)
        if self._size > self.settings.message_size:
            self._oversize = True
            self._parts = []
        elif not self._oversize:
            self._parts.append(piece)

    def _end_of_data(self) -> None:
        self.mode = COMMAND
        sender = self._sender or ""
        recipients = list(self._recipients)
        body = b"".join(self._parts)
        oversize, bare = self._oversize, self._bare
        self._reset_transaction()
        if oversize:
            self._send(
                Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
            )
        elif bare:
            self._send(
                Reply(554, "5.5.2", "Bare CR or LF in message data is not accepted")
            )
        else:
            self._run(self._accept, sender, recipients, body)

    async def _accept(
        self, sender: str, recipients: list[tuple[str, Route]], body: bytes
    ) -> None:
        now = self.clock.seconds()
        try:
            check(body)
        except MalformedMessage as e:
            raise Reply(554, "5.6.0", f"Message is malformed: {e}")
        submitter = self._submitter.account if self._submitter is not None else None
        if self.role.submission:
            owned = from_addresses(body)
            if owned is not None and not all(self._submitter.owns(a) for a in owned):
                raise Reply(
                    553, "5.7.1", f"Sender address not owned by {self._account}"
                )
            body = submission_fields(body, sender, self.host_name, now)
        protocol = "ESMTP" if self._esmtp else "SMTP"
        if self._tls:
            protocol += "S"
        if self.authenticated:
            protocol += "A"
        queue_id = secrets.token_hex(8)
        trace = received_field(
            self._helo or "", self._client, self.host_name, protocol, queue_id, now
        )
        envelope = Envelope(
            sender=sender,
            local=tuple(r.account for _, r in recipients if r.account is not None),
            remote=tuple(a for a, r in recipients if r.kind == "remote"),
            submitter=submitter if self.role.submission else None,
            spam_filtering=not self.role.submission,
            inbound=None
            if self.role.submission
            else InboundMessage(
                sender,
                tuple(a for a, _ in recipients),
                self._client,
                self._helo or "",
                body,
                queue_id,
            ),
        )
        started = time.monotonic()
        try:
            accepted = await self.router.commit(envelope, body, trace)
        except Refused as refused:
            log.info(
                "refused {queue_id} client={client} from=<{sender}>: {reply}",
                queue_id=queue_id,
                client=self._client,
                sender=sender,
                reply=refused,
            )
            raise Reply(refused.code, refused.enhanced, refused.text)
        except StorageFull as full:
            log.error(
                "storing message {queue_id} from {client}: {error}",
                queue_id=queue_id,
                client=self._client,
                error=full,
            )
            raise Reply(452, "4.3.1", "Insufficient system storage, try again later")
        except Exception:
            log.failure(
                "storing message {queue_id} from {client}",
                queue_id=queue_id,
                client=self._client,
            )
            raise Reply(451, "4.3.0", "Temporary storage failure, try again later")
        self._accepted += 1
        metrics.accepted(self.role.name)
        log.info(
            "accepted {queue_id} role={role} client={client} account={account}"
            " from=<{sender}> local={local} remote={remote} size={size}"
            " outbound={outbound} commit_ms={ms:.1f}",
            queue_id=queue_id,
            role=self.role.name,
            client=self._client,
            account=self._account,
            sender=sender,
            local=len(envelope.local),
            remote=len(envelope.remote),
            size=len(body),
            outbound=accepted.queue_id,
            ms=(time.monotonic() - started) * 1000,
        )
        self._ok(250, "2.0.0", f"Message accepted as {queue_id}")
