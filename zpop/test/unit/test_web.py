"""The web settings (zpop.web) in memory: the Router driven with
``DummyRequest`` over a MemoryStore, a Clock and a synchronous hashing
runner, as a small cookie-keeping browser would."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from twisted.cred.portal import Portal
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.mail.pop3 import IMailbox
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers
from twisted.web.test.requesthelper import DummyRequest

from zpop.accounts import totp, two_factor, web_sessions
from zpop.accounts.credentials import (
    SECOND_FACTOR,
    WRONG_CODE,
    AccountChecker,
    Authenticator,
)
from zpop.accounts.realm import Realm
from zpop.config import AccountsConfig, AuthConfig, Config, ServerConfig
from zpop.store import LoginEvent
from zpop.test.stores import (
    COST,
    KEY,
    add_account,
    add_app_password,
    make_store,
    result,
)
from zpop.threads import run_synchronously
from zpop.web import i18n, security
from zpop.web.site import Router
from zpop.web.visit import WebContext

HOST = b"mail.example.com"
ORIGIN = b"https://mail.example.com"
PASSWORD = "primary-secret"
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')
SESSION_FLAGS = "Secure; HttpOnly; SameSite=Strict; Path=/"


@dataclass
class Answer:
    status: int
    headers: Headers
    body: str
    cookies: dict[str, str]

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name.encode())
        return values[0].decode() if values else None

    @property
    def location(self) -> str | None:
        return self.header("location")

    def csrf(self) -> str:
        match = CSRF.search(self.body)
        assert match is not None, self.body
        return match.group(1)


class WebCase(SynchronousTestCase):
    """A Router over a MemoryStore; ``self.jar`` is the browser's cookies."""

    def setUp(self) -> None:
        self.store = make_store()
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.config = Config(
            server=ServerConfig(hostname="example.com"),
            accounts=AccountsConfig(bcrypt_cost=COST),
            auth=AuthConfig(failure_delay=0.0, ban_threshold=5),
        )
        self.checker = AccountChecker(
            self.store, KEY, run_synchronously, self.clock, COST, 300.0
        )
        portal = Portal(
            Realm(self.store, self.config.hosts, self.config.accounts, self.clock),
            [self.checker],
        )
        self.authenticator = Authenticator(
            portal, self.store, self.clock, self.config.auth, KEY
        )
        web = WebContext(
            self.store,
            self.authenticator,
            self.clock,
            KEY,
            self.config,
            run_synchronously,
        )
        self.router = Router(web)
        self.alice = add_account(self.store, "alice@example.com", PASSWORD)
        self.jar: dict[str, str] = {}

    def request(
        self,
        method: str,
        target: str,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        raw_form: dict[bytes, list[bytes]] | None = None,
    ) -> Answer:
        """One request through the Router; Set-Cookie goes into the jar."""
        url = urlsplit(target)
        request = DummyRequest([s.encode() for s in url.path[1:].split("/")])
        request.method = method.encode()
        request.client = IPv4Address("TCP", "192.0.2.7", 50000)
        args: dict[bytes, list[bytes]] = {
            k.encode(): [v.encode() for v in vs]
            for k, vs in parse_qs(url.query).items()
        }
        for key, value in (form or {}).items():
            args.setdefault(key.encode(), []).append(value.encode())
        args.update(raw_form or {})
        request.args = args
        request.requestHeaders.setRawHeaders(b"host", [HOST])
        for name, value in (headers or {}).items():
            request.requestHeaders.setRawHeaders(name.encode(), [value.encode()])
        if self.jar:
            cookie = "; ".join(f"{k}={v}" for k, v in self.jar.items())
            request.requestHeaders.setRawHeaders(b"cookie", [cookie.encode()])
        self.router.render(request)
        self.assertEqual(request.finished, 1)
        cookies = {}
        for raw in request.responseHeaders.getRawHeaders(b"set-cookie") or []:
            text = raw.decode()
            name, _, rest = text.partition("=")
            value = rest.split(";", 1)[0]
            cookies[name] = text
            if "Max-Age=0" in text:
                self.jar.pop(name, None)
            else:
                self.jar[name] = value
        return Answer(
            request.responseCode or 200,
            request.responseHeaders,
            b"".join(request.written).decode("utf-8"),
            cookies,
        )

    def post(
        self, target: str, form: dict[str, str], page: str | None = None
    ) -> Answer:
        """POST ``form`` with the CSRF token of ``page`` (default: the target)."""
        token = self.request("GET", page or target.split("?")[0]).csrf()
        return self.request("POST", target, {**form, "csrf": token})

    def sign_in(
        self, address: str = "alice@example.com", password: str = PASSWORD
    ) -> Answer:
        return self.post("/login", {"address": address, "password": password})

    def account(self, address: str = "alice@example.com") -> Any:
        return result(self.store.get_account(address))


class RoutingTests(WebCase):
    def test_root_redirects(self) -> None:
        """GET / goes to /login before sign-in and to /settings after;
        /settings goes on to /settings/pop."""
        before = self.request("GET", "/")
        self.sign_in()
        after = self.request("GET", "/")
        index = self.request("GET", "/settings")
        self.assertEqual(
            [(a.status, a.location) for a in (before, after, index)],
            [(302, "/login"), (302, "/settings"), (302, "/settings/pop")],
        )

    def test_settings_need_sign_in(self) -> None:
        """Every settings page sends a visitor without a session to /login."""
        for path in ("/settings/pop", "/settings/app-passwords", "/settings/clients"):
            answer = self.request("GET", path)
            self.assertEqual((answer.status, answer.location), (302, "/login"), path)

    def test_not_found(self) -> None:
        """An unknown path gets a 404 page with the headers, no traceback."""
        answer = self.request("GET", "/nothing/here")
        self.assertEqual(
            (
                answer.status,
                "Page not found" in answer.body,
                answer.header("x-frame-options"),
            ),
            (404, True, "DENY"),
        )

    def test_method_not_allowed(self) -> None:
        """A method a page does not take gets 405 naming the ones it does."""
        answer = self.request("DELETE", "/login")
        self.assertEqual(
            (
                answer.status,
                answer.header("allow"),
                "Method not allowed" in answer.body,
            ),
            (405, "GET, POST, HEAD", True),
        )

    def test_stylesheet(self) -> None:
        """The one style sheet is served as CSS and may be cached."""
        answer = self.request("GET", "/static/zpop.css")
        self.assertEqual(
            (
                answer.status,
                answer.header("content-type"),
                answer.header("cache-control"),
            ),
            (200, "text/css; charset=utf-8", "max-age=3600"),
        )


class SecurityTests(WebCase):
    def test_security_headers(self) -> None:
        """Every response (page, redirect, error) carries CSP without
        inline script, HSTS, no-referrer and nosniff; pages are no-store."""
        self.sign_in()
        for path in ("/settings/pop", "/", "/missing"):
            answer = self.request("GET", path)
            self.assertEqual(
                (
                    answer.header("content-security-policy"),
                    answer.header("strict-transport-security"),
                    answer.header("referrer-policy"),
                    answer.header("x-content-type-options"),
                    answer.header("cache-control"),
                ),
                (
                    "default-src 'self'; script-src 'none'; style-src 'self';"
                    " img-src 'self' data:; form-action 'self'; frame-ancestors"
                    " 'none'; base-uri 'none'; object-src 'none'",
                    "max-age=31536000; includeSubDomains",
                    "no-referrer",
                    "nosniff",
                    "no-store",
                ),
                path,
            )
        self.assertNotIn("<script", self.request("GET", "/settings/pop").body)

    def test_pre_session_cookie(self) -> None:
        """The sign-in form carries a csrf field bound to a pre-session
        cookie with the __Host- flags."""
        answer = self.request("GET", "/login")
        cookie = answer.cookies[security.PRE_COOKIE]
        self.assertEqual(
            (cookie.endswith(SESSION_FLAGS), len(answer.csrf())), (True, 64)
        )

    def test_csrf_missing_or_wrong(self) -> None:
        """A POST without the csrf field, or with a wrong one, gets 403 and
        changes nothing (signed in or not)."""
        form = {"address": "alice@example.com", "password": PASSWORD}
        self.request("GET", "/login")
        missing = self.request("POST", "/login", form)
        wrong = self.request("POST", "/login", {**form, "csrf": "0" * 64})
        self.sign_in()
        change = {"pop": "all", "spam": "exclude", "deletion": "keep"}
        pop_missing = self.request("POST", "/settings/pop", change)
        pop_wrong = self.request("POST", "/settings/pop", {**change, "csrf": "1" * 64})
        self.assertEqual(
            [a.status for a in (missing, wrong, pop_missing, pop_wrong)], [403] * 4
        )
        self.assertIn("security token", pop_wrong.body)
        self.assertFalse(self.account().pop.enabled)

    def test_csrf_bound_to_its_cookie(self) -> None:
        """A token from another browser's pre-session does not pass."""
        token = self.request("GET", "/login").csrf()
        self.jar.clear()
        self.request("GET", "/login")
        answer = self.request(
            "POST",
            "/login",
            {"address": "alice@example.com", "password": PASSWORD, "csrf": token},
        )
        self.assertEqual(
            (answer.status, security.SESSION_COOKIE in self.jar), (403, False)
        )

    def test_pre_session_token_not_for_settings(self) -> None:
        """The sign-in form's token does not authorise a settings change."""
        token = self.request("GET", "/login").csrf()
        self.sign_in()
        answer = self.request(
            "POST",
            "/settings/pop",
            {"pop": "all", "spam": "exclude", "deletion": "keep", "csrf": token},
        )
        self.assertEqual(answer.status, 403)

    def test_foreign_origin(self) -> None:
        """A POST from another site (Origin or Sec-Fetch-Site) gets 403 even
        with a good token; the same origin passes, also with the
        ``Origin: null`` Chromium sends on a same-origin form post under
        ``Referrer-Policy: no-referrer``."""
        self.sign_in()
        token = self.request("GET", "/settings/pop").csrf()
        form = {"pop": "all", "spam": "exclude", "deletion": "keep", "csrf": token}
        foreign = [
            {"origin": "https://evil.example"},
            {"origin": "http://mail.example.com"},
            {"sec-fetch-site": "cross-site"},
            {"sec-fetch-site": "same-site", "origin": ORIGIN.decode()},
            {"origin": "null", "sec-fetch-site": "cross-site"},
        ]
        statuses = [
            self.request("POST", "/settings/pop", form, headers).status
            for headers in foreign
        ]
        self.assertEqual((statuses, self.account().pop.enabled), ([403] * 5, False))
        same = self.request(
            "POST",
            "/settings/pop",
            form,
            {"origin": ORIGIN.decode(), "sec-fetch-site": "same-origin"},
        )
        self.assertEqual((same.status, self.account().pop.mode), (303, "all"))
        token = self.request("GET", "/settings/pop").csrf()
        chromium = self.request(
            "POST",
            "/settings/pop",
            {"pop": "new", "spam": "exclude", "deletion": "keep", "csrf": token},
            {"origin": "null", "sec-fetch-site": "same-origin"},
        )
        self.assertEqual((chromium.status, self.account().pop.mode), (303, "new"))

    def test_session_cookie_flags(self) -> None:
        """Sign-in sets __Host-zpop: Secure, HttpOnly, SameSite=Strict, Path=/."""
        answer = self.sign_in()
        cookie = answer.cookies[security.SESSION_COOKIE]
        self.assertEqual(
            (
                answer.status,
                answer.location,
                cookie.startswith("__Host-zpop="),
                f"; {SESSION_FLAGS}; Max-Age=43200" in cookie,
                "Domain" in cookie,
            ),
            (303, "/settings", True, True, False),
        )

    def test_rotation_at_sign_in(self) -> None:
        """Each sign-in in a browser gives a new session id and ends the
        one it had (no fixation); a planted id is never adopted."""
        planted = web_sessions.new_session_id()
        self.jar[security.SESSION_COOKIE] = planted
        token = self.request("GET", "/login").csrf()
        form = {"address": "alice@example.com", "password": PASSWORD, "csrf": token}
        self.request("POST", "/login", form)
        first = self.jar[security.SESSION_COOKIE]
        self.request("POST", "/login", form)
        second = self.jar[security.SESSION_COOKIE]
        self.assertEqual(len({planted, first, second}), 3)
        self.jar[security.SESSION_COOKIE] = first
        answer = self.request("GET", "/settings/pop")
        self.assertEqual((answer.status, answer.location), (302, "/login"))
        sessions = web_sessions.list_sessions(
            self.store, self.clock, "alice@example.com"
        )
        self.assertEqual(len(result(sessions)), 1)

    def test_idle_expiry(self) -> None:
        """A session unused for 30 minutes is over; its cookie is cleared."""
        self.sign_in()
        self.clock.advance(29 * 60)
        self.assertEqual(self.request("GET", "/settings/pop").status, 200)
        self.clock.advance(29 * 60)
        self.assertEqual(self.request("GET", "/settings/pop").status, 200)
        self.clock.advance(30 * 60 + 1)
        answer = self.request("GET", "/settings/pop")
        self.assertEqual(
            (answer.status, answer.location, security.SESSION_COOKIE in self.jar),
            (302, "/login", False),
        )

    def test_absolute_expiry(self) -> None:
        """However busy, a session ends 12 hours after sign-in."""
        self.sign_in()
        for _ in range(12 * 60 // 20 - 1):
            self.clock.advance(20 * 60)
            self.assertEqual(self.request("GET", "/settings/pop").status, 200)
        self.clock.advance(20 * 60)
        self.assertEqual(self.request("GET", "/settings/pop").status, 302)

    def test_logout(self) -> None:
        """POST /logout ends the session in the store and clears the cookie."""
        self.sign_in()
        cookie = self.jar[security.SESSION_COOKIE]
        answer = self.post("/logout", {}, page="/settings/pop")
        self.assertEqual(
            (answer.status, answer.location, security.SESSION_COOKIE in self.jar),
            (303, "/login", False),
        )
        self.jar[security.SESSION_COOKIE] = cookie
        self.assertEqual(self.request("GET", "/settings/pop").status, 302)

    def test_logout_form_on_signed_in_pages(self) -> None:
        """Every signed-in page has a POST /logout form with a csrf field."""
        self.sign_in()
        for path in (
            "/settings/pop",
            "/settings/app-passwords",
            "/settings/clients",
            "/settings/sessions",
        ):
            body = self.request("GET", path).body
            self.assertRegex(
                body,
                r'<form method="post" action="/logout"[^>]*>'
                r'<input type="hidden" name="csrf"',
            )

    def test_session_ids_stored_hashed(self) -> None:
        """The store holds a keyed hash of the session id, not the id."""
        self.sign_in()
        session_id = self.jar[security.SESSION_COOKIE]
        self.assertIsNone(
            result(
                self.store.use_web_session(session_id.encode(), self.clock.seconds())
            )
        )
        self.assertIsNotNone(
            result(
                self.store.use_web_session(
                    web_sessions.session_digest(KEY, session_id), self.clock.seconds()
                )
            )
        )

    def test_bad_form_encoding(self) -> None:
        """A field that is not UTF-8 gets a clear 400 page."""
        self.sign_in()
        token = self.request("GET", "/settings/pop").csrf()
        answer = self.request(
            "POST",
            "/settings/pop",
            {"csrf": token},
            raw_form={b"pop": [b"\xff\xfe"], b"spam": [b"x"], b"deletion": [b"y"]},
        )
        self.assertEqual(
            (answer.status, "could not be read" in answer.body), (400, True)
        )


class SignInTests(WebCase):
    def test_failures_identical(self) -> None:
        """Unknown address and wrong password get the same status and text."""
        wrong = self.sign_in("alice@example.com", "wrong-password")
        unknown = self.sign_in("nobody@example.com", "wrong-password")
        self.assertEqual(
            (wrong.status, wrong.body.replace("alice@", "X@")),
            (unknown.status, unknown.body.replace("nobody@", "X@")),
        )
        self.assertEqual(wrong.status, 403)
        self.assertIn("The email address or password is incorrect.", wrong.body)
        self.assertNotIn(security.SESSION_COOKIE, self.jar)

    def test_audit_line(self) -> None:
        """Sign-ins go through the Authenticator: audit lines with protocol=web."""
        with capturedLogs() as events:
            self.sign_in("alice@example.com", "wrong-password")
            self.sign_in()
        lines = [
            e["log_format"].format(**e)
            for e in events
            if e.get("log_format", "").startswith("login ")
        ]
        self.assertEqual(
            lines,
            [
                "login failed protocol=web client=192.0.2.7 account=alice@example.com"
                " method=- reason=bad credentials",
                "login succeeded protocol=web client=192.0.2.7"
                " account=alice@example.com method=primary reason=-",
            ],
        )

    def test_throttle_and_ban(self) -> None:
        """Failures count toward the shared ban: past the threshold even the
        right password is refused (429), and the mail protocols share it."""
        for attempt in range(5):
            self.sign_in("alice@example.com", f"wrong-password-{attempt}")
        answer = self.sign_in()
        self.assertEqual(
            (answer.status, "Too many failed sign-ins" in answer.body),
            (429, True),
        )
        self.assertIsNotNone(
            result(self.store.client_banned_until("192.0.2.7", self.clock.seconds()))
        )

    def test_app_password_refused(self) -> None:
        """An app-specific password never signs in to the web; POP still
        takes it."""
        secret = add_app_password(self.store, self.alice)
        answer = self.sign_in("alice@example.com", secret)
        self.assertEqual(
            (
                answer.status,
                "incorrect" in answer.body,
                security.SESSION_COOKIE in self.jar,
            ),
            (403, True, False),
        )
        result(self.store.enable_pop("alice@example.com", "all", 1.0))
        _, mailbox, logout = result(
            self.authenticator.login(
                "pop3",
                "192.0.2.8",
                b"alice@example.com",
                secret.encode(),
                None,
                IMailbox,
            )
        )
        logout()

    def test_app_password_cached_by_pop_refused(self) -> None:
        """An app password POP just verified (and cached) still does not
        sign in to the web."""
        secret = add_app_password(self.store, self.alice)
        result(self.store.enable_pop("alice@example.com", "all", 1.0))
        _, _, logout = result(
            self.authenticator.login(
                "pop3",
                "192.0.2.8",
                b"alice@example.com",
                secret.encode(),
                None,
                IMailbox,
            )
        )
        logout()
        self.assertEqual(self.sign_in("alice@example.com", secret).status, 403)

    def test_bare_local_part(self) -> None:
        """A bare local part is told to use the full address (400)."""
        answer = self.sign_in("alice", PASSWORD)
        self.assertEqual(
            (answer.status, "full email address" in answer.body), (400, True)
        )

    def test_missing_fields(self) -> None:
        """An empty address or password gets 400 with the form again."""
        answer = self.sign_in("", "")
        self.assertEqual((answer.status, 'id="login"' in answer.body), (400, True))

    def test_federated_without_password(self) -> None:
        """A federated account without a primary password cannot sign in,
        with the same answer as a wrong password."""
        add_account(self.store, "fed@example.com", password=None, federated=True)
        self.assertEqual(self.sign_in("fed@example.com", "anything").status, 403)

    def test_two_factor_code_step(self) -> None:
        """With two-factor on, the password leads to /login/code, where a
        current code signs in (a new session again); before it the
        settings are out of reach."""
        secret = totp.new_secret()
        now = self.clock.seconds()
        result(
            two_factor.confirm_enrolment(
                self.store,
                KEY,
                self.clock,
                "alice@example.com",
                secret,
                totp.code_at(secret, totp.step_at(now)),
            )
        )
        self.clock.advance(30)
        answer = self.sign_in()
        code_cookie = self.jar[security.SESSION_COOKIE]
        blocked = self.request("GET", "/settings/pop")
        code = totp.code_at(secret, totp.step_at(self.clock.seconds()))
        done = self.post("/login/code", {"code": code})
        self.assertEqual(
            [(a.status, a.location) for a in (answer, blocked, done)],
            [(303, "/login/code"), (302, "/login"), (303, "/settings")],
        )
        self.assertNotEqual(self.jar[security.SESSION_COOKIE], code_cookie)
        self.assertEqual(self.request("GET", "/settings/pop").status, 200)

    def test_two_factor_wrong_code(self) -> None:
        """A wrong code ends the code-step session: the next try starts
        with the password again (through the throttle)."""
        secret = totp.new_secret()
        now = self.clock.seconds()
        result(
            two_factor.confirm_enrolment(
                self.store,
                KEY,
                self.clock,
                "alice@example.com",
                secret,
                totp.code_at(secret, totp.step_at(now)),
            )
        )
        self.clock.advance(30)
        self.sign_in()
        answer = self.post("/login/code", {"code": "000000"})
        self.assertEqual(
            (
                answer.status,
                "not valid" in answer.body,
                security.SESSION_COOKIE in self.jar,
            ),
            (403, True, False),
        )
        self.assertEqual(self.request("GET", "/login/code").status, 302)

    def test_two_factor_codes_throttled_and_recorded(self) -> None:
        """Each wrong code counts as a failed login of the client: with the
        right password every time, the fifth wrong code earns the ban and
        the next sign-in gets 429. Each code step is sign-in activity."""
        events: list[LoginEvent] = []
        self.patch(self.authenticator, "_activity", events.append)
        secret = totp.new_secret()
        result(
            two_factor.confirm_enrolment(
                self.store,
                KEY,
                self.clock,
                "alice@example.com",
                secret,
                totp.code_at(secret, totp.step_at(self.clock.seconds())),
            )
        )
        self.clock.advance(30)
        self.sign_in()
        code = totp.code_at(secret, totp.step_at(self.clock.seconds()))
        self.assertEqual(self.post("/login/code", {"code": code}).status, 303)
        self.post("/logout", {})
        for guess in range(5):
            self.assertEqual(self.sign_in().location, "/login/code")
            wrong = self.post("/login/code", {"code": f"{guess:06d}"})
            self.assertEqual(wrong.status, 403)
        self.assertEqual(self.sign_in().status, 429)
        steps = [
            (e.credential, e.result, e.reason)
            for e in events
            if e.credential == SECOND_FACTOR
        ]
        self.assertEqual(
            steps,
            [(SECOND_FACTOR, "succeeded", "-")]
            + [(SECOND_FACTOR, "failed", WRONG_CODE)] * 5,
        )
        self.assertEqual(
            {(e.protocol, e.client) for e in events}, {("web", "192.0.2.7")}
        )


class LanguageTests(WebCase):
    def test_english_default(self) -> None:
        """Without a preference the pages are English, <html lang="en">."""
        body = self.request("GET", "/login").body
        self.assertIn('<html lang="en">', body)
        self.assertIn(">Sign in<", body)

    def test_accept_language(self) -> None:
        """Accept-Language preferring Chinese gives the zh-CN pages."""
        body = self.request(
            "GET",
            "/login",
            headers={"accept-language": "fr;q=1, zh-CN;q=0.9, en;q=0.5"},
        ).body
        self.assertIn('<html lang="zh-CN">', body)
        self.assertIn("登录", body)

    def test_switch(self) -> None:
        """The switch on every page sets a cookie that wins over the
        browser's Accept-Language, on the following pages too."""
        first = self.request("GET", "/login", headers={"accept-language": "en"})
        self.assertIn('href="?lang=zh-CN"', first.body)
        switched = self.request(
            "GET", "/login?lang=zh-CN", headers={"accept-language": "en"}
        )
        later = self.request("GET", "/login", headers={"accept-language": "en"})
        self.assertEqual(
            (
                switched.cookies[security.LANGUAGE_COOKIE].startswith(
                    "__Host-zpop-lang=zh-CN;"
                ),
                '<html lang="zh-CN">' in later.body,
            ),
            (True, True),
        )
        self.sign_in()
        self.assertIn("POP 访问", self.request("GET", "/settings/pop").body)

    def test_negotiation(self) -> None:
        """Accept-Language: q values, wildcards, q=0 and junk."""
        self.assertEqual(
            [
                i18n.from_accept_language(h)
                for h in (
                    "zh",
                    "en-GB,zh;q=0.8",
                    "de, *;q=0.1",
                    "zh;q=0, en",
                    "x;q=abc",
                    None,
                )
            ],
            ["zh-CN", "en", "en", "en", None, None],
        )

    def test_catalog_complete(self) -> None:
        """Every message has both languages with the same placeholders."""
        fields = re.compile(r"\{(\w+)\}")
        for key, (english, chinese) in i18n.MESSAGES.items():
            self.assertTrue(english and chinese, key)
            self.assertEqual(
                sorted(fields.findall(english)), sorted(fields.findall(chinese)), key
            )
