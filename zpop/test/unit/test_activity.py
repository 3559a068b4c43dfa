"""Sign-in activity (zpop.accounts.activity): the recorder's batching on a
Clock, what the Authenticator hands it, and ``/settings/activity``."""

from __future__ import annotations

from typing import Any

from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.mail.pop3 import IMailbox
from twisted.trial.unittest import SynchronousTestCase

from zpop.accounts.activity import FLUSH_BATCH, ActivityRecorder
from zpop.accounts.credentials import (
    SECOND_FACTOR,
    WRONG_CODE,
    Authenticator,
    LoginRefused,
)
from zpop.accounts.realm import Realm
from zpop.config import Config
from zpop.store import LoginEvent, StoreError
from zpop.test.stores import KEY, add_app_password, make_store, result
from zpop.test.unit.test_auth import _AuthenticatorCase
from zpop.test.unit.test_web import WebCase

ALICE = "alice@example.com"


def event(n: int = 0, address: str = ALICE, **changes: Any) -> LoginEvent:
    fields: dict[str, Any] = {
        "address": address,
        "at": 1_700_000_000.0 + n,
        "protocol": "pop3",
        "client": "192.0.2.1",
        "credential": "primary",
        "result": "succeeded",
        "reason": "-",
    }
    fields.update(changes)
    return LoginEvent(**fields)


class _CountingStore:
    """A MemoryStore whose ``record_login_events`` calls are kept, and that
    can be told to fail or to hold its answer."""

    def __init__(self) -> None:
        self.store = make_store()
        self.calls: list[list[LoginEvent]] = []
        self.error: Exception | None = None
        self.held: list[Deferred[None]] = []
        self.hold = False

    def record_login_events(self, events: list[LoginEvent]) -> Deferred[None]:
        self.calls.append(list(events))
        if self.error is not None:
            return fail(self.error)
        if self.hold:
            d: Deferred[None] = Deferred()
            self.held.append(d)
            return d
        d2: Deferred[None] = self.store.record_login_events(events)
        return d2


class RecorderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.backend = _CountingStore()
        self.store = self.backend.store
        self.store.add_account(ALICE, "paid", False, None, 1.0)
        self.recorder = ActivityRecorder(self.backend, self.clock)  # type: ignore[arg-type]
        self.recorder.startService()
        self.addCleanup(self.stop)

    def stop(self) -> None:
        if self.recorder.running:
            self.recorder.stopService()

    def listed(self) -> list[LoginEvent]:
        found: list[LoginEvent] = result(self.store.list_login_events(ALICE))
        return found

    def test_flush_on_timer(self) -> None:
        """Events wait in memory and are written in one call a second later."""
        self.recorder.record(event(1))
        self.recorder.record(event(2))
        self.assertEqual((self.backend.calls, self.listed()), ([], []))
        self.clock.advance(0.999)
        self.assertEqual(self.backend.calls, [])
        self.clock.advance(0.001)
        self.assertEqual(len(self.backend.calls), 1)
        self.assertEqual(self.listed(), [event(2), event(1)])
        self.clock.advance(5)
        self.assertEqual(len(self.backend.calls), 1)

    def test_flush_at_batch_size(self) -> None:
        """The FLUSH_BATCH-th event writes the batch at once, no timer."""
        for n in range(FLUSH_BATCH - 1):
            self.recorder.record(event(n))
        self.assertEqual(self.backend.calls, [])
        self.recorder.record(event(FLUSH_BATCH))
        self.assertEqual([len(c) for c in self.backend.calls], [FLUSH_BATCH])
        self.assertEqual(self.recorder.pending, 0)

    def test_flush_at_stop(self) -> None:
        """Stopping writes what is left and fires once it is written."""
        self.recorder.record(event(1))
        self.backend.hold = True
        stopped = self.recorder.stopService()
        self.assertNoResult(stopped)
        self.backend.held[0].callback(None)
        self.successResultOf(stopped)
        self.assertEqual(len(self.backend.calls), 1)
        self.clock.advance(10)
        self.assertEqual(len(self.backend.calls), 1)

    def test_failure_logged_not_raised(self) -> None:
        """A failed write is logged once, without a traceback; its events are
        dropped and later ones written."""
        self.backend.error = StoreError("database error in x: disk I/O error")
        self.recorder.record(event(1))
        with capturedLogs() as events:
            self.clock.advance(1)
        self.assertEqual(len(events), 1)
        self.assertIsNone(events[0].get("log_failure"))
        self.assertIn("1 events lost", events[0]["log_format"].format(**events[0]))
        self.backend.error = None
        self.recorder.record(event(2))
        self.clock.advance(1)
        self.assertEqual(self.listed(), [event(2)])

    def test_store_raising_logged(self) -> None:
        """Even a store that raises instead of failing its Deferred does not
        reach the caller of ``record``."""

        def broken(events: Any) -> Deferred[None]:
            raise StoreError("closed")

        self.patch(self.backend, "record_login_events", broken)
        with capturedLogs() as events:
            for n in range(FLUSH_BATCH):
                self.recorder.record(event(n))
        self.assertEqual(len(events), 1)


class AuthenticatorActivityTests(_AuthenticatorCase, SynchronousTestCase):
    """What the Authenticator hands the recorder."""

    def make_authenticator(self) -> Authenticator:
        self.recorder = ActivityRecorder(self.store, self.clock)
        self.recorder.startService()
        self.addCleanup(self.recorder.stopService)
        config = Config()
        realm = Realm(self.store, config.hosts, config.accounts, self.clock)
        portal = Portal(realm, [self.checker])
        return Authenticator(
            portal, self.store, self.clock, self.config, KEY, self.recorder.record
        )

    def listed(self) -> list[LoginEvent]:
        self.clock.advance(1)
        found: list[LoginEvent] = result(self.store.list_login_events(ALICE))
        return found

    def test_login_not_delayed(self) -> None:
        """The login has its answer before any write of its activity."""
        calls: list[Any] = []
        original = self.store.record_login_events
        self.patch(
            self.store,
            "record_login_events",
            lambda events: calls.append(events) or original(events),
        )
        self.assertIs(self.successResultOf(self.login("primary-secret")), IMailbox)
        self.assertEqual((calls, self.recorder.pending), ([], 1))
        self.clock.advance(1)
        self.assertEqual(len(calls), 1)

    def test_outcomes(self) -> None:
        """Success with the primary password and with an app password, a
        wrong password, and a refusal, each with its label and result."""
        secret = add_app_password(self.store, self.alice, "Thunderbird")
        self.successResultOf(self.login("primary-secret"))
        self.successResultOf(self.login(secret, client="192.0.2.2"))
        wrong = self.login("wrong")
        self.clock.advance(30)
        self.failureResultOf(wrong, UnauthorizedLogin)
        result(self.store.set_two_factor(ALICE, True))
        self.failureResultOf(self.login("primary-secret"), LoginRefused)
        found = self.listed()
        self.assertEqual(
            [(e.protocol, e.client, e.credential, e.result, e.reason) for e in found],
            [
                (
                    "pop3",
                    "192.0.2.1",
                    "primary",
                    "refused",
                    "Application-specific password required (two-factor"
                    " authentication is on)",
                ),
                ("pop3", "192.0.2.1", "-", "failed", "bad credentials"),
                ("pop3", "192.0.2.2", "app password Thunderbird", "succeeded", "-"),
                ("pop3", "192.0.2.1", "primary", "succeeded", "-"),
            ],
        )
        self.assertEqual({e.address for e in found}, {ALICE})

    def test_app_password_last_use(self) -> None:
        """An app-password login records the password's last use and client
        with its activity, also when the credential cache answered it; the
        primary password and failures leave it alone."""
        secret = add_app_password(self.store, self.alice, "Thunderbird")
        self.successResultOf(self.login(secret, client="192.0.2.2"))
        self.clock.advance(1)
        [used] = result(self.store.list_app_passwords(ALICE))
        self.assertEqual(
            (used.last_used, used.last_used_from),
            (self.clock.seconds() - 1, "192.0.2.2"),
        )
        self.clock.advance(59)
        calls: list[Any] = []
        self.patch(self.store, "find_app_password", lambda *a: calls.append(a) or None)
        self.successResultOf(self.login(secret, client="198.51.100.3"))
        self.assertEqual(calls, [], "answered from the cache")
        at = self.clock.seconds()
        self.successResultOf(self.login("primary-secret", client="203.0.113.9"))
        self.clock.advance(1)
        [used] = result(self.store.list_app_passwords(ALICE))
        self.assertEqual((used.last_used, used.last_used_from), (at, "198.51.100.3"))
        [latest, cached, first] = result(self.store.list_login_events(ALICE))
        self.assertEqual(
            [e.app_password_id for e in (latest, cached, first)],
            [None, used.id, used.id],
        )

    def test_unknown_account_not_recorded(self) -> None:
        """Logins to addresses with no account never reach the recorder, nor
        do logins with a bare user name."""
        nobody = self.login("wrong", user="nobody@example.com")
        self.assertEqual(self.recorder.pending, 0)
        self.clock.advance(30)
        self.failureResultOf(nobody, UnauthorizedLogin)
        self.failureResultOf(self.login("wrong", user="alice"), LoginRefused)
        self.assertEqual(self.recorder.pending, 0)
        self.assertEqual(result(self.store.list_login_events("nobody@example.com")), [])

    def test_recorder_raising_does_not_break_login(self) -> None:
        """A recorder that raises is logged; the login still succeeds."""

        def broken(event: LoginEvent) -> None:
            raise RuntimeError("full")

        self.patch(self.authenticator, "_activity", broken)
        with capturedLogs():
            self.assertIs(self.successResultOf(self.login("primary-secret")), IMailbox)
        self.flushLoggedErrors(RuntimeError)


class ActivityPageTests(WebCase):
    def setUp(self) -> None:
        super().setUp()
        self.sign_in()

    def test_lists_events(self) -> None:
        """The table shows time in UTC, protocol, client, label and result,
        newest first, for this account only."""
        result(
            self.store.record_login_events(
                [
                    event(0, protocol="smtp", credential="app password phone"),
                    event(
                        60, result="failed", credential="-", reason="bad credentials"
                    ),
                    event(120, protocol="web", client="2001:db8::1"),
                    event(180, address="bob@example.com"),
                ]
            )
        )
        body = self.request("GET", "/settings/activity").body
        self.assertIn('id="activity"', body)
        self.assertIn('href="/settings/activity"', body)
        table = body[body.index('id="activity"') :]
        self.assertIn(
            "<td>2023-11-14 22:15 UTC</td><td>Web</td>"
            "<td>2001:db8::1</td><td>primary password</td>"
            "<td>succeeded</td>",
            table,
        )
        self.assertIn(
            "<td>POP3</td><td>192.0.2.1</td><td>-</td><td>failed: wrong password</td>",
            table,
        )
        self.assertIn(
            "<td>SMTP</td><td>192.0.2.1</td><td>app password “phone”</td>", table
        )
        self.assertLess(table.index("Web"), table.index("SMTP"))

    def test_two_factor_code_step(self) -> None:
        """The code step of a sign-in shows as such, a wrong code as one."""
        result(
            self.store.record_login_events(
                [
                    event(0, protocol="web", credential=SECOND_FACTOR),
                    event(
                        60,
                        protocol="web",
                        credential=SECOND_FACTOR,
                        result="failed",
                        reason=WRONG_CODE,
                    ),
                ]
            )
        )
        body = self.request("GET", "/settings/activity").body
        table = body[body.index('id="activity"') :]
        self.assertIn("<td>two-factor code</td><td>failed: wrong code</td>", table)
        self.assertIn("<td>two-factor code</td><td>succeeded</td>", table)

    def test_script_label_inert(self) -> None:
        """An app password label holding <script> is shown as text."""
        result(
            self.store.record_login_events(
                [event(credential="app password <script>alert(1)</script>")]
            )
        )
        body = self.request("GET", "/settings/activity").body
        self.assertIn("&lt;script&gt;alert(1)&lt;/script&gt;", body)
        self.assertNotIn("<script", body)

    def test_chinese(self) -> None:
        """The zh-CN page has its own strings."""
        result(self.store.record_login_events([event(result="failed")]))
        body = self.request(
            "GET", "/settings/activity", headers={"accept-language": "zh-CN"}
        ).body
        for text in ("登录活动", "时间（UTC）", "协议", "凭据", "失败: 密码错误"):
            self.assertIn(text, body)

    def test_needs_sign_in(self) -> None:
        """Signed out, the page sends to the sign-in."""
        self.jar.clear()
        answer = self.request("GET", "/settings/activity")
        self.assertEqual(answer.status, 302)
