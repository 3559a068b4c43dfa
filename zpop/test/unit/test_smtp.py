"""SMTP protocol tests in memory: StringTransport, Clock, a real SQLite store
called synchronously, the real checker, realm and Authenticator.

Every test sends exact bytes and asserts exact replies.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from twisted.cred.portal import Portal
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from zpop.accounts.credentials import AccountChecker, Authenticator
from zpop.accounts.realm import ISubmitter, Realm, Submitter
from zpop.commands import PIPELINE_LIMIT
from zpop.config import (
    AuthConfig,
    Config,
    LimitsConfig,
    ServerConfig,
    SubmissionConfig,
)
from zpop.delivery import SMTPDelivery
from zpop.smtp import SMTPFactory
from zpop.smtp_transaction import SMTPSettings
from zpop.store import Accepted, StoreError
from zpop.test.stores import KEY, add_account, add_app_password, make_store, result
from zpop.threads import run_synchronously
from zpop.wire.paths import AddressError, parse_path

ALICE = "alice@example.com"
ALICE_PASSWORD = "alice-secret-pw"
GREETING = b"220 smtp.example.test ESMTP zpop ready\r\n"
EHLO_BASE = [
    b"250-smtp.example.test",
    b"250-PIPELINING",
    b"250-SIZE 4096",
    b"250-8BITMIME",
]
MESSAGE = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.com\r\n"
    b"Subject: hello\r\n"
    b"\r\n"
    b"Hi Bob!\r\n"
)
SMUGGLING_ENDINGS = [
    b"\n.\n",
    b"\n.\r\n",
    b"\r.\r",
    b"\r.\n",
    b"\r.\r\n",
    b"\r\n.\n",
    b"\r\n.\r",
    b"\n.\r",
    b"\r\n.\r\r\n",
    b"\r\r\n.\r\r\n",
]


def plain(user: str, password: str, authzid: str = "") -> bytes:
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode())


def ehlo(*tail: bytes) -> bytes:
    lines = [*EHLO_BASE, *tail]
    last = lines[-1].replace(b"250-", b"250 ", 1)
    return b"\r\n".join([*lines[:-1], last]) + b"\r\n"


class TLSStringTransport(StringTransport):
    """A StringTransport that records startTLS, with a loopback peer."""

    tls_started_with: Any = None

    def __init__(self) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))

    def startTLS(self, context: Any) -> None:
        self.tls_started_with = context


class SlowRouter:
    """An SMTPDelivery whose answers come one clock tick later."""

    def __init__(self, inner: SMTPDelivery, clock: Clock) -> None:
        self.inner = inner
        self.clock = clock
        self.commit_result: Deferred | None = None

    def route(self, address: str) -> Deferred:
        return deferLater(self.clock, 1, lambda: result(self.inner.route(address)))

    def commit(self, *args: Any) -> Deferred:
        if self.commit_result is not None:
            return self.commit_result
        return deferLater(self.clock, 1, lambda: result(self.inner.commit(*args)))


class SMTPTestCase(SynchronousTestCase):
    """A store with alice (alias al@), bob and carol, and one session."""

    role = "submission"

    def make_config(self, **sections: Any) -> Config:
        """Small limits, no failure delay; ``sections`` replace whole ones."""
        config = Config(
            server=ServerConfig(hostname="example.test"),
            auth=AuthConfig(failure_delay=0.0),
            limits=LimitsConfig(message_size=4096, recipients=3, line_length=100),
        )
        return config.replace(**sections)

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = make_store()
        self.addCleanup(self.store.close)
        self.alice = add_account(self.store, ALICE, ALICE_PASSWORD)
        self.bob = add_account(self.store, "bob@example.com")
        self.carol = add_account(self.store, "carol@corp.example")
        result(self.store.add_alias(ALICE, "al@example.com"))
        self.tls_context = object()
        self.build()

    def build(self, **changes: Any) -> None:
        self.config = self.make_config(**changes)
        checker = AccountChecker(self.store, KEY, run_synchronously, self.clock, 4)
        config = self.config
        realm = Realm(self.store, config.hosts, config.accounts, self.clock)
        portal = Portal(realm, [checker])
        self.authenticator = Authenticator(
            portal, self.store, self.clock, config.auth, KEY
        )
        self.router: Any = SMTPDelivery(
            self.store, config.submission, config.outbound.lifetime, self.clock
        )
        self.connect()

    def connect(self, role: str | None = None) -> None:
        factory = SMTPFactory(
            role or self.role,
            self.authenticator,
            self.router,
            SMTPSettings.from_config(self.config),
            self.clock,
            self.tls_context,
        )
        self.proto = factory.buildProtocol(None)
        self.transport = TLSStringTransport()
        self.proto.makeConnection(self.transport)
        self.greeting = self.transport.value()
        self.transport.clear()

    def send(self, data: bytes) -> bytes:
        self.transport.clear()
        self.proto.dataReceived(data)
        return self.transport.value()

    def starttls(self) -> None:
        self.assertEqual(
            self.send(b"STARTTLS\r\n"), b"220 2.0.0 Ready to start TLS\r\n"
        )

    def ready(self, login: bool = True) -> None:
        """EHLO, STARTTLS where needed, EHLO, AUTH as alice."""
        self.send(b"EHLO client.example\r\n")
        if self.proto.role.starttls:
            self.starttls()
            self.send(b"EHLO client.example\r\n")
        if login and self.proto.role.submission:
            self.assertEqual(
                self.send(b"AUTH PLAIN " + plain(ALICE, ALICE_PASSWORD) + b"\r\n"),
                b"235 2.7.0 Authentication successful\r\n",
            )

    def messages(self, account: Any, folder: str | None = None) -> list[bytes]:
        listed = result(self.store.list_messages(account.id, folder))
        return [result(self.store.read_body(m.id, 0, 1 << 20)) for m in listed]

    def queue(self) -> list[tuple[Any, ...]]:
        return [
            (m.sender, m.account_id, r.recipient, r.state, r.attempts)
            for m in result(self.store.list_outbound())
            for r in m.recipients
        ]


class GreetingTests(SMTPTestCase):
    def test_greeting(self) -> None:
        """The greeting names the public SMTP host, nothing internal."""
        self.assertEqual(self.greeting, GREETING)

    def test_submission_ehlo_before_tls(self) -> None:
        """587 before TLS: STARTTLS offered, AUTH not listed."""
        self.assertEqual(
            self.send(b"EHLO client.example\r\n"),
            ehlo(b"250-ENHANCEDSTATUSCODES", b"250-STARTTLS"),
        )

    def test_submission_ehlo_after_tls(self) -> None:
        """587 after STARTTLS: AUTH PLAIN LOGIN listed, STARTTLS no more."""
        self.send(b"EHLO client.example\r\n")
        self.starttls()
        self.assertEqual(
            self.send(b"EHLO client.example\r\n"),
            ehlo(b"250-ENHANCEDSTATUSCODES", b"250-AUTH PLAIN LOGIN"),
        )

    def test_smtps_ehlo(self) -> None:
        """465: AUTH listed at once, STARTTLS never."""
        self.connect("smtps")
        self.assertEqual(
            self.send(b"EHLO client.example\r\n"),
            ehlo(b"250-ENHANCEDSTATUSCODES", b"250-AUTH PLAIN LOGIN"),
        )

    def test_mx_ehlo(self) -> None:
        """25: STARTTLS offered, AUTH never, not even after TLS."""
        self.connect("mx")
        before = self.send(b"EHLO client.example\r\n")
        self.starttls()
        after = self.send(b"EHLO client.example\r\n")
        self.assertEqual(
            (before, after),
            (
                ehlo(b"250-ENHANCEDSTATUSCODES", b"250-STARTTLS"),
                ehlo(b"250-ENHANCEDSTATUSCODES"),
            ),
        )

    def test_helo(self) -> None:
        """HELO answers with the host name only."""
        self.assertEqual(self.send(b"HELO client\r\n"), b"250 smtp.example.test\r\n")

    def test_helo_needs_argument(self) -> None:
        """EHLO without a name, or with a space-separated one, is a 501."""
        self.assertEqual(
            [self.send(b"EHLO\r\n"), self.send(b"HELO a b\r\n")],
            [
                b"501 5.5.4 Syntax: EHLO hostname\r\n",
                b"501 5.5.4 Syntax: HELO hostname\r\n",
            ],
        )

    def test_simple_commands(self) -> None:
        """NOOP, RSET, VRFY, EXPN, HELP, unknown and empty commands."""
        self.assertEqual(
            [
                self.send(b"NOOP\r\n"),
                self.send(b"rset\r\n"),
                self.send(b"VRFY bob\r\n"),
                self.send(b"EXPN staff\r\n"),
                self.send(b"HELP\r\n"),
                self.send(b"BDAT 10\r\n"),
                self.send(b"\xff\xfe\r\n"),
                self.send(b"\r\n"),
            ],
            [
                b"250 2.0.0 OK\r\n",
                b"250 2.0.0 OK\r\n",
                b"252 2.5.0 Cannot verify the user, but will accept mail\r\n",
                b"502 5.5.1 EXPN not available\r\n",
                b"214 2.0.0 See RFC 5321; commands: EHLO HELO MAIL RCPT DATA RSET"
                b" NOOP QUIT STARTTLS AUTH\r\n",
                b"500 5.5.1 Command not recognized\r\n",
                b"500 5.5.1 Command not recognized\r\n",
                b"500 5.5.2 Syntax error: empty command\r\n",
            ],
        )

    def test_quit(self) -> None:
        """QUIT: 221 and the connection closes."""
        self.assertEqual(
            (self.send(b"QUIT\r\n"), self.transport.disconnecting),
            (b"221 2.0.0 Bye\r\n", True),
        )

    def test_mail_before_ehlo(self) -> None:
        """MAIL before EHLO/HELO is a sequence error (on the MX)."""
        self.connect("mx")
        self.assertEqual(
            self.send(b"MAIL FROM:<a@example.org>\r\n"),
            b"503 5.5.1 Send EHLO or HELO first\r\n",
        )


class STARTTLSTests(SMTPTestCase):
    def test_auth_before_tls(self) -> None:
        """587: AUTH and MAIL before STARTTLS are refused with 530."""
        self.send(b"EHLO client.example\r\n")
        self.assertEqual(
            [
                self.send(b"AUTH PLAIN " + plain(ALICE, ALICE_PASSWORD) + b"\r\n"),
                self.send(b"MAIL FROM:<alice@example.com>\r\n"),
            ],
            [b"530 5.7.0 Must issue a STARTTLS command first\r\n"] * 2,
        )

    def test_starttls_starts_tls(self) -> None:
        """STARTTLS answers 220 and starts TLS with the server's context."""
        self.send(b"EHLO client.example\r\n")
        self.starttls()
        self.assertIs(self.transport.tls_started_with, self.tls_context)

    def test_no_starttls_without_a_context(self) -> None:
        """A listener given no TLS context does not offer STARTTLS (only to
        refuse it with 502 when asked)."""
        self.tls_context = None
        self.connect("mx")
        self.assertEqual(
            self.send(b"EHLO client.example\r\n"),
            ehlo(b"250-ENHANCEDSTATUSCODES"),
        )

    def test_pipelined_after_starttls_refused(self) -> None:
        """Commands and half a line pipelined after STARTTLS never run: the
        client is out of sync, gets 554 5.5.0 and is closed, TLS unstarted."""
        self.send(b"EHLO client.example\r\n")
        out = self.send(b"STARTTLS\r\nRSET\r\nNOOP\r\nMAIL FROM:<alice@exa")
        more = self.send(b"mple.com>\r\n")
        self.assertEqual(
            (out, more, self.transport.disconnecting),
            (b"554 5.5.0 Error: SMTP protocol synchronization\r\n", b"", True),
        )
        self.assertIsNone(self.transport.tls_started_with)

    def test_session_reset_after_tls(self) -> None:
        """After STARTTLS the EHLO is forgotten: MAIL and AUTH need a new one."""
        self.connect("mx")
        self.send(b"EHLO client.example\r\n")
        self.starttls()
        self.assertEqual(
            self.send(b"MAIL FROM:<a@example.org>\r\n"),
            b"503 5.5.1 Send EHLO or HELO first\r\n",
        )

    def test_transaction_reset_after_tls(self) -> None:
        """A MAIL given before STARTTLS is not carried into TLS."""
        self.connect("mx")
        self.send(b"EHLO client.example\r\n")
        self.send(b"MAIL FROM:<a@example.org>\r\n")
        self.starttls()
        self.send(b"EHLO client.example\r\n")
        self.assertEqual(
            self.send(b"RCPT TO:<bob@example.com>\r\n"),
            b"503 5.5.1 Need MAIL command first\r\n",
        )

    def test_auth_needs_ehlo_after_tls(self) -> None:
        """AUTH right after STARTTLS (no new EHLO) is a 503."""
        self.send(b"EHLO client.example\r\n")
        self.starttls()
        self.assertEqual(
            self.send(b"AUTH PLAIN " + plain(ALICE, ALICE_PASSWORD) + b"\r\n"),
            b"503 5.5.1 Send EHLO first\r\n",
        )

    def test_starttls_twice(self) -> None:
        """A second STARTTLS, and STARTTLS on 465, get 554 5.5.1."""
        self.send(b"EHLO client.example\r\n")
        self.starttls()
        again = self.send(b"STARTTLS\r\n")
        self.connect("smtps")
        self.send(b"EHLO client.example\r\n")
        self.assertEqual(
            [again, self.send(b"STARTTLS\r\n")],
            [b"554 5.5.1 TLS already active\r\n"] * 2,
        )

    def test_starttls_with_argument(self) -> None:
        """STARTTLS takes no parameters."""
        self.assertEqual(
            self.send(b"STARTTLS now\r\n"),
            b"501 5.5.4 Syntax: STARTTLS (no parameters)\r\n",
        )


class AuthTests(SMTPTestCase):
    role = "smtps"

    def setUp(self) -> None:
        super().setUp()
        self.send(b"EHLO client.example\r\n")

    def test_mail_before_auth(self) -> None:
        """465: MAIL before AUTH is refused with 530 5.7.0."""
        self.assertEqual(
            self.send(b"MAIL FROM:<alice@example.com>\r\n"),
            b"530 5.7.0 Authentication required\r\n",
        )

    def test_plain_initial_response(self) -> None:
        """AUTH PLAIN with an initial response logs in."""
        self.assertEqual(
            self.send(b"AUTH PLAIN " + plain(ALICE, ALICE_PASSWORD) + b"\r\n"),
            b"235 2.7.0 Authentication successful\r\n",
        )

    def test_plain_challenge(self) -> None:
        """AUTH PLAIN without an initial response gets an empty 334."""
        first = self.send(b"AUTH PLAIN\r\n")
        second = self.send(plain(ALICE.upper(), ALICE_PASSWORD) + b"\r\n")
        self.assertEqual(
            (first, second), (b"334 \r\n", b"235 2.7.0 Authentication successful\r\n")
        )

    def test_login(self) -> None:
        """AUTH LOGIN asks for user name and password in base64."""
        out = [
            self.send(b"AUTH LOGIN\r\n"),
            self.send(base64.b64encode(ALICE.encode()) + b"\r\n"),
            self.send(base64.b64encode(ALICE_PASSWORD.encode()) + b"\r\n"),
        ]
        self.assertEqual(
            out,
            [
                b"334 VXNlcm5hbWU6\r\n",
                b"334 UGFzc3dvcmQ6\r\n",
                b"235 2.7.0 Authentication successful\r\n",
            ],
        )

    def test_login_initial_response(self) -> None:
        """AUTH LOGIN with the user name as initial response asks the password."""
        out = [
            self.send(b"AUTH LOGIN " + base64.b64encode(ALICE.encode()) + b"\r\n"),
            self.send(base64.b64encode(ALICE_PASSWORD.encode()) + b"\r\n"),
        ]
        self.assertEqual(
            out, [b"334 UGFzc3dvcmQ6\r\n", b"235 2.7.0 Authentication successful\r\n"]
        )

    def test_unknown_user_and_wrong_password_identical(self) -> None:
        """Unknown user and wrong password get the same 535 5.7.8."""
        self.assertEqual(
            [
                self.send(b"AUTH PLAIN " + plain(ALICE, "wrong") + b"\r\n"),
                self.send(b"AUTH PLAIN " + plain("nobody@example.com", "x") + b"\r\n"),
            ],
            [b"535 5.7.8 Authentication credentials invalid\r\n"] * 2,
        )

    def test_bare_local_part(self) -> None:
        """A user name without the domain is told to use the full address."""
        self.assertEqual(
            self.send(b"AUTH PLAIN " + plain("alice", ALICE_PASSWORD) + b"\r\n"),
            b"535 5.7.8 Log in with your full email address\r\n",
        )

    def test_three_failures_close(self) -> None:
        """The third failed AUTH in a session closes it with 421."""
        bad = b"AUTH PLAIN " + plain(ALICE, "wrong") + b"\r\n"
        self.send(bad)
        self.send(bad)
        self.assertEqual(
            (self.send(bad), self.transport.disconnecting),
            (
                b"535 5.7.8 Authentication credentials invalid\r\n"
                b"421 4.7.0 Too many failed authentications, closing\r\n",
                True,
            ),
        )

    def test_second_auth(self) -> None:
        """A second AUTH after success is a 503."""
        self.send(b"AUTH PLAIN " + plain(ALICE, ALICE_PASSWORD) + b"\r\n")
        self.assertEqual(
            self.send(b"AUTH PLAIN " + plain(ALICE, ALICE_PASSWORD) + b"\r\n"),
            b"503 5.5.1 Already authenticated\r\n",
        )

    def test_auth_in_transaction(self) -> None:
        """AUTH inside a mail transaction is a 503."""
        self.send(b"AUTH PLAIN " + plain(ALICE, ALICE_PASSWORD) + b"\r\n")
        self.send(b"MAIL FROM:<alice@example.com>\r\n")
        self.assertEqual(
            self.send(b"AUTH LOGIN\r\n"), b"503 5.5.1 Already authenticated\r\n"
        )

    def test_other_authorization_identity(self) -> None:
        """An authorization identity other than the login is refused."""
        self.assertEqual(
            [
                self.send(
                    b"AUTH PLAIN "
                    + plain(ALICE, ALICE_PASSWORD, "bob@example.com")
                    + b"\r\n"
                ),
                self.send(
                    b"AUTH PLAIN " + plain(ALICE, ALICE_PASSWORD, ALICE) + b"\r\n"
                ),
            ],
            [
                b"535 5.7.8 Authorization identity must be the login name\r\n",
                b"235 2.7.0 Authentication successful\r\n",
            ],
        )

    def test_two_factor(self) -> None:
        """2FA on: the primary password gets 534 5.7.9, an app password 235."""
        result(self.store.set_two_factor(ALICE, True))
        secret = add_app_password(self.store, self.alice)
        self.assertEqual(
            [
                self.send(b"AUTH PLAIN " + plain(ALICE, ALICE_PASSWORD) + b"\r\n"),
                self.send(b"AUTH PLAIN " + plain(ALICE, secret) + b"\r\n"),
            ],
            [
                b"534 5.7.9 Application-specific password required"
                b" (two-factor authentication is on)\r\n",
                b"235 2.7.0 Authentication successful\r\n",
            ],
        )

    def test_banned_client(self) -> None:
        """A banned client address gets a temporary 454 4.7.0."""
        result(self.store.ban_client("127.0.0.1", 10_000.0))
        self.assertEqual(
            self.send(b"AUTH PLAIN " + plain(ALICE, ALICE_PASSWORD) + b"\r\n"),
            b"454 4.7.0 Too many failed logins, try again later\r\n",
        )

    def test_sasl_errors(self) -> None:
        """Cancel, bad base64, malformed PLAIN, unknown mechanism."""
        self.assertEqual(
            [
                self.send(b"AUTH PLAIN\r\n"),
                self.send(b"*\r\n"),
                self.send(b"AUTH PLAIN !!!!\r\n"),
                self.send(b"AUTH PLAIN " + base64.b64encode(b"no-nuls") + b"\r\n"),
                self.send(b"AUTH CRAM-MD5\r\n"),
                self.send(b"AUTH\r\n"),
            ],
            [
                b"334 \r\n",
                b"501 5.7.0 Authentication cancelled\r\n",
                b"501 5.5.2 Invalid base64 data\r\n",
                b"501 5.5.2 Malformed PLAIN response\r\n",
                b"504 5.5.4 Unrecognized authentication type\r\n",
                b"501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n",
            ],
        )

    def test_mx_has_no_auth(self) -> None:
        """AUTH on the MX is refused, even after STARTTLS."""
        self.connect("mx")
        self.send(b"EHLO client.example\r\n")
        self.starttls()
        self.send(b"EHLO client.example\r\n")
        self.assertEqual(
            self.send(b"AUTH PLAIN " + plain(ALICE, ALICE_PASSWORD) + b"\r\n"),
            b"503 5.5.1 Authentication not enabled\r\n",
        )

    def test_login_deadline(self) -> None:
        """A submission session that does not log in in time is closed."""
        self.transport.clear()
        self.clock.advance(self.config.auth.login_deadline)
        self.assertEqual(
            (self.transport.value(), self.transport.disconnecting),
            (b"421 4.7.0 smtp.example.test Too slow to log in, closing\r\n", True),
        )

    def test_avatar(self) -> None:
        """The realm's SMTP avatar: the account, its aliases, the Identity."""
        self.send(b"AUTH PLAIN " + plain(ALICE, ALICE_PASSWORD) + b"\r\n")
        submitter = self.proto._submitter
        self.assertEqual(
            (
                ISubmitter.providedBy(submitter),
                type(submitter),
                submitter.account.id,
                submitter.addresses,
                submitter.identity.method,
                submitter.owns("AL@Example.com"),
                submitter.owns("bob@example.com"),
            ),
            (
                True,
                Submitter,
                self.alice.id,
                frozenset({ALICE, "al@example.com"}),
                "primary",
                True,
                False,
            ),
        )


class SubmissionTests(SMTPTestCase):
    role = "smtps"

    def setUp(self) -> None:
        super().setUp()
        self.ready()

    def transaction(self, sender: bytes, rcpts: list[bytes], body: bytes) -> bytes:
        data = b"MAIL FROM:<" + sender + b">\r\n"
        for rcpt in rcpts:
            data += b"RCPT TO:<" + rcpt + b">\r\n"
        data += b"DATA\r\n" + body + b".\r\n"
        return self.send(data)

    def test_send_local_and_remote(self) -> None:
        """A message to a local and a remote recipient: Inbox copy with
        Received/Date/Message-ID, Sent copy, and a queue row, then 250."""
        out = self.transaction(
            b"alice@example.com", [b"bob@example.com", b"Dave@Remote.example"], MESSAGE
        )
        match = re.fullmatch(
            rb"250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n"
            rb"250 2.1.5 Recipient OK\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
            rb"250 2.0.0 Message accepted as ([0-9a-f]{16})\r\n",
            out,
        )
        assert match is not None, out
        queue_id = match.group(1)
        [inbox] = self.messages(self.bob, "Inbox")
        [sent] = self.messages(self.alice, "Sent")
        received = (
            b"Received: from client.example ([127.0.0.1])\r\n"
            b"\tby smtp.example.test with ESMTPSA id " + queue_id + b";\r\n"
            b"\tThu, 01 Jan 1970 00:00:00 +0000\r\n"
        )
        header, _, rest = sent.partition(b"Subject: hello\r\n")
        self.assertEqual(
            header, b"From: Alice <alice@example.com>\r\nTo: bob@example.com\r\n"
        )
        self.assertTrue(
            re.fullmatch(
                rb"Date: Thu, 01 Jan 1970 00:00:00 \+0000\r\n"
                rb"Message-ID: <[0-9a-f]{32}@smtp.example.test>\r\n\r\nHi Bob!\r\n",
                rest,
            ),
            rest,
        )
        self.assertEqual(
            (inbox, self.queue()),
            (
                received + sent,
                [(ALICE, self.alice.id, "Dave@remote.example", "queued", 0)],
            ),
        )

    def test_sent_copy_flags(self) -> None:
        """The Sent copy is marked seen and is not in the sender's Inbox."""
        self.transaction(b"alice@example.com", [b"bob@example.com"], MESSAGE)
        listed = result(self.store.list_messages(self.alice.id))
        self.assertEqual(
            [(m.folder, m.seen, m.subject) for m in listed], [("Sent", True, "hello")]
        )

    def test_no_sent_copy(self) -> None:
        """With save_sent_copy off, no Sent copy is kept."""
        self.build(submission=SubmissionConfig(save_sent_copy=False))
        self.connect("smtps")
        self.ready()
        self.transaction(b"alice@example.com", [b"bob@example.com"], MESSAGE)
        self.assertEqual(
            (len(self.messages(self.bob)), self.messages(self.alice)), (1, [])
        )

    def test_existing_date_and_message_id_kept(self) -> None:
        """A message with Date and Message-ID gets no second one."""
        body = (
            b"From: alice@example.com\r\nDate: Mon, 1 Jan 2024 10:00:00 +0100\r\n"
            b"Message-ID: <x@client>\r\n\r\nhi\r\n"
        )
        self.transaction(b"alice@example.com", [b"bob@example.com"], body)
        self.assertEqual(self.messages(self.alice, "Sent"), [body])

    def test_alias_sender(self) -> None:
        """An alias may be the envelope sender and the From: address."""
        body = MESSAGE.replace(b"alice@example.com", b"al@example.com")
        out = self.transaction(b"al@example.com", [b"bob@example.com"], body)
        self.assertEqual(
            (out[:21], out.split(b"\r\n")[-2][:30]),
            (b"250 2.1.0 Sender OK\r\n", b"250 2.0.0 Message accepted as "),
        )

    def test_spoofed_envelope_sender(self) -> None:
        """MAIL FROM another account's address is refused with 553 5.7.1."""
        self.assertEqual(
            [
                self.send(b"MAIL FROM:<bob@example.com>\r\n"),
                self.send(b"MAIL FROM:<ceo@remote.example>\r\n"),
                self.send(b"MAIL FROM:<>\r\n"),
            ],
            [
                b"553 5.7.1 Sender address not owned by alice@example.com\r\n",
                b"553 5.7.1 Sender address not owned by alice@example.com\r\n",
                b"553 5.7.1 Null sender not allowed on submission\r\n",
            ],
        )

    def test_spoofed_header_from(self) -> None:
        """A From: header naming someone else is refused at end of DATA and
        nothing is stored."""
        for spoof in [
            b"From: Bob <bob@example.com>\r\n",
            b"From: alice@example.com, bob@example.com\r\n",
            b"From: alice@example.com\r\nFrom: bob@example.com\r\n",
            b"From: =?utf-8?q?alice=40example=2Ecom?= <boss@remote.example>\r\n",
            b"From: <bob@example.com\r\n",
        ]:
            out = self.transaction(
                b"alice@example.com", [b"bob@example.com"], spoof + b"\r\nhi\r\n"
            )
            self.assertEqual(
                out.split(b"\r\n")[-2],
                b"553 5.7.1 Sender address not owned by alice@example.com",
                spoof,
            )
        self.assertEqual(
            (self.messages(self.bob), self.messages(self.alice), self.queue()),
            ([], [], []),
        )

    def test_missing_from_added(self) -> None:
        """A message without From: gets one naming the envelope sender."""
        self.transaction(
            b"alice@example.com", [b"bob@example.com"], b"Subject: x\r\n\r\nhi\r\n"
        )
        [sent] = self.messages(self.alice, "Sent")
        self.assertEqual(
            sent.split(b"\r\n")[:2], [b"Subject: x", b"From: <alice@example.com>"]
        )

    def test_password_not_in_message(self) -> None:
        """Neither the password nor the login exchange reaches the message."""
        self.transaction(b"alice@example.com", [b"bob@example.com"], MESSAGE)
        [inbox] = self.messages(self.bob)
        self.assertEqual(
            [
                ALICE_PASSWORD.encode() in inbox,
                plain(ALICE, ALICE_PASSWORD) in inbox,
                b"zpop" in inbox.lower(),
                b"twisted" in inbox.lower(),
            ],
            [False, False, False, False],
        )

    def test_unknown_hosted_recipient(self) -> None:
        """An unknown address in a hosted domain gets 550 5.1.1 at RCPT."""
        self.send(b"MAIL FROM:<alice@example.com>\r\n")
        self.assertEqual(
            self.send(b"RCPT TO:<nobody@example.com>\r\n"),
            b"550 5.1.1 Recipient address rejected: User unknown\r\n",
        )

    def test_recipient_limit(self) -> None:
        """Past max_recipients RCPT gets 452 4.5.3; the message still goes."""
        self.send(b"MAIL FROM:<alice@example.com>\r\n")
        out = self.send(
            b"RCPT TO:<bob@example.com>\r\nRCPT TO:<a@remote.example>\r\n"
            b"RCPT TO:<b@remote.example>\r\nRCPT TO:<c@remote.example>\r\n"
        )
        self.assertEqual(
            out,
            b"250 2.1.5 Recipient OK\r\n" * 3 + b"452 4.5.3 Too many recipients\r\n",
        )

    def test_size_parameter(self) -> None:
        """MAIL SIZE= over the limit is refused; at the limit accepted."""
        self.assertEqual(
            [
                self.send(b"MAIL FROM:<alice@example.com> SIZE=4097\r\n"),
                self.send(b"MAIL FROM:<alice@example.com> SIZE=4096 BODY=8BITMIME\r\n"),
            ],
            [
                b"552 5.3.4 Message size exceeds fixed maximum message size\r\n",
                b"250 2.1.0 Sender OK\r\n",
            ],
        )

    def test_unknown_parameters(self) -> None:
        """Unknown MAIL and RCPT parameters get 555 5.5.4."""
        first = self.send(b"MAIL FROM:<alice@example.com> SMTPUTF8\r\n")
        self.send(b"MAIL FROM:<alice@example.com>\r\n")
        self.assertEqual(
            [first, self.send(b"RCPT TO:<bob@example.com> NOTIFY=NEVER\r\n")],
            [
                b"555 5.5.4 Unsupported MAIL parameter SMTPUTF8\r\n",
                b"555 5.5.4 Unsupported RCPT parameter NOTIFY\r\n",
            ],
        )

    def test_data_too_big(self) -> None:
        """A message over the limit is refused with 552 5.3.4 at end of
        DATA, having stayed in DATA to the end; nothing is stored."""
        big = b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 100
        out = self.transaction(
            b"alice@example.com",
            [b"bob@example.com"],
            big + b"QUIT\r\n",
        )
        self.assertEqual(
            (
                out.split(b"\r\n")[-2],
                self.transport.disconnecting,
                self.messages(self.bob),
            ),
            (b"552 5.3.4 Message size exceeds fixed maximum message size", False, []),
        )

    def test_nested_mail_and_sequence(self) -> None:
        """A second MAIL, RCPT without MAIL, DATA without recipients."""
        out = [
            self.send(b"RCPT TO:<bob@example.com>\r\n"),
            self.send(b"DATA\r\n"),
            self.send(b"MAIL FROM:<alice@example.com>\r\n"),
            self.send(b"MAIL FROM:<alice@example.com>\r\n"),
            self.send(b"DATA\r\n"),
            self.send(b"RSET\r\n"),
            self.send(b"RCPT TO:<bob@example.com>\r\n"),
        ]
        self.assertEqual(
            out,
            [
                b"503 5.5.1 Need MAIL command first\r\n",
                b"503 5.5.1 Need MAIL command first\r\n",
                b"250 2.1.0 Sender OK\r\n",
                b"503 5.5.1 Sender already specified\r\n",
                b"554 5.5.1 No valid recipients\r\n",
                b"250 2.0.0 OK\r\n",
                b"503 5.5.1 Need MAIL command first\r\n",
            ],
        )

    def test_path_syntax(self) -> None:
        """Paths without brackets or with a bad address get 501."""
        self.assertEqual(
            [
                self.send(b"MAIL FROM:alice@example.com\r\n"),
                self.send(b"MAIL TO:<alice@example.com>\r\n"),
                self.send(b"MAIL FROM:<alice>\r\n"),
                self.send(b"MAIL FROM:<alice@example.com>x\r\n"),
                self.send(b"MAIL FROM: <alice@example.com>\r\n"),
                self.send(b"RCPT TO:<bob@@example.com>\r\n"),
                self.send(b"RCPT TO:<bob@exa_mple.com>\r\n"),
                self.send(b"RCPT TO:<b%c@example.com>\r\n"),
            ],
            [
                b"501 5.5.4 Syntax: FROM:<address> [parameters]\r\n",
                b"501 5.5.4 Syntax: FROM:<address> [parameters]\r\n",
                b"501 5.1.7 Bad sender address syntax\r\n",
                b"501 5.5.4 Syntax: FROM:<address> [parameters]\r\n",
                b"250 2.1.0 Sender OK\r\n",
                b"553 5.1.3 Address form not accepted (source route, %, ! or quoted @)"
                b"\r\n",
                b"501 5.1.3 Bad recipient address syntax\r\n",
                b"553 5.1.3 Address form not accepted (source route, %, ! or quoted @)"
                b"\r\n",
            ],
        )

    def test_dot_unstuffing(self) -> None:
        """Leading dots are unstuffed; a lone dot inside a line is data."""
        body = (
            b"From: alice@example.com\r\nDate: x\r\nMessage-ID: <y@z>\r\n\r\n"
            b"..a\r\n.\tb\r\nc.\r\n"
        )
        self.transaction(b"alice@example.com", [b"bob@example.com"], body)
        self.assertEqual(
            self.messages(self.alice, "Sent"),
            [body.replace(b"\r\n..a", b"\r\n.a").replace(b"\r\n.\tb", b"\r\n\tb")],
        )

    def test_malformed_message(self) -> None:
        """A message whose first line is no header field gets 554 5.6.0."""
        out = self.transaction(b"alice@example.com", [b"bob@example.com"], b"hello\r\n")
        self.assertEqual(
            out.split(b"\r\n")[-2],
            b"554 5.6.0 Message is malformed: header line 1 is not a header"
            b" field: b'hello'",
        )

    def test_self_send(self) -> None:
        """Mail to oneself: one Inbox copy and one Sent copy."""
        self.transaction(
            b"alice@example.com", [b"alice@example.com", b"al@example.com"], MESSAGE
        )
        listed = result(self.store.list_messages(self.alice.id))
        self.assertEqual(sorted(m.folder for m in listed), ["Inbox", "Sent"])

    def test_spam_flag_ignored_on_submission(self) -> None:
        """On submission X-Spam-Flag does not route to Spam."""
        self.transaction(
            b"alice@example.com",
            [b"bob@example.com"],
            b"X-Spam-Flag: YES\r\n" + MESSAGE,
        )
        self.assertEqual(len(self.messages(self.bob, "Inbox")), 1)


class MXTests(SMTPTestCase):
    role = "mx"

    def setUp(self) -> None:
        super().setUp()
        self.send(b"EHLO mail.remote.example\r\n")
        self.send(b"MAIL FROM:<x@remote.example>\r\n")

    def test_relay_denied(self) -> None:
        """A remote recipient is refused, also from 127.0.0.1."""
        self.assertEqual(
            (
                self.transport.getPeer().host,
                self.send(b"RCPT TO:<victim@remote.example>\r\n"),
            ),
            ("127.0.0.1", b"554 5.7.1 Relay access denied\r\n"),
        )

    def test_relay_tricks(self) -> None:
        """Every open-relay address trick is refused with 554 5.7.1."""
        tricks = [
            b"victim%remote.example@example.com",
            b"remote.example!victim@example.com",
            b"@example.com:victim@remote.example",
            b"@example.com,@corp.example:victim@remote.example",
            b'"victim@remote.example"@example.com',
            b'"victim%remote.example"@example.com',
            b"victim@remote.example@example.com",
            b"bob@[127.0.0.1]",
            b"victim@remote.example.",
        ]
        out = [self.send(b"RCPT TO:<" + t + b">\r\n") for t in tricks]
        self.assertEqual(
            out,
            [b"554 5.7.1 Relay access denied\r\n"] * 8
            + [b"501 5.1.3 Bad recipient address syntax\r\n"],
        )

    def test_postmaster_without_domain(self) -> None:
        """RCPT TO:<Postmaster> with no domain (RFC 5321 4.5.1) goes to the
        configured postmaster; unhosted, it is an unknown user."""
        self.build(
            server=ServerConfig(hostname="example.test", postmaster="bob@example.com")
        )
        self.connect()
        self.send(b"EHLO mail.remote.example\r\n")
        self.send(b"MAIL FROM:<x@remote.example>\r\n")
        out = self.send(b"RCPT TO:<Postmaster>\r\nDATA\r\n")
        self.send(b"From: x@remote.example\r\nSubject: abuse\r\n\r\nhi\r\n.\r\n")
        self.assertEqual(out.split(b"\r\n")[0], b"250 2.1.5 Recipient OK")
        self.assertEqual(len(self.messages(self.bob, "Inbox")), 1)
        self.build()
        self.connect()
        self.send(b"EHLO mail.remote.example\r\n")
        self.send(b"MAIL FROM:<x@remote.example>\r\n")
        self.assertEqual(
            self.send(b"RCPT TO:<postmaster>\r\n"),
            b"550 5.1.1 Recipient address rejected: User unknown\r\n",
        )

    def test_unknown_hosted_recipient(self) -> None:
        """An unknown address in a hosted domain gets 550 5.1.1."""
        self.assertEqual(
            self.send(b"RCPT TO:<nobody@Example.COM>\r\n"),
            b"550 5.1.1 Recipient address rejected: User unknown\r\n",
        )

    def test_delivery(self) -> None:
        """Hosted recipients (address and alias) each get one Inbox copy;
        no Sent copy, no queue."""
        self.send(
            b"RCPT TO:<BOB@example.com>\r\nRCPT TO:<al@example.com>\r\n"
            b"RCPT TO:<alice@example.com>\r\nDATA\r\n"
        )
        out = self.send(b"From: x@remote.example\r\nSubject: hi\r\n\r\nhello\r\n.\r\n")
        self.assertEqual(out.split(b"\r\n")[-2][:30], b"250 2.0.0 Message accepted as ")
        [inbox] = self.messages(self.bob, "Inbox")
        self.assertEqual(
            (
                inbox.split(b"\r\n")[:2],
                len(self.messages(self.alice, "Inbox")),
                self.messages(self.alice, "Sent"),
                self.queue(),
            ),
            (
                [
                    b"Received: from mail.remote.example ([127.0.0.1])",
                    inbox.split(b"\r\n")[1],
                ],
                1,
                [],
                [],
            ),
        )
        self.assertEqual(
            inbox.split(b"\r\n")[1][:35], b"\tby smtp.example.test with ESMTP id"
        )

    def test_null_sender(self) -> None:
        """The MX accepts the null sender (bounces)."""
        self.send(b"RSET\r\n")
        self.assertEqual(self.send(b"MAIL FROM:<>\r\n"), b"250 2.1.0 Sender OK\r\n")

    def test_spam_flag(self) -> None:
        """X-Spam-Flag: YES from an upstream filter lands in Spam."""
        self.send(b"RCPT TO:<bob@example.com>\r\nDATA\r\n")
        self.send(
            b"Subject: buy\r\nX-Spam-Flag:  yes\r\n\r\nbuy now\r\n.\r\n"
            b"MAIL FROM:<x@remote.example>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
        )
        self.send(b"Subject: ham\r\nX-Spam-Flag: NO\r\n\r\nX-Spam-Flag: YES\r\n.\r\n")
        listed = result(self.store.list_messages(self.bob.id))
        self.assertEqual(
            [(m.folder, m.subject) for m in listed], [("Spam", "buy"), ("Inbox", "ham")]
        )

    def test_no_auth_needed(self) -> None:
        """Senders on the MX need no AUTH (only hosted recipients count)."""
        self.assertEqual(
            self.send(b"RCPT TO:<carol@corp.example>\r\n"),
            b"250 2.1.5 Recipient OK\r\n",
        )


class HardeningTests(SMTPTestCase):
    role = "mx"

    def setUp(self) -> None:
        super().setUp()
        self.send(b"EHLO client.example\r\n")

    def begin_data(self) -> None:
        self.assertEqual(
            self.send(
                b"MAIL FROM:<x@remote.example>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
            ),
            b"250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n"
            b"354 End data with <CR><LF>.<CR><LF>\r\n",
        )

    def test_smuggling_variants(self) -> None:
        """Every bare CR/LF end-of-data variant: one 554 5.5.2 at the real
        CRLF.CRLF, the smuggled commands stay data, nothing is stored."""
        for ending in SMUGGLING_ENDINGS:
            self.begin_data()
            out = self.send(
                b"Subject: first\r\n\r\nhello"
                + ending
                + b"MAIL FROM:<admin@example.com>\r\nRCPT TO:<bob@example.com>\r\n"
                b"DATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n"
            )
            self.assertEqual(
                out,
                b"554 5.5.2 Bare CR or LF in message data is not accepted\r\n",
                ending,
            )
        self.assertEqual(self.messages(self.bob), [])

    def test_bare_lf_everywhere(self) -> None:
        """A message using bare LF line ends throughout is refused too."""
        self.begin_data()
        self.assertEqual(
            self.send(b"Subject: x\n\nhello\n.\n\r\n.\r\n"),
            b"554 5.5.2 Bare CR or LF in message data is not accepted\r\n",
        )

    def test_end_split_across_packets(self) -> None:
        """CRLF.CRLF split over several reads still ends DATA exactly once."""
        self.begin_data()
        out = b"".join(
            self.send(chunk)
            for chunk in [
                b"Subject: s\r\n\r\nbody\r",
                b"\n",
                b".",
                b"\r",
                b"\nNOOP\r\n",
            ]
        )
        self.assertEqual(
            (out[:30], out[-14:], len(self.messages(self.bob))),
            (b"250 2.0.0 Message accepted as ", b"250 2.0.0 OK\r\n", 1),
        )

    def test_long_line_in_data(self) -> None:
        """A data line longer than the command limit stays data: DATA goes
        on, the lines after it are not commands, the message is stored."""
        self.begin_data()
        long_line = b"x" * 1000
        out = self.send(b"Subject: l\r\n\r\n" + long_line + b"\r\nQUIT\r\nRSET\r\n")
        end = self.send(b".\r\n")
        [stored] = self.messages(self.bob)
        self.assertEqual(
            (
                out,
                end[:30],
                self.transport.disconnecting,
                stored.endswith(long_line + b"\r\nQUIT\r\nRSET\r\n"),
            ),
            (b"", b"250 2.0.0 Message accepted as ", False, True),
        )

    def test_long_line_in_data_no_break(self) -> None:
        """Data without any line break past the size limit: memory stays
        bounded, DATA goes on to CRLF.CRLF, then 552."""
        self.begin_data()
        for _ in range(20):
            self.assertEqual(self.send(b"y" * 1000), b"")
        self.assertLess(
            len(self.proto._buffer) + sum(map(len, self.proto._parts)), 4097
        )
        self.assertEqual(
            self.send(b"\r\n.\r\n"),
            b"552 5.3.4 Message size exceeds fixed maximum message size\r\n",
        )

    def test_long_command_line(self) -> None:
        """An over-long command line gets 500 5.5.2 and the session goes on."""
        self.assertEqual(
            [self.send(b"NOOP " + b"a" * 200 + b"\r\n"), self.send(b"NOOP\r\n")],
            [b"500 5.5.2 Line too long\r\n", b"250 2.0.0 OK\r\n"],
        )

    def test_endless_line(self) -> None:
        """A client sending without line breaks is disconnected; the buffer
        never holds more than a line's worth."""
        replies = []
        sizes = []
        for _ in range(10):
            replies.append(self.send(b"z" * 64))
            sizes.append(len(self.proto._buffer))
        self.assertEqual(
            (b"".join(replies), max(sizes) <= 100, self.transport.disconnecting),
            (b"421 4.7.0 Line too long, closing connection\r\n", True, True),
        )

    def test_bare_line_breaks_in_arguments(self) -> None:
        """CR, LF or NUL in HELO, MAIL or RCPT arguments get 501."""
        self.assertEqual(
            [
                self.send(b"HELO a\rX-Injected: 1\r\n"),
                self.send(b"EHLO a\nX-Injected: 1\r\n"),
                self.send(b"MAIL FROM:<a@b.example>\0\r\n"),
                self.send(b"MAIL FROM:<a@b.example>\r\n"),
                self.send(b"RCPT TO:<bob@example.com>\nX: y\r\n"),
            ],
            [
                b"501 5.5.2 Bare CR, LF or NUL in command line\r\n",
                b"501 5.5.2 Bare CR, LF or NUL in command line\r\n",
                b"501 5.5.2 Bare CR, LF or NUL in command line\r\n",
                b"250 2.1.0 Sender OK\r\n",
                b"501 5.5.2 Bare CR, LF or NUL in command line\r\n",
            ],
        )

    def test_bare_lf_is_no_command_end(self) -> None:
        """A command ended by a bare LF is not run until a CRLF comes."""
        self.assertEqual(
            [self.send(b"NOOP\n"), self.send(b"\r\n")],
            [b"", b"501 5.5.2 Bare CR, LF or NUL in command line\r\n"],
        )

    def test_idle_timeout(self) -> None:
        """An idle session is closed with 421 4.4.2 after smtp_timeout."""
        self.transport.clear()
        self.clock.advance(299)
        before = self.transport.value()
        self.clock.advance(1)
        self.assertEqual(
            (before, self.transport.value(), self.transport.disconnecting),
            (b"", b"421 4.4.2 smtp.example.test Timeout, closing connection\r\n", True),
        )

    def test_session_deadline(self) -> None:
        """A busy session is still closed at the session deadline."""
        self.transport.clear()
        for _ in range(12):
            self.clock.advance(290)
            self.proto.dataReceived(b"NOOP\r\n")
        self.clock.advance(120)
        self.assertEqual(
            (self.transport.value().split(b"\r\n")[-3:], self.transport.disconnecting),
            (
                [
                    b"250 2.0.0 OK",
                    b"421 4.4.2 smtp.example.test Session too long, closing connection",
                    b"",
                ],
                True,
            ),
        )

    def test_too_many_errors(self) -> None:
        """Twenty errors close the session."""
        out = self.send(b"FOO\r\n" * 25)
        self.assertEqual(
            (out.count(b"500 5.5.1"), out[-46:], self.transport.disconnecting),
            (20, b"421 4.7.0 Too many errors, closing connection\r\n"[-46:], True),
        )

    def test_storage_failure_is_temporary(self) -> None:
        """A store failure at commit is 451 4.3.0, never 5xx, and logged."""
        self.router = SlowRouter(self.router, self.clock)
        self.router.commit_result = fail(StoreError("database is locked"))
        self.connect("mx")
        self.send(b"EHLO client.example\r\n")
        self.send(b"MAIL FROM:<x@remote.example>\r\nRCPT TO:<bob@example.com>\r\n")
        self.clock.advance(1)
        self.proto.dataReceived(b"DATA\r\n")
        self.proto.dataReceived(b"Subject: s\r\n\r\nx\r\n.\r\n")
        self.assertEqual(
            self.transport.value().split(b"\r\n")[-2],
            b"451 4.3.0 Temporary storage failure, try again later",
        )
        self.assertEqual(len(self.flushLoggedErrors(StoreError)), 1)

    def test_internal_error_hidden(self) -> None:
        """An unexpected error is a 451 4.3.0 without any exception name."""

        class Broken:
            def route(self, address: str) -> Deferred:
                raise ZeroDivisionError("boom")

        self.router = Broken()
        self.connect("mx")
        self.send(b"EHLO client.example\r\n")
        self.send(b"MAIL FROM:<x@remote.example>\r\n")
        self.assertEqual(
            self.send(b"RCPT TO:<bob@example.com>\r\n"),
            b"451 4.3.0 Temporary server error, try again later\r\n",
        )
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_reply_only_after_commit(self) -> None:
        """The 250 after DATA is sent only when the commit has fired."""
        self.router = SlowRouter(self.router, self.clock)
        pending: Deferred = Deferred()
        self.router.commit_result = pending
        self.connect("mx")
        self.send(b"EHLO client.example\r\n")
        self.send(b"MAIL FROM:<x@remote.example>\r\n")
        self.send(b"RCPT TO:<bob@example.com>\r\n")
        self.clock.advance(1)
        self.transport.clear()
        self.proto.dataReceived(b"DATA\r\n")
        self.proto.dataReceived(b"Subject: s\r\n\r\nx\r\n.\r\nNOOP\r\n")
        before = self.transport.value()
        inner = SMTPDelivery(
            self.store,
            self.config.submission,
            self.config.outbound.lifetime,
            self.clock,
        )
        envelope_holder = result(inner.route("bob@example.com"))
        self.assertEqual(envelope_holder.kind, "local")
        pending.callback(Accepted((), None))
        after = self.transport.value()[len(before) :]
        self.assertEqual(
            (before, after[:30], after[-14:]),
            (
                b"354 End data with <CR><LF>.<CR><LF>\r\n",
                b"250 2.0.0 Message accepted as ",
                b"250 2.0.0 OK\r\n",
            ),
        )


class PipeliningTests(SMTPTestCase):
    role = "mx"

    def setUp(self) -> None:
        super().setUp()
        self.router = SlowRouter(self.router, self.clock)
        self.connect("mx")

    def test_replies_in_order(self) -> None:
        """A whole pipelined transaction with slow recipient checks is
        answered in order, RCPTs after MAIL, DATA after the last RCPT."""
        self.proto.dataReceived(b"EHLO client.example\r\n")
        self.proto.dataReceived(
            b"MAIL FROM:<x@remote.example>\r\n"
            b"RCPT TO:<nobody@example.com>\r\nRCPT TO:<bob@example.com>\r\n"
            b"RCPT TO:<v@remote.example>\r\nDATA\r\n"
        )
        self.clock.advance(1)
        self.clock.advance(1)
        self.clock.advance(1)
        self.proto.dataReceived(b"Subject: p\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        self.clock.advance(1)
        lines = self.transport.value().split(b"\r\n")
        self.assertEqual(
            [line[:30] for line in lines[6:]],
            [
                b"250 2.1.0 Sender OK",
                b"550 5.1.1 Recipient address re",
                b"250 2.1.5 Recipient OK",
                b"554 5.7.1 Relay access denied",
                b"354 End data with <CR><LF>.<CR",
                b"250 2.0.0 Message accepted as ",
                b"221 2.0.0 Bye",
                b"",
            ],
        )

    def test_data_waits_for_rcpt(self) -> None:
        """DATA pipelined after a pending RCPT is not answered before it."""
        self.proto.dataReceived(b"EHLO c.example\r\n")
        self.proto.dataReceived(
            b"MAIL FROM:<x@remote.example>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
        )
        before = self.transport.value().split(b"\r\n")[-2]
        self.clock.advance(1)
        self.assertEqual(
            (before, self.transport.value().split(b"\r\n")[-3:-1]),
            (
                b"250 2.1.0 Sender OK",
                [b"250 2.1.5 Recipient OK", b"354 End data with <CR><LF>.<CR><LF>"],
            ),
        )

    def test_back_pressure(self) -> None:
        """Past PIPELINE_LIMIT bytes queued behind a pending command the
        transport is paused, and resumed once it is answered."""
        self.proto.dataReceived(b"EHLO c.example\r\n")
        self.proto.dataReceived(
            b"MAIL FROM:<x@remote.example>\r\nRCPT TO:<bob@example.com>\r\n"
        )
        self.proto.dataReceived(b"RSET\r\n" * (PIPELINE_LIMIT // 6 + 1))
        paused = self.transport.producerState
        self.clock.advance(1)
        self.assertEqual(
            (
                paused,
                self.transport.producerState,
                self.transport.value().count(b"250 2.0.0 OK"),
            ),
            ("paused", "producing", PIPELINE_LIMIT // 6 + 1),
        )


class SynchronizationTests(SMTPTestCase):
    """RFC 2920 pipelining limits for unauthenticated clients, as Postfix's
    ``smtpd_forbid_unauth_pipelining``."""

    role = "mx"
    SYNC_ERROR = b"554 5.5.0 Error: SMTP protocol synchronization\r\n"

    def test_blind_second_message(self) -> None:
        """A second message sent blind after the end of data (body before
        its 354) gets 554 5.5.0 and a close; only the first is stored."""
        self.send(b"EHLO client.example\r\n")
        self.send(b"MAIL FROM:<a@x.example>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n")
        out = self.send(
            b"Subject: one\r\n\r\nfirst\r\n.\r\n"
            b"MAIL FROM:<a@x.example>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
            b"Subject: two\r\n\r\nsmuggled\r\n.\r\n"
        )
        lines = out.split(b"\r\n")
        self.assertEqual(
            ([line[:30] for line in lines], self.transport.disconnecting),
            (
                [
                    b"250 2.0.0 Message accepted as ",
                    b"250 2.1.0 Sender OK",
                    b"250 2.1.5 Recipient OK",
                    self.SYNC_ERROR[:30],
                    b"",
                ],
                True,
            ),
        )
        self.assertEqual(
            [m.split(b"\r\n")[-2] for m in self.messages(self.bob)], [b"first"]
        )

    def test_whole_session_blind(self) -> None:
        """A session sent in one segment is refused at EHLO; nothing is stored."""
        out = self.send(
            b"EHLO client.example\r\nMAIL FROM:<a@x.example>\r\n"
            b"RCPT TO:<bob@example.com>\r\nDATA\r\nSubject: s\r\n\r\nx\r\n.\r\n"
        )
        self.assertEqual(
            (out, self.transport.disconnecting, self.messages(self.bob)),
            (self.SYNC_ERROR, True, []),
        )

    def test_group_enders(self) -> None:
        """Each command that must end a group is refused with input behind it."""
        for command in (
            b"HELO c.example",
            b"EHLO c.example",
            b"NOOP",
            b"QUIT",
            b"VRFY bob",
            b"EXPN list",
            b"STARTTLS",
        ):
            self.connect()
            self.assertEqual(
                (self.send(command + b"\r\nRSET\r\n"), self.transport.disconnecting),
                (self.SYNC_ERROR, True),
                command,
            )

    def test_legitimate_group(self) -> None:
        """MAIL, RCPTs and DATA in one group, then the body after 354, work."""
        self.send(b"EHLO client.example\r\n")
        out = self.send(
            b"MAIL FROM:<a@x.example>\r\nRCPT TO:<bob@example.com>\r\n"
            b"RCPT TO:<alice@example.com>\r\nDATA\r\n"
        )
        done = self.send(b"Subject: s\r\n\r\nx\r\n.\r\nQUIT\r\n")
        self.assertEqual(
            (out.count(b"\r\n"), out.split(b"\r\n")[-2][:3], done[:30], done[-15:]),
            (4, b"354", b"250 2.0.0 Message accepted as ", b"221 2.0.0 Bye\r\n"),
        )

    def test_submission_before_auth(self) -> None:
        """Submission before AUTH is held to the same rule."""
        self.connect("submission")
        self.send(b"EHLO client.example\r\n")
        self.starttls()
        self.assertEqual(
            (
                self.send(b"EHLO client.example\r\nAUTH PLAIN x\r\n"),
                self.transport.disconnecting,
            ),
            (self.SYNC_ERROR, True),
        )

    def test_authenticated_submission_pipelines(self) -> None:
        """After AUTH, submission keeps full RFC 2920 pipelining."""
        self.connect("submission")
        self.ready()
        out = self.send(
            b"NOOP\r\nMAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\n"
            b"DATA\r\nFrom: alice@example.com\r\nSubject: p\r\n\r\nx\r\n.\r\nQUIT\r\n"
        )
        self.assertEqual(
            ([line[:3] for line in out.split(b"\r\n")], self.transport.disconnecting),
            ([b"250", b"250", b"250", b"354", b"250", b"221", b""], True),
        )
        self.assertEqual(len(self.messages(self.bob)), 1)


class AddressTests(SynchronousTestCase):
    def test_valid(self) -> None:
        """Plain and quoted local parts; domains are lower-cased."""
        self.assertEqual(
            [
                parse_path(b"Bob.Smith+tag@Example.COM"),
                parse_path(b'"bob smith"@example.com'),
                parse_path(b"a@localhost"),
            ],
            ["Bob.Smith+tag@example.com", '"bob smith"@example.com', "a@localhost"],
        )

    def test_tricks(self) -> None:
        """Source routes, %-hacks, bang paths, quoted or second @, literals."""
        tricks = [
            b"@a.example:b@c.example",
            b"b%c.example@a.example",
            b"c.example!b@a.example",
            b'"b@c.example"@a.example',
            b"b@c.example@a.example",
            b"b@[192.0.2.1]",
        ]
        flags = []
        for trick in tricks:
            error = self.assertRaises(AddressError, parse_path, trick)
            flags.append(error.trick)
        self.assertEqual(flags, [True] * len(tricks))

    def test_syntax(self) -> None:
        """Malformed addresses are errors, not tricks."""
        bad = [
            b"",
            b"bob",
            b"bob@",
            b".bob@a.example",
            b"bob@a..example",
            b'"x@a.example',
            b"b\xc3\xa9@a.example",
            b"a" * 65 + b"@a.example",
        ]
        flags = []
        for address in bad:
            error = self.assertRaises(AddressError, parse_path, address)
            flags.append(error.trick)
        self.assertEqual(flags, [False] * len(bad))
