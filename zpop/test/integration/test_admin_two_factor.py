"""What ``zpop`` says about an account enrolled in two-factor (TOTP): the
state in ``account show`` and ``account list``, ``twofactor enable`` on an
enrolled account, and ``twofactor disable`` as the lost-phone reset. The
enrolment itself is the web's; here it is made through the same service."""

from __future__ import annotations

from twisted.internet.task import Clock

from zpop.accounts import passwords, totp, two_factor
from zpop.test.integration.test_admin import NOW, NOW_ISO, AliceTestCase
from zpop.test.stores import result

ALICE = "alice@example.org"
SECRET = b"12345678901234567890"


class EnrolledTests(AliceTestCase):
    def setUp(self) -> None:
        super().setUp()
        clock = Clock()
        clock.advance(NOW)
        code = totp.code_at(SECRET, totp.step_at(NOW))
        key = passwords.load_or_create_key(self.data)
        self.codes = result(
            two_factor.confirm_enrolment(self.store(), key, clock, ALICE, SECRET, code)
        )

    def test_show(self) -> None:
        """account show says "on (TOTP)", and that mail clients need an app
        password because two-factor is on."""
        out = self.ok("account", "show", ALICE)
        self.assertIn("\n  Two-factor:        on (TOTP)\n", out)
        self.assertIn(
            "\n  Password:          an app-specific password is required "
            "(two-factor authentication is on)\n",
            out,
        )

    def test_list(self) -> None:
        """account list shows the state in its 2FA column."""
        self.assertEqual(
            self.ok("account", "list"),
            "ADDRESS            PLAN  KIND      PASSWORD  2FA  POP  CREATED\n"
            f"alice@example.org  free  personal  none      on   off  {NOW_ISO}\n",
        )

    def test_enable_keeps_enrolment(self) -> None:
        """twofactor enable on an enrolled account requires it from now on
        and keeps the enrolment."""
        self.assertEqual(
            self.ok("twofactor", "enable", ALICE),
            f"two-factor authentication is on for {ALICE} (TOTP) and now required:"
            " mail clients need app-specific passwords\n"
            "it has none yet: create one with "
            f"'zpop app-password create {ALICE} --label TEXT'\n",
        )
        account = self.account(ALICE)
        self.assertEqual(
            (account.two_factor_required, account.totp_enrolled), (True, True)
        )

    def test_disable_resets(self) -> None:
        """twofactor disable is the lost-phone reset: it says so, and the
        account is off with no secret or recovery codes left."""
        self.assertEqual(
            self.ok("twofactor", "disable", ALICE),
            f"two-factor authentication is reset for {ALICE}: its authenticator"
            " secret and recovery codes are deleted, and two-factor is off\n",
        )
        account = self.account(ALICE)
        self.assertEqual((account.two_factor, account.totp_enrolled), (False, False))
        self.assertEqual(result(self.store().list_recovery_codes(ALICE)), [])
        self.assertIn("\n  Two-factor:        off\n", self.ok("account", "show", ALICE))
        self.assertEqual(
            self.ok("twofactor", "disable", ALICE),
            f"two-factor authentication is off for {ALICE}\n",
        )
