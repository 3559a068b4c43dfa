"""The settings pages (POP access, app-specific passwords, client
settings, signed-in browsers), the web session store and the Site's
request limits, in memory (see zpop.test.unit.test_web for the harness)."""

from __future__ import annotations

import re
from typing import Any

from twisted.cred.portal import Portal
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from zpop.accounts import web_sessions
from zpop.accounts.credentials import AccountChecker, Authenticator
from zpop.accounts.realm import Realm
from zpop.config import AccountsConfig, AuthConfig, Config
from zpop.store import (
    DELETION_POLICIES,
    POP_MODES,
    POP_QUEUES,
    SPAM_POLICIES,
    IStore,
    LoginEvent,
)
from zpop.test.stores import (
    COST,
    KEY,
    add_account,
    add_app_password,
    make_store,
    result,
)
from zpop.test.unit.test_web import PASSWORD, Answer, WebCase
from zpop.threads import run_synchronously
from zpop.web import pop, security
from zpop.web.site import MAX_BODY, Router, make_site
from zpop.web.visit import WebContext


class PopPageTests(WebCase):
    def setUp(self) -> None:
        super().setUp()
        self.sign_in()

    def change(self, **form: str) -> Answer:
        return self.post("/settings/pop", form)

    def test_choices_are_the_store_vocabularies(self) -> None:
        """The form's values are the CLI's words: the store's vocabularies."""
        self.assertEqual(
            {
                name: tuple(v for v, _ in choices)
                for name, choices in pop.CHOICES.items()
            },
            {
                "pop": ("disabled", *POP_MODES),
                "spam": SPAM_POLICIES,
                "deletion": DELETION_POLICIES,
                "queue": POP_QUEUES,
            },
        )

    def test_shows_disabled(self) -> None:
        """A new account's page says POP is disabled, spam excluded, keep."""
        body = self.request("GET", "/settings/pop").body
        self.assertIn("POP status: </strong><span>Disabled</span>", body)
        self.assertIn('value="disabled" checked="checked"', body)
        self.assertIn('value="exclude" checked="checked"', body)
        self.assertIn('value="keep" checked="checked"', body)
        self.assertIn('value="shared" checked="checked"', body)

    def test_enable_new(self) -> None:
        """Posting new/include/delete changes the account through the
        services; the page then shows since when."""
        answer = self.change(pop="new", spam="include", deletion="delete")
        pop = self.account().pop
        self.assertEqual(
            (
                answer.status,
                answer.location,
                pop.enabled,
                pop.mode,
                pop.enabled_at,
                pop.spam,
                pop.deletion,
            ),
            (
                303,
                "/settings/pop?saved=1",
                True,
                "new",
                self.clock.seconds(),
                "include",
                "delete",
            ),
        )
        body = self.request("GET", "/settings/pop?saved=1").body
        self.assertIn(
            "Enabled for mail received from now on"
            " (mail received from 2023-11-14 22:13 UTC on)",
            body,
        )
        self.assertIn("Your POP settings were saved.", body)

    def test_saving_keeps_new_moment(self) -> None:
        """Saving the form again (a spam change) keeps the "from now on"
        moment: POP is re-enabled only when its mode changes."""
        self.change(pop="new", spam="exclude", deletion="keep")
        since = self.account().pop.enabled_at
        self.clock.advance(600)
        self.change(pop="new", spam="only", deletion="keep")
        pop = self.account().pop
        self.assertEqual((pop.enabled_at, pop.spam), (since, "only"))

    def test_disable(self) -> None:
        """pop=disabled disables POP."""
        self.change(pop="all", spam="exclude", deletion="keep")
        self.change(pop="disabled", spam="exclude", deletion="keep")
        self.assertFalse(self.account().pop.enabled)

    def test_invalid_values(self) -> None:
        """A value outside the choices or a missing field gets 400 naming
        the field, and nothing changes."""
        bad = self.change(pop="sometimes", spam="exclude", deletion="keep")
        missing = self.change(pop="all", spam="exclude")
        self.assertEqual((bad.status, missing.status), (400, 400))
        self.assertIn("“POP status” must be one of the offered choices.", bad.body)
        self.assertIn("“When a POP client deletes a message” is missing.", missing.body)
        self.assertFalse(self.account().pop.enabled)

    def test_queue(self) -> None:
        """``queue`` posted with the rest switches to one POP queue per
        device through the services; the page shows it chosen, with the hint
        saying what per-device means, and in Chinese too."""
        answer = self.change(
            pop="all", spam="exclude", deletion="delete", queue="per-device"
        )
        pop = self.account().pop
        self.assertEqual(
            (answer.status, pop.enabled, pop.deletion, pop.queue),
            (303, True, "delete", "per-device"),
        )
        body = self.request("GET", "/settings/pop").body
        self.assertRegex(
            body,
            r'<input type="radio" name="queue" value="per-device"'
            r' checked="checked"\s*/?>',
        )
        self.assertIn("<legend>POP queue</legend>", body)
        self.assertIn(
            "One queue per device: each app-specific password, and your account"
            " password, gets every message once",
            body,
        )
        self.assertIn("a delete removes the message from that device", body)
        chinese = self.request(
            "GET", "/settings/pop", headers={"accept-language": "zh-CN"}
        ).body
        self.assertIn("<legend>POP 队列</legend>", chinese)
        self.change(pop="all", spam="exclude", deletion="delete", queue="shared")
        self.assertEqual(self.account().pop.queue, "shared")

    def test_queue_left_out(self) -> None:
        """A post without ``queue`` (a form or script made before it) saves
        the other settings and leaves the queue as it was."""
        self.change(pop="all", spam="exclude", deletion="keep", queue="per-device")
        answer = self.change(pop="all", spam="include", deletion="keep")
        pop = self.account().pop
        self.assertEqual(
            (answer.status, pop.spam, pop.queue), (303, "include", "per-device")
        )

    def test_bad_queue(self) -> None:
        """A queue outside the choices, or an empty one, gets 400 naming the
        field, like a bad deletion policy, and nothing changes."""
        bad = self.change(pop="all", spam="exclude", deletion="keep", queue="mine")
        empty = self.change(pop="all", spam="exclude", deletion="keep", queue=" ")
        self.assertEqual((bad.status, empty.status), (400, 400))
        self.assertIn("“POP queue” must be one of the offered choices.", bad.body)
        self.assertIn("“POP queue” is missing.", empty.body)
        pop = self.account().pop
        self.assertEqual((pop.enabled, pop.queue), (False, "shared"))

    def test_free_plan(self) -> None:
        """A Free-plan account past the cut-off sees why; enabling is
        refused (400) through the same rule as the CLI."""
        import datetime

        self.router = Router(
            WebContext(
                self.store,
                self.authenticator,
                self.clock,
                KEY,
                self.config.replace(
                    accounts=AccountsConfig(
                        bcrypt_cost=COST,
                        free_pop_cutoff=datetime.datetime(
                            1970, 1, 1, tzinfo=datetime.UTC
                        ),
                    )
                ),
                run_synchronously,
            )
        )
        add_account(self.store, "free@example.com", PASSWORD, plan="free")
        self.jar.clear()
        self.sign_in("free@example.com")
        page = self.request("GET", "/settings/pop")
        answer = self.change(pop="all", spam="include", deletion="keep")
        message = (
            "POP access is not available on the Free plan for accounts created"
            " on or after 1970-01-01."
        )
        self.assertEqual(
            (message in page.body, answer.status, message in answer.body),
            (True, 400, True),
        )
        account = self.account("free@example.com")
        self.assertEqual((account.pop.enabled, account.pop.spam), (False, "exclude"))

    def test_free_plan_enabled_before_the_cut_off(self) -> None:
        """An account whose POP was on before the cut-off applied is told
        logins are refused, keeps its choice selectable and can still save
        the other settings, but not switch to another mode."""
        import datetime

        result(self.store.enable_pop("alice@example.com", "all", 5.0))
        result(self.store.set_plan("alice@example.com", "free"))
        cutoff = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
        self.router = Router(
            WebContext(
                self.store,
                self.authenticator,
                self.clock,
                KEY,
                self.config.replace(
                    accounts=AccountsConfig(bcrypt_cost=COST, free_pop_cutoff=cutoff)
                ),
                run_synchronously,
            )
        )
        page = self.request("GET", "/settings/pop").body
        self.assertIn("not available on the Free plan: mail clients are refused", page)
        self.assertRegex(
            page, r'<input type="radio" name="pop" value="all" checked="checked"\s*/?>'
        )
        self.assertRegex(page, r'value="new" disabled="disabled"')
        saved = self.change(pop="all", spam="include", deletion="delete")
        self.assertEqual(saved.status, 303)
        moved = self.change(pop="new", spam="include", deletion="delete")
        self.assertEqual(moved.status, 400)
        pop = self.account("alice@example.com").pop
        self.assertEqual(
            (pop.mode, pop.spam, pop.deletion), ("all", "include", "delete")
        )


class AppPasswordPageTests(WebCase):
    def setUp(self) -> None:
        super().setUp()
        self.sign_in()

    def test_create_shown_once(self) -> None:
        """Creating shows the password once in id="new-secret", in groups
        of four; it works for POP; the list then shows only the label."""
        answer = self.post("/settings/app-passwords", {"label": "phone"})
        match = re.search(r'id="new-secret"[^>]*>([a-z0-9 ]+)<', answer.body)
        assert match is not None, answer.body
        secret = match.group(1)
        self.assertRegex(secret, r"^[a-z0-9]{4}( [a-z0-9]{4}){3}$")
        listing = self.request("GET", "/settings/app-passwords").body
        self.assertEqual((secret in listing, "phone" in listing), (False, True))
        self.assertEqual(answer.header("cache-control"), "no-store")

    def test_last_use_and_where_from(self) -> None:
        """The list shows each password's last use and the client address
        it came from, or "never"."""
        add_app_password(self.store, self.alice, "phone")
        add_app_password(self.store, self.alice, "laptop")
        phone, _ = result(self.store.list_app_passwords("alice@example.com"))
        used = LoginEvent(
            "alice@example.com",
            self.clock.seconds(),
            "pop3",
            "2001:db8::7",
            "app password phone",
            "succeeded",
            "-",
            phone.id,
        )
        result(self.store.record_login_events([used]))
        body = self.request("GET", "/settings/app-passwords").body
        table = body[body.index('id="app-passwords"') :]
        self.assertIn("<th>From (client address)</th>", table)
        rows = re.findall(
            r"<tr><td>(\w+)</td><td>[^<]*</td><td>([^<]*)</td>"
            r'<td class="used-from">([^<]*)</td>',
            table,
        )
        self.assertEqual(
            rows,
            [("phone", "2023-11-14 22:13 UTC", "2001:db8::7"), ("laptop", "never", "")],
        )

    def test_pop_start(self) -> None:
        """The create form offers the POP start (``setting`` chosen, with a
        hint that it matters only per device); the choice posted is stored
        and shown in the table, and left out it is ``setting``."""
        page = self.request("GET", "/settings/app-passwords").body
        self.assertRegex(
            page,
            r'<input type="radio" name="pop_start" value="setting"'
            r' checked="checked"\s*/?>',
        )
        self.assertRegex(
            page, r'<input type="radio" name="pop_start" value="first-login"\s*/?>'
        )
        self.assertIn("This matters only when the POP queue is per device", page)
        made = self.post(
            "/settings/app-passwords", {"label": "phone", "pop_start": "first-login"}
        )
        self.assertEqual((made.status, 'id="new-secret"' in made.body), (200, True))
        self.post("/settings/app-passwords", {"label": "laptop"})
        found = result(self.store.list_app_passwords("alice@example.com"))
        self.assertEqual(
            [(p.label, p.pop_start) for p in found],
            [("phone", "first-login"), ("laptop", "setting")],
        )
        body = self.request("GET", "/settings/app-passwords").body
        table = body[body.index('id="app-passwords"') :]
        self.assertIn("<th>POP start</th>", table)
        self.assertEqual(
            re.findall(r'<td class="pop-start">([^<]*)</td>', table),
            ["mail after its first POP connection", "as the POP settings say"],
        )

    def test_bad_pop_start(self) -> None:
        """A POP start outside the choices gets 400 with the reason, the
        label kept, and no password is made."""
        answer = self.post(
            "/settings/app-passwords", {"label": "phone", "pop_start": "later"}
        )
        self.assertEqual(answer.status, 400)
        self.assertIn("Choose one of the offered POP starts.", answer.body)
        self.assertIn('value="phone"', answer.body)
        self.assertEqual(result(self.store.list_app_passwords("alice@example.com")), [])

    def test_verify_it_is_you(self) -> None:
        """Ten minutes after sign-in, creating an app password needs the
        password again: missing 400, wrong 403, right creates one."""
        self.clock.advance(601)
        page = self.request("GET", "/settings/app-passwords").body
        self.assertIn('name="password"', page)
        missing = self.post("/settings/app-passwords", {"label": "phone"})
        wrong = self.post(
            "/settings/app-passwords", {"label": "phone", "password": "nope-nope"}
        )
        self.assertEqual((missing.status, wrong.status), (400, 403))
        self.assertIn("The password is incorrect.", wrong.body)
        self.assertEqual(result(self.store.list_app_passwords("alice@example.com")), [])
        right = self.post(
            "/settings/app-passwords", {"label": "phone", "password": PASSWORD}
        )
        self.assertEqual((right.status, 'id="new-secret"' in right.body), (200, True))

    def test_script_label_inert(self) -> None:
        """A label holding <script> is shown as text, never as markup."""
        self.post("/settings/app-passwords", {"label": "<script>alert(1)</script>"})
        body = self.request("GET", "/settings/app-passwords").body
        self.assertIn("&lt;script&gt;alert(1)&lt;/script&gt;", body)
        self.assertNotIn("<script", body)

    def test_bad_labels(self) -> None:
        """Empty, control characters, too long: 400 with the reason."""
        answers = [
            self.post("/settings/app-passwords", {"label": label})
            for label in ("   ", "a\x07b", "x" * 101)
        ]
        self.assertEqual([a.status for a in answers], [400, 400, 400])
        self.assertIn("The label is empty.", answers[0].body)
        self.assertIn("The label contains control characters.", answers[1].body)
        self.assertIn("The label is longer than 100 characters.", answers[2].body)

    def test_revoke(self) -> None:
        """Posting an id revokes that password; an unknown id gets 400."""
        add_app_password(self.store, self.alice, "laptop")
        (listed,) = result(self.store.list_app_passwords("alice@example.com"))
        answer = self.post("/settings/app-passwords", {"id": str(listed.id)})
        unknown = self.post("/settings/app-passwords", {"id": "999"})
        junk = self.post("/settings/app-passwords", {"id": "1e3"})
        self.assertEqual(
            (answer.status, unknown.status, junk.status),
            (200, 400, 400),
        )
        self.assertIn("“laptop” was revoked", answer.body)
        self.assertEqual(result(self.store.list_app_passwords("alice@example.com")), [])

    def test_other_accounts_password(self) -> None:
        """One account cannot revoke another's app password."""
        bob = add_account(self.store, "bob@example.com")
        add_app_password(self.store, bob)
        (listed,) = result(self.store.list_app_passwords("bob@example.com"))
        answer = self.post("/settings/app-passwords", {"id": str(listed.id)})
        self.assertEqual(answer.status, 400)
        self.assertEqual(
            len(result(self.store.list_app_passwords("bob@example.com"))), 1
        )


class ClientsPageTests(WebCase):
    def test_personal_and_organization(self) -> None:
        """The POP host follows the domain kind; SMTP and ports are shown."""
        self.sign_in()
        personal = self.request("GET", "/settings/clients").body
        add_account(self.store, "carol@corp.example", PASSWORD)
        self.jar.clear()
        self.sign_in("carol@corp.example")
        organization = self.request("GET", "/settings/clients").body
        self.assertIn('id="pop-host">pop.example.com<', personal)
        self.assertIn('id="pop-host">poppro.example.com<', organization)
        self.assertIn('id="smtp-host">smtp.example.com<', personal)
        self.assertIn('id="pop-port">995<', personal)
        self.assertIn("465 with SSL/TLS, or 587 with STARTTLS", personal)


class SessionsPageTests(WebCase):
    def test_list_and_sign_out_other(self) -> None:
        """The page lists this browser and others; signing another out
        ends it in the store, this one stays."""
        self.sign_in()
        mine = dict(self.jar)
        self.jar.clear()
        self.sign_in()
        other = self.jar[security.SESSION_COOKIE]
        self.jar = mine
        body = self.request("GET", "/settings/sessions").body
        self.assertEqual(body.count("192.0.2.7"), 2)
        self.assertIn("This browser", body)
        ids = re.findall(r'name="id" value="(\d+)"', body)
        self.assertEqual(len(ids), 1)
        answer = self.post("/settings/sessions", {"id": ids[0]})
        self.assertEqual((answer.status, answer.location), (303, "/settings/sessions"))
        self.assertIsNone(
            result(web_sessions.resume(self.store, KEY, self.clock, other))
        )
        self.assertEqual(self.request("GET", "/settings/pop").status, 200)

    def test_unknown_id(self) -> None:
        """An id that is not one of the account's sessions gets 400."""
        self.sign_in()
        answer = self.post("/settings/sessions", {"id": "12345"})
        self.assertEqual(answer.status, 400)


class SessionStoreTests(SynchronousTestCase):
    """Web sessions through their service, on the store ``make_store``
    gives (memory here; SQLite in zpop.test.integration.test_web)."""

    def make_store(self) -> Any:
        return make_store()

    def setUp(self) -> None:
        self.store = self.make_store()
        self.clock = Clock()
        self.clock.advance(1000)
        add_account(self.store, "alice@example.com")

    def start(self) -> tuple[str, Any]:
        return result(
            web_sessions.start(
                self.store,
                KEY,
                self.clock,
                "alice@example.com",
                "full",
                "192.0.2.1",
                "UA",
            )
        )

    def test_interface(self) -> None:
        """MemoryStore provides IStore, web sessions included."""
        self.assertTrue(verifyObject(IStore, self.store))

    def test_list_and_revoke(self) -> None:
        """Sessions are listed per account and revocable one by one."""
        first, one = self.start()
        second, two = self.start()
        listed = result(
            web_sessions.list_sessions(self.store, self.clock, "alice@example.com")
        )
        self.assertEqual([s.id for s in listed], [one.id, two.id])
        result(web_sessions.revoke(self.store, "alice@example.com", one.id))
        self.assertIsNone(
            result(web_sessions.resume(self.store, KEY, self.clock, first))
        )
        self.assertIsNotNone(
            result(web_sessions.resume(self.store, KEY, self.clock, second))
        )
        self.assertRaises(
            web_sessions.UnknownWebSession,
            result,
            web_sessions.revoke(self.store, "alice@example.com", one.id),
        )

    def test_gone_with_account(self) -> None:
        """Deleting the account ends its sessions."""
        session_id, _ = self.start()
        result(self.store.delete_account("alice@example.com"))
        self.assertIsNone(
            result(web_sessions.resume(self.store, KEY, self.clock, session_id))
        )

    def test_use_recorded_to_the_minute(self) -> None:
        """Using a session records last_seen at most once a minute, so page
        views are not each a durable write."""
        session_id, started = self.start()
        self.clock.advance(30)
        early = result(web_sessions.resume(self.store, KEY, self.clock, session_id))
        self.clock.advance(40)
        later = result(web_sessions.resume(self.store, KEY, self.clock, session_id))
        self.assertEqual(
            (early.last_seen, later.last_seen, later.expires),
            (started.created, started.created + 70, started.created + 12 * 3600),
        )

    def test_ended_sessions_dropped(self) -> None:
        """Ended sessions are not listed, and are dropped when the next one
        starts."""
        self.start()
        self.clock.advance(31 * 60)
        self.assertEqual(
            result(
                web_sessions.list_sessions(self.store, self.clock, "alice@example.com")
            ),
            [],
        )
        _, newer = self.start()
        self.assertEqual(
            [
                s.id
                for s in result(
                    web_sessions.list_sessions(
                        self.store, self.clock, "alice@example.com"
                    )
                )
            ],
            [newer.id],
        )

    def test_malformed_ids(self) -> None:
        """Cookie junk is no session, without a look-up."""
        for junk in ("", "x", "a" * 43 + "!", "é" * 43):
            self.assertIsNone(
                result(web_sessions.resume(self.store, KEY, self.clock, junk))
            )


class SiteTests(SynchronousTestCase):
    """The Site over an in-memory connection (StringTransport)."""

    def setUp(self) -> None:
        store = make_store()
        clock = Clock()
        config = Config(auth=AuthConfig(failure_delay=0.0))
        checker = AccountChecker(store, KEY, run_synchronously, clock, COST)
        portal = Portal(Realm(store, config.hosts, config.accounts, clock), [checker])
        authenticator = Authenticator(portal, store, clock, config.auth, KEY)
        web = WebContext(store, authenticator, clock, KEY, config, run_synchronously)
        self.site = make_site(web)

    def connect(self) -> tuple[Any, StringTransport]:
        channel = self.site.buildProtocol(IPv4Address("TCP", "192.0.2.9", 4000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.9", 4000))
        channel.makeConnection(transport)
        self.addCleanup(channel.connectionLost, Failure(ConnectionDone()))
        return channel, transport

    def test_body_too_large(self) -> None:
        """A declared body over the limit gets 413 at once and the
        connection closes; nothing is buffered."""
        channel, transport = self.connect()
        channel.dataReceived(
            b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/"
            b"x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1)
        )
        self.assertEqual(
            (transport.value().split(b"\r\n")[0], transport.disconnecting),
            (b"HTTP/1.1 413 Content Too Large", True),
        )

    def test_chunked_body_too_large(self) -> None:
        """A chunked body growing past the limit gets 413 too."""
        channel, transport = self.connect()
        chunk = b"a" * 8192
        channel.dataReceived(
            b"POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + (b"%x\r\n%s\r\n" % (len(chunk), chunk)) * 3
        )
        self.assertEqual(
            transport.value().split(b"\r\n")[0], b"HTTP/1.1 413 Content Too Large"
        )

    def test_access_log_without_query(self) -> None:
        """The access line names method, path and status, never the query
        string (where a token could be)."""
        channel, transport = self.connect()
        with capturedLogs() as events:
            channel.dataReceived(b"GET /login?token=SECRET HTTP/1.1\r\nHost: x\r\n\r\n")
        lines = [
            e["log_format"].format(**e)
            for e in events
            if e.get("log_format", "").startswith("web ")
        ]
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].startswith("web GET /login 200 "), lines)
        self.assertNotIn("SECRET", lines[0])
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 OK"))
