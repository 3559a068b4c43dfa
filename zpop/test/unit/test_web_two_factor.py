"""``/settings/two-factor`` and the sign-in of an account the operator
requires two-factor of, in memory (see zpop.test.unit.test_web for the
harness)."""

from __future__ import annotations

import html
import re

from zpop.accounts import totp, two_factor
from zpop.store import Account
from zpop.test.stores import result
from zpop.test.unit.test_web import PASSWORD, Answer, WebCase
from zpop.web import security

PATH = "/settings/two-factor"
SECRET = re.compile(r'id="totp-secret"[^>]*>([A-Z2-7 ]+)<')
PENDING = re.compile(r'name="pending" value="([^"]+)"')
CODES = re.compile(r"<li><code>([^<]+)</code></li>")


class TwoFactorPageTests(WebCase):
    def setUp(self) -> None:
        super().setUp()
        self.sign_in()

    def enrolment(self) -> tuple[Answer, bytes, str]:
        """The page, the secret it shows (as text) and its pending field."""
        page = self.request("GET", PATH)
        secret = SECRET.search(page.body)
        pending = PENDING.search(page.body)
        assert secret is not None and pending is not None, page.body
        return page, totp.parse_secret_text(secret.group(1)), pending.group(1)

    def now_code(self, secret: bytes) -> str:
        return totp.code_at(secret, totp.step_at(self.clock.seconds()))

    def enrol(self) -> tuple[bytes, list[str]]:
        page, secret, pending = self.enrolment()
        answer = self.request(
            "POST",
            PATH,
            {"code": self.now_code(secret), "pending": pending, "csrf": page.csrf()},
        )
        self.assertEqual(answer.status, 200, answer.body)
        return secret, CODES.findall(answer.body)

    def state(self) -> str:
        return str(two_factor.state_of(self.account()))

    def test_off_shows_enrolment(self) -> None:
        """Off: the state, the QR code inline (SVG, no script), the setup
        key in groups of four, a form posting ``code``."""
        page, secret, pending = self.enrolment()
        self.assertEqual(page.status, 200)
        self.assertIn('id="two-factor-state">Off<', page.body)
        self.assertIn("<svg", page.body)
        self.assertNotIn("<script", page.body)
        self.assertRegex(
            SECRET.search(page.body).group(1),  # type: ignore[union-attr]
            r"^[A-Z2-7]{4}( [A-Z2-7]{4}){7}$",
        )
        self.assertIn('name="code"', page.body)
        self.assertIn("script-src 'none'", page.header("content-security-policy"))
        self.assertEqual(len(secret), totp.SECRET_BYTES)
        self.assertEqual(self.state(), "off")
        # A new secret on every page: nothing is kept until confirmed.
        self.assertNotEqual(self.enrolment()[1], secret)

    def test_pending_not_readable(self) -> None:
        """The hidden field holds the secret sealed, not in any clear form."""
        _, secret, pending = self.enrolment()
        text = totp.secret_text(secret).replace(" ", "")
        self.assertNotIn(text, pending)
        self.assertNotIn(secret.hex(), pending)

    def test_enrol_shows_recovery_codes_once(self) -> None:
        """A right code turns it on and shows ten codes once; the page then
        shows the state and how many are left, never the codes."""
        _, codes = self.enrol()
        self.assertEqual(len(codes), two_factor.RECOVERY_CODES)
        self.assertEqual(self.state(), "on")
        again = self.request("GET", PATH)
        self.assertIn("10 of 10 recovery codes left", again.body)
        self.assertNotIn('id="recovery-codes"', again.body)
        for code in codes:
            self.assertNotIn(code, again.body)
        self.assertNotIn('id="totp-secret"', again.body)

    def test_wrong_code(self) -> None:
        """A wrong code: 400, a precise message, still off, and the same
        secret offered again (no need to scan again)."""
        page, secret, pending = self.enrolment()
        wrong = self.request(
            "POST", PATH, {"code": "123456", "pending": pending, "csrf": page.csrf()}
        )
        self.assertEqual(wrong.status, 400)
        self.assertIn(
            "The code is not valid: type the 6-digit code your authenticator app"
            " shows now.",
            wrong.body,
        )
        self.assertEqual(self.state(), "off")
        shown = SECRET.search(wrong.body)
        assert shown is not None
        self.assertEqual(totp.parse_secret_text(shown.group(1)), secret)
        missing = self.request(
            "POST", PATH, {"code": "", "pending": pending, "csrf": page.csrf()}
        )
        self.assertEqual(missing.status, 400)
        self.assertIn("Enter the 6-digit code", missing.body)

    def test_pending_not_swappable(self) -> None:
        """A pending field forged, damaged, or made for another session is
        refused (400), and nothing is enrolled."""
        page, secret, pending = self.enrolment()
        code = self.now_code(secret)
        for bad in ("", "junk", pending[:-4] + "AAAA", "é" * 10):
            answer = self.request(
                "POST", PATH, {"code": code, "pending": bad, "csrf": page.csrf()}
            )
            self.assertEqual(answer.status, 400, bad)
            self.assertIn("no longer valid", answer.body)
        self.request("POST", "/logout", {"csrf": page.csrf()})
        self.sign_in()
        other = self.post(PATH, {"code": code, "pending": pending})
        self.assertEqual(other.status, 400)
        self.assertEqual(self.state(), "off")

    def test_replayed_code_refused(self) -> None:
        """The code that confirmed the enrolment cannot sign in, and a
        second confirmation of the same page is refused."""
        page, secret, pending = self.enrolment()
        code = self.now_code(secret)
        form = {"code": code, "pending": pending, "csrf": page.csrf()}
        self.assertEqual(self.request("POST", PATH, form).status, 200)
        again = self.request("POST", PATH, form)
        self.assertEqual(again.status, 400)
        self.assertIn("already on", again.body)
        self.post("/logout", {}, page=PATH)
        self.assertEqual(self.sign_in().location, "/login/code")
        replay = self.post("/login/code", {"code": code})
        self.assertEqual(replay.status, 403)
        self.assertNotIn(security.SESSION_COOKIE, self.jar)

    def test_sign_in_after_enrolment(self) -> None:
        """Password, then a new code: signed in."""
        secret, _ = self.enrol()
        self.post("/logout", {}, page=PATH)
        self.clock.advance(30)
        self.assertEqual(self.sign_in().location, "/login/code")
        done = self.post("/login/code", {"code": self.now_code(secret)})
        self.assertEqual(done.location, "/settings")

    def test_turn_off_needs_password_and_code(self) -> None:
        secret, codes = self.enrol()
        self.clock.advance(30)
        code = self.now_code(secret)
        missing = self.post(PATH, {"action": "off", "password": PASSWORD})
        self.assertEqual(missing.status, 400)
        wrong_password = self.post(
            PATH, {"action": "off", "password": "not-it", "code": code}
        )
        self.assertEqual(wrong_password.status, 403)
        self.assertIn("The password is incorrect.", wrong_password.body)
        wrong_code = self.post(
            PATH, {"action": "off", "password": PASSWORD, "code": "000000"}
        )
        self.assertEqual(wrong_code.status, 400)
        self.assertIn("or one of your unused recovery codes", wrong_code.body)
        self.assertEqual(self.state(), "on")
        done = self.post(PATH, {"action": "off", "password": PASSWORD, "code": code})
        self.assertEqual(done.status, 200)
        self.assertIn("Two-factor authentication is off.", done.body)
        self.assertEqual(self.state(), "off")

    def test_turn_off_with_recovery_code(self) -> None:
        _, codes = self.enrol()
        done = self.post(
            PATH, {"action": "off", "password": PASSWORD, "code": codes[0]}
        )
        self.assertEqual((done.status, self.state()), (200, "off"))

    def test_turn_off_refused_when_required(self) -> None:
        """The operator's requirement holds: no form, and a post is refused
        with the service's reason."""
        secret, _ = self.enrol()
        result(two_factor.require(self.store, "alice@example.com"))
        page = self.request("GET", PATH)
        self.assertNotIn('id="turn-off"', page.body)
        self.assertIn("it cannot be turned off", page.body)
        self.clock.advance(30)
        refused = self.post(
            PATH,
            {"action": "off", "password": PASSWORD, "code": self.now_code(secret)},
        )
        self.assertEqual(refused.status, 403)
        self.assertIn("it cannot be turned off", refused.body)
        self.assertEqual(self.state(), "on")

    def test_new_recovery_codes(self) -> None:
        """New codes are shown once and replace the old ones."""
        _, old = self.enrol()
        answer = self.post(PATH, {"action": "recovery"})
        new = CODES.findall(answer.body)
        self.assertEqual((answer.status, len(new)), (200, 10))
        self.assertFalse(set(new) & set(old))
        self.assertNotIn(new[0], self.request("GET", PATH).body)
        self.post("/logout", {}, page=PATH)
        self.sign_in()
        self.assertEqual(self.post("/login/code", {"code": old[0]}).status, 403)
        self.sign_in()
        self.assertEqual(self.post("/login/code", {"code": new[0]}).status, 303)

    def test_verify_it_is_you(self) -> None:
        """Ten minutes after sign-in, enrolling and renewing codes need the
        password again (missing 400, wrong 403, right goes on)."""
        self.clock.advance(601)
        page, secret, pending = self.enrolment()
        self.assertIn('name="password"', page.body)
        form = {"code": self.now_code(secret), "pending": pending}
        missing = self.request("POST", PATH, {**form, "csrf": page.csrf()})
        wrong = self.request(
            "POST", PATH, {**form, "password": "nope-nope", "csrf": page.csrf()}
        )
        self.assertEqual((missing.status, wrong.status), (400, 403))
        self.assertEqual(self.state(), "off")
        right = self.request(
            "POST", PATH, {**form, "password": PASSWORD, "csrf": page.csrf()}
        )
        self.assertEqual((right.status, self.state()), (200, "on"))
        renew = self.post(PATH, {"action": "recovery"})
        self.assertEqual(renew.status, 400)
        renewed = self.post(PATH, {"action": "recovery", "password": PASSWORD})
        self.assertEqual(len(CODES.findall(renewed.body)), 10)

    def test_csrf_on_every_form(self) -> None:
        """Each form carries the token; a post without it or with another
        is refused (403) and changes nothing."""
        page, secret, pending = self.enrolment()
        self.assertEqual(page.body.count('name="csrf"'), 2)  # enrol, logout
        code = self.now_code(secret)
        for token in (None, "0" * 64):
            form = {"code": code, "pending": pending}
            if token:
                form["csrf"] = token
            self.assertEqual(self.request("POST", PATH, form).status, 403)
        self.assertEqual(self.state(), "off")
        self.enrol()
        on = self.request("GET", PATH)
        self.assertIn('id="turn-off"', on.body)
        self.assertIn('id="new-recovery-codes"', on.body)
        for action in ("off", "recovery"):
            answer = self.request(
                "POST", PATH, {"action": action, "password": PASSWORD, "code": "1"}
            )
            self.assertEqual(answer.status, 403)
        self.assertEqual(self.state(), "on")

    def test_foreign_origin(self) -> None:
        page, secret, pending = self.enrolment()
        answer = self.request(
            "POST",
            PATH,
            {"code": self.now_code(secret), "pending": pending, "csrf": page.csrf()},
            headers={"sec-fetch-site": "cross-site"},
        )
        self.assertEqual((answer.status, self.state()), (403, "off"))

    def test_unknown_action_and_bad_input(self) -> None:
        self.assertEqual(self.post(PATH, {"action": "nope"}).status, 400)
        self.assertEqual(self.post(PATH, {"action": "recovery"}).status, 400)
        self.assertEqual(
            self.post(PATH, {"action": "off", "password": "x", "code": "1"}).status,
            403,
        )
        big = self.post(PATH, {"code": "1" * 5000})
        self.assertEqual(big.status, 400)

    def test_chinese(self) -> None:
        page = self.request("GET", PATH + "?lang=zh-CN")
        self.assertIn('lang="zh-CN"', page.body)
        self.assertIn("设置身份验证器应用", page.body)
        wrong = self.post(PATH, {"code": "123456", "pending": "junk"})
        self.assertIn("此设置已失效", wrong.body)

    def test_in_navigation(self) -> None:
        self.assertIn(
            'href="/settings/two-factor"', self.request("GET", "/settings/pop").body
        )


class RequiredSignInTests(WebCase):
    """``zpop twofactor enable``: enrol at the next web sign-in, before
    anything else there."""

    def setUp(self) -> None:
        super().setUp()
        result(two_factor.require(self.store, "alice@example.com"))

    def test_confined_to_enrolment(self) -> None:
        """The password alone opens a session that reaches the enrolment
        page only; every other settings page and POST goes there."""
        answer = self.sign_in()
        self.assertEqual((answer.status, answer.location), (303, PATH))
        page = self.request("GET", PATH)
        self.assertEqual(page.status, 200)
        self.assertIn("Required by your administrator", page.body)
        self.assertIn('id="totp-secret"', page.body)
        self.assertNotIn('href="/settings/pop"', page.body)
        self.assertIn('id="logout"', page.body)
        for path in (
            "/settings",
            "/settings/pop",
            "/settings/app-passwords",
            "/settings/clients",
            "/settings/sessions",
        ):
            got = self.request("GET", path)
            self.assertEqual(
                (got.status, got.location),
                (302, PATH),
                path,
            )
        post = self.post("/settings/app-passwords", {"label": "x"}, page=PATH)
        self.assertEqual((post.status, post.location), (303, PATH))
        self.assertEqual(result(self.store.list_app_passwords("alice@example.com")), [])
        self.assertEqual(self.request("GET", "/login/code").status, 302)

    def test_enrolment_gives_full_access(self) -> None:
        self.sign_in()
        page = self.request("GET", PATH)
        secret = totp.parse_secret_text(SECRET.search(page.body).group(1))  # type: ignore[union-attr]
        pending = PENDING.search(page.body).group(1)  # type: ignore[union-attr]
        code = totp.code_at(secret, totp.step_at(self.clock.seconds()))
        done = self.request(
            "POST", PATH, {"code": code, "pending": pending, "csrf": page.csrf()}
        )
        self.assertEqual(len(CODES.findall(done.body)), 10)
        self.assertIn('href="/settings/pop"', done.body)
        self.assertEqual(self.request("GET", "/settings/pop").status, 200)
        account: Account = self.account()
        self.assertEqual(str(two_factor.state_of(account)), "on")

    def test_wrong_password_still_refused(self) -> None:
        answer = self.sign_in(password="wrong-wrong")
        self.assertEqual(answer.status, 403)
        self.assertNotIn(security.SESSION_COOKIE, self.jar)

    def test_required_while_signed_in(self) -> None:
        """Required after sign-in: the session is confined at once."""
        result(two_factor.reset(self.store, "alice@example.com"))
        self.sign_in()
        self.assertEqual(self.request("GET", "/settings/pop").status, 200)
        result(two_factor.require(self.store, "alice@example.com"))
        self.assertEqual(self.request("GET", "/settings/pop").location, PATH)

    def test_escaped(self) -> None:
        self.sign_in()
        page = self.request("GET", PATH)
        self.assertNotIn("<script", html.unescape(page.body))
