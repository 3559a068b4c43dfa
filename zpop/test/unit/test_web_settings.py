"""The password and IMAP access pages, in memory (see
zpop.test.unit.test_web for the harness)."""

from __future__ import annotations

from twisted.logger import capturedLogs

from zpop.accounts import passwords, web_sessions
from zpop.test.stores import KEY, result
from zpop.test.unit.test_web import PASSWORD, Answer, WebCase
from zpop.web import security

NEW = "violet-harbour-42"


class PasswordPageTests(WebCase):
    def setUp(self) -> None:
        super().setUp()
        self.sign_in()

    def change(
        self, current: str = PASSWORD, new: str = NEW, confirm: str | None = None
    ) -> Answer:
        return self.post(
            "/settings/password",
            {
                "current_password": current,
                "new_password": new,
                "confirm_password": new if confirm is None else confirm,
            },
        )

    def assert_unchanged(self) -> None:
        hashed = self.account().password_hash
        self.assertTrue(passwords.check_password(PASSWORD, hashed))

    def test_page(self) -> None:
        """The form has the three password fields and names the rule; the
        navigation links to it."""
        body = self.request("GET", "/settings/password").body
        for name in ("current_password", "new_password", "confirm_password"):
            self.assertIn(f'name="{name}"', body)
        self.assertIn("at least 8 characters", body)
        self.assertIn('href="/settings/password"', body)

    def test_wrong_current(self) -> None:
        """A wrong current password: 403, through the Authenticator (audit
        line with protocol=web, a failure toward the throttle)."""
        with capturedLogs() as events:
            answer = self.change(current="not-the-password")
        self.assertEqual(answer.status, 403)
        self.assertIn("The current password is incorrect.", answer.body)
        lines = [
            e["log_format"].format(**e)
            for e in events
            if e.get("log_format", "").startswith("login ")
        ]
        self.assertEqual(len(lines), 1)
        self.assertIn("login failed protocol=web", lines[0])
        self.assert_unchanged()

    def test_banned(self) -> None:
        """Past the ban threshold even the right current password gets 429."""
        for attempt in range(5):
            self.change(current=f"wrong-password-{attempt}")
        answer = self.change()
        self.assertEqual(answer.status, 429)
        self.assert_unchanged()

    def test_mismatch(self) -> None:
        answer = self.change(confirm=NEW + "x")
        self.assertEqual(answer.status, 400)
        self.assertIn("The two new passwords are not the same.", answer.body)
        self.assert_unchanged()

    def test_missing(self) -> None:
        answer = self.post("/settings/password", {"new_password": NEW})
        self.assertEqual(answer.status, 400)
        self.assertIn("Enter the current password", answer.body)

    def test_too_short(self) -> None:
        answer = self.change(new="kq7#vx2")
        self.assertEqual(answer.status, 400)
        self.assertIn("too short: use at least 8 characters", answer.body)
        self.assert_unchanged()

    def test_contains_address(self) -> None:
        answer = self.change(new="ALICE-rules-2024")
        self.assertEqual(answer.status, 400)
        self.assertIn("contains your address", answer.body)
        self.assert_unchanged()

    def test_common(self) -> None:
        answer = self.change(new="password123")
        self.assertEqual(answer.status, 400)
        self.assertIn("one of the most common passwords", answer.body)
        self.assert_unchanged()

    def test_rule_checked_before_current(self) -> None:
        """A weak new password is refused without asking the Authenticator
        (no failure counted even with a wrong current password)."""
        with capturedLogs() as events:
            self.change(current="not-the-password", new="password123")
        self.assertFalse(
            [e for e in events if e.get("log_format", "").startswith("login ")]
        )

    def test_chinese(self) -> None:
        self.request("GET", "/settings/password?lang=zh-CN")
        answer = self.change(new="password123")
        self.assertIn("新密码是最常见的密码之一", answer.body)

    def test_success_signs_out_others(self) -> None:
        """The new password is set (bcrypt), this browser stays signed in,
        every other session of the account ends, and the page says so."""
        mine = dict(self.jar)
        self.jar.clear()
        self.sign_in()
        other = self.jar[security.SESSION_COOKIE]
        self.jar = mine
        answer = self.change()
        self.assertEqual(
            (answer.status, answer.location), (303, "/settings/password?changed=1")
        )
        hashed = self.account().password_hash
        self.assertTrue(passwords.check_password(NEW, hashed))
        self.assertIsNone(
            result(web_sessions.resume(self.store, KEY, self.clock, other))
        )
        page = self.request("GET", "/settings/password?changed=1")
        self.assertEqual(page.status, 200)
        self.assertIn("Every other browser signed in to this account", page.body)
        self.assertIn("this one stays signed in", page.body)
        self.jar.clear()
        self.assertEqual(self.sign_in(password=PASSWORD).status, 403)
        self.assertEqual(self.sign_in(password=NEW).status, 303)

    def test_csrf(self) -> None:
        """A POST without or with a wrong token gets 403; nothing changes."""
        form = {
            "current_password": PASSWORD,
            "new_password": NEW,
            "confirm_password": NEW,
        }
        missing = self.request("POST", "/settings/password", form)
        wrong = self.request("POST", "/settings/password", {**form, "csrf": "0" * 64})
        self.assertEqual((missing.status, wrong.status), (403, 403))
        self.assert_unchanged()

    def test_needs_sign_in(self) -> None:
        self.jar.clear()
        answer = self.request("GET", "/settings/password")
        self.assertEqual((answer.status, answer.location), (302, "/login"))


class ImapPageTests(WebCase):
    def setUp(self) -> None:
        super().setUp()
        self.sign_in()

    def test_shows_on_by_default(self) -> None:
        """A new account has IMAP on; the page says so and that IMAP is not
        served yet; the navigation links to it."""
        body = self.request("GET", "/settings/imap").body
        self.assertIn('id="imap-state">on<', body)
        self.assertIn('value="on" checked="checked"', body)
        self.assertIn("does not serve IMAP yet", body)
        self.assertIn('href="/settings/imap"', body)

    def test_off_and_on(self) -> None:
        off = self.post("/settings/imap", {"imap": "off"})
        self.assertEqual((off.status, off.location), (303, "/settings/imap?saved=1"))
        self.assertFalse(self.account().imap_enabled)
        page = self.request("GET", "/settings/imap?saved=1").body
        self.assertIn('id="imap-state">off<', page)
        self.assertIn("IMAP access saved.", page)
        generation = self.account().generation
        on = self.post("/settings/imap", {"imap": "on"})
        self.assertEqual(on.status, 303)
        account = self.account()
        self.assertEqual(
            (account.imap_enabled, account.generation), (True, generation + 1)
        )

    def test_bad_value(self) -> None:
        """A value other than on/off, or none, gets 400; nothing changes."""
        bad = self.post("/settings/imap", {"imap": "maybe"})
        missing = self.post("/settings/imap", {})
        self.assertEqual((bad.status, missing.status), (400, 400))
        self.assertIn("“IMAP access” must be one of the offered choices.", bad.body)
        self.assertIn("“IMAP access” is missing.", missing.body)
        self.assertTrue(self.account().imap_enabled)

    def test_csrf(self) -> None:
        missing = self.request("POST", "/settings/imap", {"imap": "off"})
        wrong = self.request(
            "POST", "/settings/imap", {"imap": "off", "csrf": "1" * 64}
        )
        self.assertEqual((missing.status, wrong.status), (403, 403))
        self.assertTrue(self.account().imap_enabled)

    def test_chinese(self) -> None:
        body = self.request("GET", "/settings/imap?lang=zh-CN").body
        self.assertIn("IMAP 访问", body)
        self.assertIn('id="imap-state">已开启<', body)
