"""The SMTP client of the outbound relay: one connection, many messages.

``Deliverer`` is all the scheduler (``zpop.outbound.service``) sees of the
client side: "deliver these jobs over this hop", with the results per
recipient handed back job by job. Under it, ``ClientSession`` is the
dialogue over one connection (greeting, EHLO or HELO, STARTTLS as the hop's
TLS policy says, AUTH, then MAIL/RCPT/DATA per message with RSET between
failed transactions, and QUIT), ``RelayClient`` reads replies and writes
commands, and ``zpop.wire.dotstuff.DotStuffer`` (shared with POP3's RETR)
encodes a body for DATA.

Why not twisted.mail's client: ``SMTPClient``/``ESMTPClient`` are built
around one message per ``SMTPSenderFactory`` and one result per message,
where zpop needs per-recipient results and many messages per connection;
their ``transformChunk`` misses a leading dot split across chunk boundaries
(and turns CRLF into CR CR LF); and ``esmtpState_starttls`` starts TLS with
whatever the server sent after its 220 still in the line buffer, so a
man-in-the-middle can inject replies that are read as if they came over TLS.
``RelayClient`` is a compact LineReceiver that gets those right.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import re
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.internet import defer, endpoints
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from zpop.config import OutboundConfig, TLSLevel
from zpop.outbound.tls import client_tls
from zpop.store import NotFound
from zpop.store.records import OutboundJob
from zpop.wire.dotstuff import DotStuffer

if TYPE_CHECKING:
    # Only for annotations: routing imports DeliveryError from here.
    from zpop.outbound.routing import Hop

# The namespace of the module this was split from, so log filters and what
# operators grep for ("[zpop.outbound#...]") stay as they were.
log = Logger(namespace="zpop.outbound")

#: Bytes of a queued body read from the store at a time.
CHUNK = 64 * 1024
#: Longest reply line, and most lines in one reply, accepted from a server.
MAX_REPLY_LINE = 4096
MAX_REPLY_LINES = 100
#: RFC 5321 section 4.5.3.2.6: wait at least 10 minutes for the reply to ".".
FINAL_REPLY_TIMEOUT = 600.0
CONNECT_TIMEOUT = 30.0

_ENHANCED = re.compile(rb"^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")


# -- replies and errors -------------------------------------------------------


@dataclass(frozen=True)
class RemoteReply:
    """One (possibly multi-line) SMTP reply from the next hop (what zpop's
    own SMTP server answers is ``zpop.smtp_reply.Reply``)."""

    code: int
    lines: tuple[bytes, ...]

    @property
    def text(self) -> str:
        """The reply as one line, for logs, the queue and DSNs."""
        joined = b" ".join(line.strip() for line in self.lines)
        return f"{self.code} {joined.decode('utf-8', 'replace')}".strip()

    @property
    def status(self) -> str:
        """The enhanced status code (RFC 3463) or one made from the code."""
        match = _ENHANCED.match(self.lines[0] if self.lines else b"")
        if match and match.group(1) == str(self.code)[0].encode():
            return match.group(0).decode("ascii")
        return {2: "2.0.0", 4: "4.0.0", 5: "5.0.0"}.get(self.code // 100, "4.0.0")


class DeliveryError(Exception):
    """Why an attempt failed before any server said so about a recipient."""

    def __init__(
        self,
        text: str,
        permanent: bool = False,
        status: str | None = None,
        reply: RemoteReply | None = None,
        remote_mta: str | None = None,
    ) -> None:
        super().__init__(text)
        self.text = text
        self.permanent = permanent
        self.status = status or (reply.status if reply else None)
        if self.status is None:
            self.status = "5.0.0" if permanent else "4.0.0"
        self.reply = reply
        self.remote_mta = remote_mta


# -- the SMTP client ----------------------------------------------------------


class RelayClient(LineReceiver):
    """The client side of one SMTP connection: replies in, commands out.

    ``reply()`` fires with the next complete reply (in order, so pipelined
    commands are matched to their replies); ``starttls()`` sends STARTTLS
    and, on 220, throws away whatever else the server already sent before
    starting TLS: upstream keeps it and reads it as if it came over TLS.
    """

    delimiter = b"\n"
    MAX_LENGTH = MAX_REPLY_LINE
    transport: Any

    def __init__(self, reactor: IReactorTime, timeout: float) -> None:
        self._reactor = reactor
        self.timeout = timeout
        self._lines: list[bytes] = []
        self._ready: deque[RemoteReply] = deque()
        self._waiter: Deferred | None = None
        self._timer: IDelayedCall | None = None
        self._error: DeliveryError | None = None
        self._tls_context: Any = None
        self._paused: Deferred | None = None
        self.tls = False
        self.connected_deferred: Deferred = Deferred()
        self.lost: Deferred = Deferred()

    # -- transport events --------------------------------------------------

    def connectionMade(self) -> None:  # noqa: N802 - Twisted API
        self.connected_deferred.callback(self)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: N802, B008
        if self._error is None:
            text = "lost connection"
            if self._tls_context is not None and self.tls:
                text = f"lost connection (TLS: {reason.getErrorMessage()})"
            self._error = DeliveryError(text)
        self._cancel_timer()
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.errback(self._error)
        paused, self._paused = self._paused, None
        if paused is not None:
            paused.errback(self._error)
        self.lost.callback(None)

    def lineLengthExceeded(self, line: bytes) -> None:  # noqa: N802
        self._abort(DeliveryError("server sent an over-long reply line"))

    def lineReceived(self, line: bytes) -> None:  # noqa: N802
        if self._error is not None:
            return
        line = line.rstrip(b"\r")
        if (
            len(line) < 3
            or not line[:3].isdigit()
            or line[3:4] not in (b"", b" ", b"-")
        ):
            self._abort(DeliveryError(f"malformed reply from server: {line[:80]!r}"))
            return
        self._lines.append(line)
        if len(self._lines) > MAX_REPLY_LINES:
            self._abort(DeliveryError("server sent an over-long reply"))
            return
        if line[3:4] == b"-":
            return
        reply = RemoteReply(int(line[:3]), tuple(x[4:] for x in self._lines))
        self._lines = []
        if self._tls_context is not None and not self.tls:
            context, self._tls_context = self._tls_context, None
            if reply.code == 220:
                # Upstream lacks this: anything after the 220 was sent in
                # plaintext by whoever sits in the middle; drop it.
                self.clearLineBuffer()
                self.transport.startTLS(context)
                self.tls = True
                self._tls_context = context
        self._ready.append(reply)
        self._deliver()

    # -- what the session uses ---------------------------------------------

    def send(self, *lines: bytes) -> None:
        """Write commands (several at once only when pipelining)."""
        self.transport.write(b"".join(line + b"\r\n" for line in lines))

    def reply(self, timeout: float | None = None) -> Deferred:
        """Fires with the next RemoteReply; fails DeliveryError on loss/timeout."""
        if self._ready:
            return defer.succeed(self._ready.popleft())
        if self._error is not None:
            return defer.fail(self._error)
        self._waiter = Deferred()
        self._timer = self._reactor.callLater(
            self.timeout if timeout is None else timeout, self._timed_out
        )
        return self._waiter

    def starttls(self, context: Any) -> Deferred:
        """Send STARTTLS; on its 220 reply TLS starts before anything else
        is read. Fires with the reply."""
        self._tls_context = context
        self.send(b"STARTTLS")
        return self.reply()

    def write_body(self, data: bytes) -> Deferred | None:
        """Write body bytes; returns a Deferred to wait on while the
        transport's buffer is full (back-pressure), else None."""
        self.transport.write(data)
        if self._error is not None:
            raise self._error
        return self._paused

    def start_body(self) -> None:
        self.transport.registerProducer(self, True)

    def end_body(self) -> None:
        if self._error is None:
            self.transport.unregisterProducer()

    # IPushProducer, for the body.
    def pauseProducing(self) -> None:  # noqa: N802
        if self._paused is None:
            self._paused = Deferred()
            self._timer = self._reactor.callLater(self.timeout, self._timed_out)

    def resumeProducing(self) -> None:  # noqa: N802
        paused, self._paused = self._paused, None
        self._cancel_timer()
        if paused is not None:
            paused.callback(None)

    def stopProducing(self) -> None:  # noqa: N802
        pass

    @property
    def failed(self) -> bool:
        """The connection is gone or broken: send nothing more."""
        return self._error is not None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()

    def abort(self, error: DeliveryError) -> None:
        self._abort(error)

    # -- internals -----------------------------------------------------------

    def _deliver(self) -> None:
        if self._waiter is not None and self._ready:
            waiter, self._waiter = self._waiter, None
            self._cancel_timer()
            waiter.callback(self._ready.popleft())

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _timed_out(self) -> None:
        self._timer = None
        self._abort(DeliveryError("timed out waiting for the server"))

    def _abort(self, error: DeliveryError) -> None:
        if self._error is None:
            self._error = error
        if self.transport is not None:
            self.transport.abortConnection()


class _ClientFactory(Factory):
    def __init__(self, reactor: IReactorTime, timeout: float) -> None:
        self._reactor = reactor
        self._timeout = timeout

    def buildProtocol(self, addr: Any) -> RelayClient:  # noqa: N802
        client = RelayClient(self._reactor, self._timeout)
        client.factory = self
        return client


class _TLSFailed(DeliveryError):
    """The TLS handshake (or the EHLO right after it) failed."""


# -- the dialogue ---------------------------------------------------------------

#: What one transaction says about each recipient: the server's reply (to its
#: RCPT, to MAIL or DATA, or to the final "."), or why the attempt failed.
Results = dict[str, RemoteReply | DeliveryError]
#: The scheduler's side of a connection: the next job to send (None: no more
#: for now), and where each job's results go before the next job is taken.
NextJob = Callable[[], OutboundJob | None]
Record = Callable[[OutboundJob, Results, str], Awaitable[None]]
#: ``read_body(message_id, offset, length)``: a chunk of a queued body, empty
#: at the end; raises NotFound once the message has left the queue.
ReadBody = Callable[[int, int, int], Awaitable[bytes]]


def hop_endpoint(reactor: Any, hop: Hop) -> Any:
    """The default client endpoint for ``hop``: every address of its name."""
    return endpoints.HostnameEndpoint(
        reactor, hop.host, hop.port, timeout=CONNECT_TIMEOUT
    )


class Deliverer:
    """The client side as the scheduler sees it: deliver jobs over a hop.

    It opens the connection, runs a ClientSession over it and retries in
    plaintext at once when an opportunistic handshake fails. ``connect(hop)``
    returns a client endpoint; ``read_body`` reads queued bodies, so the
    client never sees the store or the queue.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        config: OutboundConfig,
        hostname: str,
        read_body: ReadBody,
        connect: Callable[[Hop], Any],
    ) -> None:
        self._reactor = reactor
        self._config = config
        self._hostname = hostname
        self._read_body = read_body
        self._connect = connect
        self._clients: set[RelayClient] = set()

    async def deliver(self, hop: Hop, next_job: NextJob, record: Record) -> bool:
        """Send jobs from ``next_job`` over one connection to ``hop``, each
        job's results given to ``record`` before the next job is taken.

        Raises DeliveryError if it fails before the first transaction (the
        scheduler tries the next hop); returns whether any job was finished.
        """
        try:
            return await self._connection(hop, next_job, record)
        except _TLSFailed as e:
            # Opportunistic TLS (RFC 7435) as Postfix does it: a failed
            # handshake is retried at once in plaintext.
            log.info(
                "outbound: TLS with {hop} failed ({error}), retrying without TLS",
                hop=hop,
                error=e,
            )
            plain = dataclasses.replace(hop, tls=TLSLevel.NONE)
            return await self._connection(plain, next_job, record)

    def abort(self, error: DeliveryError) -> None:
        """Drop every open connection (shutdown): the results so far stand,
        the transactions in flight fail with ``error``."""
        for client in list(self._clients):
            client.abort(error)

    async def _connection(self, hop: Hop, next_job: NextJob, record: Record) -> bool:
        factory = _ClientFactory(self._reactor, self._config.timeout)
        try:
            client = await self._connect(hop).connect(factory)
        except Exception as e:
            raise DeliveryError(
                f"connect to {hop}: {_error_text(e)}", remote_mta=str(hop)
            ) from None
        self._clients.add(client)
        try:
            session = ClientSession(
                client, hop, self._config, self._hostname, self._read_body
            )
            return await session.run(next_job, record)
        finally:
            self._clients.discard(client)
            client.close()


class ClientSession:
    """The SMTP dialogue over one connected RelayClient, many messages.

    Greeting, EHLO (HELO if refused), STARTTLS as ``hop.tls`` says, AUTH
    when the hop has credentials (only over TLS), then one transaction per
    job up to ``[outbound] messages_per_connection``, RSET after a failed
    one, and QUIT.
    """

    def __init__(
        self,
        client: RelayClient,
        hop: Hop,
        config: OutboundConfig,
        hostname: str,
        read_body: ReadBody,
    ) -> None:
        self._client = client
        self._hop = hop
        self._config = config
        #: The name given in EHLO.
        self._hostname = hostname
        self._read_body = read_body
        #: ``host[address]`` of the server, for logs and DSNs.
        self.mta = _mta(client, hop)

    async def run(self, next_job: NextJob, record: Record) -> bool:
        """The whole session; see ``Deliverer.deliver``."""
        client, hop, mta = self._client, self._hop, self.mta

        def fail(
            text: str, reply: RemoteReply | None = None, status: str | None = None
        ) -> None:
            # Before any transaction every failure is the host's, not the
            # recipients': temporary, and the next MX host is tried.
            raise DeliveryError(f"{mta}: {text}", False, status, reply, mta)

        greeting = await client.reply()
        if greeting.code != 220:
            fail(f"greeted with {greeting.text}", greeting)
        extensions = await self._hello()
        if "STARTTLS" in extensions and hop.tls != TLSLevel.NONE:
            tls = client_tls(hop.host, hop.tls, self._config.smarthost_ca)
            reply = await client.starttls(tls)
            if reply.code == 220:
                try:
                    extensions = await self._hello()
                except DeliveryError as e:
                    if hop.tls == TLSLevel.MAY:
                        raise _TLSFailed(str(e), False, "4.7.5", None, mta)
                    raise
            elif hop.tls != TLSLevel.MAY:
                fail(f"STARTTLS refused: {reply.text}", reply, "4.7.4")
        elif hop.tls not in (TLSLevel.MAY, TLSLevel.NONE):
            fail(
                "TLS is required but the server does not offer STARTTLS", None, "4.7.4"
            )
        if hop.auth is not None:
            await self._authenticate(extensions)
        progressed = False
        done = 0
        while done < self._config.messages_per_connection:
            if client.failed:
                return progressed
            job = next_job()
            if job is None:
                break
            try:
                results = await self.transaction(job, extensions)
            except DeliveryError as e:
                await record(job, {r: e for r in job.recipients}, mta)
                return progressed
            await record(job, results, mta)
            progressed = True
            done += 1
        client.send(b"QUIT")
        try:
            await client.reply(10.0)
        except DeliveryError:
            pass
        return progressed

    async def _hello(self) -> set[str]:
        client = self._client
        name = self._hostname.encode("idna")
        client.send(b"EHLO " + name)
        reply = await client.reply()
        if reply.code == 250:
            # The extension keywords (RFC 5321 4.1.1.1), upper-case.
            return {
                line.split(b" ", 1)[0].decode("ascii", "replace").upper()
                for line in reply.lines[1:]
                if line.strip()
            }
        client.send(b"HELO " + name)
        reply = await client.reply()
        if reply.code != 250:
            raise DeliveryError(
                f"{self.mta}: refused HELO: {reply.text}",
                reply=reply,
                remote_mta=self.mta,
            )
        return set()

    async def _authenticate(self, extensions: set[str]) -> None:
        client, hop, mta = self._client, self._hop, self.mta
        assert hop.auth is not None
        if not client.tls:
            raise DeliveryError(
                f"{mta}: not sending credentials without TLS", status="4.7.4"
            )
        user, password = (s.encode("utf-8") for s in hop.auth)
        if "AUTH" not in extensions:
            raise DeliveryError(f"{mta}: smart host offers no AUTH", status="4.7.0")
        client.send(b"AUTH PLAIN " + base64.b64encode(b"\0" + user + b"\0" + password))
        reply = await client.reply()
        if reply.code != 235:
            raise DeliveryError(
                f"{mta}: AUTH refused: {reply.text}", reply=reply, remote_mta=mta
            )

    async def transaction(self, job: OutboundJob, extensions: set[str]) -> Results:
        """MAIL, RCPT..., DATA and the body; a RemoteReply per recipient.

        Raises DeliveryError when the connection fails mid-transaction: then
        no recipient has an answer of its own.
        """
        client = self._client
        mail = b"MAIL FROM:" + _address(job.sender)
        if "SIZE" in extensions:
            mail += b" SIZE=%d" % job.size
        if "8BITMIME" in extensions:
            mail += b" BODY=8BITMIME"
        rcpts = [b"RCPT TO:" + _address(r) for r in job.recipients]
        results: Results = {}
        if "PIPELINING" in extensions:
            client.send(mail, *rcpts)
            mail_reply = await client.reply()
            rcpt_replies = []
            for _ in rcpts:
                try:
                    rcpt_replies.append(await client.reply())
                except DeliveryError:
                    if mail_reply.code == 250:
                        raise
                    break  # e.g. 421 to MAIL, then the server hung up
        else:
            client.send(mail)
            mail_reply = await client.reply()
            rcpt_replies = []
            if mail_reply.code == 250:
                for rcpt in rcpts:
                    client.send(rcpt)
                    rcpt_replies.append(await client.reply())
        if mail_reply.code != 250:
            await self._reset()
            return {r: mail_reply for r in job.recipients}
        accepted = []
        for recipient, reply in zip(job.recipients, rcpt_replies, strict=True):
            if 200 <= reply.code < 300:
                accepted.append(recipient)
            else:
                results[recipient] = reply
        if not accepted:
            await self._reset()
            return results
        client.send(b"DATA")
        reply = await client.reply()
        if reply.code != 354:
            await self._reset()
            results.update({r: reply for r in accepted})
            return results
        await self._send_body(job)
        reply = await client.reply(FINAL_REPLY_TIMEOUT)
        results.update({r: reply for r in accepted})
        return results

    async def _send_body(self, job: OutboundJob) -> None:
        client = self._client
        stuffer = DotStuffer()
        offset = 0
        client.start_body()
        try:
            while True:
                try:
                    data = await self._read_body(job.message_id, offset, CHUNK)
                except NotFound:
                    # Deleted by an operator mid-delivery: drop the connection
                    # so the server discards the partial message.
                    error = DeliveryError("message deleted from the queue")
                    client.abort(error)
                    raise error from None
                if not data:
                    break
                offset += len(data)
                paused = client.write_body(stuffer.feed(data))
                if paused is not None:
                    await paused
            client.write_body(stuffer.finish())
        finally:
            client.end_body()

    async def _reset(self) -> None:
        """RSET after a failed transaction; a connection that cannot take
        another one is closed (the results so far stand)."""
        client = self._client
        if client.failed:
            return
        client.send(b"RSET")
        try:
            reply = await client.reply()
        except DeliveryError:
            return
        if reply.code != 250:
            client.abort(DeliveryError(f"RSET refused: {reply.text}"))


def _address(text: str) -> bytes:
    return b"<" + text.encode("utf-8") + b">"


def _mta(client: RelayClient, hop: Hop) -> str:
    """``host[address]`` of the server, for logs and DSNs."""
    try:
        peer = client.transport.getPeer().host
    except AttributeError:
        return hop.host
    return hop.host if peer == hop.host else f"{hop.host}[{peer}]"


def _error_text(e: BaseException) -> str:
    """``Connection refused``, not Twisted's wrapped exception text."""
    inner = getattr(e, "socketError", None) or getattr(e, "osError", None)
    if isinstance(inner, OSError) and inner.strerror:
        return inner.strerror
    if isinstance(inner, int):
        return os.strerror(inner)
    return str(e).strip() or e.__class__.__name__
