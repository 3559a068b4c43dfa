"""The POP download log and LOGIN-DELAY in memory: zpop's POP3 server with
Twisted's POP3 client over iosim, on MemoryStore and a Clock."""

from __future__ import annotations

import dataclasses

from twisted.cred.portal import Portal
from twisted.mail.pop3 import AdvancedPOP3Client, ServerErrorResponse

from zpop.accounts.credentials import AccountChecker, Authenticator
from zpop.accounts.realm import Realm
from zpop.config import Config, PopConfig
from zpop.pop3 import POP3Factory, POP3Settings
from zpop.store import Account, Message, NewMessage, PopDownload
from zpop.test.stores import COST, KEY, result
from zpop.test.unit.test_pairs import (
    ALICE,
    ALICE_PASSWORD,
    NOW,
    POP_MESSAGES,
    Pair,
    PairTestCase,
    add_account,
    add_app_password,
    pair,
)
from zpop.threads import run_synchronously


class PopLogPairTests(PairTestCase):
    """What a session logs, written once as it ends."""

    pop = PopConfig()

    def setUp(self) -> None:
        super().setUp()
        self.config = dataclasses.replace(self.config, pop=self.pop)
        checker = AccountChecker(self.store, KEY, run_synchronously, self.clock, COST)
        realm = Realm(
            self.store, self.config.hosts, self.config.accounts, self.clock, self.pop
        )
        self.authenticator = Authenticator(
            Portal(realm, [checker]), self.store, self.clock, self.config.auth, KEY
        )
        add_account(self.store, ALICE, ALICE_PASSWORD)
        self.alice: Account = result(self.store.enable_pop(ALICE, "all", NOW))
        self.stored: list[Message] = result(
            self.store.store_messages(
                self.alice.id,
                [NewMessage("Inbox", body, "", NOW) for body in POP_MESSAGES],
            )
        )

    def connect(self, config: Config | None = None) -> tuple[AdvancedPOP3Client, Pair]:
        factory = POP3Factory(
            self.authenticator,
            POP3Settings.from_config(config or self.config),
            self.clock,
            True,
        )
        client = AdvancedPOP3Client()
        return client, pair(factory, client, self.clock, True)

    def login(self, password: str = ALICE_PASSWORD) -> tuple[AdvancedPOP3Client, Pair]:
        client, connection = self.connect()
        self.answer(connection, client.login(ALICE.encode(), password.encode()))
        return client, connection

    def uidl(self, index: int) -> str:
        return f"{self.alice.uid_validity:x}-{self.stored[index].uid}"

    def log(self) -> list[PopDownload]:
        found: list[PopDownload] = result(self.store.list_pop_downloads(ALICE))
        return found

    def entry(self, at: float, action: str, index: int, device: str) -> PopDownload:
        return PopDownload(
            at,
            action,
            device,
            "192.0.2.10",
            self.stored[index].id,
            self.uidl(index),
            self.stored[index].subject,
        )


class DownloadLogTests(PopLogPairTests):
    def test_retr_top_and_dele_logged_at_quit(self) -> None:
        """RETR and a whole-message TOP are logged, a partial TOP is not,
        nothing is written before QUIT, and QUIT adds the applied DELE,
        newest first, with the app password's label and the client."""
        secret = add_app_password(self.store, self.alice)
        client, connection = self.login(secret)
        self.answer(connection, client.retrieve(0))
        self.clock.advance(5)
        self.answer(connection, client.retrieve(1, lines=100))
        self.answer(connection, client.retrieve(2, lines=0))
        self.answer(connection, client.delete(0))
        self.assertEqual(self.log(), [])
        self.clock.advance(5)
        self.answer(connection, client.quit())
        device = "app password phone"
        self.assertEqual(
            self.log(),
            [
                self.entry(NOW + 10, "dele", 0, device),
                self.entry(NOW + 5, "retr", 1, device),
                self.entry(NOW, "retr", 0, device),
            ],
        )

    def test_dropped_session_logs_retrs_only(self) -> None:
        """A session dropped before QUIT logs its RETRs but no DELE."""
        client, connection = self.login()
        self.answer(connection, client.retrieve(2))
        self.answer(connection, client.delete(2))
        connection.client.loseConnection()
        connection.pump.flush()
        self.assertEqual(self.log(), [self.entry(NOW, "retr", 2, "primary")])

    def test_old_entries_pruned(self) -> None:
        """Entries older than log_days go with the next write."""
        client, connection = self.login()
        self.answer(connection, client.retrieve(0))
        self.answer(connection, client.quit())
        self.clock.advance(91 * 86400)
        client, connection = self.login()
        self.answer(connection, client.retrieve(1))
        self.answer(connection, client.quit())
        self.assertEqual(
            self.log(), [self.entry(NOW + 91 * 86400, "retr", 1, "primary")]
        )

    def test_quiet_session_writes_nothing(self) -> None:
        """A session that only lists its mail costs no log write."""
        client, connection = self.login()
        self.answer(connection, client.listUID())
        self.answer(connection, client.quit())
        self.assertEqual(self.log(), [])


class LoginDelayTests(PopLogPairTests):
    pop = PopConfig(login_delay_free=600, login_delay_paid=60)

    def capabilities(self, client: AdvancedPOP3Client, connection: Pair) -> dict:
        caps: dict = self.answer(connection, client.capabilities(useCache=False))
        return caps

    def test_capa_before_and_after_login(self) -> None:
        """Before login CAPA shows the least delay with USER (plans differ);
        after it, the account's own (paid: 60)."""
        client, connection = self.connect()
        self.assertEqual(
            self.capabilities(client, connection)[b"LOGIN-DELAY"], [b"60", b"USER"]
        )
        self.answer(connection, client.login(ALICE.encode(), ALICE_PASSWORD.encode()))
        self.assertEqual(self.capabilities(client, connection)[b"LOGIN-DELAY"], [b"60"])

    def test_too_soon_refused_after_verifying(self) -> None:
        """A login within the delay of the last gets [LOGIN-DELAY] and takes
        no lock; a wrong password still gets [AUTH]; after the delay it works."""
        client, connection = self.login()
        self.answer(connection, client.quit())
        self.clock.advance(30)
        client, connection = self.connect()
        error = self.refusal(
            connection,
            client.login(ALICE.encode(), ALICE_PASSWORD.encode()),
            ServerErrorResponse,
        )
        self.assertEqual(
            error.args[0],
            b"[LOGIN-DELAY] Logged in less than 60 seconds ago: try again in 30"
            b" seconds",
        )
        client, connection = self.connect()
        d = client.login(ALICE.encode(), b"wrong")
        connection.pump.flush()
        self.clock.advance(2)  # the first failure's answer delay
        error = self.refusal(connection, d, ServerErrorResponse)
        self.assertIn("[AUTH]", str(error))
        self.clock.advance(FIRST_DELAY_SLACK)
        client, connection = self.login()
        self.answer(connection, client.quit())

    def test_off_by_default(self) -> None:
        """With no delay configured CAPA has no LOGIN-DELAY and logins
        follow each other freely."""
        config = dataclasses.replace(self.config, pop=PopConfig())
        client, connection = self.connect(config)
        self.assertNotIn(b"LOGIN-DELAY", self.capabilities(client, connection))


#: Past the 60-second delay and the wrong password's answer delay.
FIRST_DELAY_SLACK = 60.0
