"""``zpop imap enable|disable ADDRESS`` and the ``IMAP access:`` line of
``zpop account show``; and the password rule as ``zpop account add`` and
``zpop account passwd`` apply it (zpop.accounts.password_rules)."""

from __future__ import annotations

from zpop.accounts import passwords
from zpop.test.integration.test_admin import AliceTestCase

ALICE = "alice@example.org"


class ImapTests(AliceTestCase):
    def test_disable_enable(self) -> None:
        """disable and enable store the switch and say when it counts and
        that IMAP is not served yet."""
        self.assertEqual(
            self.ok("imap", "disable", ALICE),
            f"IMAP access is off for {ALICE}: this takes effect at the next IMAP"
            " login (zpop does not serve IMAP yet; the setting is kept for when"
            " it does)\n",
        )
        self.assertFalse(self.account(ALICE).imap_enabled)
        self.assertEqual(
            self.ok("imap", "enable", "Alice@Example.org"),
            f"IMAP access is on for {ALICE}: this takes effect at the next IMAP"
            " login (zpop does not serve IMAP yet; the setting is kept for when"
            " it does)\n",
        )
        self.assertTrue(self.account(ALICE).imap_enabled)

    def test_show(self) -> None:
        """account show has the IMAP access line after the POP block: on for
        a new account, off once disabled."""
        self.assertIn(
            "for every device)\n  IMAP access:       on\n",
            self.ok("account", "show", ALICE),
        )
        self.ok("imap", "disable", ALICE)
        self.assertIn("\n  IMAP access:       off\n", self.ok("account", "show", ALICE))

    def test_usage(self) -> None:
        """The action comes first; an unknown account is refused."""
        self.assertEqual(
            self.usage("imap", ALICE, "enable"),
            f"zpop: error: argument state: invalid choice: '{ALICE}' "
            "(choose from 'enable', 'disable')",
        )
        self.fails(
            "no account x@example.org: create it with 'zpop account add x@example.org'",
            "imap",
            "disable",
            "x@example.org",
        )


class PasswordRuleTests(AliceTestCase):
    def test_add_common(self) -> None:
        """A common password is refused at account add; no account is made."""
        self.fails(
            "the password is one of the most common passwords: choose a less"
            " guessable one",
            "account",
            "add",
            "bob@example.org",
            "--password-stdin",
            stdin=b"Password123\n",
        )
        self.assertIsNone(self.account("bob@example.org"))

    def test_passwd_address(self) -> None:
        """passwd refuses a password holding the address's local part."""
        self.fails(
            "the password contains the account's address or its name before the"
            " @: choose one that does not",
            "account",
            "passwd",
            ALICE,
            "--password-stdin",
            stdin=b"ALICE-in-2024\n",
        )
        self.assertIsNone(self.account(ALICE).password_hash)

    def test_passwd_strong(self) -> None:
        self.ok(
            "account", "passwd", ALICE, "--password-stdin", stdin=b"violet harbour 42\n"
        )
        hashed = self.account(ALICE).password_hash
        self.assertTrue(passwords.check_password("violet harbour 42", hashed))
