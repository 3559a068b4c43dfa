"""The rule for new primary passwords (zpop.accounts.password_rules), the
one ``zpop account add/passwd`` and the web password page share."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from zpop.accounts import accounts, password_rules
from zpop.accounts.errors import InvalidInput
from zpop.accounts.password_rules import WeakPassword, check_new_password
from zpop.config import AccountsConfig
from zpop.test.stores import COST, make_store, result
from zpop.threads import run_synchronously

ADDRESS = "Alice.Liddell@example.com"


class RuleTests(SynchronousTestCase):
    def refused(self, password: str, address: str = ADDRESS) -> WeakPassword:
        return self.assertRaises(WeakPassword, check_new_password, password, address)

    def test_accepts(self) -> None:
        """A long, uncommon password without the address passes unchanged."""
        self.assertEqual(
            check_new_password("violet-harbour-42", ADDRESS), "violet-harbour-42"
        )

    def test_minimum_kept(self) -> None:
        """The CLI's minimum (8) is the rule's: 7 is refused, 8 passes."""
        self.assertEqual(password_rules.MIN_PASSWORD_LENGTH, 8)
        self.assertEqual(accounts.MIN_PASSWORD_LENGTH, 8)
        error = self.refused("kq7#vx2")
        self.assertEqual(error.reason, "short")
        self.assertEqual(
            str(error), "the password is too short: use at least 8 characters"
        )
        self.assertEqual(check_new_password("kq7#vx2m", ADDRESS), "kq7#vx2m")

    def test_control_character(self) -> None:
        error = self.refused("violet\x00harbour")
        self.assertEqual(error.reason, "control")
        self.assertIn("control character", str(error))

    def test_contains_address(self) -> None:
        """The whole address or its local part, in any case, is refused."""
        for password in (
            "alice.liddell@example.com",
            "xxALICE.LIDDELLyy",
            "my-alice.liddell-2024",
        ):
            error = self.refused(password)
            self.assertEqual(error.reason, "address")
            self.assertEqual(
                str(error),
                "the password contains the account's address or its name before"
                " the @: choose one that does not",
            )

    def test_tiny_local_part_ignored(self) -> None:
        """A one- or two-letter local part is not looked for (it would refuse
        most passwords); the whole address still is."""
        self.assertEqual(
            check_new_password("violet-harbour-42", "al@example.com"),
            "violet-harbour-42",
        )
        self.assertEqual(
            self.refused("xal@example.comx", "al@example.com").reason, "address"
        )

    def test_common(self) -> None:
        """Entries of the shipped list are refused, in any case."""
        for password in ("password123", "Qwerty123!", "ILOVEYOU", "football2020"):
            error = self.refused(password)
            self.assertEqual(error.reason, "common")
            self.assertEqual(
                str(error),
                "the password is one of the most common passwords: choose a less"
                " guessable one",
            )

    def test_list_shipped(self) -> None:
        """The list is package data of a few thousand lower-case entries,
        comments left out."""
        common = password_rules.common_passwords()
        self.assertGreater(len(common), 3000)
        self.assertIn("123456", common)
        self.assertFalse(any(e.startswith("#") or e != e.lower() for e in common))

    def test_weak_is_invalid_input(self) -> None:
        """Front ends that catch InvalidInput (the CLI) catch these too."""
        self.assertIsInstance(self.refused("short"), InvalidInput)


class ServiceTests(SynchronousTestCase):
    """add_account and set_password apply the rule with the account's own
    address."""

    def setUp(self) -> None:
        self.store = make_store()
        self.clock = Clock()
        self.config = AccountsConfig(bcrypt_cost=COST)

    def add(self, address: str, password: str) -> object:
        return accounts.add_account(
            self.store,
            self.config,
            run_synchronously,
            self.clock,
            address,
            None,
            False,
            lambda: password,
        )

    def test_add_refuses_address(self) -> None:
        failure = self.failureResultOf(self.add("bob@example.com", "bob-is-great-1"))
        self.assertEqual(failure.value.reason, "address")  # type: ignore[attr-defined]
        self.assertIsNone(result(self.store.get_account("bob@example.com")))

    def test_passwd_refuses_common(self) -> None:
        result(self.add("bob@example.com", "violet-harbour-42"))
        failure = self.failureResultOf(
            accounts.set_password(
                self.store,
                self.config,
                run_synchronously,
                "bob@example.com",
                lambda: "password1234",
            )
        )
        self.assertEqual(failure.value.reason, "common")  # type: ignore[attr-defined]
