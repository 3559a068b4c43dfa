"""SMTP (RFC 5321, 6409, 8314, 4954, 3207, 1870, 2920, 2034, 6152) on
twisted.mail's ESMTP protocol, in three roles:

- ``smtps`` (465): submission inside implicit TLS; STARTTLS never offered.
- ``submission`` (587): STARTTLS offered; no AUTH before TLS.
- ``mx`` (25): inbound mail for the hosted domains only; no AUTH.

Upstream ``twisted.mail.smtp.ESMTP`` supplies the shape (``mode``,
``do_*``/``ext_*`` dispatch through ``lookupMethod``, ``TimeoutMixin``,
``authenticated``); zpop replaces what upstream gets wrong, each override
saying what upstream lacks. Handlers raise ``Reply``, the one client-facing
error type; anything else becomes ``451 4.3.0`` and a logged failure.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable
from typing import Any

from twisted.cred.error import LoginFailed
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.mail import smtp
from twisted.python.failure import Failure

from zpop import metrics, sasl, tls
from zpop.accounts.credentials import AppPasswordRequired, LoginRefused
from zpop.accounts.realm import ISubmitter, Session
from zpop.commands import CommandRunner
from zpop.delivery import (
    Route,
    SMTPDelivery,
)
from zpop.smtp_reply import ROLES, Reply, Role
from zpop.smtp_transaction import MailTransaction, SMTPSettings

log = Logger()

COMMAND, DATA, AUTH = smtp.COMMAND, smtp.DATA, smtp.AUTH

#: Over-long command lines tolerated in one session before it is closed.
MAX_LONG_LINES = 3
#: Failed AUTH attempts in one session before it is closed.
MAX_LOGIN_FAILURES = 3
#: Error replies (5xx) in one session before it is closed.
MAX_ERRORS = 20

_COMMANDS = frozenset(
    {
        b"HELO",
        b"EHLO",
        b"MAIL",
        b"RCPT",
        b"DATA",
        b"RSET",
        b"NOOP",
        b"QUIT",
        b"VRFY",
        b"EXPN",
        b"HELP",
        b"STARTTLS",
        b"AUTH",
    }
)

#: Commands that must end a pipelined group (RFC 2920 section 3.1; RFC
#: 3207 for STARTTLS): their reply changes what the client may send next.
_GROUP_ENDERS = frozenset(
    {b"HELO", b"EHLO", b"DATA", b"VRFY", b"EXPN", b"QUIT", b"NOOP", b"STARTTLS"}
)

_HELO_NAME = re.compile(rb"[\x21-\x7e]{1,255}")


class SMTPServer(CommandRunner, sasl.Exchanges, MailTransaction, smtp.ESMTP):
    """One SMTP session in one of the ROLES."""

    # Set by SMTPFactory.buildProtocol.
    transport: Any
    role: Role
    settings: SMTPSettings
    clock: IReactorTime
    authenticator: Any
    router: SMTPDelivery
    tls_context: Any = None
    # Upstream declares it None at class level; zpop sets it at login.
    _onLogout: Any
    metrics_protocol = "smtp"

    # -- connection ---------------------------------------------------------

    def connectionMade(self) -> None:
        # Upstream greets with the machine's FQDN and a joke, takes its host
        # name from the resolver (an internal name) and has no session
        # deadline or login deadline.
        self.host = self.settings.hostname
        self.callLater = self.clock.callLater  # type: ignore[method-assign,assignment]
        self._buffer = b""
        self._processing = False
        self._waiting = False
        self._reading_paused = False
        self._closing = False
        self._disconnected = False
        self._long_lines = 0
        self._errors = 0
        self._login_failures = 0
        self._tls = self.role.implicit_tls
        self._helo: str | None = None
        self._esmtp = False
        self._sasl: Callable[[bytes], Any] | None = None
        self._submitter: Any = None
        self._account = "-"
        self._accepted = 0
        self._ended = "dropped"
        self._reset_transaction()
        peer = self.transport.getPeer()
        self._client = str(getattr(peer, "host", peer))
        self._write(f"220 {self.settings.hostname} ESMTP zpop ready")
        self.setTimeout(self.settings.timeout)
        self._deadline: IDelayedCall = self.clock.callLater(
            self.settings.session_deadline, self._session_over
        )
        self._login_deadline: IDelayedCall | None = None
        if self.role.submission:
            self._login_deadline = self.clock.callLater(
                self.settings.login_deadline, self._login_too_late
            )

    def connectionLost(self, reason: Failure | None = None) -> None:
        # Upstream hands half-received messages to IMessage.connectionLost;
        # zpop has nothing to undo: only a completed commit stores anything.
        self._disconnected = True
        self._closed()
        self.setTimeout(None)
        for call in (self._deadline, self._login_deadline):
            if call is not None and call.active():
                call.cancel()
        if self._onLogout is not None:
            self._onLogout()
            self._onLogout = None
        if self.authenticated:
            metrics.session_ended(self.role.name)
        log.info(
            "smtp session {role} client={client} account={account} tls={tls}"
            " accepted={accepted} ended={ended}",
            role=self.role.name,
            client=self._client,
            account=self._account,
            # A plaintext TCP transport has no handle left once closed.
            tls=(tls.tls_version(self.transport) or "yes") if self._tls else "none",
            accepted=self._accepted,
            ended=self._ended,
        )

    def timeoutConnection(self) -> None:
        # Upstream's text is a joke and has no enhanced status code.
        self._ended = "timeout"
        self._close(
            Reply(421, "4.4.2", f"{self.host_name} Timeout, closing connection")
        )

    def _session_over(self) -> None:
        self._ended = "deadline"
        self._close(
            Reply(
                421, "4.4.2", f"{self.host_name} Session too long, closing connection"
            )
        )

    def _login_too_late(self) -> None:
        if not self.authenticated:
            self._ended = "login-deadline"
            self._close(
                Reply(421, "4.7.0", f"{self.host_name} Too slow to log in, closing")
            )

    @property
    def host_name(self) -> str:
        return self.settings.hostname

    def _write(self, line: str | bytes) -> None:
        if isinstance(line, str):
            line = line.encode("utf-8", "replace")
        self.transport.write(line + b"\r\n")

    def _send(self, reply: Reply) -> None:
        if self._disconnected or self._closing:
            return
        self._write(reply.render())
        if reply.code >= 500:
            self._errors += 1
            if self._errors >= MAX_ERRORS:
                self._ended = "errors"
                self._close(Reply(421, "4.7.0", "Too many errors, closing connection"))

    def _ok(self, code: int, status: str, text: str) -> None:
        self._send(Reply(code, status, text))

    def _close(self, reply: Reply) -> None:
        if not self._closing and not self._disconnected:
            self._closing = True
            self._write(reply.render())
            self._lose_connection()

    def sendCode(self, code: int, message: bytes = b"") -> None:  # noqa: N802
        # Upstream's replies carry no enhanced status codes; every zpop reply
        # is built by _send, so this only guards against upstream callers.
        self._send(Reply(code, "4.3.0" if code < 500 else "5.5.0", "Error"))

    # -- input --------------------------------------------------------------
    # Upstream's LineOnlyReceiver drops a long line's connection state (in
    # DATA it returns to COMMAND mode, so the rest of the body runs as
    # commands), buffers pipelined input without bound, and runs the next
    # command while an asynchronous check of the previous one is pending.

    def dataReceived(self, data: bytes) -> None:
        if self._closing or self._disconnected:
            return
        self._buffer += data
        if self.mode == DATA:
            self.resetTimeout()
        self._process()

    def _process(self) -> None:
        if self._processing:
            return
        self._processing = True
        try:
            while not self._waiting and not self._closing and not self._disconnected:
                if self.mode == DATA:
                    if not self._data_step():
                        break
                    continue
                if not self._next_line():
                    break
        finally:
            self._processing = False
        self._hold_input()

    def _next_line(self) -> bool:
        """Handle one command (or SASL) line; False if none is complete."""
        limit = self.settings.line_length
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > limit:
                # No client sends that much without a line break: close
                # rather than read and discard it for minutes.
                self._buffer = b""
                self._ended = "long-line"
                self._close(Reply(421, "4.7.0", "Line too long, closing connection"))
            return False
        line = self._buffer[:end]
        self._buffer = self._buffer[end + 2 :]
        if len(line) > limit:
            self._line_too_long()
            return True
        if self._buffer and self.mode == COMMAND and self._out_of_sync(line):
            return False
        self.lineReceived(line)
        return True

    def _out_of_sync(self, line: bytes) -> bool:
        """Close an unauthenticated client that sent more after a command
        that must end a pipelined group, before that command's reply.

        As Postfix's ``smtpd_forbid_unauth_pipelining``: spambots and SMTP
        smuggling probes send a whole session blind; real MTAs wait after
        EHLO and DATA. Authenticated submission keeps RFC 2920 pipelining.
        """
        if self.role.submission and self.authenticated:
            return False
        if line.split(b" ", 1)[0].upper() not in _GROUP_ENDERS:
            return False
        log.info(
            "improper pipelining after {command} from {client}: {sample!r}",
            command=line[:16].decode("ascii", "replace"),
            client=self._client,
            sample=self._buffer[:100],
        )
        self._buffer = b""
        self._ended = "pipelining"
        self._close(Reply(554, "5.5.0", "Error: SMTP protocol synchronization"))
        return True

    def _line_too_long(self) -> None:
        self._long_lines += 1
        if self.mode == AUTH:
            self.mode = COMMAND
            self._sasl = None
        if self._long_lines >= MAX_LONG_LINES:
            self._ended = "long-line"
            self._close(Reply(421, "4.7.0", "Line too long, closing connection"))
        else:
            self._send(Reply(500, "5.5.2", "Line too long"))

    def lineLengthExceeded(self, line: bytes) -> None:
        # Upstream leaves DATA mode here; zpop's input never calls it.
        self._line_too_long()

    def lineReceived(self, line: bytes) -> None:
        self.resetTimeout()
        if self.mode == AUTH:
            self.state_AUTH(line)
        else:
            self.state_COMMAND(line)

    # -- running commands (zpop.commands): upstream answers pipelined
    # commands as their checks finish, so a RCPT can run before its MAIL.

    refusal = Reply

    def _refuse(self, reply: Reply) -> None:
        self._send(reply)

    def _server_error(self, failure: Failure) -> None:
        log.failure(
            "SMTP command failed ({role}) for {account} from {client}",
            failure,
            role=self.role.name,
            account=self._account,
            client=self._client,
        )
        self._send(Reply(451, "4.3.0", "Temporary server error, try again later"))

    def _idle_timeout(self) -> float:
        return self.settings.timeout

    def state_COMMAND(self, line: bytes) -> None:
        # Upstream looks the command up with getattr on whatever the client
        # sent (non-ASCII raises and drops the session), accepts bare CR, LF
        # and NUL in arguments (header injection into Received:) and answers
        # unknown commands without enhanced status codes.
        if b"\r" in line or b"\n" in line or b"\0" in line:
            self._send(Reply(501, "5.5.2", "Bare CR, LF or NUL in command line"))
            return
        word, _, rest = line.strip(b" ").partition(b" ")
        name = word.upper()
        if not name:
            self._send(Reply(500, "5.5.2", "Syntax error: empty command"))
            return
        method = self.lookupMethod(name) if name in _COMMANDS else None
        if method is None:
            self._send(Reply(500, "5.5.1", "Command not recognized"))
            return
        self._run(method, rest.strip(b" "))

    # -- transaction state --------------------------------------------------

    def _reset_transaction(self) -> None:
        self._sender: str | None = None
        self._recipients: list[tuple[str, Route]] = []
        self._parts: list[bytes] = []
        self._size = 0
        self._line_start = True
        self._bare = False
        self._oversize = False

    def _reset_session(self) -> None:
        """Forget EHLO and the transaction (after STARTTLS)."""
        self._helo = None
        self._esmtp = False
        self._reset_transaction()

    # -- HELO, EHLO, STARTTLS -------------------------------------------------

    def _greet(self, argument: bytes, esmtp: bool) -> str:
        if not _HELO_NAME.fullmatch(argument):
            verb = "EHLO" if esmtp else "HELO"
            raise Reply(501, "5.5.4", f"Syntax: {verb} hostname")
        self._reset_transaction()
        self._helo = argument.decode("ascii")
        self._esmtp = esmtp
        return self.host_name

    def do_HELO(self, argument: bytes) -> None:
        # Upstream echoes the peer address "nice to meet you" and keeps a
        # HELO argument containing anything.
        self._write(f"250 {self._greet(argument, False)}")

    def extensions(self) -> dict[bytes, list[bytes] | None]:
        # Upstream offers AUTH before TLS and no SIZE, PIPELINING, 8BITMIME
        # or ENHANCEDSTATUSCODES.
        ext: dict[bytes, list[bytes] | None] = {
            b"PIPELINING": None,
            b"SIZE": [str(self.settings.message_size).encode()],
            b"8BITMIME": None,
            b"ENHANCEDSTATUSCODES": None,
        }
        if self.role.starttls and not self._tls and self.tls_context is not None:
            ext[b"STARTTLS"] = None
        if self.role.submission and self._tls and not self.authenticated:
            ext[b"AUTH"] = [b"PLAIN", b"LOGIN"]
        return ext

    def do_EHLO(self, argument: bytes) -> None:
        host = self._greet(argument, True)
        lines = [host.encode()]
        for keyword, values in self.extensions().items():
            lines.append(b" ".join([keyword, *(values or [])]))
        out = [b"250-" + line for line in lines[:-1]] + [b"250 " + lines[-1]]
        self.transport.write(b"\r\n".join(out) + b"\r\n")

    def ext_STARTTLS(self, argument: bytes) -> None:
        # Upstream keeps bytes pipelined after STARTTLS (RFC 3207 section 6
        # injection) and the EHLO state from before TLS.
        if argument:
            raise Reply(501, "5.5.4", "Syntax: STARTTLS (no parameters)")
        if self._tls:
            raise Reply(554, "5.5.1", "TLS already active")
        if not self.role.starttls or self.tls_context is None:
            raise Reply(502, "5.5.1", "STARTTLS not available")
        self._write("220 2.0.0 Ready to start TLS")
        self._buffer = b""
        self._reset_session()
        self._tls = True
        self.transport.startTLS(self.tls_context)

    # -- AUTH ---------------------------------------------------------------

    def ext_AUTH(self, argument: bytes) -> Any:
        # Upstream offers AUTH in plaintext and on any listener, reads the
        # initial response through cred "challengers" without checking the
        # authorization identity, and answers failures with bare 535/451.
        if not self.role.submission:
            raise Reply(503, "5.5.1", "Authentication not enabled")
        if not self._tls:
            raise Reply(530, "5.7.0", "Must issue a STARTTLS command first")
        if self._helo is None:
            raise Reply(503, "5.5.1", "Send EHLO first")
        if self.authenticated:
            raise Reply(503, "5.5.1", "Already authenticated")
        if self._sender is not None:
            raise Reply(503, "5.5.1", "AUTH not allowed during a mail transaction")
        parts = argument.split()
        if not 1 <= len(parts) <= 2:
            raise Reply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")
        mechanism = parts[0].upper()
        initial = parts[1] if len(parts) == 2 else None
        if mechanism == b"PLAIN":
            if initial is None:
                return self._challenge(b"", self._sasl_plain)
            return self._sasl_plain(initial)
        if mechanism == b"LOGIN":
            if initial is None:
                return self._challenge(b"Username:", self._sasl_login_user)
            return self._sasl_login_user(initial)
        raise Reply(504, "5.5.4", "Unrecognized authentication type")

    def _challenge(self, text: bytes, next_step: Callable[[bytes], Any]) -> None:
        self._write(b"334 " + binascii.b2a_base64(text, newline=False))
        self.mode = AUTH
        self._sasl = next_step

    def state_AUTH(self, response: bytes) -> None:
        step, self._sasl = self._sasl, None
        self.mode = COMMAND
        if step is not None:
            self._run(step, response)

    def _sasl_parse(self, parse: Callable[[bytes], Any], line: bytes) -> Any:
        try:
            return parse(line)
        except sasl.SASLError as e:
            if e.kind == sasl.OTHER_IDENTITY:
                self._login_failures += 1
                raise Reply(
                    535, "5.7.8", "Authorization identity must be the login name"
                ) from None
            if e.kind == sasl.CANCELLED:
                raise Reply(501, "5.7.0", "Authentication cancelled") from None
            if e.kind == sasl.BAD_BASE64:
                raise Reply(501, "5.5.2", "Invalid base64 data") from None
            raise Reply(501, "5.5.2", f"Malformed {e.mechanism} response") from None

    def _login(self, user: bytes, password: bytes) -> Deferred:
        session = Session(
            client=self._client, server_name=tls.server_name(self.transport)
        )
        d: Deferred = self.authenticator.login(
            "smtp", self._client, user, password, session, ISubmitter
        )
        d.addCallbacks(self._logged_in, self._login_failed)
        return d

    def _logged_in(self, result: tuple[Any, Any, Callable[[], Any]]) -> None:
        _, submitter, logout = result
        if self._disconnected:
            logout()
            return
        self.authenticated = True
        self._submitter = submitter
        self._onLogout = logout
        metrics.session_started(self.role.name)
        self._account = submitter.account.address
        if self._login_deadline is not None and self._login_deadline.active():
            self._login_deadline.cancel()
        self._ok(235, "2.7.0", "Authentication successful")

    def _login_failed(self, failure: Failure) -> None:
        error = failure.value
        if isinstance(error, AppPasswordRequired):
            reply = Reply(534, "5.7.9", error.text)
        elif isinstance(error, LoginRefused):
            if error.code == "SYS/TEMP":
                reply = Reply(454, "4.7.0", error.text)
            else:
                reply = Reply(535, "5.7.8", error.text)
        elif failure.check(LoginFailed):
            reply = Reply(535, "5.7.8", "Authentication credentials invalid")
        else:
            log.failure("SMTP login from {client}", failure, client=self._client)
            reply = Reply(454, "4.7.0", "Temporary authentication failure")
        self._login_failures += 1
        if self._login_failures >= MAX_LOGIN_FAILURES:
            self._send(reply)
            self._ended = "login-failures"
            self._close(Reply(421, "4.7.0", "Too many failed authentications, closing"))
            return
        raise reply

    # -- the rest -------------------------------------------------------------

    def do_RSET(self, argument: bytes) -> None:
        # Upstream: "I remember nothing."
        self._reset_transaction()
        self._ok(250, "2.0.0", "OK")

    def do_NOOP(self, argument: bytes) -> None:
        # Upstream has no NOOP (RFC 5321 requires it).
        self._ok(250, "2.0.0", "OK")

    def do_VRFY(self, argument: bytes) -> None:
        # Answering VRFY would let anyone enumerate the accounts.
        self._ok(252, "2.5.0", "Cannot verify the user, but will accept mail")

    def do_EXPN(self, argument: bytes) -> None:
        raise Reply(502, "5.5.1", "EXPN not available")

    def do_HELP(self, argument: bytes) -> None:
        self._ok(214, "2.0.0", "See RFC 5321; commands: " + " ".join(self._verbs()))

    def _verbs(self) -> list[str]:
        verbs = ["EHLO", "HELO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT"]
        if self.role.starttls:
            verbs.append("STARTTLS")
        if self.role.submission:
            verbs.append("AUTH")
        return verbs

    def do_QUIT(self, argument: bytes) -> None:
        self._ended = "quit"
        self._close(Reply(221, "2.0.0", "Bye"))


class SMTPFactory(Factory):
    """Builds SMTP sessions for one listener (``smtps``, ``submission``, ``mx``)."""

    noisy = False

    def __init__(
        self,
        role: str,
        authenticator: Any,
        router: SMTPDelivery,
        settings: SMTPSettings,
        clock: IReactorTime,
        tls_context: Any = None,
    ) -> None:
        self.role = ROLES[role]
        #: Anything with zpop.accounts.credentials.Authenticator's ``login``.
        self.authenticator = authenticator
        self.router = router
        self.settings = settings
        self.clock = clock
        self.tls_context = tls_context

    def buildProtocol(self, addr: Any) -> SMTPServer:
        proto = SMTPServer()
        proto.factory = self
        proto.role = self.role
        proto.authenticator = self.authenticator
        proto.router = self.router
        proto.settings = self.settings
        proto.clock = self.clock
        proto.tls_context = None if self.role.implicit_tls else self.tls_context
        return proto
