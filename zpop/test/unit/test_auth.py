"""The shared credentials checker against a real (synchronous) store."""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.mail.pop3 import IMailbox
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from zpop.accounts import passwords
from zpop.accounts.credentials import (
    AccountChecker,
    AppPasswordRequired,
    Authenticator,
    CachedLogin,
    FullAddressRequired,
    LoginRefused,
)
from zpop.accounts.realm import Realm, Session
from zpop.config import AuthConfig, Config
from zpop.store.records import REPEATED_FAILURES
from zpop.test.stores import (
    COST,
    KEY,
    add_account,
    add_app_password,
    make_store,
    result,
)
from zpop.threads import run_synchronously


class CheckerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = make_store()
        self.clock = Clock()
        self.clock.advance(1000)
        self.bcrypt_calls: list[Any] = []

        def hashing(f: Any, *args: Any) -> Any:
            self.bcrypt_calls.append(f.__name__)
            return run_synchronously(f, *args)

        self.checker = AccountChecker(self.store, KEY, hashing, self.clock, COST)
        self.alice = add_account(self.store, "alice@example.com", "primary-secret")

    def check(self, user: bytes | str, password: bytes | str) -> Any:
        if isinstance(user, str):
            user = user.encode()
        if isinstance(password, str):
            password = password.encode()
        d = self.checker.requestAvatarId(UsernamePassword(user, password))
        return result(d)

    def test_interface(self) -> None:
        """The checker provides ICredentialsChecker for username/password."""
        self.assertTrue(verifyObject(ICredentialsChecker, self.checker))

    def test_primary_password(self) -> None:
        """The primary password logs in while two-factor is off; any case of address."""
        self.assertEqual(
            self.check("Alice@Example.COM", "primary-secret"), "alice@example.com"
        )
        self.assertEqual(self.bcrypt_calls, ["check_password"])

    def test_wrong_password_and_unknown_user_alike(self) -> None:
        """Wrong password and unknown user fail the same way, each after one bcrypt."""
        self.assertRaises(UnauthorizedLogin, self.check, "alice@example.com", "wrong")
        self.assertRaises(UnauthorizedLogin, self.check, "nobody@example.com", "wrong")
        self.assertEqual(self.bcrypt_calls, ["check_password", "check_password"])

    def test_bare_local_part(self) -> None:
        """A login name without a domain is told to use the full address."""
        with self.assertRaises(FullAddressRequired) as caught:
            self.check("alice", "primary-secret")
        self.assertEqual(caught.exception.text, "Log in with your full email address")

    def test_undecodable(self) -> None:
        """Bytes that are not UTF-8 fail as bad credentials."""
        self.assertRaises(UnauthorizedLogin, self.check, b"\xff@example.com", "x")

    def test_two_factor_needs_app_password(self) -> None:
        """Two-factor on: a correct primary password asks for an app password."""
        result(self.store.set_two_factor("alice@example.com", True))
        with self.assertRaises(AppPasswordRequired) as caught:
            self.check("alice@example.com", "primary-secret")
        self.assertEqual(
            (caught.exception.code, caught.exception.text),
            (
                "AUTH",
                "Application-specific password required"
                " (two-factor authentication is on)",
            ),
        )
        self.assertRaises(UnauthorizedLogin, self.check, "alice@example.com", "wrong")

    def test_app_password(self) -> None:
        """An app password works with two-factor on, typed loosely. The
        checker only looks it up: its use is recorded with the login's
        activity (test_activity)."""
        result(self.store.set_two_factor("alice@example.com", True))
        secret = add_app_password(self.store, self.alice)
        typed = secret.upper().replace(" ", "-")
        self.assertEqual(self.check("alice@example.com", typed), "alice@example.com")
        self.assertEqual(self.bcrypt_calls, [])
        (listed,) = result(self.store.list_app_passwords("alice@example.com"))
        self.assertIsNone(listed.last_used)

    def test_revoked_app_password(self) -> None:
        """A revoked app password fails at once, like any wrong password."""
        secret = add_app_password(self.store, self.alice)
        (listed,) = result(self.store.list_app_passwords("alice@example.com"))
        result(self.store.revoke_app_password("alice@example.com", listed.id))
        self.assertRaises(UnauthorizedLogin, self.check, "alice@example.com", secret)
        self.assertEqual(self.bcrypt_calls, ["check_password"])

    def test_app_password_of_other_account(self) -> None:
        """One account's app password does not open another account."""
        bob = add_account(self.store, "bob@example.com")
        secret = add_app_password(self.store, bob)
        self.assertRaises(UnauthorizedLogin, self.check, "alice@example.com", secret)

    def test_federated(self) -> None:
        """A federated account has no primary password: only app passwords work."""
        fed = add_account(self.store, "fed@example.com", password=None, federated=True)
        self.assertRaises(UnauthorizedLogin, self.check, "fed@example.com", "")
        self.assertRaises(UnauthorizedLogin, self.check, "fed@example.com", "anything")
        self.assertEqual(self.bcrypt_calls, ["check_password", "check_password"])
        secret = add_app_password(self.store, fed)
        self.assertEqual(self.check("fed@example.com", secret), "fed@example.com")

    def test_federated_sets_password(self) -> None:
        """Once a federated account sets a primary password, it works."""
        add_account(self.store, "fed@example.com", password=None, federated=True)
        result(
            self.store.set_password(
                "fed@example.com", passwords.hash_password("new-secret", COST)
            )
        )
        self.assertEqual(self.check("fed@example.com", "new-secret"), "fed@example.com")


class _AuthenticatorCase:
    """Set-up and helpers of the Authenticator tests, on the store
    ``make_store`` gives: a MemoryStore here; a SQLite file in
    zpop.test.integration.test_auth_sqlite, for what only a file shows."""

    def make_store(self) -> Any:
        """The store of the test: a MemoryStore, no disk."""
        return make_store()

    def setUp(self) -> None:
        self.store = self.make_store()
        self.addCleanup(self.store.close)
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.config = AuthConfig(
            failure_delay=2.0,
            failure_delay_max=15.0,
            ban_threshold=5,
            ban_period=900.0,
            account_failure_threshold=3,
            credential_cache=300.0,
            allow_networks=(ipaddress.ip_network("10.0.0.0/8"),),
        )
        self.bcrypts = 0

        def hashing(f: Any, *args: Any) -> Any:
            self.bcrypts += 1
            return run_synchronously(f, *args)

        self.checker = AccountChecker(
            self.store, KEY, hashing, self.clock, COST, self.config.credential_cache
        )
        self.authenticator = self.make_authenticator()
        self.alice = add_account(self.store, "alice@example.com", "primary-secret")
        result(self.store.enable_pop("alice@example.com", "all", 0.0))
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def make_authenticator(self) -> Authenticator:
        config = Config()
        realm = Realm(self.store, config.hosts, config.accounts, self.clock)
        portal = Portal(realm, [self.checker])
        return Authenticator(portal, self.store, self.clock, self.config, KEY)

    def login(
        self, password: str, client: str = "192.0.2.1", user: str = "alice@example.com"
    ) -> Deferred:
        d = self.authenticator.login(
            "pop3", client, user.encode(), password.encode(), Session(client), IMailbox
        )
        d.addCallback(self._logout)
        return d

    def _logout(self, result: Any) -> Any:
        result[2]()
        return result[0]

    def fail_after(self, d: Deferred, delay: float) -> None:
        """``d`` fails UnauthorizedLogin exactly ``delay`` seconds from now."""
        if delay > 0:
            self.clock.advance(delay - 0.001)
            self.assertNoResult(d)
        self.clock.advance(0.001)
        self.failureResultOf(d, UnauthorizedLogin)

    def count_lookups(self) -> list[str]:
        """Record the store look-ups a login makes before the realm's."""
        calls: list[str] = []
        for name in ("get_account", "client_banned_until", "find_app_password"):
            method = getattr(self.store, name)

            def counted(*args: Any, _name: str = name, _method: Any = method) -> Any:
                calls.append(_name)
                return _method(*args)

            self.patch(self.store, name, counted)
        return calls


class AuthenticatorTests(_AuthenticatorCase, SynchronousTestCase):
    """Bans, slowed failures, spraying, the cache and the audit log."""

    def test_success_is_immediate(self) -> None:
        """A correct password is answered at once."""
        self.assertIs(self.successResultOf(self.login("primary-secret")), IMailbox)

    def test_failures_slow_down(self) -> None:
        """Each failure from one address waits twice as long, up to the maximum."""
        for n, delay in enumerate((2, 4, 8)):
            self.fail_after(self.login(f"wrong{n}"), delay)
        self.fail_after(self.login("wrong", user="nobody@example.com"), 15)

    def test_ban(self) -> None:
        """Past the threshold an address is refused, even with the right password,
        until the ban ends; other addresses are not affected."""
        for n, delay in enumerate((2, 4, 8, 15, 15)):
            self.fail_after(self.login(f"wrong{n}"), delay)
        refused = self.failureResultOf(self.login("primary-secret"), LoginRefused)
        self.assertEqual(
            (refused.value.code, refused.value.text),
            ("SYS/TEMP", "Too many failed logins, try again later"),
        )
        self.successResultOf(self.login("primary-secret", client="192.0.2.9"))
        self.clock.advance(900)
        self.successResultOf(self.login("primary-secret"))

    def test_ban_survives_restart(self) -> None:
        """Bans live in the store: a new Authenticator (a restart) keeps them."""
        for n, delay in enumerate((2, 4, 8, 15, 15)):
            self.fail_after(self.login(f"wrong{n}"), delay)
        self.authenticator = self.make_authenticator()
        self.failureResultOf(self.login("primary-secret"), LoginRefused)

    def test_allow_listed_network_not_banned(self) -> None:
        """Addresses in allow_networks are slowed but never banned."""
        for n, delay in enumerate((2, 4, 8, 15, 15, 15)):
            self.fail_after(self.login(f"wrong{n}", client="10.1.2.3"), delay)
        self.successResultOf(self.login("primary-secret", client="10.1.2.3"))

    def test_retries_of_one_secret_count_once(self) -> None:
        """A client retrying one wrong password with every mechanism, fetch
        after fetch, adds no delay step and is never banned; the audit log
        still records every failure."""
        for _ in range(12):
            self.fail_after(self.login("old password"), 2)
        self.assertEqual(sum(e.get("outcome") == "failed" for e in self.events), 12)
        self.successResultOf(self.login("primary-secret"))

    def test_repeat_compared_with_recent_failures_only(self) -> None:
        """A secret counts again once the client's last REPEATED_FAILURES
        failures are all others, and a repeat against another address or
        from another client counts."""
        self.fail_after(self.login("guess"), 2)
        self.fail_after(self.login("guess", user="bob@example.com"), 4)
        self.fail_after(self.login("guess", client="192.0.2.2"), 2)
        self.config = AuthConfig(failure_delay=0.0, ban_threshold=100)
        self.authenticator = self.make_authenticator()
        for n in range(REPEATED_FAILURES):
            self.fail_after(self.login(f"other{n}"), 0)
        failures = result(
            self.store.note_login_failure("192.0.2.1", "x", "probe", 1_000_000.0, 600)
        )
        self.fail_after(self.login("guess"), 0)
        after = result(
            self.store.note_login_failure("192.0.2.1", "x", "probe", 1_000_000.0, 600)
        )
        self.assertEqual(after[0], failures[0] + 1)

    def test_spraying(self) -> None:
        """Failures against one account from many addresses slow that account's
        failures, but a correct password from a clean address gets in at once."""
        for n, delay in enumerate((2, 2, 2, 4, 8, 15)):
            self.fail_after(self.login("wrong", client=f"198.51.100.{n}"), delay)
        self.successResultOf(self.login("primary-secret", client="203.0.113.7"))

    def test_cache(self) -> None:
        """A repeated login costs no bcrypt until the password changes or the
        cache time passes."""
        self.successResultOf(self.login("primary-secret"))
        self.successResultOf(self.login("primary-secret"))
        self.assertEqual(self.bcrypts, 1)
        result(self.store.set_pop_spam("alice@example.com", "include"))
        self.successResultOf(self.login("primary-secret"))
        self.assertEqual(self.bcrypts, 2)
        self.clock.advance(301)
        self.successResultOf(self.login("primary-secret"))
        self.assertEqual(self.bcrypts, 3)
        result(self.store.set_two_factor("alice@example.com", True))
        self.failureResultOf(self.login("primary-secret"), AppPasswordRequired)

    def test_cache_shared_between_processes(self) -> None:
        """A verification remembered by one checker is offered to ``share``;
        another process's checker that ``learn``s it logs in without bcrypt
        until the account changes."""
        shared: list[Any] = []
        self.checker = AccountChecker(
            self.store,
            KEY,
            self.checker._hashing,
            self.clock,
            COST,
            300.0,
            share=lambda key, entry: shared.append((key, entry)),
        )
        self.authenticator = self.make_authenticator()
        self.successResultOf(self.login("primary-secret"))
        ((key, entry),) = shared
        self.assertEqual(entry.as_dict()["address"], "alice@example.com")
        other = AccountChecker(
            self.store, KEY, self.checker._hashing, self.clock, COST, 300.0
        )
        self.checker = other
        self.authenticator = self.make_authenticator()
        other.learn(key, CachedLogin.from_dict(entry.as_dict()))
        self.successResultOf(self.login("primary-secret"))
        self.assertEqual(self.bcrypts, 1)
        result(self.store.set_password("alice@example.com", None))
        self.fail_after(self.login("primary-secret"), 2)

    def test_cache_forgets_revoked_app_password(self) -> None:
        """A cached app password stops working as soon as it is revoked."""
        secret = add_app_password(self.store, self.alice)
        self.successResultOf(self.login(secret))
        (listed,) = result(self.store.list_app_passwords("alice@example.com"))
        result(self.store.revoke_app_password("alice@example.com", listed.id))
        self.fail_after(self.login(secret), 2)

    def test_audit(self) -> None:
        """Every outcome is one structured event with protocol, client, account,
        method and reason."""
        secret = add_app_password(self.store, self.alice, label="phone")
        self.successResultOf(self.login("primary-secret"))
        self.successResultOf(self.login(secret))
        self.fail_after(self.login("wrong", user="Bob@Example.com"), 2)
        result(self.store.disable_pop("alice@example.com"))
        self.failureResultOf(self.login("primary-secret"), LoginRefused)
        audit = [
            (
                e["outcome"],
                e["protocol"],
                e["client"],
                e["account"],
                e["method"],
                e["reason"],
            )
            for e in self.events
            if e.get("log_format", "").startswith("login {outcome}")
        ]
        self.assertEqual(
            audit,
            [
                ("succeeded", "pop3", "192.0.2.1", "alice@example.com", "primary", "-"),
                (
                    "succeeded",
                    "pop3",
                    "192.0.2.1",
                    "alice@example.com",
                    "app password phone",
                    "-",
                ),
                (
                    "failed",
                    "pop3",
                    "192.0.2.1",
                    "bob@example.com",
                    "-",
                    "bad credentials",
                ),
                (
                    "refused",
                    "pop3",
                    "192.0.2.1",
                    "alice@example.com",
                    "-",
                    "POP access is disabled for this account",
                ),
            ],
        )


class TimingTests(SynchronousTestCase):
    """Unknown user, wrong password, revoked app password and federated account
    without a password all cost the same: one bcrypt."""

    def test_same_time(self) -> None:
        """The fastest of each failure kind is within 20% of the others: the
        bcrypt dominates. Measured in this thread's CPU time, so what else
        the machine is doing (a parallel test run) does not count."""
        store = make_store()
        clock = Clock()
        checker = AccountChecker(store, KEY, run_synchronously, clock, 10)
        hashed = passwords.hash_password("primary-secret", 10)
        alice = result(store.add_account("alice@example.com", "paid", False, hashed, 1))
        add_account(store, "fed@example.com", password=None, federated=True)
        revoked = add_app_password(store, alice)
        (listed,) = result(store.list_app_passwords("alice@example.com"))
        result(store.revoke_app_password("alice@example.com", listed.id))
        cases = {
            "unknown user": (b"nobody@example.com", b"guess-guess"),
            "wrong password": (b"alice@example.com", b"guess-guess"),
            "revoked app password": (b"alice@example.com", revoked.encode()),
            "federated": (b"fed@example.com", b"guess-guess"),
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(8):
            for name, (user, password) in cases.items():
                started = time.thread_time()
                d = checker.requestAvatarId(UsernamePassword(user, password))
                self.failureResultOf(d, UnauthorizedLogin)
                times[name].append(time.thread_time() - started)
        fastest = {name: min(t) for name, t in times.items()}
        low, high = min(fastest.values()), max(fastest.values())
        self.assertLess(high / low, 1.2, fastest)
