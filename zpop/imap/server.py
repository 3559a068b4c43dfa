"""The IMAP server session (RFC 3501 with RFC 9051's extensions clients
rely on): connection, framing, states, login; the commands are in
``zpop.imap.folders`` and ``zpop.imap.messages``.

A zpop protocol, not twisted.mail.imap4.IMAP4Server subclassed: upstream
reads literals into memory before it can refuse them, buffers whole bodies
(twisted#7317), labels partial FETCHes wrongly (twisted#5613), has no
LITERAL+, UIDPLUS, MOVE, CONDSTORE, ENABLE or ID, crashes on an APPEND
without flags, and its mailbox interfaces number messages in ways the
store's model cannot meet; fixing that would replace nearly every method.
What it does right is kept: one command at a time per session while a
store call is pending, TimeoutMixin, and cred's portal for the login.

Every reply is built from ``zpop.imap.values``; a handler refuses with
``Refusal`` (the exact NO or BAD text); anything else is logged with its
context and answered ``NO [SERVERBUG]``, never with an exception name.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from twisted.cred.error import LoginFailed
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from zpop import metrics, sasl, tls
from zpop.accounts.credentials import AppPasswordRequired, LoginRefused
from zpop.accounts.imap_account import IImapAccount, ImapAccount
from zpop.accounts.realm import Session
from zpop.imap import parser
from zpop.imap.folders import FolderCommands
from zpop.imap.framer import CommandFramer, Complete, Continue, RawLine, Refuse
from zpop.imap.messages import MessageCommands
from zpop.imap.responses import Refusal, untagged
from zpop.imap.selected import Selected
from zpop.imap.values import Atom, Value

log = Logger()

#: Capabilities before login; STARTTLS and LOGINDISABLED before TLS,
#: AUTH=PLAIN under it (DESIGN §1 "IMAP").
BASE_CAPABILITIES = ("IMAP4rev1", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE")
#: The full list, after login.
CAPABILITIES = (
    *BASE_CAPABILITIES,
    "NAMESPACE",
    "UIDPLUS",
    "MOVE",
    "UNSELECT",
    "SPECIAL-USE",
    "CHILDREN",
    "CONDSTORE",
)

#: Bad commands in one session before it is closed.
MAX_BAD_COMMANDS = 20
#: Failed logins in one session before it is closed.
MAX_LOGIN_FAILURES = 3
#: Octets waiting unread before zpop stops reading the socket.
PIPELINE_LIMIT = 64 * 1024
#: The largest literal of any command but APPEND (a login, a name).
SMALL_LITERAL = 64 * 1024


@dataclass(frozen=True)
class ImapSettings:
    hostname: str
    #: RFC 3501 §5.4: at least 30 minutes once logged in.
    idle_timeout: float = 30 * 60.0
    #: Before login: a connection that has not logged in by then goes.
    login_timeout: float = 60.0
    max_message_size: int = 36 * 1024 * 1024
    #: Sessions of one account from one client address (per process).
    sessions_per_account_client: int = 10


class IMAPServer(FolderCommands, MessageCommands, TimeoutMixin, Protocol):
    """One IMAP connection, plaintext+STARTTLS or inside implicit TLS."""

    authenticator: Any
    factory: IMAPFactory
    settings: ImapSettings
    clock: IReactorTime
    stls_context: Any = None
    implicit_tls = False
    metrics_protocol = "imap"

    def connectionMade(self) -> None:
        self.callLater = self.clock.callLater  # type: ignore[method-assign,assignment]
        self.account: ImapAccount | None = None
        self.selected: Selected | None = None
        self.enabled: set[str] = set()
        self._logout: Callable[[], Any] | None = None
        self._session_key: tuple[str, str] | None = None
        self._framer = CommandFramer(max_literal=self._max_literal)
        self._busy = False
        self._paused = False
        self._closing = False
        self._tls_active = self.implicit_tls
        self._tls_version: str | None = None
        #: The command waiting for a raw line (AUTHENTICATE's response,
        #: IDLE's DONE): its tag and what takes the line.
        self._raw: tuple[str, Callable[[bytes], Any]] | None = None
        self._bad = 0
        self._login_failures = 0
        self._address = "-"
        self._ended = "dropped"
        self._started = time.monotonic()
        peer = self.transport.getPeer()
        self._client = getattr(peer, "host", str(peer))
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)
        caps = " ".join(self._capabilities())
        self._write(
            f"* OK [CAPABILITY {caps}] {self.settings.hostname} zpop IMAP ready"
        )
        self.setTimeout(self.settings.login_timeout)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.setTimeout(None)
        self._closing = True
        self._stop_idle()
        key = self._session_key
        if key is not None:
            sessions = self.factory.sessions
            sessions[key] -= 1
            if sessions[key] <= 0:
                del sessions[key]
        if self._logout is not None:
            self._logout()
            self._logout = None
        if self.account is not None:
            metrics.session_ended(self._listener())
        if self._tls_version is None and self._tls_active:
            self._tls_version = tls.tls_version(self.transport)
        log.info(
            "logout {account} client={client} tls={tls_version} protocol=imap"
            " ended={ended} seconds={seconds:.3f}",
            account=self._address,
            client=self._client,
            tls_version=self._tls_version or "none",
            ended=self._ended,
            seconds=time.monotonic() - self._started,
        )

    def timeoutConnection(self) -> None:
        self._ended = "timeout"
        self._bye("Idle for too long, closing the connection")

    def _listener(self) -> str:
        return "imaps" if self.implicit_tls else "imap"

    # -- output ----------------------------------------------------------

    def _write(self, line: str | bytes) -> None:
        data = line.encode("utf-8") if isinstance(line, str) else line
        self.transport.write(data + b"\r\n")

    def send(self, *values: Value) -> None:
        """One untagged response."""
        self.transport.write(untagged(values))

    def _tagged(self, tag: str, status: str, text: str) -> None:
        self._write(f"{tag} {status} {text}")

    def _bye(self, text: str) -> None:
        if not self._closing:
            self._closing = True
            self._write(f"* BYE {text}")
            self.transport.loseConnection()

    # -- input -----------------------------------------------------------

    def _max_literal(self, name: bytes) -> int:
        if name == b"APPEND" and self.account is not None:
            return self.settings.max_message_size
        return SMALL_LITERAL

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        events = self._framer.feed(data)
        self._handle(events)
        self._pump()

    def _pump(self) -> None:
        """Frame and run what waits, while no command is pending."""
        while not self._busy and not self._closing:
            events = self._framer.feed(b"")
            if not events:
                break
            self._handle(events)
        waiting = self._framer.buffered > PIPELINE_LIMIT
        if self._busy and waiting and not self._paused:
            self._paused = True
            self.transport.pauseProducing()
        elif self._paused and not (self._busy and waiting):
            self._paused = False
            self.transport.resumeProducing()

    def _handle(self, events: list[Any]) -> None:
        for event in events:
            if self._closing:
                return
            if isinstance(event, Continue):
                self._write("+ Ready for the literal")
            elif isinstance(event, Refuse):
                self._refused(event)
            elif isinstance(event, RawLine):
                raw, self._raw = self._raw, None
                if raw is not None:
                    self._run(raw[0], raw[1], event.data)
            elif isinstance(event, Complete):
                self._command(event.segments)

    def _refused(self, event: Refuse) -> None:
        tag = event.tag.decode("ascii", "replace") or "*"
        if event.fatal:
            self._ended = "refused"
            self._bye(f"{event.reason}: closing the connection")
        elif event.too_big:
            self._tagged(tag, "NO", f"[TOOBIG] {event.reason}")
        else:
            self._bad_command(tag, event.reason)

    def _bad_command(self, tag: str, text: str) -> None:
        self._bad += 1
        if self._bad >= MAX_BAD_COMMANDS:
            self._ended = "bad-commands"
            self._tagged(tag, "BAD", text)
            self._bye("Too many bad commands, closing the connection")
            return
        self._tagged(tag, "BAD", text)

    def _command(self, segments: tuple[bytes, ...]) -> None:
        try:
            command = parser.parse_command(segments, utf8="UTF8=ACCEPT" in self.enabled)
        except parser.ParseError as e:
            self._bad_command(e.tag or "*", e.message)
            return
        name = command.name
        state_error = self._state_error(name)
        if state_error is not None:
            self._bad_command(command.tag, state_error)
            return
        handler = getattr(self, "do_" + name.replace(" ", "_"))
        if self.account is not None and not self.account.credentials_current():
            self._run(command.tag, self._if_credentials_stand, handler, command)
        else:
            self._run(command.tag, handler, command)

    async def _if_credentials_stand(
        self, handler: Callable[..., Any], command: parser.Command
    ) -> None:
        """Run a command only while the session's credentials stand: once
        the app password it logged in with is revoked, the session ends."""
        if not await self.credentials_stand():
            return
        result = handler(command)
        if isinstance(result, Coroutine):
            await result

    def _state_error(self, name: str) -> str | None:
        if name in parser.ANY:
            return None
        if name in parser.NOT_AUTHENTICATED:
            return None if self.account is None else "Already logged in"
        if self.account is None:
            return "Log in first"
        if name in parser.SELECTED and self.selected is None:
            return "Select a mailbox first"
        return None

    def _run(self, tag: str, handler: Callable[..., Any], *args: Any) -> None:
        """Run one command's handler; the next waits until it is done."""
        self.resetTimeout()
        try:
            result = handler(*args)
        except Exception as e:
            self._failed(tag, e)
            return
        if not isinstance(result, Coroutine):
            return
        self._busy = True

        def failed(failure: Failure) -> None:
            assert failure.value is not None
            self._failed(tag, failure.value, failure)

        d = Deferred.fromCoroutine(result)
        d.addErrback(failed)
        d.addBoth(self._done)

    def _done(self, _: object) -> None:
        self._busy = False
        if not self._closing:
            self._pump()

    def _failed(
        self, tag: str, error: BaseException, failure: Failure | None = None
    ) -> None:
        if self._closing:
            return
        if isinstance(error, Refusal):
            if error.bad:
                self._bad_command(tag or "*", error.text)
            else:
                self._tagged(tag or "*", "NO", error.text)
            return
        log.failure(
            "imap command from {client} ({account})",
            failure or Failure(error),
            client=self._client,
            account=self._address,
        )
        self._tagged(tag or "*", "NO", "[SERVERBUG] Internal error, try again later")

    # -- any state -------------------------------------------------------

    def _capabilities(self) -> tuple[str, ...]:
        if self.account is not None:
            return CAPABILITIES
        if self._tls_active:
            return (*BASE_CAPABILITIES, "AUTH=PLAIN")
        extra = ("STARTTLS",) if self.stls_context is not None else ()
        return (*BASE_CAPABILITIES, *extra, "LOGINDISABLED")

    def do_CAPABILITY(self, command: parser.Command) -> None:
        self._write("* CAPABILITY " + " ".join(self._capabilities()))
        self._tagged(command.tag, "OK", "CAPABILITY done")

    def do_NOOP(self, command: parser.Command) -> Coroutine[Any, Any, None] | None:
        if self.selected is None:
            self._tagged(command.tag, "OK", "NOOP done")
            return None
        return self._noop(command)

    async def _noop(self, command: parser.Command) -> None:
        await self.catch_up()
        self._tagged(command.tag, "OK", f"{command.name} done")

    def do_LOGOUT(self, command: parser.Command) -> None:
        self._ended = "logout"
        self._closing = True
        self._write("* BYE Logging out")
        self._tagged(command.tag, "OK", "LOGOUT done")
        self.transport.loseConnection()

    def do_ID(self, command: parser.Command) -> None:
        self.send(Atom("ID"), ("name", "zpop"))
        self._tagged(command.tag, "OK", "ID done")

    # -- not authenticated ----------------------------------------------

    def do_STARTTLS(self, command: parser.Command) -> None:
        if self._tls_active:
            raise Refusal("TLS is active already", bad=True)
        if self.stls_context is None:
            raise Refusal("STARTTLS is not offered here", bad=True)
        self._tagged(command.tag, "OK", "Begin TLS negotiation now")
        # RFC 3501 §6.2.1: what the client pipelined before the handshake
        # is never read as if it came through TLS.
        self._framer.discard()
        self.transport.startTLS(self.stls_context)
        self._tls_active = True

    def _require_tls(self) -> None:
        if not self._tls_active:
            raise Refusal(
                "[PRIVACYREQUIRED] Log in only over TLS: issue STARTTLS first"
            )

    def do_LOGIN(self, command: parser.Command) -> Coroutine[Any, Any, None]:
        self._require_tls()
        assert isinstance(command.args, parser.Login)
        return self._login(command.tag, command.args.user, command.args.password)

    def do_AUTHENTICATE(self, command: parser.Command) -> Any:
        self._require_tls()
        args = command.args
        assert isinstance(args, parser.Authenticate)
        if args.mechanism != "PLAIN":
            raise Refusal("Unsupported authentication mechanism: use PLAIN")
        if args.initial_response is not None:
            return self._plain(command.tag, args.initial_response)
        self._write("+ ")
        self._framer.expect_line()
        self._raw = (command.tag, lambda line: self._plain(command.tag, line))
        return None

    async def _plain(self, tag: str, line: bytes) -> None:
        try:
            user, password = sasl.plain(line)
        except sasl.SASLError as e:
            texts = {
                sasl.CANCELLED: "Authentication cancelled",
                sasl.BAD_BASE64: "Invalid base64 in the response",
                sasl.OTHER_IDENTITY: "Logging in as another user is not allowed",
            }
            raise Refusal(texts.get(e.kind, "Malformed PLAIN response"), bad=True)
        await self._login(tag, user, password)

    async def _login(self, tag: str, user: bytes, password: bytes) -> None:
        self._tls_version = tls.tls_version(self.transport)
        session = Session(self._client, tls.server_name(self.transport))
        try:
            _, account, logout = await self.authenticator.login(
                "imap", self._client, user, password, session, IImapAccount
            )
        except LoginRefused as refusal:
            self._login_failed(tag, self._refusal_text(refusal))
            return
        except LoginFailed:
            self._login_failed(tag, "[AUTHENTICATIONFAILED] Authentication failed")
            return
        if self._closing:
            logout()
            return
        key = (account.account.address, self._client)
        sessions = self.factory.sessions
        if sessions[key] >= self.settings.sessions_per_account_client:
            logout()
            self._login_failed(
                tag,
                "[LIMIT] Too many IMAP sessions of this account from your address",
            )
            return
        sessions[key] += 1
        self._session_key = key
        self.account = account
        self._logout = logout
        self._address = account.account.address
        metrics.session_started(self._listener())
        self.setTimeout(self.settings.idle_timeout)
        caps = " ".join(CAPABILITIES)
        self._tagged(tag, "OK", f"[CAPABILITY {caps}] Logged in")

    @staticmethod
    def _refusal_text(refusal: LoginRefused) -> str:
        if isinstance(refusal, AppPasswordRequired):
            return f"[ALERT] {refusal.text}: log in with an app-specific password"
        if refusal.code == "SYS/TEMP":
            return f"[UNAVAILABLE] {refusal.text}"
        return f"[AUTHORIZATIONFAILED] {refusal.text}"

    def _login_failed(self, tag: str, text: str) -> None:
        log.info(
            "login failed from {client}: {reason}", client=self._client, reason=text
        )
        self._login_failures += 1
        self._tagged(tag, "NO", text)
        if self._login_failures >= MAX_LOGIN_FAILURES:
            self._ended = "login-failures"
            self._bye("Too many failed logins")

    # -- credentials, before every command once logged in ---------------

    async def credentials_stand(self) -> bool:
        """False (and the session is closed) once the app password this
        session logged in with was revoked."""
        account = self.account
        assert account is not None
        if account.credentials_current() or await account.credentials_valid():
            return True
        self._ended = "revoked"
        self._bye("The password of this session was revoked")
        return False


class IMAPFactory(Factory):
    """Builds IMAP sessions for one listener."""

    noisy = False

    def __init__(
        self,
        authenticator: Any,
        settings: ImapSettings,
        clock: IReactorTime,
        implicit_tls: bool,
        stls_context: Any = None,
    ) -> None:
        self.authenticator = authenticator
        self.settings = settings
        self.clock = clock
        self.implicit_tls = implicit_tls
        self.stls_context = stls_context
        #: Logged-in sessions per (account, client address).
        self.sessions: Counter[tuple[str, str]] = Counter()

    def buildProtocol(self, addr: Any) -> IMAPServer:  # type: ignore[override]
        proto = IMAPServer()
        proto.factory = self
        proto.authenticator = self.authenticator
        proto.settings = self.settings
        proto.clock = self.clock
        proto.implicit_tls = self.implicit_tls
        proto.stls_context = None if self.implicit_tls else self.stls_context
        return proto

