"""The outbound relay: deliver queued mail to the rest of the Internet.

``OutboundService`` (the ``outbound`` child of the service tree) claims due
recipients from the store's outbound queue with a lease, groups them by
destination domain, and delivers each domain's messages over as few SMTP
connections as the limits allow (``[outbound] max_connections`` overall,
``max_connections_per_domain`` per domain; one connection carries many
messages). The next hop is a ``[routes]`` entry, else the smart host, else
the domain's MX records (RFC 5321 section 5.1: the A/AAAA record when there
is no MX; a null MX, RFC 7505, fails at once).

Every recipient's result is recorded on its own: ``delivered``, ``failed``
(5xx, or expired) or ``queued`` again with a back-off growing from
``retry_min`` (5 minutes) to ``retry_max`` (an hour) until ``lifetime``
(5 days). Once no recipient of a message is left queued, the message leaves
the queue and, if any recipient failed and the sender is not the null
sender, one DSN (``zpop.dsn``) is stored in the same transaction. A crash at
any moment loses nothing: claims are leases that run out, and a message
whose 250 was lost is sent again (a duplicate, never a loss).

Why not twisted.mail's client: ``SMTPClient``/``ESMTPClient`` are built
around one message per ``SMTPSenderFactory`` and one result per message,
where zpop needs per-recipient results and many messages per connection;
their ``transformChunk`` misses a leading dot split across chunk boundaries
(and turns CRLF into CR CR LF); and ``esmtpState_starttls`` starts TLS with
whatever the server sent after its 220 still in the line buffer, so a
man-in-the-middle can inject replies that are read as if they came over TLS.
``RelayClient`` is a compact LineReceiver that gets those right.

TLS (RFC 3207, RFC 7435): to MX hosts and routes zpop is opportunistic by
default (STARTTLS when offered, certificate not checked: an unauthenticated
but encrypted channel beats plaintext, and MX certificates cannot be checked
without DANE or MTA-STS); ``require_tls`` makes STARTTLS mandatory. A smart
host is one known server, so its certificate is verified by default
(``smarthost_tls = verify``). Always TLS 1.2 or newer.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import random
import re
import socket
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from OpenSSL import SSL
from twisted.application.service import Service
from twisted.internet import defer, endpoints
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IOpenSSLClientConnectionCreator,
    IReactorTime,
)
from twisted.internet.protocol import Factory
from twisted.internet.ssl import (
    Certificate,
    TLSVersion,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from zpop import owners
from zpop.config import Config
from zpop.dsn import SUBJECT, build_dsn
from zpop.store import IStore, NotFound
from zpop.store.interface import Bounce, OutboundJob, RecipientResult

log = Logger()

#: Bytes of a queued body read from the store at a time.
CHUNK = 64 * 1024
#: Recipients claimed per scan, and the most waiting in memory.
CLAIM_BATCH = 500
#: Longest reply line, and most lines in one reply, accepted from a server.
MAX_REPLY_LINE = 4096
MAX_REPLY_LINES = 100
#: RFC 5321 section 4.5.3.2.6: wait at least 10 minutes for the reply to ".".
FINAL_REPLY_TIMEOUT = 600.0
#: Most MX hosts tried per attempt (Postfix: smtp_mx_address_limit = 5).
MAX_HOPS = 5
CONNECT_TIMEOUT = 30.0

_EOL = re.compile(rb"\r\n|\r|\n")
# Faster than bytes.replace for this pattern (see zpop.pop3).
_DOT_LINE = re.compile(rb"\r\n\.")
_ENHANCED = re.compile(rb"^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")


# -- the body on the wire -----------------------------------------------------


class DotStuffer:
    """Encodes a message for DATA, one chunk at a time (RFC 5321 4.5.2).

    Every line end (CR, LF, CRLF) becomes CRLF, a line starting with "."
    gets another "." wherever the chunks happen to be cut (state carries the
    line start and a trailing CR across calls), and ``finish`` ends the last
    line and adds the terminating ".": no body can end the DATA early.
    """

    def __init__(self) -> None:
        self._line_start = True
        self._cr = False

    def feed(self, data: bytes) -> bytes:
        if self._cr and data[:1] == b"\n":
            data = data[1:]  # the LF of a CRLF cut between two chunks
            self._cr = False
        if not data:
            return b""
        self._cr = data.endswith(b"\r")
        text = _EOL.sub(b"\r\n", data)
        if self._line_start and text[:1] == b".":
            text = b"." + text
        text = _DOT_LINE.sub(b"\r\n..", text)
        self._line_start = text.endswith(b"\r\n")
        return text

    def finish(self) -> bytes:
        return b".\r\n" if self._line_start else b"\r\n.\r\n"


def dot_stuff(body: bytes, chunk: int = CHUNK) -> bytes:
    """The whole DATA payload for ``body`` (tests and small bodies)."""
    stuffer = DotStuffer()
    out = [stuffer.feed(body[i : i + chunk]) for i in range(0, len(body), chunk)]
    return b"".join(out) + stuffer.finish()


# -- replies and errors -------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One (possibly multi-line) SMTP reply."""

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
        reply: Reply | None = None,
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
        self._ready: deque[Reply] = deque()
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
        reply = Reply(int(line[:3]), tuple(x[4:] for x in self._lines))
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
        """Fires with the next Reply; fails DeliveryError on loss/timeout."""
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


# -- TLS for the client side --------------------------------------------------


@implementer(IOpenSSLClientConnectionCreator)
class _OpportunisticTLS:
    """Client TLS without certificate checks (RFC 7435), TLS 1.2+, with SNI."""

    def __init__(self, hostname: str) -> None:
        self._hostname = hostname
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION)
        ctx.set_verify(SSL.VERIFY_NONE, lambda *args: True)
        self._context = ctx

    def getContext(self) -> SSL.Context:  # noqa: N802 - IOpenSSLContextFactory
        return self._context

    def clientConnectionForTLS(self, tls_protocol: Any) -> SSL.Connection:  # noqa: N802
        connection = SSL.Connection(self._context, None)
        if not _is_ip(self._hostname):
            connection.set_tlsext_host_name(self._hostname.encode("idna"))
        connection.set_connect_state()
        return connection


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


def _load_trust(path: str) -> Any:
    """The CA certificates in PEM file ``path`` as a Twisted trust root."""
    with open(path, encoding="ascii") as f:
        text = f.read()
    blocks = re.findall(
        r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", text, re.S
    )
    if not blocks:
        raise ValueError(f"no PEM certificate in {path}")
    return trustRootFromCertificates([Certificate.loadPEM(b) for b in blocks])


class _TLSFailed(DeliveryError):
    """The TLS handshake (or the EHLO right after it) failed."""


# -- routing ------------------------------------------------------------------


@dataclass(frozen=True)
class Hop:
    """One server to try for a domain, and how to talk to it."""

    host: str
    port: int
    #: ``may`` (STARTTLS if offered), ``encrypt`` (required, unchecked),
    #: ``verify`` (required, certificate checked against ``host``), ``none``
    #: (plaintext: the retry after a failed opportunistic handshake).
    tls: str = "may"
    #: (user, password) for AUTH, only ever sent over TLS.
    auth: tuple[str, str] | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class Router:
    """Where mail for a domain goes: [routes], the smart host, or MX."""

    mx_port = 25

    def __init__(self, config: Config, resolver: Any = None) -> None:
        self._config = config
        self._resolver = resolver
        self._auth: tuple[str, str] | None = None
        if config.outbound_smarthost and config.outbound_smarthost_user:
            password = ""
            if config.outbound_smarthost_password_file:
                with open(config.outbound_smarthost_password_file, "rb") as f:
                    password = f.readline().rstrip(b"\r\n").decode("utf-8")
            self._auth = (config.outbound_smarthost_user, password)

    @property
    def _mx_tls(self) -> str:
        return "encrypt" if self._config.outbound_require_tls else "may"

    def route(self, domain: str) -> Deferred:
        """Fires with the Hops to try, in order; fails DeliveryError."""
        pinned = self._config.outbound_routes.get(domain)
        if pinned is not None:
            return defer.succeed([Hop(pinned[0], pinned[1], self._mx_tls)])
        smarthost = self._config.outbound_smarthost
        if smarthost is not None:
            return defer.succeed(
                [
                    Hop(
                        smarthost[0],
                        smarthost[1],
                        self._config.outbound_smarthost_tls,
                        self._auth,
                    )
                ]
            )
        return Deferred.fromCoroutine(self._mx(domain))

    async def _mx(self, domain: str) -> list[Hop]:
        from twisted.names import dns, error

        if self._resolver is None:
            from twisted.names import client

            self._resolver = client.createResolver()
        try:
            answers, _, _ = await self._resolver.lookupMailExchange(domain)
        except error.DNSNameError:
            raise DeliveryError(
                f"domain {domain} does not exist (DNS)", True, "5.1.2"
            ) from None
        except Exception as e:  # DNS server failures and timeouts
            raise DeliveryError(
                f"DNS lookup of MX for {domain} failed: {e.__class__.__name__}",
                status="4.4.3",
            ) from None
        records = [
            (a.payload.preference, str(a.payload.name).rstrip(".").lower())
            for a in answers
            if a.type == dns.MX
        ]
        if not records:
            # RFC 5321 5.1: no MX, the domain itself is the host (A/AAAA).
            return [Hop(domain, self.mx_port, self._mx_tls)]
        if any(name == "" for _, name in records):
            # RFC 7505 null MX: the domain accepts no mail.
            raise DeliveryError(
                f"domain {domain} accepts no mail (null MX)", True, "5.1.10"
            )
        random.shuffle(records)  # RFC 5321 5.1: spread equal preferences
        records.sort(key=lambda r: r[0])
        hosts = list(dict.fromkeys(name for _, name in records))[:MAX_HOPS]
        return [Hop(name, self.mx_port, self._mx_tls) for name in hosts]


# -- scheduling ---------------------------------------------------------------


def retry_delay(attempts: int, minimum: float, maximum: float) -> float:
    """Back-off after ``attempts`` failed attempts: doubling from ``minimum``
    up to ``maximum`` (300, 600, 1200, 2400, 3600, 3600, ...)."""
    return min(minimum * 2 ** max(attempts - 1, 0), maximum)


def outcome(
    recipient: str,
    attempts: int,
    now: float,
    expires: float,
    config: Config,
    reply: Reply | None = None,
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
    delay = retry_delay(attempts, config.outbound_retry_min, config.outbound_retry_max)
    return RecipientResult(
        recipient,
        "queued",
        min(now + delay, expires),
        text,
        status,
        remote_mta,
        diagnostic,
    )


# -- the service ---------------------------------------------------------------


def _address(text: str) -> bytes:
    return b"<" + text.encode("utf-8") + b">"


class OutboundService(Service):
    """Delivers the outbound queue; child ``outbound`` of the service tree.

    ``reactor`` connects and times out sessions; ``clock`` (default: the
    reactor) tells the time and schedules scans, so tests drive the retry
    schedule with a ``Clock``. ``connect(hop)`` returns a client endpoint
    (default: ``HostnameEndpoint``).
    """

    def __init__(
        self,
        store: IStore,
        config: Config,
        reactor: Any,
        clock: IReactorTime | None = None,
        resolver: Any = None,
        connect: Callable[[Hop], Any] | None = None,
        owner: str | None = None,
    ) -> None:
        self.setName("outbound")
        self._store = store
        self._config = config
        self._reactor = reactor
        self._clock = clock if clock is not None else reactor
        self._resolver = resolver
        self._connect = connect or self._default_connect
        self.owner = owner or owners.current_owner()
        self.router: Router | None = None
        self._router_error: str | None = None
        self._waiting: dict[str, deque[OutboundJob]] = {}
        self._per_domain: dict[str, int] = {}
        self._active = 0
        self._workers: set[Deferred] = set()
        self._clients: set[RelayClient] = set()
        self._finalizing: set[int] = set()
        self._scan: Deferred | None = None
        self._again = False
        self._loops: list[LoopingCall] = []
        self._stopping = False
        self._first: IDelayedCall | None = None
        self._claimed = False

    # -- life cycle --------------------------------------------------------

    def _make_router(self) -> None:
        try:
            self.router = Router(self._config, self._resolver)
        except (OSError, UnicodeDecodeError) as e:
            self._router_error = f"cannot read the smart host password file: {e}"
            log.error("outbound: {error}", error=self._router_error)

    def startService(self) -> None:  # noqa: N802
        super().startService()
        self._stopping = False
        self._make_router()
        for interval, job in (
            (self._config.outbound_scan_interval, self._tick),
            (self._config.outbound_lease / 3, self._renew),
        ):
            loop = LoopingCall(job)
            loop.clock = self._clock
            loop.start(interval, now=False).addErrback(
                lambda f: log.failure("outbound loop stopped", f)
            )
            self._loops.append(loop)
        # The first scan as soon as the reactor runs (not inside startService),
        # after taking back what a crashed process of this host held.
        self._first = self._clock.callLater(0, self._recover)
        log.info("outbound relay started as {owner}", owner=self.owner)

    def _recover(self) -> None:
        d = owners.release_dead_leases(self._store)
        d.addErrback(lambda f: log.failure("outbound: releasing dead leases", f))
        d.addBoth(lambda _: self._tick())

    def stopService(self) -> Deferred:  # noqa: N802
        super().stopService()
        self._stopping = True
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops = []
        if self._first is not None and self._first.active():
            self._first.cancel()
        for client in list(self._clients):
            client.abort(DeliveryError("zpop is shutting down"))
        # Interrupted recipients are not counted as attempts: release them so
        # the next start retries at once.
        if not self._claimed:
            return defer.succeed(None)
        d = defer.DeferredList(list(self._workers), consumeErrors=True)
        d.addCallback(lambda _: self._store.release_outbound_leases(self.owner))
        d.addErrback(lambda f: log.failure("outbound: releasing leases", f))
        return d

    def wake(self) -> None:
        """Scan now rather than at the next tick: a message was just queued."""
        if self.running and not self._stopping:
            self._clock.callLater(0, self._tick)

    def _tick(self) -> Deferred | None:
        if self._scan is not None:
            self._again = True
            return None
        d = self.run_once(wait=False)
        d.addErrback(lambda f: log.failure("outbound scan failed", f))
        return None

    def _renew(self) -> Deferred:
        d = self._store.renew_outbound_leases(
            self.owner, self._clock.seconds(), self._config.outbound_lease
        )
        d.addErrback(lambda f: log.failure("outbound: renewing leases", f))
        return d

    # -- scanning ---------------------------------------------------------

    def run_once(self, wait: bool = True) -> Deferred:
        """Claim due work, start deliveries, finish completed messages.

        With ``wait`` the Deferred fires once every delivery started so far
        has been recorded (tests); the timer loop does not wait.
        """
        if self.router is None and self._router_error is None:
            self._make_router()
        d = Deferred.fromCoroutine(self._run_once())
        self._scan = d

        def done(result: object) -> object:
            self._scan = None
            if self._again:
                # Woken while scanning: what was queued meanwhile goes now.
                self._again = False
                self._clock.callLater(0, self._tick)
            return result

        d.addBoth(done)
        if wait:
            d.addCallback(lambda _: self.idle())
        return d

    def idle(self) -> Deferred:
        """Fires when no delivery is running (including ones they start)."""

        async def wait() -> None:
            while self._workers or self._finalizing:
                await defer.DeferredList(list(self._workers), consumeErrors=True)
                if self._finalizing:
                    await self._finish_all()

        return Deferred.fromCoroutine(wait())

    async def _run_once(self) -> None:
        await self._finish_all()
        waiting = sum(len(q) for q in self._waiting.values())
        if waiting < CLAIM_BATCH and not self._stopping:
            jobs = await self._store.claim_outbound(
                self.owner,
                self._clock.seconds(),
                self._config.outbound_lease,
                CLAIM_BATCH - waiting,
            )
            for job in jobs:
                self._claimed = True
                self._waiting.setdefault(job.domain, deque()).append(job)
            if jobs:
                log.info("outbound: claimed {count} deliveries", count=len(jobs))
        self._dispatch()

    async def _finish_all(self) -> None:
        for message_id in await self._store.finished_outbound(100):
            await self._finalize(message_id)

    def _dispatch(self) -> None:
        if self._stopping:
            return
        for domain, queue in list(self._waiting.items()):
            while (
                queue
                and self._active < self._config.outbound_max_connections
                and self._per_domain.get(domain, 0)
                < self._config.outbound_max_per_domain
            ):
                self._start_worker(domain)
                if len(queue) <= self._per_domain[domain]:
                    break
            if not queue and not self._per_domain.get(domain):
                del self._waiting[domain]

    def _start_worker(self, domain: str) -> None:
        self._active += 1
        self._per_domain[domain] = self._per_domain.get(domain, 0) + 1
        d = Deferred.fromCoroutine(self._worker(domain))
        self._workers.add(d)

        def finished(result: object) -> None:
            self._workers.discard(d)
            self._active -= 1
            self._per_domain[domain] -= 1
            if not self._per_domain[domain]:
                del self._per_domain[domain]
                if not self._waiting.get(domain):
                    self._waiting.pop(domain, None)
            if isinstance(result, Failure):
                log.failure("outbound worker for {domain}", result, domain=domain)
            self._dispatch()

        d.addBoth(finished)

    # -- one domain -------------------------------------------------------

    def _next_job(self, domain: str) -> OutboundJob | None:
        queue = self._waiting.get(domain)
        if not queue or self._stopping:
            return None
        return queue.popleft()

    async def _worker(self, domain: str) -> None:
        """Deliver ``domain``'s waiting jobs over one connection at a time."""
        while not self._stopping and self._waiting.get(domain):
            if self.router is None:
                error = DeliveryError(self._router_error or "no router")
                await self._fail_waiting(domain, error)
                return
            try:
                hops = await self.router.route(domain)
            except DeliveryError as e:
                await self._fail_waiting(domain, e)
                return
            last: DeliveryError | None = None
            progressed = False
            for hop in hops:
                try:
                    try:
                        progressed = await self._connection(domain, hop)
                    except _TLSFailed as e:
                        # Opportunistic TLS (RFC 7435) as Postfix does it: a
                        # failed handshake is retried at once in plaintext.
                        log.info(
                            "outbound: TLS with {hop} failed ({error}),"
                            " retrying without TLS",
                            hop=hop,
                            error=e,
                        )
                        plain = dataclasses.replace(hop, tls="none")
                        progressed = await self._connection(domain, plain)
                except DeliveryError as e:
                    last = e
                    continue
                break
            else:
                if last is not None:
                    await self._fail_waiting(domain, last)
                return
            if not progressed:
                return

    async def _fail_waiting(self, domain: str, error: DeliveryError) -> None:
        """Record ``error`` for every waiting job of ``domain``."""
        while True:
            job = self._next_job(domain)
            if job is None:
                return
            await self._record(job, {r: error for r in job.recipients})

    async def _connection(self, domain: str, hop: Hop) -> bool:
        """One SMTP connection to ``hop`` delivering ``domain``'s jobs.

        Raises DeliveryError if it fails before the first transaction (try
        the next hop); returns whether any job was finished.
        """
        factory = _ClientFactory(self._reactor, self._config.outbound_timeout)
        try:
            client = await self._connect(hop).connect(factory)
        except Exception as e:
            raise DeliveryError(
                f"connect to {hop}: {_error_text(e)}", remote_mta=str(hop)
            ) from None
        self._clients.add(client)
        try:
            return await self._session(client, domain, hop)
        finally:
            self._clients.discard(client)
            client.close()

    async def _session(self, client: RelayClient, domain: str, hop: Hop) -> bool:
        mta = _mta(client, hop)

        def fail(
            text: str, reply: Reply | None = None, status: str | None = None
        ) -> None:
            # Before any transaction every failure is the host's, not the
            # recipients': temporary, and the next MX host is tried.
            raise DeliveryError(f"{mta}: {text}", False, status, reply, mta)

        greeting = await client.reply()
        if greeting.code != 220:
            fail(f"greeted with {greeting.text}", greeting)
        extensions = await self._hello(client, mta)
        if "STARTTLS" in extensions and hop.tls != "none":
            reply = await client.starttls(self._tls_for(hop))
            if reply.code == 220:
                try:
                    extensions = await self._hello(client, mta)
                except DeliveryError as e:
                    if hop.tls == "may":
                        raise _TLSFailed(str(e), False, "4.7.5", None, mta)
                    raise
            elif hop.tls != "may":
                fail(f"STARTTLS refused: {reply.text}", reply, "4.7.4")
        elif hop.tls not in ("may", "none"):
            fail(
                "TLS is required but the server does not offer STARTTLS", None, "4.7.4"
            )
        if hop.auth is not None:
            await self._authenticate(client, hop, extensions, mta)
        progressed = False
        done = 0
        while done < self._config.outbound_messages_per_connection:
            if client.failed:
                return progressed
            job = self._next_job(domain)
            if job is None:
                break
            try:
                results = await self._transaction(client, job, extensions, mta)
            except DeliveryError as e:
                await self._record(job, {r: e for r in job.recipients}, mta)
                return progressed
            await self._record(job, results, mta)
            progressed = True
            done += 1
        client.send(b"QUIT")
        try:
            await client.reply(10.0)
        except DeliveryError:
            pass
        return progressed

    async def _hello(self, client: RelayClient, mta: str) -> set[str]:
        name = self._config.smtp_host.encode("idna")
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
                f"{mta}: refused HELO: {reply.text}", reply=reply, remote_mta=mta
            )
        return set()

    def _tls_for(self, hop: Hop) -> Any:
        if hop.tls != "verify":
            return _OpportunisticTLS(hop.host)
        ca = self._config.outbound_smarthost_ca
        trust = _load_trust(ca) if ca else platformTrust()
        return optionsForClientTLS(
            hop.host,
            trustRoot=trust,
            extraCertificateOptions={"raiseMinimumTo": TLSVersion.TLSv1_2},
        )

    async def _authenticate(
        self, client: RelayClient, hop: Hop, extensions: set[str], mta: str
    ) -> None:
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

    async def _transaction(
        self, client: RelayClient, job: OutboundJob, extensions: set[str], mta: str
    ) -> dict[str, Reply | DeliveryError]:
        """MAIL, RCPT..., DATA and the body; a Reply per recipient."""
        mail = b"MAIL FROM:" + _address(job.sender)
        if "SIZE" in extensions:
            mail += b" SIZE=%d" % job.size
        if "8BITMIME" in extensions:
            mail += b" BODY=8BITMIME"
        rcpts = [b"RCPT TO:" + _address(r) for r in job.recipients]
        results: dict[str, Reply | DeliveryError] = {}
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
            await self._reset(client)
            return {r: mail_reply for r in job.recipients}
        accepted = []
        for recipient, reply in zip(job.recipients, rcpt_replies, strict=True):
            if 200 <= reply.code < 300:
                accepted.append(recipient)
            else:
                results[recipient] = reply
        if not accepted:
            await self._reset(client)
            return results
        client.send(b"DATA")
        reply = await client.reply()
        if reply.code != 354:
            await self._reset(client)
            results.update({r: reply for r in accepted})
            return results
        await self._send_body(client, job, mta)
        reply = await client.reply(FINAL_REPLY_TIMEOUT)
        results.update({r: reply for r in accepted})
        return results

    async def _send_body(self, client: RelayClient, job: OutboundJob, mta: str) -> None:
        stuffer = DotStuffer()
        offset = 0
        client.start_body()
        try:
            while True:
                try:
                    data = await self._store.read_outbound_body(
                        job.message_id, offset, CHUNK
                    )
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

    async def _reset(self, client: RelayClient) -> None:
        """RSET after a failed transaction; a connection that cannot take
        another one is closed (the results so far stand)."""
        if client.failed:
            return
        client.send(b"RSET")
        try:
            reply = await client.reply()
        except DeliveryError:
            return
        if reply.code != 250:
            client.abort(DeliveryError(f"RSET refused: {reply.text}"))

    # -- results ------------------------------------------------------------

    async def _record(
        self,
        job: OutboundJob,
        results: dict[str, Any],
        mta: str | None = None,
    ) -> None:
        if self._stopping and all(
            isinstance(r, DeliveryError) for r in results.values()
        ):
            return  # interrupted by shutdown: not an attempt
        now = self._clock.seconds()
        rows = []
        for recipient, attempts in zip(job.recipients, job.attempts, strict=True):
            result = results[recipient]
            rows.append(
                outcome(
                    recipient,
                    attempts + 1,
                    now,
                    job.expires,
                    self._config,
                    reply=result if isinstance(result, Reply) else None,
                    error=result if isinstance(result, DeliveryError) else None,
                    remote_mta=mta,
                )
            )
        for row in rows:
            log.info(
                "outbound {id} to={recipient} state={state} {error}",
                id=job.message_id,
                recipient=row.recipient,
                state=row.state,
                error=row.error or f"via {row.remote_mta}",
            )
        complete = await self._store.record_outbound_results(
            self.owner, job.message_id, rows, now
        )
        if complete:
            await self._finalize(job.message_id)

    async def _finalize(self, message_id: int) -> None:
        """Remove a message whose recipients are all final; bounce failures."""
        if message_id in self._finalizing:
            return
        self._finalizing.add(message_id)
        try:
            try:
                message = await self._store.get_outbound(message_id)
            except NotFound:
                return
            failed = [r for r in message.recipients if r.state == "failed"]
            bounce = None
            if failed and message.sender:
                head = await self._store.read_outbound_body(message_id, 0, 65536)
                now = self._clock.seconds()
                body = build_dsn(
                    self._config.smtp_host,
                    message.sender,
                    failed,
                    head,
                    message.created,
                    now,
                )
                bounce = Bounce(
                    message.sender,
                    body,
                    SUBJECT,
                    now,
                    now + self._config.queue_lifetime,
                )
            where = await self._store.finish_outbound(message_id, bounce)
            log.info(
                "outbound {id} done: delivered={delivered} failed={failed}"
                " bounce={where}",
                id=message_id,
                delivered=len(message.recipients) - len(failed),
                failed=len(failed),
                where=where if failed else "none",
            )
        except NotFound:
            return
        finally:
            self._finalizing.discard(message_id)

    def _default_connect(self, hop: Hop) -> Any:
        return endpoints.HostnameEndpoint(
            self._reactor, hop.host, hop.port, timeout=CONNECT_TIMEOUT
        )


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


__all__: Sequence[str] = ("OutboundService", "DotStuffer", "Router", "Hop")
