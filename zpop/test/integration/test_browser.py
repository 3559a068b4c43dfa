"""The web settings in a real browser: Debian's chromium and chromedriver,
headless, driven by selenium against the real server over real TLS.

The browser trusts exactly the server's self-signed key
(``--ignore-certificate-errors-spki-list``) and reaches it under its own
name (``--host-resolver-rules``), so the page's origin is what a user's
would be. ``ZPOP_SCREENS=DIR`` saves a screenshot of each page in DIR (how
``docs/screens/`` is made).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import os
import poplib
import re
import struct
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.trial.unittest import SkipTest, TestCase

from zpop.test.harness import HOSTNAME, start_server
from zpop.test.tools import require_tool
from zpop.web.i18n import Catalog

ADDRESS = f"alice@{HOSTNAME}"
PASSWORD = "correct horse battery"
#: The Free-plan cut-off: today (UTC), so an account created by a test is
#: created "on or after" it, on the very day, and so has no POP.
CUTOFF = datetime.datetime.now(datetime.UTC).date().isoformat()
#: The pages' English texts, from their one catalog.
T = Catalog("en")
#: Long enough for a page load on a busy 2-core machine, bounded.
WAIT = 20.0


def spki_hash(pem: str) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)): what chromium pins."""
    cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
    der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode("ascii")


def totp_code(setup_key: str, offset: int = 0) -> str:
    """RFC 6238 (SHA-1, 6 digits, 30 s) from the setup key as the page
    shows it, written here rather than taken from zpop.accounts.totp, so
    the page is checked against the RFC and not against itself."""
    text = "".join(setup_key.split()).upper()
    key = base64.b32decode(text + "=" * (-len(text) % 8))
    counter = int(time.time()) // 30 + offset
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    start = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[start : start + 4])[0] & 0x7FFFFFFF
    return f"{number % 1_000_000:06d}"


def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class BrowserTests(TestCase):
    def setUp(self) -> None:
        chromium = require_tool("chromium")
        driver_path = require_tool("chromedriver")
        try:
            from selenium import webdriver
            from selenium.webdriver.chrome.service import Service
        except ImportError:
            message = "selenium is not installed (pip install -e '.[test]')"
            if os.environ.get("CI"):
                raise AssertionError(message) from None
            raise SkipTest(message) from None
        self.server = start_server(
            self,
            listeners={"pop3": "", "submission": "", "mx": "", "smtps": ""},
            # Only Free-plan accounts feel it; every other one is paid.
            settings={"accounts": {"free_pop_cutoff": CUTOFF}},
        )
        self.server.zpop("domain", "add", HOSTNAME)
        self.server.add_account(ADDRESS, PASSWORD)
        self.base = f"https://{HOSTNAME}:{self.server.ports['web']}"
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for argument in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1100,900",
            f"--user-data-dir={os.path.abspath(self.mktemp())}",
            f"--host-resolver-rules=MAP {HOSTNAME} 127.0.0.1",
            "--ignore-certificate-errors-spki-list="
            + spki_hash(self.server.certificate_pem()),
            "--lang=en-US",
        ):
            options.add_argument(argument)
        self.driver: Any = webdriver.Chrome(
            service=Service(driver_path), options=options
        )
        self.addCleanup(self.driver.quit)
        self.driver.set_page_load_timeout(WAIT)
        self.screens = os.environ.get("ZPOP_SCREENS")

    # -- helpers -----------------------------------------------------------

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def submit(self, form: str, **fields: str) -> None:
        """Fill the text fields of ``form`` and press its submit button,
        then wait for the next page."""
        for name, value in fields.items():
            field = self.find(f"{form} input[name={name}]")
            field.clear()
            field.send_keys(value)
        old = self.find("html")
        self.find(f"{form} button[type=submit]").click()
        wait_until(lambda: self._gone(old), f"the page after {form}")

    def choose(self, name: str, value: str) -> None:
        self.find(f"input[name={name}][value={value}]").click()

    def _gone(self, element: Any) -> bool:
        from selenium.common.exceptions import WebDriverException

        try:
            element.tag_name  # noqa: B018 - raises once the page is replaced
        except WebDriverException:
            # Stale, or "does not belong to the document" mid-navigation.
            return True
        return False

    def path(self) -> str:
        url: str = self.driver.current_url
        return url.removeprefix(self.base)

    def shot(self, name: str) -> None:
        if self.screens:
            os.makedirs(self.screens, exist_ok=True)
            self.driver.save_screenshot(os.path.join(self.screens, f"{name}.png"))

    def pop3s(self) -> poplib.POP3_SSL:
        return poplib.POP3_SSL(
            "127.0.0.1",
            self.server.ports["pop3s"],
            context=self.server.ssl_context(),
            timeout=30,
        )

    def pop_login(self, password: str, address: str = ADDRESS) -> bytes:
        """The reply to PASS on POP3S with ``password``."""
        client = self.pop3s()
        try:
            client.user(address)
            try:
                reply: bytes = client.pass_(password)
            except poplib.error_proto as e:
                reply = e.args[0]
            return reply
        finally:
            client.close()

    def pop_messages(self, address: str, password: str) -> list[bytes]:
        """Every message POP3S offers ``address``, as RETR sends it."""
        client = self.pop3s()
        try:
            client.user(address)
            client.pass_(password)
            count, _ = client.stat()
            found = [b"\r\n".join(client.retr(n + 1)[1]) for n in range(count)]
            client.quit()
            return found
        finally:
            client.close()

    def sign_in(self, address: str, password: str) -> None:
        self.open("/login")
        self.submit("form#login", address=address, password=password)

    def activity_rows(self) -> list[list[str]]:
        """The cells of the rows of the activity table, as shown."""
        return [
            [cell.text for cell in row.find_elements("css selector", "td")]
            for row in self.driver.find_elements("css selector", "#activity tbody tr")
        ]

    # -- the seed's flows --------------------------------------------------

    def test_settings_in_a_browser(self) -> None:
        """A user signs in, turns POP on "from now on" with Spam included,
        makes an app password that POP then accepts, revokes it and POP
        refuses it, switches the pages to Chinese, and signs out."""
        self.open("/")
        self.assertEqual(self.path(), "/login")
        self.shot("login")
        self.submit("form#login", address=ADDRESS, password=PASSWORD)
        self.assertEqual(self.path(), "/settings/pop")
        self.choose("pop", "new")
        self.choose("spam", "include")
        self.submit("form#pop-settings")
        self.assertEqual(self.path(), "/settings/pop?saved=1")
        self.assertTrue(self.find("input[name=pop][value=new]").is_selected())
        self.shot("pop")
        shown = self.server.zpop("account", "show", ADDRESS)
        self.assertIn("mode new (mail received from", shown)
        self.assertIn("include (POP offers the Inbox and Spam)", shown)

        self.open("/settings/app-passwords")
        self.submit("form#create-app-password", label="Phone <script>x()</script>")
        secret = self.find("#new-secret").text
        self.assertRegex(secret, r"^[a-z2-9]{4}( [a-z2-9]{4}){3}$")
        self.assertIn("Phone <script>x()</script>", self.find("#app-passwords").text)
        self.shot("app-passwords")
        self.assertTrue(self.pop_login(secret.replace(" ", "")).startswith(b"+OK"))

        self.submit("#app-passwords form")
        self.assertEqual(
            self.driver.find_elements("css selector", "#app-passwords tbody tr"), []
        )
        self.assertEqual(
            self.pop_login(secret.replace(" ", "")),
            b"-ERR [AUTH] Authentication failed",
        )

        self.open("/settings/clients")
        self.shot("clients")
        self.find('a[hreflang="zh-CN"]').click()
        wait_until(
            lambda: self.find("html").get_attribute("lang") == "zh-CN",
            "the Chinese page",
        )
        self.assertIsNotNone(re.search("[\u4e00-\u9fff]", self.find("body").text))
        self.shot("clients-zh")

        self.submit("form#logout")
        self.assertEqual(self.path(), "/login")
        self.open("/settings/pop")
        self.assertEqual(self.path(), "/login")

    def test_two_factor_in_a_browser(self) -> None:
        """A user enrols an authenticator from the setup key the page shows,
        sees the recovery codes once, signs out and back in with password
        and code, and POP3S then refuses the primary password with the
        app-specific-password reason."""
        self.server.zpop("pop", "enable", ADDRESS, "--mode", "all")
        self.assertTrue(self.pop_login(PASSWORD).startswith(b"+OK"))
        self.open("/login")
        self.submit("form#login", address=ADDRESS, password=PASSWORD)
        self.open("/settings/two-factor")
        self.assertEqual(self.find("#two-factor-state").text, "Off")
        self.find("#totp-qr svg")  # the QR code, inline
        key = self.find("#totp-secret").text
        self.assertRegex(key, r"^[A-Z2-7]{4}( [A-Z2-7]{4}){7}$")
        self.shot("two-factor")
        # Five steps ahead: a real code, but outside the one-step window.
        self.submit("form#enrol", code=totp_code(key, 5))
        self.assertIn("The code is not valid", self.find("p.error").text)
        self.assertEqual(self.find("#totp-secret").text, key)
        self.submit("form#enrol", code=totp_code(key))
        codes = self.find("#recovery-codes").text.split()
        self.assertEqual(len(codes), 10)
        self.shot("recovery-codes")
        shown = self.server.zpop("account", "show", ADDRESS)
        self.assertRegex(shown, r"Two-factor: +on \(TOTP\)")

        self.submit("form#logout")
        self.submit("form#login", address=ADDRESS, password=PASSWORD)
        self.assertEqual(self.path(), "/login/code")
        # The enrolment spent this step's code: the next step's is good too.
        self.submit("form#code", code=totp_code(key, 1))
        self.assertEqual(self.path(), "/settings/pop")
        self.open("/settings/two-factor")
        self.assertIn("10 of 10", self.find("#two-factor-state").text)
        self.assertEqual(
            self.pop_login(PASSWORD),
            b"-ERR [AUTH] Application-specific password required"
            b" (two-factor authentication is on)",
        )

        # Off again with the password and a recovery code (the lost-phone
        # way; bcrypt on the real reactor's thread pool): POP takes the
        # primary password again.
        self.submit("form#turn-off", password=PASSWORD, code=codes[0])
        self.assertEqual(self.find("#two-factor-state").text, "Off")
        self.assertTrue(self.pop_login(PASSWORD).startswith(b"+OK"))

    def test_password_change_in_a_browser(self) -> None:
        """A user changes the password (a common one refused first); POP3S
        then takes the new password and refuses the old one."""
        self.server.zpop("pop", "enable", ADDRESS, "--mode", "all")
        self.open("/login")
        self.submit("form#login", address=ADDRESS, password=PASSWORD)
        self.open("/settings/password")
        fields = {"current_password": PASSWORD, "new_password": "password123"}
        self.submit("form#change-password", **fields, confirm_password="password123")
        self.assertIn("most common passwords", self.find("p.error").text)
        new = "violet harbour 42"
        fields = {"current_password": PASSWORD, "new_password": new}
        self.submit("form#change-password", **fields, confirm_password=new)
        self.assertEqual(self.path(), "/settings/password?changed=1")
        self.assertIn("this one stays signed in", self.find("#pw-changed").text)
        self.assertTrue(self.pop_login(new).startswith(b"+OK"))
        self.assertEqual(self.pop_login(PASSWORD), b"-ERR [AUTH] Authentication failed")

    def test_free_plan_in_a_browser(self) -> None:
        """A Free-plan account created on or after the cut-off (today) sees
        why POP is unavailable; a forged "enable" post is refused with the
        same reason and changes nothing, and POP3S refuses the login by the
        same rule."""
        free = f"frank@{HOSTNAME}"
        self.server.zpop(
            "account",
            "add",
            free,
            "--plan",
            "free",
            "--password-stdin",
            stdin=PASSWORD.encode() + b"\n",
        )
        before = self.server.zpop("account", "show", free)
        self.assertIn("POP access:        disabled", before)
        self.assertIn(
            "POP availability:  not on the Free plan for accounts created on "
            f"or after {CUTOFF}\n",
            before,
        )
        reason = T("pop_blocked", date=CUTOFF)
        self.sign_in(free, PASSWORD)
        self.assertEqual(self.path(), "/settings/pop")
        self.assertEqual(self.find("#pop-blocked").text, reason)
        self.assertTrue(self.find("input[name=pop][value=disabled]").is_selected())
        for mode in ("all", "new"):
            self.assertFalse(self.find(f"input[name=pop][value={mode}]").is_enabled())
        self.shot("pop-free")

        # What a user who edits the page (or a script) would post: the
        # radio enabled again and chosen, with the form's real CSRF token.
        self.driver.execute_script(
            "arguments[0].disabled = false;", self.find("input[name=pop][value=all]")
        )
        self.choose("pop", "all")
        self.submit("form#pop-settings")
        self.assertEqual(self.path(), "/settings/pop")
        self.assertEqual(
            [e.text for e in self.driver.find_elements("css selector", "p.error")],
            [reason],
        )
        self.assertEqual(self.find("#pop-blocked").text, reason)
        self.assertTrue(self.find("input[name=pop][value=disabled]").is_selected())
        self.assertEqual(self.server.zpop("account", "show", free), before)
        # The POP server's answer is the same rule's.
        self.assertEqual(
            self.pop_login(PASSWORD, free),
            b"-ERR [AUTH] POP access is not available on the Free plan",
        )
        # Told only after the secret was verified.
        self.assertEqual(
            self.pop_login("not the password", free),
            b"-ERR [AUTH] Authentication failed",
        )

    def test_activity_in_a_browser(self) -> None:
        """A wrong password over POP3S and a web sign-in are listed on the
        sign-in activity page, newest first (written within about a second
        by the buffered recorder: the page is reloaded until they are)."""
        self.assertEqual(
            self.pop_login("not the password"), b"-ERR [AUTH] Authentication failed"
        )
        self.sign_in(ADDRESS, PASSWORD)
        self.assertEqual(self.path(), "/settings/pop")
        self.open("/settings/activity")
        found: list[list[str]] = []

        def listed() -> bool:
            found[:] = self.activity_rows()
            if len(found) >= 2:
                return True
            time.sleep(0.2)
            self.driver.refresh()
            return False

        wait_until(listed, "both logins on the activity page")
        self.assertEqual(
            [cells[1:] for cells in found],
            [
                ["Web", "127.0.0.1", T("ac_primary"), T("ac_succeeded")],
                [
                    "POP3",
                    "127.0.0.1",
                    "-",
                    f"{T('ac_failed')}: {T('ac_wrong_password')}",
                ],
            ],
        )
        for cells in found:
            self.assertRegex(cells[0], r"^\d{4}-\d\d-\d\d \d\d:\d\d UTC$")
        self.shot("activity")

    def test_forgot_password_in_a_browser(self) -> None:
        """Forgot password by mail: the form answers the same for an unknown
        address, the link arrives in the recovery account's mailbox (read
        over POP3S), a common password is refused there, a good one set, and
        then the web and POP3S take the new password and refuse the old."""
        recovery, recovery_password = f"bob@{HOSTNAME}", "amber kettle night 7"
        self.server.add_account(recovery, recovery_password)
        self.server.zpop("pop", "enable", recovery, "--mode", "all")
        self.server.zpop("account", "recovery", ADDRESS, recovery)

        self.open("/login")
        self.find("a#forgot-link").click()
        wait_until(lambda: self.path() == "/login/forgot", "the forgot page")
        self.submit("form#forgot", address=f"nobody@{HOSTNAME}")
        unknown = self.find("main").text
        self.open("/login/forgot")
        self.submit("form#forgot", address=ADDRESS)
        self.assertEqual(self.find("#forgot-sent").text, T("forgot_sent"))
        self.assertEqual(self.find("main").text, unknown)
        self.shot("forgot-sent")

        mail: list[bytes] = []

        def arrived() -> bool:
            mail[:] = self.pop_messages(recovery, recovery_password)
            if not mail:
                time.sleep(0.2)
            return bool(mail)

        wait_until(arrived, "the reset mail in the recovery mailbox")
        self.assertEqual(len(mail), 1)
        text = mail[0].decode("utf-8")
        self.assertIn(f"\r\nSubject: Set your password for {ADDRESS}\r\n", text)
        self.assertIn(f"\r\nTo: <{recovery}>\r\n", text)
        links = re.findall(r"https://\S+", text)
        self.assertEqual(len(links), 1, text)
        link = urlsplit(links[0])
        # The configured public name, never the request's Host; opened on
        # the test server's port under that name, which the browser
        # resolves to the server (the port the link names is checked last).
        self.assertEqual(
            (link.scheme, link.hostname, link.path), ("https", HOSTNAME, "/reset")
        )
        self.assertRegex(link.query, r"^token=[a-z2-9]{32}$")
        target = f"{link.path}?{link.query}"

        self.open(target)
        self.assertEqual(self.find("h1").text, T("reset_title"))
        common = {"new_password": "password123", "confirm_password": "password123"}
        self.submit("form#reset", **common)
        self.assertEqual(self.find("p.error").text, T("pw_common"))
        self.shot("reset")
        new = "violet harbour 42"
        self.submit("form#reset", new_password=new, confirm_password=new)
        self.assertEqual(self.path(), "/login?reset=1")
        self.assertEqual(self.find("#notice").text, T("reset_done"))
        # Once only.
        self.open(target)
        self.assertEqual(self.find("h1").text, T("reset_invalid_title"))
        self.assertIn(T("reset_invalid"), self.find("main").text)

        self.sign_in(ADDRESS, PASSWORD)
        self.assertEqual(self.path(), "/login")
        self.assertEqual(self.find("p.error").text, T("login_failed"))
        self.sign_in(ADDRESS, new)
        self.assertEqual(self.path(), "/settings/pop")
        self.choose("pop", "all")
        self.submit("form#pop-settings")
        self.assertEqual(self.path(), "/settings/pop?saved=1")
        self.assertTrue(self.pop_login(new).startswith(b"+OK"))
        self.assertEqual(self.pop_login(PASSWORD), b"-ERR [AUTH] Authentication failed")
        # A link that names a port names the one the server listens on (no
        # port: 443, where production listens).
        self.assertIn(link.port, (None, self.server.ports["web"]), links[0])
