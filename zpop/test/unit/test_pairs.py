"""zpop's servers paired with real clients in memory, over twisted.test.iosim.

Each test connects one of zpop's protocol factories to a client that was
not written for zpop's tests (Twisted's POP3 and SMTP clients) or to zpop's
own outbound client, through iosim's ``FakeTransport`` and ``IOPump``: no
reactor, no sockets, no disk. Time is a ``Clock``, the store a MemoryStore,
bcrypt runs synchronously; the checker, realm and Authenticator are the
real ones.

TLS is iosim's simulated handshake: ``Transport.startTLS`` hands iosim a
``SimulatedTLS`` standing for whatever context the protocol passed, so
STLS/STARTTLS run their real command sequence and the transports report
TLS afterwards. A listener inside implicit TLS gets transports that report
TLS from the start.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any, TypeVar

from twisted.cred.portal import Portal
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IProtocol, ISSLTransport
from twisted.internet.protocol import Factory
from twisted.internet.ssl import ClientContextFactory
from twisted.internet.task import Clock
from twisted.mail import smtp
from twisted.mail.pop3 import AdvancedPOP3Client, ServerErrorResponse
from twisted.test.iosim import FakeTransport, IOPump, connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import directlyProvides

from zpop.accounts import passwords
from zpop.accounts.credentials import AccountChecker, Authenticator
from zpop.accounts.realm import Realm
from zpop.config import Config, ServerConfig, TLSLevel
from zpop.delivery import SMTPDelivery, format_date
from zpop.outbound.client import Deliverer, RemoteReply, Results
from zpop.outbound.retry import outcome
from zpop.outbound.routing import Hop
from zpop.outbound.tls import OpportunisticTLS
from zpop.pop3 import POP3Factory, POP3Settings
from zpop.smtp import SMTPFactory
from zpop.smtp_transaction import SMTPSettings
from zpop.store import Account, MemoryStore, Message, NewMessage, QueuedMessage
from zpop.store.records import OutboundJob, RecipientResult
from zpop.test.stores import COST, KEY, make_store, result
from zpop.threads import run_synchronously

E = TypeVar("E", bound=BaseException)


def make_config() -> Config:
    """The one Config of this module: every pair runs on the defaults but
    the host name (smtp.example.test, pop.example.test...)."""
    return Config(server=ServerConfig(hostname="example.test"))


#: The test clock's time: 2023-11-14 22:13:20 UTC.
NOW = 1_700_000_000.0
#: The client's address as zpop's servers see it.
CLIENT = IPv4Address("TCP", "192.0.2.10", 40000)
SERVER = IPv4Address("TCP", "192.0.2.1", 995)
#: The MX host the outbound client delivers to, as the client sees it.
MX = IPv4Address("TCP", "192.0.2.25", 25)

ALICE = "alice@example.com"
ALICE_PASSWORD = "alice-secret-pw"
BOB = "bob@example.com"
#: How long the Authenticator holds a first bad-password answer (the
#: default ``failure_delay``).
FIRST_FAILURE_DELAY = 2.0

#: Bodies as stored: CRLF, the second full of lines POP3 must dot-stuff.
POP_MESSAGES = [
    b"Subject: one\r\n\r\nfirst body\r\n",
    b"Subject: dots\r\n\r\n.\r\n..\r\n.leading dot\r\n...three\r\nend\r\n",
    b"Subject: three\r\nX-Test: y\r\n\r\nline 1\r\nline 2\r\n",
]

#: The Received: field zpop's SMTP server puts above a delivered copy.
TRACE = re.compile(
    rb"Received: from (?P<helo>[^ ]+) \(\[(?P<client>[0-9.]+)\]\)\r\n"
    rb"\tby smtp\.example\.test with (?P<protocol>[A-Z]+) id (?P<id>[0-9a-f]{16});"
    rb"\r\n\t(?P<date>[^\r\n]+)\r\n"
)


# -- accounts ------------------------------------------------------------------


def add_account(store: MemoryStore, address: str, password: str) -> Account:
    """A paid account with a primary password (bcrypt at the tests' cost)."""
    hashed = passwords.hash_password(password, COST)
    account: Account = result(store.add_account(address, "paid", False, hashed, NOW))
    return account


def add_app_password(store: MemoryStore, account: Account) -> str:
    """A new app-specific password of ``account``, as the user is shown it."""
    secret = passwords.generate_app_password()
    digest = passwords.app_password_digest(KEY, account.id, secret)
    assert digest is not None
    result(store.add_app_password(account.address, "phone", digest, NOW))
    return secret


def make_authenticator(
    store: MemoryStore, config: Config, clock: Clock
) -> Authenticator:
    """The production Authenticator, checker and realm, bcrypt run inline."""
    checker = AccountChecker(store, KEY, run_synchronously, clock, COST)
    portal = Portal(Realm(store, config.hosts, config.accounts, clock), [checker])
    return Authenticator(portal, store, clock, config.auth, KEY)


# -- the simulated network -----------------------------------------------------


class SimulatedTLS:
    """What iosim's handshake needs of a TLS context (``iosimVerify``),
    standing for the real context a protocol passed to ``startTLS``."""

    def __init__(self, context: object) -> None:
        self.context = context

    def iosimVerify(self, other: object) -> bool:  # noqa: N802 - iosim's name
        return True


class Transport(FakeTransport):
    """iosim's FakeTransport with IP addresses, optionally inside TLS from
    the start (implicit TLS), whose ``startTLS`` runs iosim's simulated
    handshake with any context and records that context."""

    started_tls_with: object = None

    def __init__(
        self,
        protocol: IProtocol,
        is_server: bool,
        host: IPv4Address,
        peer: IPv4Address,
        tls: bool = False,
    ) -> None:
        super().__init__(
            protocol, isServer=is_server, hostAddress=host, peerAddress=peer
        )
        if tls:
            directlyProvides(self, ISSLTransport)

    def startTLS(self, context: object, normal: bool = True) -> None:
        self.started_tls_with = context
        super().startTLS(SimulatedTLS(context), normal)


@dataclass
class Pair:
    """One simulated connection: the pump and both ends' transports."""

    pump: IOPump
    client: Transport
    server: Transport


def pair(
    server_factory: Factory,
    client: IProtocol,
    clock: Clock,
    implicit_tls: bool = False,
    server_address: IPv4Address = SERVER,
    client_address: IPv4Address = CLIENT,
    greet: bool = True,
) -> Pair:
    """Connect ``client`` to a new session of ``server_factory``."""
    ends: dict[str, Transport] = {}

    def server_protocol() -> IProtocol:
        protocol = server_factory.buildProtocol(client_address)
        assert protocol is not None
        return protocol

    def client_end(protocol: IProtocol) -> Transport:
        ends["client"] = Transport(
            protocol, False, client_address, server_address, implicit_tls
        )
        return ends["client"]

    def server_end(protocol: IProtocol) -> Transport:
        ends["server"] = Transport(
            protocol, True, server_address, client_address, implicit_tls
        )
        return ends["server"]

    _, _, pump = connectedServerAndClient(
        server_protocol,
        lambda: client,
        clientTransportFactory=client_end,
        serverTransportFactory=server_end,
        greet=greet,
        clock=clock,
    )
    return Pair(pump, ends["client"], ends["server"])


class PairTestCase(SynchronousTestCase):
    """One zpop (store, clock, Authenticator, SMTP delivery) for clients to
    talk to; the store hosts example.com and corp.example."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.config = make_config()
        self.store = make_store()
        self.addCleanup(self.store.close)
        self.authenticator = make_authenticator(self.store, self.config, self.clock)
        self.delivery = SMTPDelivery(
            self.store,
            self.config.submission,
            self.config.outbound.lifetime,
            self.clock,
        )

    def answer(self, connection: Pair, d: Deferred) -> Any:
        """Pump until nothing moves; what ``d`` then fired with."""
        connection.pump.flush()
        return self.successResultOf(d)

    def refusal(self, connection: Pair, d: Deferred, kind: type[E]) -> E:
        """Pump until nothing moves; the ``kind`` error ``d`` then failed with."""
        connection.pump.flush()
        error = self.failureResultOf(d, kind).value
        assert isinstance(error, kind)
        return error

    def messages(self, account: Account, folder: str | None = None) -> list[Message]:
        """The account's stored messages (of one folder), oldest first."""
        listed: list[Message] = result(self.store.list_messages(account.id, folder))
        return listed

    def bodies(self, account: Account, folder: str) -> list[bytes]:
        """The bodies stored in one of the account's folders, oldest first."""
        return [
            result(self.store.read_body(m.id, 0, 1 << 20))
            for m in self.messages(account, folder)
        ]

    def split_trace(self, copy: bytes) -> tuple[dict[str, bytes], bytes]:
        """The fields of the Received: line on top of ``copy``, and the rest."""
        match = TRACE.match(copy)
        if match is None:
            self.fail(f"no zpop Received: field on top of {copy[:200]!r}")
        return match.groupdict(), copy[match.end() :]


# -- 1. zpop's POP3 server, Twisted's POP3 client ------------------------------


class POP3PairTests(PairTestCase):
    """``zpop.pop3.POP3Factory`` with ``twisted.mail.pop3.AdvancedPOP3Client``."""

    def setUp(self) -> None:
        super().setUp()
        add_account(self.store, ALICE, ALICE_PASSWORD)
        self.alice: Account = result(self.store.enable_pop(ALICE, "all", NOW))
        self.stored: list[Message] = result(
            self.store.store_messages(
                self.alice.id,
                [NewMessage("Inbox", body, "", NOW) for body in POP_MESSAGES],
            )
        )

    def connect(
        self, implicit_tls: bool = True, stls_context: object = None
    ) -> tuple[AdvancedPOP3Client, Pair]:
        """Twisted's client connected to a new session of a POP3 listener."""
        factory = POP3Factory(
            self.authenticator,
            POP3Settings.from_config(self.config),
            self.clock,
            implicit_tls,
            stls_context,
        )
        client = AdvancedPOP3Client()
        return client, pair(factory, client, self.clock, implicit_tls)

    def logged_in(self) -> tuple[AdvancedPOP3Client, Pair]:
        client, connection = self.connect()
        self.answer(connection, client.login(ALICE.encode(), ALICE_PASSWORD.encode()))
        return client, connection

    def uidl(self, message: Message) -> bytes:
        """The UIDL zpop gives ``message``: uid-validity and uid."""
        return f"{self.alice.uid_validity:x}-{message.uid}".encode()

    def test_login_stat_list_uidl(self) -> None:
        """USER/PASS over implicit TLS logs in; STAT, LIST and UIDL as
        Twisted's client parses them match the stored messages."""
        client, connection = self.connect()
        total = sum(map(len, POP_MESSAGES))
        self.assertEqual(
            self.answer(
                connection, client.login(ALICE.encode(), ALICE_PASSWORD.encode())
            ),
            b"Logged in, 3 messages (%d octets)" % total,
        )
        self.assertEqual(
            (
                self.answer(connection, client.stat()),
                self.answer(connection, client.listSize()),
                self.answer(connection, client.listUID()),
            ),
            (
                (3, total),
                [len(body) for body in POP_MESSAGES],
                [self.uidl(m) for m in self.stored],
            ),
        )

    def test_retr_is_byte_exact(self) -> None:
        """RETR of every message, dot-stuffed by zpop and un-stuffed by
        Twisted's client, gives back exactly the stored lines."""
        client, connection = self.logged_in()
        retrieved = [
            self.answer(connection, client.retrieve(index))
            for index in range(len(POP_MESSAGES))
        ]
        self.assertEqual(
            [b"".join(line + b"\r\n" for line in lines) for lines in retrieved],
            POP_MESSAGES,
        )
        self.assertEqual(
            retrieved[1],
            [b"Subject: dots", b"", b".", b"..", b".leading dot", b"...three", b"end"],
        )

    def test_dele_quit_keep_policy(self) -> None:
        """DELE + QUIT under the default ``keep`` policy takes the message
        out of the POP queue but leaves it in the Inbox; the next session
        no longer lists it."""
        client, connection = self.logged_in()
        self.assertEqual(
            self.answer(connection, client.delete(1)), b"Message 2 deleted"
        )
        self.assertEqual(
            self.answer(connection, client.quit()), b"Bye, 1 messages deleted"
        )
        self.assertTrue(connection.server.disconnected)
        self.assertEqual(
            [(m.id, m.folder, m.pop_removed) for m in self.messages(self.alice)],
            [
                (self.stored[0].id, "Inbox", False),
                (self.stored[1].id, "Inbox", True),
                (self.stored[2].id, "Inbox", False),
            ],
        )
        again, connection = self.logged_in()
        self.assertEqual(
            self.answer(connection, again.listUID()),
            [self.uidl(self.stored[0]), self.uidl(self.stored[2])],
        )

    def test_dele_quit_delete_policy(self) -> None:
        """With the ``delete`` policy, DELE + QUIT moves the message to Trash;
        the closed session leaves no timer behind."""
        result(self.store.set_pop_deletion(ALICE, "delete"))
        client, connection = self.logged_in()
        self.answer(connection, client.delete(0))
        self.answer(connection, client.quit())
        self.assertEqual(
            [(m.id, m.folder, m.pop_removed) for m in self.messages(self.alice)],
            [
                (self.stored[0].id, "Trash", True),
                (self.stored[1].id, "Inbox", False),
                (self.stored[2].id, "Inbox", False),
            ],
        )
        # The session's idle, login and close timers all went with it.
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_dele_without_quit_deletes_nothing(self) -> None:
        """A session dropped after DELE, without QUIT, applies nothing and
        releases the maildrop: the next session sees all three messages."""
        client, connection = self.logged_in()
        self.answer(connection, client.delete(0))
        connection.client.loseConnection()
        connection.pump.flush()
        self.assertTrue(connection.server.disconnected)
        self.assertEqual(
            [m.pop_removed for m in self.messages(self.alice)], [False, False, False]
        )
        again, connection = self.logged_in()
        self.assertEqual(
            self.answer(connection, again.stat()), (3, sum(map(len, POP_MESSAGES)))
        )

    def test_wrong_password(self) -> None:
        """A wrong password is answered ``-ERR [AUTH] Authentication failed``,
        only once the Authenticator's failure delay has passed."""
        client, connection = self.connect()
        d = client.login(ALICE.encode(), b"not the password")
        connection.pump.flush()
        self.assertNoResult(d)
        self.clock.advance(FIRST_FAILURE_DELAY)
        error = self.refusal(connection, d, ServerErrorResponse)
        self.assertEqual(error.args, (b"[AUTH] Authentication failed",))

    def test_two_factor_primary_password(self) -> None:
        """With two-factor on, the primary password is refused at once with
        the [AUTH] text asking for an app password; an app password logs in."""
        result(self.store.set_two_factor(ALICE, True))
        client, connection = self.connect()
        error = self.refusal(
            connection,
            client.login(ALICE.encode(), ALICE_PASSWORD.encode()),
            ServerErrorResponse,
        )
        self.assertEqual(
            error.args,
            (
                b"[AUTH] Application-specific password required"
                b" (two-factor authentication is on)",
            ),
        )
        secret = add_app_password(self.store, self.alice)
        client, connection = self.connect()
        self.assertEqual(
            self.answer(connection, client.login(ALICE.encode(), secret.encode())),
            b"Logged in, 3 messages (%d octets)" % sum(map(len, POP_MESSAGES)),
        )

    def test_maildrop_in_use(self) -> None:
        """While one session holds the maildrop a second login is refused
        [IN-USE]; once the first has quit, a new one logs in."""
        first, first_connection = self.logged_in()
        second, second_connection = self.connect()
        error = self.refusal(
            second_connection,
            second.login(ALICE.encode(), ALICE_PASSWORD.encode()),
            ServerErrorResponse,
        )
        self.assertEqual(
            error.args,
            (b"[IN-USE] Another POP session is already using this mailbox",),
        )
        self.answer(first_connection, first.quit())
        third, third_connection = self.connect()
        self.assertEqual(
            self.answer(
                third_connection, third.login(ALICE.encode(), ALICE_PASSWORD.encode())
            ),
            b"Logged in, 3 messages (%d octets)" % sum(map(len, POP_MESSAGES)),
        )

    def test_stls_then_login(self) -> None:
        """On the plaintext listener Twisted's client sees STLS in CAPA,
        negotiates TLS with it, then logs in with USER/PASS inside TLS."""
        stls_context = object()
        client, connection = self.connect(implicit_tls=False, stls_context=stls_context)
        self.assertEqual(
            self.answer(
                connection, client.login(ALICE.encode(), ALICE_PASSWORD.encode())
            ),
            b"Logged in, 3 messages (%d octets)" % sum(map(len, POP_MESSAGES)),
        )
        self.assertIs(connection.server.started_tls_with, stls_context)
        self.assertIsInstance(connection.client.started_tls_with, ClientContextFactory)
        self.assertTrue(client.startedTLS)

    def test_no_password_before_tls(self) -> None:
        """Without TLS (and no STLS offered) USER is refused even for a
        client willing to send its password in plaintext."""
        client, connection = self.connect(implicit_tls=False)
        client.allowInsecureLogin = True
        error = self.refusal(
            connection,
            client.login(ALICE.encode(), ALICE_PASSWORD.encode()),
            ServerErrorResponse,
        )
        self.assertEqual(
            error.args, (b"[AUTH] Log in only over TLS: issue STLS first",)
        )


# -- 2. zpop's SMTP server, Twisted's SMTP clients -----------------------------

#: A message as Twisted's senders want it: LF line ends (they make CRLF),
#: every field submission would otherwise add already present.
SUBMITTED = (
    b"From: Alice <alice@example.com>\n"
    b"To: bob@example.com, dave@elsewhere.example\n"
    b"Subject: lunch\n"
    b"Date: Tue, 14 Nov 2023 22:13:20 +0000\n"
    b"Message-ID: <lunch@example.com>\n"
    b"\n"
    b"Noon?\n"
    b".. and a line that starts with dots\n"
)
INBOUND = (
    b"From: Carol <carol@remote.example>\n"
    b"To: bob@example.com\n"
    b"Subject: hello\n"
    b"\n"
    b"Hi Bob!\n"
    b".\n"
)


def crlf(lf_text: bytes) -> bytes:
    """LF text with CRLF line ends, as zpop stores it."""
    return lf_text.replace(b"\n", b"\r\n")


class SMTPPairTests(PairTestCase):
    """``zpop.smtp.SMTPFactory`` (submission, smtps, mx) with Twisted's
    ``SMTPSenderFactory`` and ``ESMTPSenderFactory``."""

    def setUp(self) -> None:
        super().setUp()
        self.alice = add_account(self.store, ALICE, ALICE_PASSWORD)
        self.bob = add_account(self.store, BOB, "bob-secret-pw")
        self.tls_context = object()

    def send(
        self,
        role: str,
        sender: smtp.SMTPSenderFactory,
        implicit_tls: bool = False,
        mechanisms: list[Any] | None = None,
    ) -> Pair:
        """Connect one of Twisted's senders to a new ``role`` session (which
        runs the whole exchange, up to any pending delay); ``mechanisms``
        replaces the sender's SASL authenticators."""
        server = SMTPFactory(
            role,
            self.authenticator,
            self.delivery,
            SMTPSettings.from_config(self.config),
            self.clock,
            self.tls_context,
        )
        # EHLO/HELO name: not the machine's FQDN, which upstream defaults to.
        sender.domain = b"client.example"
        client = sender.buildProtocol(CLIENT)
        client.callLater = self.clock.callLater
        if mechanisms is not None:
            client.authenticators = mechanisms
        return pair(server, client, self.clock, implicit_tls)

    def submitter(
        self,
        password: str,
        recipients: list[bytes],
        body: bytes = SUBMITTED,
        context: object = None,
    ) -> tuple[Deferred, smtp.ESMTPSenderFactory]:
        d: Deferred = Deferred()
        factory = smtp.ESMTPSenderFactory(
            ALICE.encode(),
            password.encode(),
            ALICE,
            recipients,
            io.BytesIO(body),
            d,
            retries=0,
            contextFactory=context,
        )
        return d, factory

    def test_submission_starttls_auth(self) -> None:
        """587: Twisted's sender does STARTTLS (simulated), AUTH (LOGIN, its
        first choice of zpop's two) and sends; Bob's Inbox gets the message
        byte for byte under an ESMTPSA Received:, Alice's Sent the bare copy,
        and the remote recipient is queued."""
        client_context = object()
        d, factory = self.submitter(
            ALICE_PASSWORD,
            [BOB.encode(), b"dave@elsewhere.example"],
            context=client_context,
        )
        connection = self.send("submission", factory)
        self.assertEqual(
            self.answer(connection, d),
            (
                2,
                [
                    (BOB.encode(), 250, b"2.1.5 Recipient OK"),
                    (b"dave@elsewhere.example", 250, b"2.1.5 Recipient OK"),
                ],
            ),
        )
        self.assertEqual(
            (connection.client.started_tls_with, connection.server.started_tls_with),
            (client_context, self.tls_context),
        )
        [copy] = self.bodies(self.bob, "Inbox")
        trace, rest = self.split_trace(copy)
        self.assertEqual(
            (trace["helo"], trace["client"], trace["protocol"], trace["date"], rest),
            (
                b"client.example",
                b"192.0.2.10",
                b"ESMTPSA",
                format_date(NOW).encode(),
                crlf(SUBMITTED),
            ),
        )
        self.assertEqual(self.bodies(self.alice, "Sent"), [crlf(SUBMITTED)])
        [queued] = result(self.store.list_outbound())
        self.assertEqual(
            (
                queued.sender,
                queued.account_id,
                [r.recipient for r in queued.recipients],
            ),
            (ALICE, self.alice.id, ["dave@elsewhere.example"]),
        )
        self.assertEqual(
            result(self.store.read_outbound_body(queued.id, 0, 1 << 20)), copy
        )

    def test_smtps_plain_with_authzid(self) -> None:
        """465 (the transport reports TLS from the start): Twisted's PLAIN,
        which repeats the login as authorization identity, is accepted."""
        d, factory = self.submitter(ALICE_PASSWORD, [BOB.encode()])
        # Only PLAIN, so it is the mechanism used (upstream prefers LOGIN).
        plain = [smtp.PLAINAuthenticator(ALICE.encode())]
        connection = self.send("smtps", factory, implicit_tls=True, mechanisms=plain)
        self.assertEqual(
            self.answer(connection, d),
            (1, [(BOB.encode(), 250, b"2.1.5 Recipient OK")]),
        )
        self.assertIsNone(connection.server.started_tls_with)
        [copy] = self.bodies(self.bob, "Inbox")
        trace, rest = self.split_trace(copy)
        self.assertEqual((trace["protocol"], rest), (b"ESMTPSA", crlf(SUBMITTED)))

    def test_submission_wrong_password(self) -> None:
        """A wrong password gets ``535 5.7.8`` once the failure delay has
        passed; nothing is stored or queued."""
        d, factory = self.submitter("not the password", [BOB.encode()])
        connection = self.send("smtps", factory, implicit_tls=True)
        connection.pump.flush()
        self.assertNoResult(d)
        self.clock.advance(FIRST_FAILURE_DELAY)
        error = self.refusal(connection, d, smtp.AUTHDeclinedError)
        self.assertEqual(
            (error.code, error.resp),
            (535, b"5.7.8 Authentication credentials invalid"),
        )
        self.assertEqual(
            (self.messages(self.bob), result(self.store.list_outbound())), ([], [])
        )

    def test_submission_two_factor(self) -> None:
        """Two-factor on: the primary password gets ``534 5.7.9`` at once;
        an app password submits."""
        result(self.store.set_two_factor(ALICE, True))
        d, factory = self.submitter(ALICE_PASSWORD, [BOB.encode()])
        connection = self.send("smtps", factory, implicit_tls=True)
        error = self.refusal(connection, d, smtp.AUTHDeclinedError)
        self.assertEqual(
            (error.code, error.resp),
            (
                534,
                b"5.7.9 Application-specific password required"
                b" (two-factor authentication is on)",
            ),
        )
        d, factory = self.submitter(
            add_app_password(self.store, self.alice), [BOB.encode()]
        )
        connection = self.send("smtps", factory, implicit_tls=True)
        self.assertEqual(
            self.answer(connection, d),
            (1, [(BOB.encode(), 250, b"2.1.5 Recipient OK")]),
        )

    def mx_sender(
        self, recipients: list[bytes], body: bytes = INBOUND
    ) -> tuple[Deferred, smtp.SMTPSenderFactory]:
        d: Deferred = Deferred()
        factory = smtp.SMTPSenderFactory(
            "carol@remote.example", recipients, io.BytesIO(body), d, retries=0
        )
        return d, factory

    def test_mx_delivery(self) -> None:
        """25: Twisted's plain SMTP sender (HELO, no AUTH) delivers to a
        hosted account; the Inbox copy is the message under an SMTP Received:,
        and the closed session leaves no timer behind."""
        d, factory = self.mx_sender([BOB.encode()])
        connection = self.send("mx", factory)
        self.assertEqual(
            self.answer(connection, d),
            (1, [(BOB.encode(), 250, b"2.1.5 Recipient OK")]),
        )
        [copy] = self.bodies(self.bob, "Inbox")
        trace, rest = self.split_trace(copy)
        self.assertEqual(
            (trace["helo"], trace["protocol"], rest),
            (b"client.example", b"SMTP", crlf(INBOUND)),
        )
        self.assertEqual(self.bodies(self.bob, "Spam"), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_mx_starttls(self) -> None:
        """25 with STARTTLS: Twisted's ESMTP sender without credentials
        upgrades (simulated) and delivers under an ESMTPS Received:."""
        d: Deferred = Deferred()
        client_context = object()
        factory = smtp.ESMTPSenderFactory(
            None,
            None,
            "carol@remote.example",
            [BOB.encode()],
            io.BytesIO(INBOUND),
            d,
            retries=0,
            contextFactory=client_context,
            requireAuthentication=False,
        )
        connection = self.send("mx", factory)
        self.assertEqual(
            self.answer(connection, d),
            (1, [(BOB.encode(), 250, b"2.1.5 Recipient OK")]),
        )
        self.assertEqual(
            (connection.client.started_tls_with, connection.server.started_tls_with),
            (client_context, self.tls_context),
        )
        [copy] = self.bodies(self.bob, "Inbox")
        trace, rest = self.split_trace(copy)
        self.assertEqual((trace["protocol"], rest), (b"ESMTPS", crlf(INBOUND)))

    def test_mx_refuses_relay(self) -> None:
        """25: a recipient outside the hosted domains gets ``554 5.7.1 Relay
        access denied``; Twisted reports no recipient accepted, nothing is
        queued."""
        d, factory = self.mx_sender([b"dave@elsewhere.example"])
        connection = self.send("mx", factory)
        error = self.refusal(connection, d, smtp.SMTPDeliveryError)
        self.assertEqual(
            (error.code, error.resp, error.addresses),
            (
                554,
                b"No recipients accepted",
                [(b"dave@elsewhere.example", 554, b"5.7.1 Relay access denied")],
            ),
        )
        self.assertEqual(result(self.store.list_outbound()), [])

    def test_mx_refuses_crlf_file(self) -> None:
        """Twisted's sender turns a CRLF file's line ends into CR CR LF
        (upstream's transformChunk); zpop refuses that as bare CR with
        ``554 5.5.2`` rather than storing it."""
        d, factory = self.mx_sender([BOB.encode()], crlf(INBOUND))
        connection = self.send("mx", factory)
        error = self.refusal(connection, d, smtp.SMTPDeliveryError)
        self.assertEqual(
            (error.code, error.resp),
            (554, b"5.5.2 Bare CR or LF in message data is not accepted"),
        )
        self.assertEqual(self.messages(self.bob), [])


# -- 3. zpop's outbound client against zpop's MX server ------------------------


#: The sending relay's address, as zpop's MX sees it.
RELAY = IPv4Address("TCP", "192.0.2.20", 41000)
#: A queued message, CRLF, with lines the client must dot-stuff.
QUEUED = (
    b"From: Frank <frank@sender.example>\r\n"
    b"To: bob@example.com\r\n"
    b"Subject: relayed\r\n"
    b"\r\n"
    b".\r\n"
    b".starts with a dot\r\n"
    b"last line\r\n"
)
HOP = Hop("mx.example.com", 25, TLSLevel.MAY)
#: ``host[address]`` of the MX, as the client names it in its reports.
MTA = "mx.example.com[192.0.2.25]"


class MXEndpoint:
    """A client endpoint whose ``connect`` pairs the client with a new
    session of ``server_factory`` (at the MX address) over iosim."""

    def __init__(self, server_factory: Factory, clock: Clock) -> None:
        self.server_factory = server_factory
        self.clock = clock
        self.connections: list[Pair] = []

    def connect(self, client_factory: Factory) -> Deferred:
        client = client_factory.buildProtocol(MX)
        assert client is not None
        self.connections.append(
            pair(
                self.server_factory,
                client,
                self.clock,
                server_address=MX,
                client_address=RELAY,
                greet=False,
            )
        )
        return succeed(client)

    def flush(self) -> None:
        """Pump every connection until none moves."""
        while any(c.pump.flush() for c in self.connections):
            pass


class OutboundPairTests(PairTestCase):
    """``zpop.outbound.client`` (Deliverer, ClientSession, RelayClient)
    delivering from another zpop's outbound queue to zpop's MX."""

    def setUp(self) -> None:
        super().setUp()
        self.bob = add_account(self.store, BOB, "bob-secret-pw")
        self.tls_context = object()
        self.endpoint = MXEndpoint(
            SMTPFactory(
                "mx",
                self.authenticator,
                self.delivery,
                SMTPSettings.from_config(self.config),
                self.clock,
                self.tls_context,
            ),
            self.clock,
        )
        # The sending zpop: only its queue is used.
        self.relay_store = MemoryStore()
        self.recorded: list[tuple[OutboundJob, Results, str]] = []

    def queue(self, *recipients: str) -> OutboundJob:
        """Queue QUEUED for ``recipients`` (one domain) and claim the job."""
        result(
            self.relay_store.accept_message(
                [],
                QueuedMessage(
                    "frank@sender.example", recipients, QUEUED, NOW, NOW + 86400.0
                ),
            )
        )
        jobs: list[OutboundJob] = result(
            self.relay_store.claim_outbound("pairs", NOW, 300.0, 10)
        )
        [job] = jobs
        return job

    def deliver(self, job: OutboundJob) -> bool:
        """Run the Deliverer for ``job`` to completion over the MX pair."""
        jobs = [job]

        def next_job() -> OutboundJob | None:
            return jobs.pop() if jobs else None

        async def record(job: OutboundJob, results: Results, mta: str) -> None:
            self.recorded.append((job, results, mta))

        deliverer = Deliverer(
            self.clock,
            self.config.outbound,
            self.config.hosts.smtp,
            self.relay_store.read_outbound_body,
            lambda hop: self.endpoint,
        )
        d = Deferred.fromCoroutine(deliverer.deliver(HOP, next_job, record))
        self.endpoint.flush()
        progressed: bool = self.successResultOf(d)
        return progressed

    def reply(self, results: Results, recipient: str) -> RemoteReply:
        """The server's reply the client reported for ``recipient``."""
        reply = results[recipient]
        if not isinstance(reply, RemoteReply):
            self.fail(f"no reply for {recipient}: {reply!r}")
        return reply

    def accepted_id(self, reply: RemoteReply) -> bytes:
        """The queue id of a ``250 2.0.0 Message accepted as ID`` reply."""
        self.assertEqual(reply.code, 250)
        match = re.fullmatch(
            rb"2\.0\.0 Message accepted as ([0-9a-f]{16})", reply.lines[0]
        )
        if match is None:
            self.fail(f"not an acceptance: {reply!r}")
        return match.group(1)

    def test_queued_message_delivered(self) -> None:
        """One queued message goes over STARTTLS (simulated) to zpop's MX:
        the client reports 250 for the recipient, and Bob's Inbox holds the
        queued bytes exactly under an ESMTPS Received: with the same id."""
        job = self.queue(BOB)
        self.assertTrue(self.deliver(job))
        [(recorded_job, results, mta)] = self.recorded
        self.assertEqual((recorded_job, list(results), mta), (job, [BOB], MTA))
        reply = self.reply(results, BOB)
        queue_id = self.accepted_id(reply)
        [copy] = self.bodies(self.bob, "Inbox")
        trace, rest = self.split_trace(copy)
        self.assertEqual(
            (trace["helo"], trace["client"], trace["protocol"], trace["id"], rest),
            (b"smtp.example.test", b"192.0.2.20", b"ESMTPS", queue_id, QUEUED),
        )
        [connection] = self.endpoint.connections
        self.assertIsInstance(connection.client.started_tls_with, OpportunisticTLS)
        self.assertIs(connection.server.started_tls_with, self.tls_context)
        self.assertTrue(connection.server.disconnected)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(
            outcome(
                BOB,
                1,
                NOW,
                job.expires,
                self.config.outbound,
                reply=reply,
                remote_mta=mta,
            ),
            RecipientResult(BOB, "delivered", remote_mta=MTA),
        )

    def test_permanent_refusal(self) -> None:
        """An unknown hosted address is refused ``550 5.1.1`` at RCPT: the
        client reports that reply for it, which the retry policy makes a
        permanent failure naming the host; nothing is stored."""
        job = self.queue("nobody@example.com")
        self.assertTrue(self.deliver(job))
        [(_, results, mta)] = self.recorded
        refused = RemoteReply(550, (b"5.1.1 Recipient address rejected: User unknown",))
        self.assertEqual((results, mta), ({"nobody@example.com": refused}, MTA))
        self.assertEqual(
            outcome(
                "nobody@example.com",
                1,
                NOW,
                job.expires,
                self.config.outbound,
                reply=refused,
                remote_mta=mta,
            ),
            RecipientResult(
                "nobody@example.com",
                "failed",
                0.0,
                f"host {MTA} said: 550 5.1.1 Recipient address rejected: User unknown",
                "5.1.1",
                MTA,
                "550 5.1.1 Recipient address rejected: User unknown",
            ),
        )
        self.assertEqual(self.messages(self.bob), [])

    def test_recipients_answered_each(self) -> None:
        """In one transaction a known and an unknown recipient each get their
        own reply: 250 for Bob (one copy stored), 550 for the other."""
        job = self.queue(BOB, "nobody@example.com")
        self.assertTrue(self.deliver(job))
        [(_, results, _)] = self.recorded
        self.accepted_id(self.reply(results, BOB))
        self.assertEqual(
            results["nobody@example.com"],
            RemoteReply(550, (b"5.1.1 Recipient address rejected: User unknown",)),
        )
        [copy] = self.bodies(self.bob, "Inbox")
        self.assertEqual(self.split_trace(copy)[1], QUEUED)
