"""The shared credentials checker against a real (synchronous) store."""

from __future__ import annotations

from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from zpop.auth import AccountChecker, AppPasswordRequired, FullAddressRequired
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
        self.store = make_store(self.mktemp())
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
        """An app password works with two-factor on, typed loosely; use is recorded."""
        result(self.store.set_two_factor("alice@example.com", True))
        secret = add_app_password(self.store, self.alice)
        typed = secret.upper().replace(" ", "-")
        self.assertEqual(self.check("alice@example.com", typed), "alice@example.com")
        self.assertEqual(self.bcrypt_calls, [])
        (listed,) = result(self.store.list_app_passwords("alice@example.com"))
        self.assertEqual(listed.last_used, 1000.0)

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
        from zpop import passwords

        add_account(self.store, "fed@example.com", password=None, federated=True)
        result(
            self.store.set_password(
                "fed@example.com", passwords.hash_password("new-secret", COST)
            )
        )
        self.assertEqual(self.check("fed@example.com", "new-secret"), "fed@example.com")
