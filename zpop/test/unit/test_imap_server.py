"""The IMAP session in memory (StringTransport, Clock, MemoryStore): login
rules, hostile input, STARTTLS, APPEND literals, IDLE wake-ups."""

from __future__ import annotations

import base64
from typing import Any

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from zpop.accounts.credentials import AppPasswordRequired, Identity
from zpop.accounts.imap_account import IImapAccount, ImapAccount
from zpop.imap.server import MAX_BAD_COMMANDS, IMAPFactory, ImapSettings
from zpop.store.mailbox import DELETED
from zpop.store.memory import MemoryStore
from zpop.store.records import NewMessage

NOW = 1_800_000_000.0
BOB = "bob@example.com"


class FakeAuthenticator:
    """The checker's ``login``: ``secret`` is the password; ``2fa`` is a
    right primary password under two-factor; an ``app`` password logs in
    as app password ``app_id``."""

    def __init__(self, store: MemoryStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.app_id: int | None = None
        self.logins: list[tuple[str, bytes]] = []

    def login(
        self,
        protocol: str,
        client: str,
        user: bytes,
        password: bytes,
        mind: Any,
        interface: Any,
    ) -> Deferred[Any]:
        self.logins.append((protocol, user))
        assert interface is IImapAccount
        if password == b"2fa":
            return fail(AppPasswordRequired())
        if password not in (b"secret", b"app"):
            return fail(UnauthorizedLogin())
        account = self.successful(self.store.get_account(user.decode()))
        identity = (
            Identity(BOB, "app password phone", self.app_id)
            if password == b"app"
            else Identity(BOB, "primary")
        )
        avatar = ImapAccount(self.store, account, identity, self.clock, 1000)
        return succeed((IImapAccount, avatar, lambda: None))

    @staticmethod
    def successful(d: Deferred[Any]) -> Any:
        results: list[Any] = []
        d.addCallback(results.append)
        return results[0]


class TLSTransport(StringTransport):
    def __init__(self) -> None:
        super().__init__()
        self.tls: Any = None

    def startTLS(self, context: Any) -> None:  # noqa: N802 - Twisted API
        self.tls = context


class SessionTestCase(SynchronousTestCase):
    implicit = True

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.store = MemoryStore()
        self.successResultOf(self.store.add_domain("example.com", False, NOW))
        self.account = self.successResultOf(
            self.store.add_account(BOB, "paid", False, None, NOW)
        )
        self.authenticator = FakeAuthenticator(self.store, self.clock)
        factory = IMAPFactory(
            self.authenticator,
            ImapSettings("mail.example.com", max_message_size=1000),
            self.clock,
            implicit_tls=self.implicit,
            stls_context=object(),
        )
        self.proto = factory.buildProtocol(None)
        self.transport = TLSTransport()
        self.proto.makeConnection(self.transport)
        self.greeting = self.read()

    def read(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return bytes(data)

    def send(self, data: bytes) -> bytes:
        self.proto.dataReceived(data)
        return self.read()

    def login(self) -> None:
        self.assertTrue(
            self.send(b"l LOGIN bob@example.com secret\r\n").startswith(b"l OK")
        )


class PlaintextTests(SessionTestCase):
    implicit = False

    def test_greeting(self) -> None:
        self.assertEqual(
            self.greeting,
            b"* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE STARTTLS"
            b" LOGINDISABLED] mail.example.com zpop IMAP ready\r\n",
        )

    def test_no_login_before_tls(self) -> None:
        """LOGIN and AUTHENTICATE are refused before TLS, and no secret
        reaches the checker."""
        self.assertEqual(
            self.send(b"a LOGIN bob@example.com secret\r\n"),
            b"a NO [PRIVACYREQUIRED] Log in only over TLS: issue STARTTLS first\r\n",
        )
        self.assertEqual(
            self.send(b"b AUTHENTICATE PLAIN AGJvYgBzZWNyZXQ=\r\n"),
            b"b NO [PRIVACYREQUIRED] Log in only over TLS: issue STARTTLS first\r\n",
        )
        self.assertEqual(self.authenticator.logins, [])

    def test_starttls_discards_pipelined_bytes(self) -> None:
        """What the client pipelined after STARTTLS is never run."""
        out = self.send(b"a STARTTLS\r\nb LOGIN bob@example.com secret\r\n")
        self.assertEqual(out, b"a OK Begin TLS negotiation now\r\n")
        self.assertIsNotNone(self.transport.tls)
        self.assertEqual(self.authenticator.logins, [])
        self.assertEqual(
            self.send(b"c CAPABILITY\r\n"),
            b"* CAPABILITY IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE AUTH=PLAIN\r\n"
            b"c OK CAPABILITY done\r\n",
        )

    def test_login_timeout(self) -> None:
        self.clock.advance(61)
        self.assertEqual(
            self.read(), b"* BYE Idle for too long, closing the connection\r\n"
        )
        self.assertTrue(self.transport.disconnecting)


class LoginTests(SessionTestCase):
    def test_login_and_failures(self) -> None:
        self.assertEqual(
            self.send(b"a LOGIN bob@example.com wrong\r\n"),
            b"a NO [AUTHENTICATIONFAILED] Authentication failed\r\n",
        )
        self.assertEqual(
            self.send(b"b LOGIN bob@example.com 2fa\r\n"),
            b"b NO [ALERT] Application-specific password required (two-factor"
            b" authentication is on): log in with an app-specific password\r\n",
        )
        self.assertEqual(
            self.send(b"c LOGIN bob@example.com wrong\r\n"),
            b"c NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
            b"* BYE Too many failed logins\r\n",
        )

    def test_sessions_per_account_and_address(self) -> None:
        """At most the configured sessions of one account from one address;
        one that ends makes room."""
        self.proto.factory.settings = self.proto.settings = ImapSettings(
            "mail.example.com", sessions_per_account_client=1
        )
        self.login()
        other = self.proto.factory.buildProtocol(None)
        transport = TLSTransport()
        other.makeConnection(transport)
        other.settings = self.proto.settings
        other.dataReceived(b"a LOGIN bob@example.com secret\r\n")
        self.assertTrue(
            transport.value().endswith(
                b"a NO [LIMIT] Too many IMAP sessions of this account from your"
                b" address\r\n"
            )
        )
        self.proto.connectionLost(None)
        transport.clear()
        other.dataReceived(b"b LOGIN bob@example.com secret\r\n")
        self.assertTrue(transport.value().startswith(b"b OK"), transport.value())

    def test_authenticate_plain(self) -> None:
        """SASL-IR in the command, or the response after a continuation."""
        response = base64.b64encode(b"\0bob@example.com\0secret")
        out = self.send(b"a AUTHENTICATE PLAIN " + response + b"\r\n")
        self.assertTrue(out.startswith(b"a OK [CAPABILITY IMAP4rev1 "), out)
        self.assertTrue(out.endswith(b"] Logged in\r\n"))

    def test_authenticate_continuation(self) -> None:
        self.assertEqual(self.send(b"a AUTHENTICATE PLAIN\r\n"), b"+ \r\n")
        out = self.send(base64.b64encode(b"\0bob@example.com\0secret") + b"\r\n")
        self.assertTrue(out.startswith(b"a OK [CAPABILITY "), out)

    def test_authenticate_cancelled_and_malformed(self) -> None:
        """The refusal carries the AUTHENTICATE command's tag."""
        self.send(b"a AUTHENTICATE PLAIN\r\n")
        self.assertEqual(self.send(b"*\r\n"), b"a BAD Authentication cancelled\r\n")
        self.send(b"b AUTHENTICATE PLAIN\r\n")
        self.assertEqual(
            self.send(b"!!!\r\n"), b"b BAD Invalid base64 in the response\r\n"
        )

    def test_id_and_namespace(self) -> None:
        self.assertEqual(
            self.send(b'a ID ("name" "imaplib")\r\n'),
            b'* ID ("name" "zpop")\r\na OK ID done\r\n',
        )
        self.login()
        self.assertEqual(
            self.send(b"b NAMESPACE\r\n"),
            b'* NAMESPACE (("" "/")) NIL NIL\r\nb OK NAMESPACE done\r\n',
        )
        self.assertEqual(
            self.send(b"c ENABLE CONDSTORE UTF8=ACCEPT\r\n"),
            b"* ENABLED CONDSTORE\r\nc OK ENABLE done\r\n",
        )

    def test_commands_need_login(self) -> None:
        self.assertEqual(self.send(b"a SELECT INBOX\r\n"), b"a BAD Log in first\r\n")

    def test_revoked_app_password_ends_the_session(self) -> None:
        password = self.successResultOf(
            self.store.add_app_password(BOB, "phone", b"d" * 32, NOW)
        )
        self.authenticator.app_id = password.id
        self.assertTrue(
            self.send(b"a LOGIN bob@example.com app\r\n").startswith(b"a OK")
        )
        self.successResultOf(self.store.revoke_app_password(BOB, password.id))
        self.assertEqual(
            self.send(b"b NOOP\r\n"),
            b"* BYE The password of this session was revoked\r\n",
        )
        self.assertTrue(self.transport.disconnecting)


class HostileInputTests(SessionTestCase):
    def test_huge_literal_refused_before_any_byte(self) -> None:
        """A {999999999} literal gets NO [TOOBIG] and never a continuation;
        the session goes on."""
        self.assertEqual(
            self.send(b"a LOGIN {999999999}\r\n"), b"a NO [TOOBIG] Literal too big\r\n"
        )
        self.assertEqual(self.send(b"b NOOP\r\n"), b"b OK NOOP done\r\n")

    def test_huge_non_synchronizing_literal_closes(self) -> None:
        self.assertEqual(
            self.send(b"a LOGIN {999999999+}\r\nxxxx"),
            b"* BYE Literal too big: closing the connection\r\n",
        )
        self.assertTrue(self.transport.disconnecting)

    def test_bad_commands_then_disconnect(self) -> None:
        for _ in range(MAX_BAD_COMMANDS - 1):
            self.assertEqual(
                self.send(b"x FROB\r\n"), b"x BAD unknown command FROB\r\n"
            )
        self.assertEqual(
            self.send(b"x FROB\r\n"),
            b"x BAD unknown command FROB\r\n"
            b"* BYE Too many bad commands, closing the connection\r\n",
        )
        self.assertTrue(self.transport.disconnecting)

    def test_errors_name_no_exception(self) -> None:
        self.login()
        for line, reply in (
            (b"a SELECT\r\n", b"a BAD "),
            (b"b FETCH 1:* FLAGS\r\n", b"b BAD Select a mailbox first\r\n"),
            (b"c SELECT Nope\r\n", b"c NO [NONEXISTENT] No such mailbox\r\n"),
            (b"d CREATE a//b\r\n", b"d NO [CANNOT] a folder name has no empty level"),
        ):
            out = self.send(line)
            self.assertTrue(out.startswith(reply), out)
            self.assertNotIn(b"Error", out)
            self.assertNotIn(b"Traceback", out)

    def test_idle_timeout_after_login(self) -> None:
        self.login()
        self.clock.advance(29 * 60)
        self.assertEqual(self.read(), b"")
        self.clock.advance(61)
        self.assertEqual(
            self.read(), b"* BYE Idle for too long, closing the connection\r\n"
        )


class MailboxTests(SessionTestCase):
    def test_append_literal(self) -> None:
        """APPEND without flags (imaplib's form) with a synchronizing literal;
        OK with APPENDUID once stored; over the size limit: TOOBIG."""
        self.login()
        message = b"Subject: hi\r\n\r\nhello\r\n"
        self.assertEqual(
            self.send(b"a APPEND INBOX {%d}\r\n" % len(message)),
            b"+ Ready for the literal\r\n",
        )
        inbox = self.successResultOf(self.store.get_folder(self.account.id, "INBOX"))
        self.assertEqual(
            self.send(message + b"\r\n"),
            b"a OK [APPENDUID %d 1] APPEND done\r\n" % inbox.uid_validity,
        )
        [stored] = self.successResultOf(self.store.list_messages(self.account.id))
        self.assertEqual(
            self.successResultOf(self.store.read_body(stored.id, 0, 100)), message
        )
        self.assertEqual(
            self.send(b"b APPEND INBOX {1001}\r\n"),
            b"b NO [TOOBIG] Literal too big\r\n",
        )

    def test_fetch_of_a_message_expunged_elsewhere(self) -> None:
        """A message another session expunged while this one still numbers
        it: left out of FETCH, NO [EXPUNGEISSUED]; its EXPUNGE comes at the
        next command that may send one."""
        new = NewMessage("Inbox", b"Subject: x\r\n\r\nbody\r\n", "x", NOW)
        self.successResultOf(self.store.store_messages(self.account.id, [new, new]))
        self.login()
        self.send(b"s SELECT INBOX\r\n")
        inbox = self.successResultOf(self.store.get_folder(self.account.id, "INBOX"))
        self.successResultOf(self.store.store_flags(inbox.id, [1], "add", DELETED, []))
        self.successResultOf(self.store.expunge(inbox.id))
        self.assertEqual(
            self.send(b"f FETCH 1:2 (UID BODY.PEEK[TEXT])\r\n"),
            b"* 2 FETCH (UID 2 BODY[TEXT] {6}\r\nbody\r\n)\r\n"
            b"f NO [EXPUNGEISSUED] Some messages were expunged meanwhile\r\n",
        )
        self.assertEqual(self.send(b"n NOOP\r\n"), b"* 1 EXPUNGE\r\nn OK NOOP done\r\n")

    def test_idle_wakes_on_new_mail(self) -> None:
        self.login()
        self.send(b"s SELECT INBOX\r\n")
        self.assertEqual(self.send(b"i IDLE\r\n"), b"+ idling\r\n")
        self.successResultOf(
            self.store.store_messages(
                self.account.id, [NewMessage("Inbox", b"Subject: x\r\n\r\n", "x", NOW)]
            )
        )
        self.clock.advance(1)
        self.assertEqual(self.read(), b"* 1 EXISTS\r\n")
        self.assertEqual(self.send(b"DONE\r\n"), b"i OK IDLE done\r\n")
