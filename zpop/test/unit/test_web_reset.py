"""Forgot password in memory: the services of zpop.accounts.password_resets
(links made, mailed, used once, expired) and the pages of zpop.web.reset
driven through the Router with ``DummyRequest``, as test_web does."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from zpop.accounts import password_resets, passwords, web_sessions
from zpop.accounts.errors import InvalidInput, UnknownAccount
from zpop.accounts.password_resets import (
    LIFETIME,
    InvalidResetLink,
    token_digest,
)
from zpop.accounts.password_rules import WeakPassword
from zpop.config import AccountsConfig
from zpop.test.stores import COST, KEY, add_account, make_store, result
from zpop.test.unit.test_web import PASSWORD, WebCase
from zpop.threads import run_synchronously

ALICE = "alice@example.com"
BASE = "https://mail.example.com"
NEW = "violet-lantern-orbit-42"
ELSEWHERE = "alice.recovery@elsewhere.example"


def token_of(link: str) -> str:
    [token] = parse_qs(urlsplit(link).query)["token"]
    return token


class _Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def seconds(self) -> float:
        return self.now


class ServiceTests(SynchronousTestCase):
    """The services on a MemoryStore."""

    def setUp(self) -> None:
        self.store = make_store()
        self.clock = _Clock()
        self.config = AccountsConfig(bcrypt_cost=COST)
        add_account(self.store, ALICE, PASSWORD)

    def link(self, address: str = ALICE) -> str:
        link: str = result(
            password_resets.make_reset_link(self.store, KEY, self.clock, address, BASE)
        )
        return link

    def use(self, token: str, new: str = NEW) -> str:
        address: str = result(
            password_resets.use_reset(
                self.store, KEY, self.clock, run_synchronously, self.config, token, new
            )
        )
        return address

    def request(self, address: str) -> None:
        result(
            password_resets.request_reset(
                self.store, KEY, self.clock, "example.com", 86400.0, address, BASE
            )
        )

    def password_is(self, password: str) -> bool:
        account = result(self.store.get_account(ALICE))
        return passwords.check_password(password, account.password_hash)

    def outbound(self) -> list[Any]:
        found: list[Any] = result(self.store.list_outbound())
        return found

    def test_link_and_digest(self) -> None:
        """The link is base + /reset?token=; only the token's keyed hash is
        kept, and it names the account."""
        link = self.link("Alice@Example.com")
        self.assertTrue(link.startswith(f"{BASE}/reset?token="))
        token = token_of(link)
        self.assertEqual(len(token), password_resets.TOKEN_LENGTH)
        digest = token_digest(KEY, token)
        assert digest is not None
        self.assertNotIn(token.encode(), digest)
        self.assertEqual(
            result(self.store.find_password_reset(digest, self.clock.now)), ALICE
        )
        self.assertNotEqual(token_of(self.link()), token)

    def test_link_unknown_account(self) -> None:
        self.assertRaises(UnknownAccount, self.link, "nobody@example.com")

    def test_use_sets_password_once(self) -> None:
        token = token_of(self.link())
        self.assertEqual(self.use(token), ALICE)
        self.assertTrue(self.password_is(NEW))
        self.assertRaises(InvalidResetLink, self.use, token, "another-fine-pass-77")
        self.assertTrue(self.password_is(NEW))

    def test_wrong_and_malformed_tokens(self) -> None:
        token = token_of(self.link())
        wrong = ("a" if token[0] != "a" else "b") + token[1:]
        for bad in (wrong, "", "short", token + "x", "0" * len(token)):
            self.assertRaises(InvalidResetLink, self.use, bad)
        self.assertTrue(self.password_is(PASSWORD))
        self.assertEqual(self.use(token), ALICE)

    def test_expired(self) -> None:
        token = token_of(self.link())
        self.clock.now += LIFETIME
        self.assertRaises(InvalidResetLink, self.use, token)
        self.assertTrue(self.password_is(PASSWORD))

    def test_good_just_before_expiry(self) -> None:
        token = token_of(self.link())
        self.clock.now += LIFETIME - 1
        self.assertEqual(self.use(token), ALICE)

    def test_weak_password_keeps_link(self) -> None:
        """A refused password spends nothing: the link still works."""
        token = token_of(self.link())
        self.assertRaises(WeakPassword, self.use, token, "short")
        self.assertRaises(WeakPassword, self.use, token, "alice-alice-alice")
        self.assertEqual(self.use(token), ALICE)

    def test_use_ends_web_sessions(self) -> None:
        for _ in range(2):
            result(
                web_sessions.start(
                    self.store,
                    KEY,
                    self.clock,
                    ALICE,
                    web_sessions.FULL,
                    "192.0.2.1",
                    "",
                )
            )
        self.assertEqual(
            len(result(web_sessions.list_sessions(self.store, self.clock, ALICE))), 2
        )
        self.use(token_of(self.link()))
        self.assertEqual(
            result(web_sessions.list_sessions(self.store, self.clock, ALICE)), []
        )

    def test_recovery_address(self) -> None:
        self.assertIsNone(
            result(password_resets.get_recovery_address(self.store, ALICE))
        )
        stored = result(
            password_resets.set_recovery_address(
                self.store, ALICE, " Alice.Recovery@Elsewhere.Example "
            )
        )
        self.assertEqual(stored, "Alice.Recovery@elsewhere.example".lower())
        self.assertEqual(
            result(password_resets.get_recovery_address(self.store, ALICE)), stored
        )

    def test_recovery_address_refused(self) -> None:
        result(self.store.add_alias(ALICE, "al@example.com"))
        for bad in (
            "not an address",
            "nobody",
            "a@@b.example",
            ALICE.upper(),
            "al@example.com",
        ):
            self.assertRaises(
                InvalidInput,
                result,
                password_resets.set_recovery_address(self.store, ALICE, bad),
            )
        self.assertRaises(
            UnknownAccount,
            result,
            password_resets.set_recovery_address(
                self.store, "nobody@example.com", ELSEWHERE
            ),
        )

    def test_request_queues_mail_for_remote_recovery(self) -> None:
        """A remote recovery address gets the mail through the outbound
        queue: from no-reply@ the host name, the link, the ignore line."""
        result(password_resets.set_recovery_address(self.store, ALICE, ELSEWHERE))
        self.request(ALICE)
        [queued] = self.outbound()
        self.assertEqual(queued.sender, "no-reply@example.com")
        self.assertEqual([r.recipient for r in queued.recipients], [ELSEWHERE])
        body = result(self.store.read_outbound_body(queued.id, 0, 100000))
        text = body.decode()
        self.assertIn("From: <no-reply@example.com>\r\n", text)
        self.assertIn(f"To: <{ELSEWHERE}>\r\n", text)
        self.assertIn(f"Subject: Set your password for {ALICE}\r\n", text)
        self.assertIn("If you did not ask for this, ignore this message", text)
        [link] = [line for line in text.split("\r\n") if line.startswith(BASE)]
        self.assertEqual(self.use(token_of(link)), ALICE)

    def test_request_delivers_locally_for_hosted_recovery(self) -> None:
        """A hosted recovery address gets the mail in its Inbox."""
        bob = add_account(self.store, "bob@example.com", PASSWORD)
        result(
            password_resets.set_recovery_address(self.store, ALICE, "bob@example.com")
        )
        self.request(ALICE)
        self.assertEqual(self.outbound(), [])
        [message] = result(self.store.list_messages(bob.id))
        self.assertEqual(message.folder, "Inbox")
        self.assertEqual(message.subject, f"Set your password for {ALICE}")
        body = result(self.store.read_body(message.id, 0, 100000)).decode()
        [link] = [line for line in body.split("\r\n") if line.startswith(BASE)]
        self.assertEqual(self.use(token_of(link)), ALICE)

    def test_request_without_recovery_or_account(self) -> None:
        """No recovery address, an unknown address, an alias, junk: the
        same nothing-returned, and nothing stored or sent."""
        for address in (ALICE, "nobody@example.com", "nobody@elsewhere.example", "x"):
            self.assertIsNone(self.request(address))  # type: ignore[func-returns-value]
        self.assertEqual(self.outbound(), [])
        self.assertEqual(self.store._resets, {})


class PagesTests(WebCase):
    """The pages through the Router."""

    def link(self) -> str:
        link: str = result(
            password_resets.make_reset_link(
                self.store, b"k" * 32, self.clock, ALICE, BASE
            )
        )
        return link

    def forgot(self, address: str) -> Any:
        return self.post("/login/forgot", {"address": address})

    def test_login_links_to_forgot(self) -> None:
        page = self.request("GET", "/login")
        self.assertIn('href="/login/forgot"', page.body)
        form = self.request("GET", "/login/forgot")
        self.assertEqual(form.status, 200)
        self.assertIn('name="address"', form.body)

    def test_forgot_same_answer(self) -> None:
        """Known with a recovery address, known without, unknown: one page."""
        result(password_resets.set_recovery_address(self.store, ALICE, ELSEWHERE))
        add_account(self.store, "bob@example.com", PASSWORD)
        answers = [
            self.forgot(a)
            for a in (ALICE, "bob@example.com", "nobody@example.com", "junk")
        ]
        self.assertEqual({a.status for a in answers}, {200})
        self.assertEqual(len({a.body for a in answers}), 1)
        self.assertIn('id="forgot-sent"', answers[0].body)
        [queued] = result(self.store.list_outbound())
        self.assertEqual([r.recipient for r in queued.recipients], [ELSEWHERE])

    def test_forgot_needs_csrf_and_address(self) -> None:
        refused = self.request("POST", "/login/forgot", {"address": ALICE})
        self.assertEqual(refused.status, 403)
        empty = self.forgot("")
        self.assertEqual(empty.status, 400)

    def test_forgot_throttled(self) -> None:
        """Each request counts like a failed sign-in of the client: past the
        ban threshold the form is refused, whatever the address; audited."""
        with capturedLogs() as events:
            statuses = [self.forgot(f"u{i}@example.com").status for i in range(6)]
        self.assertEqual(statuses, [200] * 5 + [429])
        self.assertEqual(self.sign_in().status, 429)
        lines = [e.get("log_format", "") for e in events]
        self.assertTrue(any(line.startswith("login ") for line in lines))
        reasons = {e.get("reason") for e in events}
        self.assertIn("password reset", reasons)

    def test_reset_page(self) -> None:
        token = token_of(self.link())
        page = self.request("GET", f"/reset?token={token}")
        self.assertEqual(page.status, 200)
        self.assertIn(f'name="token" value="{token}"', page.body)
        self.assertIn('name="new_password"', page.body)
        self.assertIn('name="confirm_password"', page.body)

    def test_reset_page_invalid(self) -> None:
        """Wrong, missing, used and expired links: the one generic page."""
        token = token_of(self.link())
        wrong = self.request("GET", "/reset?token=" + "a" * len(token))
        missing = self.request("GET", "/reset")
        self.clock.advance(LIFETIME)
        expired = self.request("GET", f"/reset?token={token}")
        answers = (wrong, missing, expired)
        self.assertEqual({a.status for a in answers}, {400})
        self.assertEqual(len({a.body for a in answers}), 1)
        self.assertIn("invalid or has expired", wrong.body)

    def test_reset_sets_password(self) -> None:
        token = token_of(self.link())
        mismatch = self.post(
            "/reset",
            {"token": token, "new_password": NEW, "confirm_password": NEW + "x"},
            page="/login",
        )
        self.assertEqual(mismatch.status, 400)
        weak = self.post(
            "/reset",
            {"token": token, "new_password": "short", "confirm_password": "short"},
            page="/login",
        )
        self.assertEqual(weak.status, 400)
        done = self.post(
            "/reset",
            {"token": token, "new_password": NEW, "confirm_password": NEW},
            page="/login",
        )
        self.assertEqual((done.status, done.location), (303, "/login?reset=1"))
        notice = self.request("GET", "/login?reset=1")
        self.assertIn('id="notice"', notice.body)
        again = self.post(
            "/reset",
            {"token": token, "new_password": NEW, "confirm_password": NEW},
            page="/login",
        )
        self.assertEqual(again.status, 400)
        self.assertIn("invalid or has expired", again.body)
        self.assertEqual(self.sign_in(password=PASSWORD).status, 403)
        self.assertEqual(self.sign_in(password=NEW).status, 303)

    def test_reset_needs_csrf(self) -> None:
        token = token_of(self.link())
        refused = self.request(
            "POST",
            "/reset",
            {"token": token, "new_password": NEW, "confirm_password": NEW},
        )
        self.assertEqual(refused.status, 403)
        self.assertEqual(self.request("GET", f"/reset?token={token}").status, 200)
