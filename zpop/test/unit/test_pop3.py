"""POP3 protocol tests in memory: StringTransport, Clock, fake mailboxes.

Every command test runs against a synchronous mailbox and an asynchronous
one (whose every answer is a Deferred that fires on a later clock tick), as
upstream's own POP3 tests do.
"""

from __future__ import annotations

import base64
import io
import time
from typing import Any

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.credentials import UsernamePassword
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.mail.pop3 import IMailbox
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from zpop.accounts.credentials import LoginRefused
from zpop.commands import PIPELINE_LIMIT
from zpop.config import Config, ServerConfig
from zpop.pop3 import POP3Factory, POP3Server, POP3Settings
from zpop.retrieval import BodyProducer, BodyTransform

USER = b"alice@example.com"
PASSWORD = b"correct horse"

MESSAGES = [
    b"Subject: one\r\n\r\nfirst body\r\n",
    b"Subject: two\r\n\r\n.starts with a dot\r\n..two dots\r\nend\r\n",
    b"Subject: three\r\nX: y\r\n\r\nline 1\r\nline 2\r\nline 3\r\n",
]


class ChunkedReader:
    """A file whose read returns at most ``step`` bytes, like a slow store."""

    def __init__(self, data: bytes, step: int) -> None:
        self._file = io.BytesIO(data)
        self._step = step

    def read(self, size: int = -1) -> bytes:
        return self._file.read(min(size, self._step))


@implementer(IMailbox)
class MemoryMailbox:
    """A synchronous IMailbox over a list of bodies."""

    def __init__(self, bodies: list[bytes], step: int = 1 << 20) -> None:
        self.bodies = bodies
        self.deleted: set[int] = set()
        self.synced: list[set[int]] = []
        self.step = step
        self.fail_listing = False

    def _check(self, index: int) -> None:
        if not 0 <= index < len(self.bodies):
            raise ValueError("no such message")

    def listMessages(self, index: int | None = None) -> Any:
        if self.fail_listing:
            raise RuntimeError("disk on fire")
        if index is None:
            return [
                0 if i in self.deleted else len(b) for i, b in enumerate(self.bodies)
            ]
        self._check(index)
        return 0 if index in self.deleted else len(self.bodies[index])

    def getMessage(self, index: int) -> Any:
        self._check(index)
        return ChunkedReader(self.bodies[index], self.step)

    def getUidl(self, index: int) -> Any:
        self._check(index)
        return f"uid-{index + 1}"

    def deleteMessage(self, index: int) -> None:
        self._check(index)
        self.deleted.add(index)

    def undeleteMessages(self) -> None:
        self.deleted.clear()

    def sync(self) -> Any:
        self.synced.append(set(self.deleted))


class AsyncMailbox(MemoryMailbox):
    """The same mailbox, answering every call on a later clock tick."""

    def __init__(self, clock: Clock, bodies: list[bytes], step: int = 1 << 20) -> None:
        super().__init__(bodies, step)
        self.clock = clock
        self.sync_result: Deferred | None = None

    def _later(self, f: Any, *args: Any) -> Deferred:
        return deferLater(self.clock, 0, f, *args)

    def listMessages(self, index: int | None = None) -> Any:
        return self._later(super().listMessages, index)

    def getMessage(self, index: int) -> Any:
        reader = super().getMessage(index)

        class Reader:
            def read(inner, size: int = -1) -> Deferred:  # noqa: N805
                return self._later(reader.read, size)

        return self._later(lambda: Reader())

    def deleteMessage(self, index: int) -> Any:
        return self._later(super().deleteMessage, index)

    def sync(self) -> Any:
        if self.sync_result is not None:
            return self.sync_result
        return self._later(super().sync)


@implementer(IRealm)
class MailboxRealm:
    def __init__(self, mailbox: Any) -> None:
        self.mailbox = mailbox
        self.logouts = 0
        self.refusal: LoginRefused | None = None

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> Any:
        if self.refusal is not None:
            return fail(self.refusal)

        def logout() -> None:
            self.logouts += 1

        return succeed((IMailbox, self.mailbox, logout))


class PortalAuthenticator:
    """The Authenticator's ``login`` straight to a portal: no throttling."""

    def __init__(self, portal: Portal) -> None:
        self.portal = portal

    def login(
        self,
        protocol: str,
        client: str,
        user: bytes,
        password: bytes,
        mind: Any,
        interface: Any,
    ) -> Deferred:
        return self.portal.login(UsernamePassword(user, password), mind, interface)


class TLSStringTransport(StringTransport):
    """A StringTransport that records startTLS."""

    tls_started_with: Any = None

    def startTLS(self, context: Any) -> None:
        self.tls_started_with = context


class ProtocolMixin:
    """The POP3 protocol driven in memory; subclasses choose the mailbox."""

    asynchronous = False

    def make_mailbox(self, bodies: list[bytes], step: int = 1 << 20) -> MemoryMailbox:
        if self.asynchronous:
            return AsyncMailbox(self.clock, bodies, step)
        return MemoryMailbox(bodies, step)

    def setUp(self) -> None:
        self.clock = Clock()
        self.mailbox = self.make_mailbox(list(MESSAGES))
        self.realm = MailboxRealm(self.mailbox)
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(USER, PASSWORD)
        self.portal = Portal(self.realm, [checker])
        self.config = Config(server=ServerConfig(hostname="example.test"))
        self.connect(implicit_tls=True)

    def connect(self, implicit_tls: bool, stls: Any = None) -> None:
        factory = POP3Factory(
            PortalAuthenticator(self.portal),
            POP3Settings.from_config(self.config),
            self.clock,
            implicit_tls,
            stls,
        )
        self.proto: POP3Server = factory.buildProtocol(None)
        self.transport = TLSStringTransport()
        self.proto.makeConnection(self.transport)
        self.greeting = self.transport.value()
        self.transport.clear()

    def settle(self) -> None:
        """Run due calls and pump the body producer until nothing moves."""
        for _ in range(100000):
            moved = False
            if any(
                c.getTime() <= self.clock.seconds()
                for c in self.clock.getDelayedCalls()
            ):
                self.clock.advance(0)
                moved = True
            producer = self.transport.producer
            if producer is not None and not self.transport.disconnecting:
                producer.resumeProducing()
                moved = True
            if not moved:
                return
        raise AssertionError("the protocol never settled")

    def send(self, data: bytes) -> bytes:
        self.transport.clear()
        self.proto.dataReceived(data)
        self.settle()
        return self.transport.value()

    def login(self) -> None:
        self.send(b"USER " + USER + b"\r\n")
        self.assertEqual(
            self.send(b"PASS " + PASSWORD + b"\r\n"),
            b"+OK Logged in, 3 messages (%d octets)\r\n" % sum(map(len, MESSAGES)),
        )

    # -- greeting and capabilities ------------------------------------------

    def test_greeting(self) -> None:
        """The greeting names the host and carries no APOP timestamp."""
        self.assertEqual(self.greeting, b"+OK example.test zpop POP3 server ready\r\n")

    def test_capa_tls(self) -> None:
        """Under TLS, CAPA lists exactly what zpop does, with USER and SASL."""
        self.assertEqual(
            self.send(b"CAPA\r\n"),
            b"+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
            b"AUTH-RESP-CODE\r\nPIPELINING\r\nUSER\r\nSASL PLAIN LOGIN\r\n"
            b"IMPLEMENTATION zpop\r\n.\r\n",
        )

    def test_capa_plaintext(self) -> None:
        """Before STLS, CAPA offers STLS and no way to send a password."""
        self.connect(implicit_tls=False, stls=object())
        self.assertEqual(
            self.send(b"CAPA\r\n"),
            b"+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
            b"AUTH-RESP-CODE\r\nPIPELINING\r\nSTLS\r\nIMPLEMENTATION zpop\r\n.\r\n",
        )

    def test_no_password_before_stls(self) -> None:
        """USER, PASS and AUTH are refused in plaintext until STLS."""
        self.connect(implicit_tls=False, stls=object())
        refusal = b"-ERR [AUTH] Log in only over TLS: issue STLS first\r\n"
        self.assertEqual(self.send(b"USER " + USER + b"\r\n"), refusal)
        self.assertEqual(self.send(b"PASS " + PASSWORD + b"\r\n"), refusal)
        self.assertEqual(self.send(b"AUTH PLAIN\r\n"), refusal)

    def test_stls_discards_pipelined(self) -> None:
        """Commands pipelined after STLS in plaintext are discarded, not run."""
        context = object()
        self.connect(implicit_tls=False, stls=context)
        self.assertEqual(
            self.send(b"STLS\r\nUSER " + USER + b"\r\nPASS " + PASSWORD + b"\r\n"),
            b"+OK Begin TLS negotiation now\r\n",
        )
        self.assertIs(self.transport.tls_started_with, context)
        self.assertEqual(
            self.send(b"PASS " + PASSWORD + b"\r\n"), b"-ERR Send USER first\r\n"
        )
        self.assertIn(b"USER\r\n", self.send(b"CAPA\r\n"))
        self.assertEqual(self.send(b"STLS\r\n"), b"-ERR TLS is already active\r\n")

    def test_stls_not_offered(self) -> None:
        """STLS inside implicit TLS is refused."""
        self.assertEqual(self.send(b"STLS\r\n"), b"-ERR TLS is already active\r\n")

    # -- authorization ---------------------------------------------------

    def test_user_pass(self) -> None:
        """USER and PASS log in and report the maildrop size."""
        self.assertEqual(
            self.send(b"USER " + USER + b"\r\n"), b"+OK Send your password\r\n"
        )
        self.assertEqual(
            self.send(b"PASS " + PASSWORD + b"\r\n"),
            b"+OK Logged in, 3 messages (%d octets)\r\n" % sum(map(len, MESSAGES)),
        )

    def test_password_with_spaces(self) -> None:
        """PASS takes the rest of the line, spaces included."""
        self.send(b"USER " + USER + b"\r\n")
        self.assertTrue(
            self.send(b"PASS correct horse\r\n").startswith(b"+OK Logged in")
        )

    def test_wrong_password(self) -> None:
        """A wrong password gets [AUTH]; the third failure closes the session."""
        for _ in range(2):
            self.send(b"USER " + USER + b"\r\n")
            self.assertEqual(
                self.send(b"PASS nope\r\n"), b"-ERR [AUTH] Authentication failed\r\n"
            )
            self.assertFalse(self.transport.disconnecting)
        self.send(b"USER nobody@example.com\r\n")
        self.assertEqual(
            self.send(b"PASS nope\r\n"), b"-ERR [AUTH] Authentication failed\r\n"
        )
        self.assertTrue(self.transport.disconnecting)

    def test_realm_refusal(self) -> None:
        """A refusal from the realm is shown with its response code."""
        self.realm.refusal = LoginRefused(
            "IN-USE", "Another POP session is already using this mailbox"
        )
        self.send(b"USER " + USER + b"\r\n")
        self.assertEqual(
            self.send(b"PASS " + PASSWORD + b"\r\n"),
            b"-ERR [IN-USE] Another POP session is already using this mailbox\r\n",
        )

    def test_pass_without_user(self) -> None:
        """PASS before USER is refused."""
        self.assertEqual(self.send(b"PASS x\r\n"), b"-ERR Send USER first\r\n")

    def test_auth_plain_initial(self) -> None:
        """AUTH PLAIN with an initial response logs in."""
        token = base64.b64encode(b"\0" + USER + b"\0" + PASSWORD)
        self.assertTrue(
            self.send(b"AUTH PLAIN " + token + b"\r\n").startswith(b"+OK Logged in, 3")
        )

    def test_auth_plain_continuation(self) -> None:
        """AUTH PLAIN without initial response sends an empty challenge."""
        self.assertEqual(self.send(b"AUTH PLAIN\r\n"), b"+ \r\n")
        token = base64.b64encode(USER + b"\0" + USER + b"\0" + PASSWORD)
        self.assertTrue(self.send(token + b"\r\n").startswith(b"+OK Logged in"))

    def test_auth_plain_other_identity(self) -> None:
        """An authorization identity other than the login is refused."""
        token = base64.b64encode(b"bob@example.com\0" + USER + b"\0" + PASSWORD)
        self.assertEqual(
            self.send(b"AUTH PLAIN " + token + b"\r\n"),
            b"-ERR [AUTH] Logging in as another user is not allowed\r\n",
        )

    def test_auth_plain_malformed(self) -> None:
        """Bad base64, bad PLAIN, '=' and '*' each get -ERR; the session goes on."""
        self.assertEqual(
            self.send(b"AUTH PLAIN !!!\r\n"),
            b"-ERR Invalid base64 in authentication response\r\n",
        )
        self.assertEqual(
            self.send(b"AUTH PLAIN " + base64.b64encode(b"no nuls") + b"\r\n"),
            b"-ERR [AUTH] Malformed PLAIN response\r\n",
        )
        self.assertEqual(
            self.send(b"AUTH PLAIN =\r\n"), b"-ERR [AUTH] Malformed PLAIN response\r\n"
        )
        self.send(b"AUTH PLAIN\r\n")
        self.assertEqual(self.send(b"*\r\n"), b"-ERR Authentication cancelled\r\n")
        self.assertEqual(self.send(b"NOOP\r\n"), b"-ERR Log in first\r\n")

    def test_auth_login(self) -> None:
        """AUTH LOGIN asks for user name and password in base64."""
        self.assertEqual(self.send(b"AUTH LOGIN\r\n"), b"+ VXNlcm5hbWU6\r\n")
        self.assertEqual(
            self.send(base64.b64encode(USER) + b"\r\n"), b"+ UGFzc3dvcmQ6\r\n"
        )
        self.assertTrue(
            self.send(base64.b64encode(PASSWORD) + b"\r\n").startswith(b"+OK Logged in")
        )

    def test_auth_login_initial(self) -> None:
        """AUTH LOGIN with the user name as initial response asks for the password."""
        self.assertEqual(
            self.send(b"AUTH LOGIN " + base64.b64encode(USER) + b"\r\n"),
            b"+ UGFzc3dvcmQ6\r\n",
        )

    def test_auth_mechanisms(self) -> None:
        """AUTH alone lists the mechanisms; an unknown one is refused."""
        self.assertEqual(
            self.send(b"AUTH\r\n"), b"+OK Mechanisms follow\r\nPLAIN\r\nLOGIN\r\n.\r\n"
        )
        self.assertEqual(
            self.send(b"AUTH CRAM-MD5\r\n"),
            b"-ERR Unsupported authentication mechanism: use PLAIN or LOGIN\r\n",
        )

    # -- command parsing ----------------------------------------------------

    def test_unknown_commands(self) -> None:
        """Unknown commands, APOP, RPOP and LAST included, get -ERR."""
        for command in (b"FOO", b"APOP", b"RPOP", b"LAST"):
            self.assertEqual(
                self.send(command + b" x\r\n"),
                b"-ERR Unknown command: " + command + b"\r\n",
            )
        self.assertEqual(self.send(b"\xff\xfe\r\n"), b"-ERR Unknown command\r\n")
        self.assertEqual(self.send(b"\r\n"), b"-ERR Unknown command\r\n")

    def test_state_errors(self) -> None:
        """Transaction commands need a login; login commands need none."""
        self.assertEqual(self.send(b"STAT\r\n"), b"-ERR Log in first\r\n")
        self.login()
        self.assertEqual(self.send(b"USER x@y.z\r\n"), b"-ERR Already logged in\r\n")
        self.assertEqual(self.send(b"AUTH PLAIN\r\n"), b"-ERR Already logged in\r\n")

    def test_arity(self) -> None:
        """Missing and extra arguments get a usage line."""
        self.assertEqual(
            self.send(b"USER\r\n"), b"-ERR Wrong arguments, usage: USER name\r\n"
        )
        self.assertEqual(
            self.send(b"USER a b\r\n"), b"-ERR Wrong arguments, usage: USER name\r\n"
        )
        self.assertEqual(
            self.send(b"CAPA x\r\n"),
            b"-ERR Wrong arguments, usage: CAPA with no arguments\r\n",
        )
        self.login()
        self.assertEqual(
            self.send(b"RETR\r\n"), b"-ERR Wrong arguments, usage: RETR message\r\n"
        )
        self.assertEqual(
            self.send(b"TOP 1\r\n"),
            b"-ERR Wrong arguments, usage: TOP message lines\r\n",
        )
        self.assertEqual(
            self.send(b"LIST 1 2\r\n"),
            b"-ERR Wrong arguments, usage: LIST [message]\r\n",
        )

    def test_case_insensitive(self) -> None:
        """Command names are case-insensitive."""
        self.login()
        self.assertEqual(self.send(b"noop\r\n"), b"+OK\r\n")

    def test_long_line(self) -> None:
        """An over-long line gets -ERR and the session goes on; a third closes it."""
        limit = self.config.limits.line_length
        self.assertEqual(
            self.send(b"X" * (limit + 1) + b"\r\n"), b"-ERR Line too long\r\n"
        )
        self.assertEqual(self.send(b"CAPA\r\n")[:3], b"+OK")
        self.assertEqual(
            self.send(b"Y" * (limit + 1) + b"\r\nNOOP\r\n"),
            b"-ERR Line too long\r\n-ERR Log in first\r\n",
        )
        self.assertEqual(
            self.send(b"Z" * (limit + 1) + b"\n"),
            b"-ERR Too many over-long lines, closing the connection\r\n",
        )
        self.assertTrue(self.transport.disconnecting)

    def test_endless_line(self) -> None:
        """More than a line's worth without a line break gets one -ERR and
        the connection is closed at once; nothing more is read or kept."""
        limit = self.config.limits.line_length
        first = self.send(b"Y" * (limit // 2))
        second = self.send(b"Y" * limit)
        third = self.send(b"NOOP\r\n")
        self.assertEqual(
            (first, second, third, self.transport.disconnecting, self.proto._buffer),
            (b"", b"-ERR Line too long, closing the connection\r\n", b"", True, b""),
        )

    # -- transaction ----------------------------------------------------------

    def test_stat_list_uidl(self) -> None:
        """STAT, LIST and UIDL answer in RFC 1939's forms."""
        self.login()
        sizes = [len(m) for m in MESSAGES]
        self.assertEqual(self.send(b"STAT\r\n"), b"+OK 3 %d\r\n" % sum(sizes))
        self.assertEqual(
            self.send(b"LIST\r\n"),
            b"+OK\r\n1 %d\r\n2 %d\r\n3 %d\r\n.\r\n" % tuple(sizes),
        )
        self.assertEqual(self.send(b"LIST 2\r\n"), b"+OK 2 %d\r\n" % sizes[1])
        self.assertEqual(
            self.send(b"UIDL\r\n"), b"+OK\r\n1 uid-1\r\n2 uid-2\r\n3 uid-3\r\n.\r\n"
        )
        self.assertEqual(self.send(b"UIDL 3\r\n"), b"+OK 3 uid-3\r\n")

    def test_bad_message_numbers(self) -> None:
        """0, negative, non-numeric, huge and out-of-range numbers get -ERR."""
        self.login()
        invalid = b"-ERR Invalid message number: use a positive whole number\r\n"
        for command in (b"LIST", b"UIDL", b"RETR", b"DELE"):
            self.assertEqual(
                self.send(command + b" 0\r\n"), b"-ERR No such message: 0\r\n"
            )
            self.assertEqual(
                self.send(command + b" 4\r\n"), b"-ERR No such message: 4\r\n"
            )
            for bad in (b"-1", b"abc", b"1.5", b"+1", b"99999999999", b"\xff"):
                self.assertEqual(self.send(command + b" " + bad + b"\r\n"), invalid)
        self.assertEqual(self.send(b"TOP x 1\r\n"), invalid)
        self.assertEqual(
            self.send(b"TOP 1 -1\r\n"),
            b"-ERR Invalid line count: use a whole number of lines\r\n",
        )

    def test_retr(self) -> None:
        """RETR sends the exact octets, dot-stuffed, then the terminator."""
        self.login()
        self.assertEqual(
            self.send(b"RETR 2\r\n"),
            b"+OK %d octets\r\n" % len(MESSAGES[1])
            + b"Subject: two\r\n\r\n..starts with a dot\r\n...two dots\r\nend\r\n.\r\n",
        )

    def test_top(self) -> None:
        """TOP sends the header and the requested number of body lines."""
        self.login()
        self.assertEqual(
            self.send(b"TOP 3 0\r\n"),
            b"+OK Top of message follows\r\nSubject: three\r\nX: y\r\n\r\n.\r\n",
        )
        self.assertEqual(
            self.send(b"TOP 3 2\r\n"),
            b"+OK Top of message follows\r\nSubject: three\r\nX: y\r\n\r\n"
            b"line 1\r\nline 2\r\n.\r\n",
        )
        self.assertEqual(
            self.send(b"TOP 3 99\r\n"),
            b"+OK Top of message follows\r\n" + MESSAGES[2] + b".\r\n",
        )

    def test_dele_rset(self) -> None:
        """DELE hides a message from every command; RSET brings it back."""
        self.login()
        self.assertEqual(self.send(b"DELE 1\r\n"), b"+OK Message 1 deleted\r\n")
        deleted = b"-ERR Message 1 is deleted\r\n"
        for command in (b"DELE 1", b"RETR 1", b"LIST 1", b"UIDL 1", b"TOP 1 0"):
            self.assertEqual(self.send(command + b"\r\n"), deleted)
        rest = sum(len(m) for m in MESSAGES[1:])
        self.assertEqual(self.send(b"STAT\r\n"), b"+OK 2 %d\r\n" % rest)
        self.assertEqual(self.send(b"UIDL\r\n"), b"+OK\r\n2 uid-2\r\n3 uid-3\r\n.\r\n")
        self.assertEqual(
            self.send(b"RSET\r\n"),
            b"+OK Maildrop has 3 messages (%d octets)\r\n" % sum(map(len, MESSAGES)),
        )
        self.assertEqual(self.send(b"LIST 1\r\n"), b"+OK 1 %d\r\n" % len(MESSAGES[0]))

    def test_quit_syncs(self) -> None:
        """QUIT in TRANSACTION applies the deletions, then says +OK and closes."""
        self.login()
        self.send(b"DELE 2\r\n")
        self.assertEqual(self.send(b"QUIT\r\n"), b"+OK Bye, 1 messages deleted\r\n")
        self.assertEqual(self.mailbox.synced, [{1}])
        self.assertTrue(self.transport.disconnecting)

    def test_quit_authorization(self) -> None:
        """QUIT before login just closes."""
        self.assertEqual(self.send(b"QUIT\r\n"), b"+OK Bye\r\n")
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.mailbox.synced, [])

    def test_dropped_connection_applies_nothing(self) -> None:
        """A connection lost after DELE logs out without syncing."""
        self.login()
        self.send(b"DELE 1\r\n")
        self.proto.connectionLost(None)
        self.assertEqual(self.mailbox.synced, [])
        self.assertEqual(self.realm.logouts, 1)

    def test_pipelining(self) -> None:
        """Pipelined commands are answered in order."""
        self.login()
        self.assertEqual(
            self.send(b"STAT\r\nLIST 1\r\nUIDL 1\r\nNOOP\r\nDELE 3\r\nSTAT\r\n"),
            b"+OK 3 %d\r\n" % sum(map(len, MESSAGES))
            + b"+OK 1 %d\r\n" % len(MESSAGES[0])
            + b"+OK 1 uid-1\r\n+OK\r\n+OK Message 3 deleted\r\n"
            + b"+OK 2 %d\r\n" % sum(map(len, MESSAGES[:2])),
        )

    def test_many_pipelined_commands(self) -> None:
        """Fifty thousand commands in one packet are all answered, in linear time."""
        self.login()
        started = time.perf_counter()
        reply = self.send(b"NOOP\r\n" * 50000)
        self.assertEqual(reply, b"+OK\r\n" * 50000)
        self.assertLess(time.perf_counter() - started, 10)

    def test_internal_error(self) -> None:
        """A mailbox failure gives a generic temporary error, never its name."""
        self.login()
        self.mailbox.fail_listing = True
        self.assertEqual(
            self.send(b"STAT\r\n"),
            b"-ERR [SYS/TEMP] Temporary server error, try again later\r\n",
        )
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.mailbox.fail_listing = False
        self.assertEqual(self.send(b"NOOP\r\n"), b"+OK\r\n")

    def test_idle_timeout(self) -> None:
        """An idle session is closed after the configured 10 minutes."""
        self.login()
        self.transport.clear()
        self.clock.advance(599)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(1)
        self.assertEqual(
            self.transport.value(),
            b"-ERR [SYS/TEMP] Idle for too long, closing the connection\r\n",
        )
        self.assertTrue(self.transport.disconnecting)

    def test_idle_after_commands(self) -> None:
        """The idle timer restarts after every command, not only the first."""
        self.login()
        for _ in range(3):
            self.clock.advance(500)
            self.assertEqual(self.send(b"STAT\r\n")[:3], b"+OK")
        self.transport.clear()
        self.clock.advance(600)
        self.assertEqual(
            self.transport.value(),
            b"-ERR [SYS/TEMP] Idle for too long, closing the connection\r\n",
        )

    def test_login_deadline(self) -> None:
        """A session that trickles bytes but never logs in is closed at the deadline."""
        deadline = self.config.auth.login_deadline
        for _ in range(int(deadline // 30)):
            self.clock.advance(29)
            self.send(b"CAPA\r\n")
        self.transport.clear()
        self.clock.advance(deadline - 29 * int(deadline // 30))
        self.assertEqual(
            self.transport.value(),
            b"-ERR [SYS/TEMP] Too slow to log in, closing the connection\r\n",
        )
        self.assertTrue(self.transport.disconnecting)

    def test_no_deadline_after_login(self) -> None:
        """Once logged in, only the idle timeout applies."""
        self.login()
        self.clock.advance(self.config.auth.login_deadline + 1)
        self.assertFalse(self.transport.disconnecting)

    def test_revoked_credentials(self) -> None:
        """Once the session's credentials are revoked, the next command ends it
        without applying its deletions."""
        self.mailbox.credentials_valid = lambda: succeed(self.valid)  # type: ignore[attr-defined]
        self.valid = True
        self.login()
        self.assertEqual(self.send(b"DELE 1\r\n"), b"+OK Message 1 deleted\r\n")
        self.valid = False
        self.assertEqual(
            self.send(b"QUIT\r\n"),
            b"-ERR [AUTH] The password of this session was revoked\r\n",
        )
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual((self.mailbox.synced, self.realm.logouts), ([], 1))

    def test_logout_line(self) -> None:
        """Each session logs one line at logout with what it did."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.login()
        self.send(b"RETR 1\r\nRETR 2\r\nDELE 1\r\nQUIT\r\n")
        self.proto.connectionLost(None)
        lines = [e for e in events if e.get("log_format", "").startswith("logout")]
        self.assertEqual(len(lines), 1)
        event = lines[0]
        self.assertEqual(
            (
                event["account"],
                event["retrieved"],
                event["octets"],
                event["deleted"],
                event["ended"],
            ),
            ("alice@example.com", 2, len(MESSAGES[0]) + len(MESSAGES[1]), 1, "quit"),
        )


class SynchronousMailboxTests(ProtocolMixin, SynchronousTestCase):
    asynchronous = False


class AsynchronousMailboxTests(ProtocolMixin, SynchronousTestCase):
    asynchronous = True

    def test_quit_waits_for_sync(self) -> None:
        """+OK to QUIT is sent only after the deletions are durable."""
        self.login()
        self.send(b"DELE 1\r\n")
        self.mailbox.sync_result = Deferred()
        self.assertEqual(self.send(b"QUIT\r\n"), b"")
        self.assertFalse(self.transport.disconnecting)
        self.mailbox.sync_result.callback(None)
        self.assertEqual(self.transport.value(), b"+OK Bye, 1 messages deleted\r\n")

    def test_quit_sync_fails(self) -> None:
        """If the deletions cannot be saved, QUIT says so and deletes nothing."""
        self.login()
        self.send(b"DELE 1\r\n")
        self.mailbox.sync_result = fail(OSError("disk full"))
        self.assertEqual(
            self.send(b"QUIT\r\n"),
            b"-ERR [SYS/TEMP] Could not apply the deletions; nothing was deleted\r\n",
        )
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertTrue(self.transport.disconnecting)

    def test_pipeline_bounded(self) -> None:
        """While a command is pending, zpop stops reading past a bound."""
        self.login()
        self.transport.clear()
        self.proto.dataReceived(b"STAT\r\n")
        self.assertEqual(self.transport.producerState, "producing")
        self.proto.dataReceived(b"NOOP\r\n" * (PIPELINE_LIMIT // 6 + 1))
        self.assertEqual(self.transport.producerState, "paused")
        self.settle()
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual(
            self.transport.value().count(b"+OK\r\n"), PIPELINE_LIMIT // 6 + 1
        )


class BodyTransformTests(SynchronousTestCase):
    """RETR/TOP byte layout for any message and any chunking."""

    def transform(self, body: bytes, step: int, lines: int | None = None) -> bytes:
        t = BodyTransform(lines)
        out = b"".join(t.feed(body[i : i + step]) for i in range(0, len(body), step))
        return out + t.finish()

    def test_every_chunking(self) -> None:
        """Any chunk size gives the same bytes: CRLF, dot-stuffed, terminated."""
        body = b"a\n.b\r.c\r\n..d\n\r.\r\n.e"
        expected = b"a\r\n..b\r\n..c\r\n...d\r\n\r\n..\r\n..e\r\n.\r\n"
        for step in range(1, len(body) + 1):
            self.assertEqual(self.transform(body, step), expected, step)

    def test_final_crlf_added(self) -> None:
        """A body without a final line end still ends with CRLF before the dot."""
        self.assertEqual(self.transform(b"x", 1), b"x\r\n.\r\n")
        self.assertEqual(self.transform(b"x\r", 1), b"x\r\n.\r\n")

    def test_top_any_chunking(self) -> None:
        """TOP's cut falls in the same place for any chunking."""
        body = b"A: 1\r\nB: 2\r\n\r\n.one\r\ntwo\r\nthree\r\n"
        for step in range(1, len(body) + 1):
            self.assertEqual(
                self.transform(body, step, 2),
                b"A: 1\r\nB: 2\r\n\r\n..one\r\ntwo\r\n.\r\n",
                step,
            )
            self.assertEqual(
                self.transform(body, step, 0), b"A: 1\r\nB: 2\r\n\r\n.\r\n"
            )

    def test_reader_that_answers_at_once(self) -> None:
        """A reader whose last read fires synchronously (a known end) still
        gets the body out before the terminating dot."""
        written: list[bytes] = []

        class Transport:
            def registerProducer(self, producer: Any, streaming: bool) -> None:
                pass

            def unregisterProducer(self) -> None:
                pass

            def write(self, data: bytes) -> None:
                written.append(data)

        class Reader:
            def __init__(self) -> None:
                self.reads = [Deferred(), succeed(b"")]

            def read(self, size: int) -> Deferred:
                return self.reads.pop(0)

        reader = Reader()
        first = reader.reads[0]
        producer = BodyProducer(Transport(), reader, BodyTransform(None, True))
        done = producer.start()
        first.callback(b"body\r\n")
        self.assertEqual(
            (b"".join(written), self.successResultOf(done)), (b"body\r\n.\r\n", 6)
        )

    def test_chunked_retr(self) -> None:
        """RETR through a mailbox that returns a few bytes per read is intact."""
        clock = Clock()
        mailbox = MemoryMailbox([MESSAGES[1]], step=3)
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(USER, PASSWORD)
        portal = Portal(MailboxRealm(mailbox), [checker])
        proto = POP3Factory(
            PortalAuthenticator(portal), POP3Settings.from_config(Config()), clock, True
        ).buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.dataReceived(b"USER " + USER + b"\r\nPASS " + PASSWORD + b"\r\n")
        transport.clear()
        proto.dataReceived(b"RETR 1\r\n")
        while transport.producer is not None:
            transport.producer.resumeProducing()
        self.assertEqual(
            transport.value(),
            b"+OK %d octets\r\n" % len(MESSAGES[1])
            + b"Subject: two\r\n\r\n..starts with a dot\r\n...two dots\r\nend\r\n.\r\n",
        )


class MailboxInterfaceTests(SynchronousTestCase):
    def test_fakes_provide_imailbox(self) -> None:
        """The fake mailboxes used here really provide IMailbox."""
        self.assertTrue(verifyObject(IMailbox, MemoryMailbox([])))
        self.assertTrue(verifyObject(IMailbox, AsyncMailbox(Clock(), [])))
