"""The two-factor services (zpop.accounts.two_factor) on a MemoryStore and
a task.Clock: enrolment, the second-factor check with replay protection,
recovery codes, turning it off, and the operator's require and reset."""

from __future__ import annotations

from typing import Any

from twisted.cred.credentials import UsernamePassword
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from zpop.accounts import passwords, totp, two_factor
from zpop.accounts.credentials import AccountChecker, AppPasswordRequired
from zpop.accounts.errors import (
    AlreadyEnrolled,
    InvalidCode,
    NotAllowed,
    NotEnrolled,
    SecondFactorUnreadable,
    UnknownAccount,
    WrongPassword,
)
from zpop.accounts.two_factor import TwoFactorState, state_of
from zpop.store import Account
from zpop.test.stores import COST, KEY, add_account, make_store, result
from zpop.threads import run_synchronously

ALICE = "alice@example.com"
NOW = 1_700_000_000.0
SECRET = b"12345678901234567890"


class TwoFactorTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = make_store()
        self.addCleanup(self.store.close)
        self.clock = Clock()
        self.clock.advance(NOW)
        self.bcrypt_calls: list[str] = []
        add_account(self.store, ALICE, "primary-secret")

    def hashing(self, f: Any, *args: Any) -> Any:
        self.bcrypt_calls.append(f.__name__)
        return run_synchronously(f, *args)

    def account(self) -> Account:
        account: Account = result(self.store.get_account(ALICE))
        return account

    def code(self, offset: int = 0) -> str:
        """The code the app shows ``offset`` steps from now."""
        return totp.code_at(SECRET, totp.step_at(self.clock.seconds()) + offset)

    def wrong_code(self) -> str:
        """Six digits no step of the window shows."""
        window = {self.code(k) for k in (-1, 0, 1)}
        return next(c for c in ("000000", "111111", "222222") if c not in window)

    def enrol(self) -> list[str]:
        codes: list[str] = result(
            two_factor.confirm_enrolment(
                self.store, KEY, self.clock, ALICE, SECRET, self.code()
            )
        )
        return codes

    def verify(self, code: str, key: bytes = KEY) -> bool:
        verified: bool = result(
            two_factor.verify_second_factor(self.store, key, self.clock, ALICE, code)
        )
        return verified

    def turn_off(self, password: str, code: str) -> Account:
        account: Account = result(
            two_factor.turn_off(
                self.store, KEY, self.clock, self.hashing, ALICE, password, code
            )
        )
        return account


class EnrolmentTests(TwoFactorTestCase):
    def test_start_stores_nothing(self) -> None:
        """start_enrolment makes a secret and what the page shows of it,
        and stores nothing: the account stays off."""
        enrolment = two_factor.start_enrolment("Alice@Example.com", "zpop")
        self.assertEqual(len(enrolment.secret), 20)
        self.assertEqual(totp.parse_secret_text(enrolment.text), enrolment.secret)
        self.assertEqual(
            enrolment.uri,
            totp.provisioning_uri(enrolment.secret, ALICE, "zpop"),
        )
        self.assertTrue(enrolment.svg.startswith("<svg "))
        self.assertEqual(state_of(self.account()), TwoFactorState.OFF)
        self.assertIsNone(result(self.store.get_totp_secret(self.account().id)))

    def test_confirm(self) -> None:
        """A valid code turns two-factor on: the secret is stored sealed, the
        code's step recorded, and ten distinct recovery codes are returned
        once, stored only as keyed hashes."""
        codes = self.enrol()
        self.assertEqual(len(codes), 10)
        self.assertEqual(len(set(codes)), 10)
        for code in codes:
            self.assertRegex(code, r"^[a-km-z2-9]{4}-[a-km-z2-9]{4}-[a-km-z2-9]{4}$")
        account = self.account()
        self.assertEqual(state_of(account), TwoFactorState.ON)
        self.assertEqual(
            (account.two_factor, account.two_factor_required, account.totp_enrolled),
            (True, False, True),
        )
        stored = result(self.store.get_totp_secret(account.id))
        self.assertNotIn(SECRET, stored.sealed)
        self.assertEqual(totp.unseal(KEY, stored.sealed, ALICE), SECRET)
        self.assertEqual((stored.last_step, stored.enrolled), (totp.step_at(NOW), NOW))
        listed = result(self.store.list_recovery_codes(ALICE))
        self.assertEqual([c.used for c in listed], [None] * 10)

    def test_wrong_code(self) -> None:
        """A wrong code is refused with words for the user; nothing is
        stored."""
        for typed in (self.wrong_code(), "abc", self.code(5)):
            with self.assertRaises(InvalidCode) as caught:
                result(
                    two_factor.confirm_enrolment(
                        self.store, KEY, self.clock, ALICE, SECRET, typed
                    )
                )
            self.assertEqual(
                str(caught.exception),
                "the code is not valid: type the 6-digit code your authenticator"
                " app shows now",
            )
        self.assertEqual(state_of(self.account()), TwoFactorState.OFF)
        self.assertEqual(result(self.store.list_recovery_codes(ALICE)), [])

    def test_confirm_twice(self) -> None:
        """An enrolled account does not enrol again over its secret."""
        self.enrol()
        self.clock.advance(60)
        with self.assertRaises(AlreadyEnrolled) as caught:
            self.enrol()
        self.assertEqual(
            str(caught.exception),
            "two-factor authentication is on already for alice@example.com",
        )

    def test_unknown_account(self) -> None:
        """Enrolling an unknown address fails UnknownAccount."""
        self.assertRaises(
            UnknownAccount,
            result,
            two_factor.confirm_enrolment(
                self.store, KEY, self.clock, "nobody@example.com", SECRET, "123456"
            ),
        )

    def test_mail_protocols_refuse_primary_password(self) -> None:
        """Enrolled (as when required) the checker the mail protocols share
        refuses the primary password with today's message."""
        self.enrol()
        checker = AccountChecker(self.store, KEY, self.hashing, self.clock, COST)
        d = checker.requestAvatarId(UsernamePassword(ALICE.encode(), b"primary-secret"))
        self.assertIsInstance(self.failureResultOf(d).value, AppPasswordRequired)


class VerifyTests(TwoFactorTestCase):
    def test_confirming_code_not_reusable(self) -> None:
        """The code that confirmed the enrolment does not sign in after."""
        self.enrol()
        self.assertFalse(self.verify(self.code()))

    def test_replay_across_calls(self) -> None:
        """A code signs in once: the same code again, or an earlier step's,
        is refused; the next step's code works."""
        self.enrol()
        self.clock.advance(30)
        self.assertTrue(self.verify(self.code()))
        self.assertFalse(self.verify(self.code()))
        self.assertFalse(self.verify(self.code(-1)))
        self.assertTrue(self.verify(self.code(1)))
        self.assertFalse(self.verify(self.code(1)))

    def test_window(self) -> None:
        """A code one step old still works; two steps old it does not."""
        self.enrol()
        self.clock.advance(90)
        self.assertFalse(self.verify(self.code(-2)))
        self.assertTrue(self.verify(self.code(-1)))

    def test_recovery_code_single_use(self) -> None:
        """A recovery code works once, typed in any case and spacing; its
        use is recorded; the others still work."""
        codes = self.enrol()
        self.clock.advance(5)
        self.assertTrue(self.verify(codes[3].upper().replace("-", " ")))
        self.assertFalse(self.verify(codes[3]))
        listed = result(self.store.list_recovery_codes(ALICE))
        self.assertEqual([c.used for c in listed], [None] * 3 + [NOW + 5] + [None] * 6)
        self.assertTrue(self.verify(codes[4]))

    def test_garbage_refused(self) -> None:
        """Neither a code nor a recovery code: refused, nothing spent."""
        self.enrol()
        for typed in ("", "hello", "12345", "abcd-efgh-ijk", "0" * 12):
            self.assertFalse(self.verify(typed), typed)

    def test_not_enrolled(self) -> None:
        """An account without an enrolment has no second factor to pass."""
        self.assertFalse(self.verify(self.code()))
        result(two_factor.require(self.store, ALICE))
        self.assertFalse(self.verify(self.code()))

    def test_other_server_key(self) -> None:
        """A secret that does not open with the server key is an error
        naming the account, not a silent refusal."""
        self.enrol()
        self.clock.advance(30)
        with self.assertRaises(SecondFactorUnreadable) as caught:
            self.verify(self.code(), key=b"o" * 32)
        self.assertEqual(
            str(caught.exception),
            "the two-factor secret of alice@example.com cannot be read with this"
            " server's key: the operator can reset two-factor for the account",
        )

    def test_recovery_codes_of_another_key_refused(self) -> None:
        """Recovery codes are keyed hashes: under another key none matches."""
        codes = self.enrol()
        self.assertFalse(self.verify(codes[0], key=b"o" * 32))
        self.assertTrue(self.verify(codes[0]))

    def test_regenerate(self) -> None:
        """New recovery codes replace every old one."""
        old = self.enrol()
        new = result(
            two_factor.regenerate_recovery_codes(self.store, KEY, self.clock, ALICE)
        )
        self.assertEqual(len(new), 10)
        self.assertFalse(self.verify(old[0]))
        self.assertTrue(self.verify(new[0]))
        status = result(two_factor.two_factor_status(self.store, ALICE))
        self.assertEqual(
            status, two_factor.TwoFactorStatus(TwoFactorState.ON, False, NOW, 9)
        )

    def test_regenerate_not_enrolled(self) -> None:
        """Without an enrolment there are no recovery codes to renew."""
        with self.assertRaises(NotEnrolled) as caught:
            result(
                two_factor.regenerate_recovery_codes(self.store, KEY, self.clock, ALICE)
            )
        self.assertEqual(
            str(caught.exception),
            "alice@example.com has no authenticator app enrolled for two-factor"
            " authentication",
        )


class TurnOffTests(TwoFactorTestCase):
    def test_needs_password_and_code(self) -> None:
        """A wrong password or a wrong code leaves two-factor on; both right
        turn it off and delete the secret and recovery codes. bcrypt runs
        on the hashing runner."""
        codes = self.enrol()
        self.clock.advance(30)
        self.assertRaises(WrongPassword, self.turn_off, "wrong", self.code())
        self.assertEqual(self.bcrypt_calls, ["check_password"])
        with self.assertRaises(InvalidCode) as caught:
            self.turn_off("primary-secret", self.wrong_code())
        self.assertEqual(
            str(caught.exception),
            "the code is not valid: type the 6-digit code your authenticator app"
            " shows now, or one of your unused recovery codes",
        )
        self.assertEqual(state_of(self.account()), TwoFactorState.ON)
        account = self.turn_off("primary-secret", self.code())
        self.assertEqual(state_of(account), TwoFactorState.OFF)
        self.assertEqual(account, self.account())
        self.assertFalse(account.two_factor)
        self.assertIsNone(result(self.store.get_totp_secret(account.id)))
        self.assertEqual(result(self.store.list_recovery_codes(ALICE)), [])
        self.assertFalse(self.verify(codes[0]))

    def test_wrong_password_spends_no_code(self) -> None:
        """A wrong password is refused before the code is looked at, so the
        code still signs in."""
        self.enrol()
        self.clock.advance(30)
        self.assertRaises(WrongPassword, self.turn_off, "wrong", self.code())
        self.assertTrue(self.verify(self.code()))

    def test_with_recovery_code(self) -> None:
        """With the phone lost, a recovery code stands in for the code."""
        codes = self.enrol()
        account = self.turn_off("primary-secret", codes[0])
        self.assertEqual(state_of(account), TwoFactorState.OFF)

    def test_without_primary_password(self) -> None:
        """An account without a primary password cannot confirm with one."""
        add_account(self.store, "fed@example.com", None, federated=True)
        result(
            two_factor.confirm_enrolment(
                self.store, KEY, self.clock, "fed@example.com", SECRET, self.code()
            )
        )
        self.assertRaises(
            WrongPassword,
            result,
            two_factor.turn_off(
                self.store,
                KEY,
                self.clock,
                self.hashing,
                "fed@example.com",
                "",
                self.code(1),
            ),
        )

    def test_not_enrolled(self) -> None:
        """Turning off what is off says so."""
        self.assertRaises(NotEnrolled, self.turn_off, "primary-secret", self.code())

    def test_required_by_operator(self) -> None:
        """An account the operator requires two-factor of cannot turn it
        off, enrolled or not."""
        result(two_factor.require(self.store, ALICE))
        self.assertRaises(NotAllowed, self.turn_off, "primary-secret", self.code())
        self.enrol()
        self.clock.advance(30)
        with self.assertRaises(NotAllowed) as caught:
            self.turn_off("primary-secret", self.code())
        self.assertEqual(
            str(caught.exception),
            "two-factor authentication is required for alice@example.com by the"
            " operator: it cannot be turned off",
        )
        self.assertEqual(self.bcrypt_calls, [])


class OperatorTests(TwoFactorTestCase):
    def test_require_then_enrol(self) -> None:
        """require makes the account "required" (mail protocols refuse the
        primary password at once); enrolling makes it "on", still required."""
        change = result(two_factor.require(self.store, ALICE))
        self.assertEqual(
            (state_of(change.account), change.before, change.needs_app_password),
            (TwoFactorState.REQUIRED, TwoFactorState.OFF, True),
        )
        self.assertTrue(change.account.two_factor)
        self.enrol()
        account = self.account()
        self.assertEqual(
            (state_of(account), account.two_factor_required),
            (TwoFactorState.ON, True),
        )
        status = result(two_factor.two_factor_status(self.store, ALICE))
        self.assertEqual(
            status, two_factor.TwoFactorStatus(TwoFactorState.ON, True, NOW, 10)
        )

    def test_require_keeps_an_enrolment(self) -> None:
        """Requiring two-factor of an enrolled account keeps its enrolment."""
        self.enrol()
        change = result(two_factor.require(self.store, ALICE))
        self.assertEqual(
            (state_of(change.account), change.before),
            (TwoFactorState.ON, TwoFactorState.ON),
        )

    def test_reset(self) -> None:
        """reset (the lost phone) deletes secret and recovery codes and
        turns two-factor off, required no more; enrolling starts afresh."""
        result(two_factor.require(self.store, ALICE))
        codes = self.enrol()
        change = result(two_factor.reset(self.store, ALICE))
        self.assertEqual(
            (state_of(change.account), change.before),
            (TwoFactorState.OFF, TwoFactorState.ON),
        )
        self.assertEqual(
            (change.account.two_factor, change.account.two_factor_required),
            (False, False),
        )
        self.assertIsNone(result(self.store.get_totp_secret(change.account.id)))
        self.assertFalse(self.verify(codes[0]))
        self.clock.advance(30)
        self.assertEqual(len(self.enrol()), 10)

    def test_set_two_factor(self) -> None:
        """The operator's switch is require and reset."""
        change = result(two_factor.set_two_factor(self.store, ALICE, True))
        self.assertEqual(state_of(change.account), TwoFactorState.REQUIRED)
        change = result(two_factor.set_two_factor(self.store, ALICE, False))
        self.assertEqual(
            (state_of(change.account), change.before),
            (TwoFactorState.OFF, TwoFactorState.REQUIRED),
        )

    def test_status_off(self) -> None:
        """The status of an account without two-factor."""
        self.assertEqual(
            result(two_factor.two_factor_status(self.store, ALICE)),
            two_factor.TwoFactorStatus(TwoFactorState.OFF, False, None, 0),
        )

    def test_changes_reach_caches(self) -> None:
        """Enrolling and resetting bump the account's generation, so cached
        credentials are forgotten."""
        before = self.account().generation
        self.enrol()
        enrolled = self.account().generation
        result(two_factor.reset(self.store, ALICE))
        self.assertLess(before, enrolled)
        self.assertLess(enrolled, self.account().generation)


class RecoveryCodeTests(SynchronousTestCase):
    def test_digest(self) -> None:
        """A recovery code's digest ignores case, spaces and dashes, depends
        on the account and the key, and is never an app password's."""
        code = two_factor.generate_recovery_code()
        digest = two_factor.recovery_code_digest(KEY, 1, code)
        self.assertIsNotNone(digest)
        self.assertEqual(
            two_factor.recovery_code_digest(KEY, 1, code.upper().replace("-", " ")),
            digest,
        )
        self.assertNotEqual(two_factor.recovery_code_digest(KEY, 2, code), digest)
        self.assertNotEqual(two_factor.recovery_code_digest(b"o" * 32, 1, code), digest)
        canonical = code.replace("-", "")
        self.assertNotEqual(passwords.keyed_digest(KEY, "", 1, canonical), digest)
        self.assertIsNone(two_factor.recovery_code_digest(KEY, 1, "123456"))
