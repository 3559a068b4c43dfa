"""POP3 (RFC 1939, 2449, 2595, 3206, 5034) on twisted.mail's POP3 protocol.

Upstream ``twisted.mail.pop3.POP3`` supplies the shape (state machine,
``do_*`` dispatch, TimeoutMixin, blocking further commands while one is
pending). zpop replaces what upstream gets wrong; each override says what
upstream lacks.
"""

from __future__ import annotations

import binascii
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from twisted.cred.error import LoginFailed
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.mail import pop3
from twisted.python.failure import Failure

from zpop import metrics, sasl, tls
from zpop.accounts.credentials import LoginRefused
from zpop.accounts.maildrop import NotFound, StorageFull
from zpop.accounts.realm import Session
from zpop.commands import CommandRunner
from zpop.config import Config
from zpop.retrieval import CHUNK_SIZE, BodyProducer, BodyTransform, Prefetched

log = Logger()

#: Over-long lines tolerated in one session before it is closed.
MAX_LONG_LINES = 3
#: Failed logins in one session before it is closed.
MAX_LOGIN_FAILURES = 3

_NUMBER = re.compile(rb"^[0-9]{1,10}$")

# Commands each state accepts; other known commands get a state error.
_AUTHORIZATION = {"CAPA", "USER", "PASS", "AUTH", "STLS", "QUIT"}
_TRANSACTION = {
    "CAPA",
    "STAT",
    "LIST",
    "RETR",
    "DELE",
    "NOOP",
    "RSET",
    "QUIT",
    "TOP",
    "UIDL",
}
# (least, most) arguments; PASS takes the rest of the line as one argument.
_ARITY = {
    "CAPA": (0, 0),
    "USER": (1, 1),
    "PASS": (1, 1),
    "AUTH": (0, 2),
    "STLS": (0, 0),
    "QUIT": (0, 0),
    "STAT": (0, 0),
    "LIST": (0, 1),
    "RETR": (1, 1),
    "DELE": (1, 1),
    "NOOP": (0, 0),
    "RSET": (0, 0),
    "TOP": (2, 2),
    "UIDL": (0, 1),
}


_SASL_REFUSALS: dict[str, tuple[str, str | None]] = {
    sasl.CANCELLED: ("Authentication cancelled", None),
    sasl.BAD_BASE64: ("Invalid base64 in authentication response", None),
    sasl.OTHER_IDENTITY: ("Logging in as another user is not allowed", "AUTH"),
}


class Refusal(Exception):
    """The one error type handlers raise: rendered as ``-ERR [code] text``."""

    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code

    def render(self) -> bytes:
        prefix = f"[{self.code}] " if self.code else ""
        return f"-ERR {prefix}{self.text}".encode()


@dataclass(frozen=True)
class POP3Settings:
    """What a POP3 session uses of the configuration."""

    hostname: str
    idle_timeout: float
    login_deadline: float
    line_length: int
    #: The LOGIN-DELAY of each plan, seconds (0: none), for CAPA before
    #: login; after it, the mailbox's ``login_delay`` is the account's.
    login_delays: tuple[int, ...] = ()

    @classmethod
    def from_config(cls, config: Config) -> POP3Settings:
        return cls(
            hostname=config.server.hostname,
            idle_timeout=config.limits.pop_idle_timeout,
            login_deadline=config.auth.login_deadline,
            line_length=config.limits.line_length,
            login_delays=(config.pop.login_delay_free, config.pop.login_delay_paid),
        )

    def login_delay_capability(self) -> bytes | None:
        """CAPA's LOGIN-DELAY before login (RFC 2449 6.5), or None when no
        plan has one: the least delay, with ``USER`` when plans differ."""
        if not any(self.login_delays):
            return None
        least = min(self.login_delays)
        varies = len(set(self.login_delays)) > 1
        return b"LOGIN-DELAY %d%s" % (least, b" USER" if varies else b"")


class POP3Server(CommandRunner, sasl.Exchanges, pop3.POP3):
    """A POP3 server session, plaintext+STLS or inside implicit TLS."""

    # Upstream declares these None at class level; zpop sets them all.
    authenticator: Any
    transport: Any
    mbox: Any
    _userIs: Any
    _onLogout: Any
    settings: POP3Settings
    clock: IReactorTime
    #: The context factory for STLS, or None where STLS is not offered.
    stls_context: Any = None
    implicit_tls = False
    metrics_protocol = "pop3"

    def connectionMade(self) -> None:
        # Upstream greets with an APOP timestamp, which invites a login whose
        # secret must be stored in plaintext; zpop offers no APOP.
        self.callLater = self.clock.callLater  # type: ignore[method-assign,assignment]
        self._buffer = b""
        self._pos = 0
        self._long_lines = 0
        self._login_failures = 0
        self._processing = False
        self._waiting = False
        self._reading_paused = False
        self._closing = False
        self._disconnected = False
        self._tls_active = self.implicit_tls
        self._sasl: Callable[[bytes], Any] | None = None
        self._account = "-"
        self._retrieved = 0
        self._retrieved_bytes = 0
        self._deleted = 0
        self._tls_version: str | None = None
        self._ended = "dropped"
        self._started = time.monotonic()
        peer = self.transport.getPeer()
        self._client = getattr(peer, "host", str(peer))
        # Replies are small and come one per command: without TCP_NODELAY,
        # Nagle plus delayed ACKs stall each RETR/TOP by up to 200 ms.
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)
        self.successResponse(f"{self.settings.hostname} zpop POP3 server ready")
        self.setTimeout(self.settings.idle_timeout)
        # Against slowloris: commands may be slow, but a session that has
        # not logged in by the deadline is closed, whatever it trickles.
        self._login_deadline = self.clock.callLater(
            self.settings.login_deadline, self._login_too_late
        )

    def _login_too_late(self) -> None:
        self._ended = "login-deadline"
        self._close(b"-ERR [SYS/TEMP] Too slow to log in, closing the connection")

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._disconnected = True
        self._closed()
        self.setTimeout(None)
        if self._login_deadline.active():
            self._login_deadline.cancel()
        if self._onLogout is not None:
            self._onLogout()
            self._onLogout = None
        if self.mbox is not None:
            metrics.session_ended(self._listener())
        if self._tls_version is None and self._tls_active:
            # A session that never logged in still ran over TLS.
            self._tls_version = tls.tls_version(self.transport)
        log.info(
            "logout {account} client={client} tls={tls_version}"
            " retrieved={retrieved} bytes={octets} deleted={deleted} ended={ended}"
            " seconds={seconds:.3f}",
            account=self._account,
            client=self._client,
            tls_version=self._tls_version or "none",
            retrieved=self._retrieved,
            octets=self._retrieved_bytes,
            deleted=self._deleted if self._ended == "quit" else 0,
            ended=self._ended,
            seconds=time.monotonic() - self._started,
        )

    def timeoutConnection(self) -> None:
        self._ended = "timeout"
        self._close(b"-ERR [SYS/TEMP] Idle for too long, closing the connection")

    def _listener(self) -> str:
        return "pop3s" if self.implicit_tls else "pop3"

    def successResponse(self, message: Any = "") -> None:
        if isinstance(message, str):
            message = message.encode("utf-8")
        self.transport.write(b"+OK " + message + b"\r\n" if message else b"+OK\r\n")

    def _reply(self, line: bytes) -> None:
        self.transport.write(line + b"\r\n")

    def _close(self, line: bytes) -> None:
        if not self._closing:
            self._closing = True
            self._reply(line)
            self._lose_connection()

    # -- input: upstream's LineOnlyReceiver drops the connection on a long
    # line and buffers pipelined commands without bound while one is busy.

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        self._buffer += data
        self._process()

    def _process(self) -> None:
        # Lines are consumed by moving _pos and the buffer is cut once at
        # the end, so a packet of many pipelined commands costs linear time.
        if self._processing:
            return
        self._processing = True
        limit = self.settings.line_length
        try:
            while not self._waiting and not self._closing:
                newline = self._buffer.find(b"\n", self._pos)
                if newline < 0:
                    if len(self._buffer) - self._pos > limit:
                        # No client sends that much without a line break:
                        # close rather than read and discard it for minutes.
                        self._buffer, self._pos = b"", 0
                        self._ended = "abuse"
                        self._close(b"-ERR Line too long, closing the connection")
                    break
                line = self._buffer[self._pos : newline].rstrip(b"\r")
                self._pos = newline + 1
                if len(line) > limit:
                    self._line_too_long()
                    continue
                self.lineReceived(line)
        finally:
            self._buffer, self._pos = self._buffer[self._pos :], 0
            self._processing = False
        self._hold_input()

    def _line_too_long(self) -> None:
        self._long_lines += 1
        if self._long_lines >= MAX_LONG_LINES:
            self._ended = "abuse"
            self._close(b"-ERR Too many over-long lines, closing the connection")
        else:
            self._reply(b"-ERR Line too long")

    # -- running commands (zpop.commands): upstream's _longOperation never
    # unblocks a session whose operation failed.

    refusal = Refusal

    def _refuse(self, refusal: Refusal) -> None:
        self._reply(refusal.render())

    def _server_error(self, failure: Failure) -> None:
        log.failure(
            "POP3 command failed for {account} from {client}",
            failure,
            account=self._account,
            client=self._client,
        )
        self._reply(b"-ERR [SYS/TEMP] Temporary server error, try again later")

    def _idle_timeout(self) -> float:
        return self.settings.idle_timeout

    def lineReceived(self, line: bytes) -> None:
        self.resetTimeout()
        if self._sasl is not None:
            exchange, self._sasl = self._sasl, None
            self._run(exchange, line)
            return
        self.state_COMMAND(line)

    def state_COMMAND(self, line: bytes) -> None:
        # Upstream splits on single spaces, feeds arguments to handlers
        # unchecked and answers errors with Python exception names.
        word, _, rest = line.partition(b" ")
        name = word.decode("ascii", "replace").upper()
        if name not in _ARITY:
            printable = name.isalpha() and len(name) <= 8
            self._reply(
                b"-ERR Unknown command" + (b": " + name.encode() if printable else b"")
            )
            return
        allowed = _TRANSACTION if self.mbox is not None else _AUTHORIZATION
        if name not in allowed:
            if self.mbox is None:
                self._reply(b"-ERR Log in first")
            else:
                self._reply(b"-ERR Already logged in")
            return
        args = [rest] if name == "PASS" and rest else rest.split()
        least, most = _ARITY[name]
        if not least <= len(args) <= most:
            self._reply(self._usage(name))
            return
        handler = getattr(self, "do_" + name)
        if self._credentials_unsure():
            self._run(self._still_valid, handler, args)
        else:
            self._run(handler, *args)

    def _credentials_unsure(self) -> bool:
        """Whether the mailbox must look its credentials up before a command
        (``credentials_current`` answers without I/O when nothing changed)."""
        if self.mbox is None or not hasattr(self.mbox, "credentials_valid"):
            return False
        current = getattr(self.mbox, "credentials_current", None)
        return current is None or not current()

    async def _still_valid(
        self, handler: Callable[..., Any], args: list[bytes]
    ) -> None:
        """Run a command only while the session's credentials stand."""
        if not await self.mbox.credentials_valid():
            # Revoked mid-session: end it without applying its deletions,
            # releasing the maildrop before the client can log in again.
            self._ended = "revoked"
            logout, self._onLogout = self._onLogout, None
            if logout is not None:
                await maybeDeferred(logout)
            self._close(b"-ERR [AUTH] The password of this session was revoked")
            return
        result = handler(*args)
        if isinstance(result, (Coroutine, Deferred)):
            await result

    @staticmethod
    def _usage(name: str) -> bytes:
        usage = {
            "USER": "USER name",
            "PASS": "PASS password",
            "AUTH": "AUTH [mechanism [initial-response]]",
            "LIST": "LIST [message]",
            "UIDL": "UIDL [message]",
            "RETR": "RETR message",
            "DELE": "DELE message",
            "TOP": "TOP message lines",
        }.get(name, f"{name} with no arguments")
        return f"-ERR Wrong arguments, usage: {usage}".encode()

    # -- authorization --------------------------------------------------

    def _password_allowed(self) -> bool:
        return self._tls_active

    def listCapabilities(self) -> list[bytes]:
        # Upstream lists joke capabilities, misspells PIPELINING and offers
        # USER before TLS.
        caps = [b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING"]
        if self._password_allowed():
            caps += [b"USER", b"SASL PLAIN LOGIN"]
        elif self.stls_context is not None and self.mbox is None:
            caps.append(b"STLS")
        # LOGIN-DELAY only where it is enforced; after login the account's.
        if self.mbox is None:
            delay = self.settings.login_delay_capability()
            if delay is not None:
                caps.append(delay)
        elif getattr(self.mbox, "login_delay", 0) > 0:
            caps.append(b"LOGIN-DELAY %d" % self.mbox.login_delay)
        caps.append(b"IMPLEMENTATION zpop")
        return caps

    def do_CAPA(self) -> None:
        lines = [b"+OK Capability list follows", *self.listCapabilities(), b"."]
        self.transport.write(b"\r\n".join(lines) + b"\r\n")

    def _require_tls(self) -> None:
        if not self._password_allowed():
            raise Refusal("Log in only over TLS: issue STLS first", "AUTH")

    def do_STLS(self) -> None:
        if self._tls_active:
            raise Refusal("TLS is already active")
        if self.stls_context is None:
            raise Refusal("STLS is not offered here")
        self.successResponse("Begin TLS negotiation now")
        # RFC 2595: anything pipelined after STLS in plaintext is discarded,
        # never executed inside TLS; the login state starts over.
        self._buffer, self._pos = b"", 0
        self._userIs = None
        self.transport.startTLS(self.stls_context)
        self._tls_active = True

    def do_USER(self, user: bytes) -> None:
        self._require_tls()
        self._userIs = user
        self.successResponse("Send your password")

    def do_PASS(self, password: bytes) -> Deferred:
        self._require_tls()
        if self._userIs is None:
            raise Refusal("Send USER first")
        user, self._userIs = self._userIs, None
        return self._login(user, password)

    def do_AUTH(
        self, mechanism: bytes | None = None, initial: bytes | None = None
    ) -> None:
        self._require_tls()
        if mechanism is None:
            self.transport.write(b"+OK Mechanisms follow\r\nPLAIN\r\nLOGIN\r\n.\r\n")
            return
        name = mechanism.upper()
        if name == b"PLAIN":
            if initial is None:
                self._challenge(b"", self._sasl_plain)
            else:
                self._run(self._sasl_plain, initial)
        elif name == b"LOGIN":
            if initial is None:
                self._challenge(b"Username:", self._sasl_login_user)
            else:
                self._run(self._sasl_login_user, initial)
        else:
            raise Refusal("Unsupported authentication mechanism: use PLAIN or LOGIN")

    def _challenge(self, text: bytes, next_step: Callable[[bytes], Any]) -> None:
        self._reply(b"+ " + binascii.b2a_base64(text, newline=False))
        self._sasl = next_step

    @staticmethod
    def _sasl_parse(parse: Callable[[bytes], Any], line: bytes) -> Any:
        try:
            return parse(line)
        except sasl.SASLError as e:
            if e.kind == sasl.MALFORMED:
                raise Refusal(f"Malformed {e.mechanism} response", "AUTH") from None
            text, code = _SASL_REFUSALS[e.kind]
            raise Refusal(text, code) from None

    def _login(self, user: bytes, password: bytes) -> Deferred:
        self._tls_version = tls.tls_version(self.transport)
        session = Session(
            client=self._client, server_name=tls.server_name(self.transport)
        )
        d: Deferred = self.authenticator.login(
            "pop3", self._client, user, password, session, pop3.IMailbox
        )
        d.addCallbacks(self._logged_in, self._login_failed, callbackArgs=(user,))
        return d

    def _logged_in(
        self, result: tuple[Any, Any, Callable[[], Any]], user: bytes
    ) -> Deferred | None:
        _, maildrop, logout = result
        if self._disconnected:
            logout()
            return None
        self.mbox = maildrop
        self._onLogout = logout
        metrics.session_started(self._listener())
        if self._login_deadline.active():
            self._login_deadline.cancel()
        self._account = user.decode("utf-8", "replace").lower()
        return Deferred.fromCoroutine(self._stat_reply("Logged in,"))

    def _login_failed(self, failure: Failure) -> None:
        error = failure.value
        if isinstance(error, LoginRefused):
            refusal = Refusal(error.text, error.code)
        elif failure.check(LoginFailed):
            refusal = Refusal("Authentication failed", "AUTH")
        else:
            log.failure("login from {client}", failure, client=self._client)
            refusal = Refusal("Temporary server error, try again later", "SYS/TEMP")
        log.info(
            "login failed from {client}: {reason}",
            client=self._client,
            reason=refusal.text,
        )
        self._login_failures += 1
        if self._login_failures >= MAX_LOGIN_FAILURES:
            self._ended = "login-failures"
            self._close(refusal.render())
            return
        raise refusal

    # -- transaction --------------------------------------------------------

    async def _sizes(self) -> list[int]:
        return await maybeDeferred(self.mbox.listMessages)

    async def _stat_reply(self, prefix: str) -> None:
        sizes = [s for s in await self._sizes() if s]
        self.successResponse(
            f"{prefix} {len(sizes)} messages ({sum(sizes)} octets)".lstrip()
        )

    def do_STAT(self) -> Any:
        async def stat() -> None:
            sizes = [s for s in await self._sizes() if s]
            self.successResponse(f"{len(sizes)} {sum(sizes)}")

        return stat()

    async def _number(self, argument: bytes) -> tuple[int, int]:
        """A message number the client sent, as (0-based index, size)."""
        if not _NUMBER.match(argument):
            raise Refusal("Invalid message number: use a positive whole number")
        number = int(argument)
        try:
            size = await maybeDeferred(self.mbox.listMessages, number - 1)
        except (ValueError, IndexError):
            size = None
        if number < 1 or size is None:
            raise Refusal(f"No such message: {number}")
        if not size:
            raise Refusal(f"Message {number} is deleted")
        return number - 1, size

    async def _listing(self, line: Callable[[int, int], bytes]) -> None:
        sizes = await self._sizes()
        shown = [line(i, s) for i, s in enumerate(sizes) if s]
        self.transport.write(b"+OK\r\n" + b"".join(shown) + b".\r\n")

    def do_LIST(self, argument: bytes | None = None) -> Any:
        if argument is None:
            return self._listing(lambda i, size: b"%d %d\r\n" % (i + 1, size))

        async def one() -> None:
            index, size = await self._number(argument)
            self.successResponse(f"{index + 1} {size}")

        return one()

    def do_UIDL(self, argument: bytes | None = None) -> Any:
        def uid(index: int) -> str:
            value = self.mbox.getUidl(index)
            return value.decode("ascii") if isinstance(value, bytes) else str(value)

        if argument is None:
            return self._listing(lambda i, size: f"{i + 1} {uid(i)}\r\n".encode())

        async def one() -> None:
            index, _ = await self._number(argument)
            self.successResponse(f"{index + 1} {uid(index)}")

        return one()

    async def _send(self, argument: bytes, lines: int | None) -> None:
        index, size = await self._number(argument)
        reader = await maybeDeferred(self.mbox.getMessage, index)
        body = getattr(reader, "body", None)
        if body is None:
            # The first chunk before +OK: a message IMAP expunged since the
            # login gets an error, not a broken reply.
            try:
                first = await maybeDeferred(reader.read, CHUNK_SIZE)
            except NotFound:
                raise Refusal(
                    "This message was deleted by another session", "SYS/TEMP"
                ) from None
            reader = Prefetched(first, reader)
        if lines is None:
            self.successResponse(f"{size} octets")
        else:
            self.successResponse("Top of message follows")
        transform = BodyTransform(lines, getattr(reader, "crlf_only", False))
        if body is not None:
            # Already in memory (and small): one write, no producer.
            self.transport.write(transform.feed(body) + transform.finish())
            sent = len(body)
        else:
            producer = BodyProducer(self.transport, reader, transform)
            sent = await producer.start()
        if lines is None:
            self._retrieved += 1
            self._retrieved_bytes += sent
            metrics.retrieved(sent)
        if lines is None or not transform.done:
            # The whole message was sent: the download log's (no I/O; the
            # mailbox writes its log once, as the session ends).
            note = getattr(self.mbox, "note_retrieved", None)
            if note is not None:
                note(index)

    def do_RETR(self, argument: bytes) -> Any:
        return self._send(argument, None)

    def do_TOP(self, argument: bytes, lines: bytes) -> Any:
        if not _NUMBER.match(lines):
            raise Refusal("Invalid line count: use a whole number of lines")
        return self._send(argument, int(lines))

    def do_DELE(self, argument: bytes) -> Any:
        async def dele() -> None:
            index, _ = await self._number(argument)
            await maybeDeferred(self.mbox.deleteMessage, index)
            self._deleted += 1
            self.successResponse(f"Message {index + 1} deleted")

        return dele()

    def do_NOOP(self) -> None:
        self.successResponse()

    def do_RSET(self) -> Any:
        self.mbox.undeleteMessages()
        self._deleted = 0
        return self._stat_reply("Maildrop has")

    def do_QUIT(self) -> Any:
        # Upstream replies +OK before (and whether or not) the mailbox saved
        # the deletions; zpop replies only once they are durable.
        if self.mbox is None:
            self._ended = "quit"
            self._close(b"+OK Bye")
            return None
        deleted = self._deleted
        d = maybeDeferred(self.mbox.sync)

        def synced(_: object) -> None:
            self._ended = "quit"
            self._close(f"+OK Bye, {deleted} messages deleted".encode())

        def failed(failure: Failure) -> None:
            if failure.check(StorageFull):
                log.error(
                    "applying POP deletions for {account}: {error}",
                    account=self._account,
                    error=failure.value,
                )
            else:
                log.failure(
                    "applying POP deletions for {account}",
                    failure,
                    account=self._account,
                )
            self._ended = "quit-failed"
            self._close(
                b"-ERR [SYS/TEMP] Could not apply the deletions; nothing was deleted"
            )

        return d.addCallbacks(synced, failed)

    # Upstream answers APOP, RPOP and LAST; zpop does not know them, and
    # _ARITY keeps them from dispatch.

    def stopProducing(self) -> None:
        self.transport.loseConnection()


class POP3Factory(Factory):
    """Builds POP3 sessions for one listener."""

    # Each session logs its own logout line; no "Starting factory" noise.
    noisy = False

    def __init__(
        self,
        authenticator: Any,
        settings: POP3Settings,
        clock: IReactorTime,
        implicit_tls: bool,
        stls_context: Any = None,
    ) -> None:
        #: Anything with zpop.accounts.credentials.Authenticator's ``login``.
        self.authenticator = authenticator
        self.settings = settings
        self.clock = clock
        self.implicit_tls = implicit_tls
        self.stls_context = stls_context

    def buildProtocol(self, addr: Any) -> POP3Server:  # type: ignore[override]
        proto = POP3Server()
        proto.factory = self  # type: ignore[assignment]
        proto.authenticator = self.authenticator
        proto.settings = self.settings
        proto.clock = self.clock
        proto.implicit_tls = self.implicit_tls
        proto.stls_context = None if self.implicit_tls else self.stls_context
        return proto
