"""The settings API (zpop.web.api) in memory: the site's Router driven with
``DummyRequest`` over a MemoryStore and a Clock, with real tokens made by
the same service as ``zpop api-token create``."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from dataclasses import dataclass
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.logger import capturedLogs
from twisted.web.http_headers import Headers
from twisted.web.test.requesthelper import DummyRequest

from zpop.accounts import api_tokens
from zpop.config import AccountsConfig, Config, ServerConfig
from zpop.test.stores import KEY, add_account, result
from zpop.test.unit.test_web import WebCase
from zpop.web.site import Router

ALICE = "alice@example.com"


@dataclass
class Json:
    status: int
    headers: Headers
    body: Any

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name.encode())
        return values[0].decode() if values else None

    @property
    def code(self) -> str:
        return str(self.body["error"]["code"])


class ApiCase(WebCase):
    def setUp(self) -> None:
        super().setUp()
        self.user_write = self.token(ALICE, "write", "script")
        self.user_read = self.token(ALICE, "read", "monitor")
        self.admin_write = self.token(None, "write", "ops")
        self.admin_read = self.token(None, "read", "audit")

    def token(self, address: str | None, scope: str, label: str) -> str:
        _, secret = result(
            api_tokens.create(self.store, self.clock, KEY, address, scope, label)
        )
        return str(secret)

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = "",
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Json:
        """One request under /api/v1; ``token`` "" means the user's write
        token, None no Authorization at all."""
        target, _, query = path.partition("?")
        request = DummyRequest([s.encode() for s in f"api/v1{target}".split("/")])
        request.method = method.encode()
        request.client = IPv4Address("TCP", "192.0.2.9", 50000)
        request.args = {}
        for pair in filter(None, query.split("&")):
            name, _, value = pair.partition("=")
            request.args.setdefault(name.encode(), []).append(value.encode())
        data = (
            raw
            if raw is not None
            else b""
            if body is None
            else json.dumps(body).encode()
        )
        request.content = io.BytesIO(data)
        if body is not None:
            request.requestHeaders.setRawHeaders(b"content-type", [b"application/json"])
        if token is not None:
            value = self.user_write if token == "" else token
            request.requestHeaders.setRawHeaders(
                b"authorization", [f"Bearer {value}".encode()]
            )
        for name, text in (headers or {}).items():
            request.requestHeaders.setRawHeaders(name.encode(), [text.encode()])
        self.router.render(request)
        self.assertEqual(request.finished, 1)
        written = b"".join(request.written)
        decoded = json.loads(written) if written else None
        return Json(request.responseCode or 200, request.responseHeaders, decoded)


class UserTests(ApiCase):
    def test_me(self) -> None:
        """GET /me describes the token's account, never a secret."""
        answer = self.api("GET", "/me")
        self.assertEqual(answer.status, 200)
        self.assertEqual(
            answer.body,
            {
                "address": ALICE,
                "domain": "example.com",
                "organization": False,
                "plan": "paid",
                "federated": False,
                "password": True,
                "two_factor": "off",
                "created": "1970-01-01T00:00:01Z",
            },
        )
        self.assertEqual(self.account().created, 1.0)
        self.assertEqual(answer.header("content-type"), "application/json")
        self.assertEqual(answer.header("cache-control"), "no-store")

    def test_pop_round_trip(self) -> None:
        """PATCH changes only the fields given, the change shows in the
        store, and "since" is the enabling moment."""
        before = self.api("GET", "/settings/pop")
        self.assertEqual(
            before.body,
            {
                "enabled": False,
                "mode": None,
                "since": None,
                "spam": "exclude",
                "deletion": "keep",
                "queue": "shared",
            },
        )
        changed = self.api(
            "PATCH",
            "/settings/pop",
            {"enabled": True, "mode": "new", "spam": "include"},
        )
        self.assertEqual(changed.status, 200)
        self.assertEqual(
            changed.body,
            {
                "enabled": True,
                "mode": "new",
                "since": "2023-11-14T22:13:20Z",
                "spam": "include",
                "deletion": "keep",
                "queue": "shared",
            },
        )
        pop = self.account().pop
        self.assertEqual((pop.enabled, pop.mode, pop.spam), (True, "new", "include"))
        self.clock.advance(60)
        again = self.api("PATCH", "/settings/pop", {"deletion": "delete"})
        self.assertEqual(again.body["since"], "2023-11-14T22:13:20Z")
        self.assertEqual(self.account().pop.deletion, "delete")
        off = self.api("PATCH", "/settings/pop", {"enabled": False})
        self.assertEqual((off.body["enabled"], off.body["mode"]), (False, None))

    def test_pop_queue(self) -> None:
        """PATCH of ``queue`` alone switches to one POP queue per device and
        back, leaving the other settings as they were; a value outside the
        vocabulary is 422 with the service's words and changes nothing."""
        self.api("PATCH", "/settings/pop", {"enabled": True, "mode": "all"})
        etag = self.api("GET", "/settings/pop").header("etag")
        assert etag is not None
        per_device = self.api(
            "PATCH",
            "/settings/pop",
            {"queue": "per-device"},
            headers={"if-match": etag},
        )
        self.assertEqual(
            (per_device.status, per_device.body),
            (
                200,
                {
                    "enabled": True,
                    "mode": "all",
                    "since": "2023-11-14T22:13:20Z",
                    "spam": "exclude",
                    "deletion": "keep",
                    "queue": "per-device",
                },
            ),
        )
        self.assertNotEqual(per_device.header("etag"), etag)
        self.assertEqual(self.account().pop.queue, "per-device")
        for body in ({"queue": "per-client"}, {"queue": None}, {"queue": 2}):
            bad = self.api("PATCH", "/settings/pop", body)
            self.assertEqual((bad.status, bad.code), (422, "invalid"), body)
        self.assertEqual(
            self.api("PATCH", "/settings/pop", {"queue": "x"}).body["error"]["message"],
            "the POP queue must be one of shared, per-device",
        )
        self.assertEqual(self.account().pop.queue, "per-device")
        shared = self.api("PATCH", "/settings/pop", {"queue": "shared"})
        self.assertEqual(shared.body["queue"], "shared")
        self.assertEqual(self.account().pop.queue, "shared")

    def test_pop_refusals(self) -> None:
        """Read-only, unknown, wrongly typed or invalid fields and a mode
        missing when enabling are 422 with the error body; nothing changes."""
        cases = [
            ({"since": "2020-01-01T00:00:00Z"}, "read_only"),
            ({"colour": "blue"}, "unknown_field"),
            ({"enabled": "yes"}, "invalid"),
            ({"mode": 1}, "invalid"),
            ({"enabled": True}, "invalid"),
            ({"enabled": True, "mode": None}, "invalid"),
            ({"enabled": False, "mode": "all"}, "invalid"),
            ({"mode": "sometimes"}, "invalid"),
            ({"spam": "maybe"}, "invalid"),
            ([], "invalid"),
        ]
        for body, code in cases:
            answer = self.api("PATCH", "/settings/pop", body)
            self.assertEqual((answer.status, answer.code), (422, code), body)
            self.assertIsInstance(answer.body["error"]["message"], str)
        self.assertFalse(self.account().pop.enabled)
        self.assertIn(
            "the POP mode must be one of all, new",
            self.api("PATCH", "/settings/pop", {"mode": "x"}).body["error"]["message"],
        )

    def test_etag(self) -> None:
        """GET sends an ETag; PATCH with it succeeds, with a stale one 412
        and nothing changes; without If-Match it goes ahead."""
        etag = self.api("GET", "/settings/pop").header("etag")
        assert etag is not None
        ok = self.api(
            "PATCH", "/settings/pop", {"spam": "only"}, headers={"if-match": etag}
        )
        self.assertEqual(ok.status, 200)
        self.assertNotEqual(ok.header("etag"), etag)
        stale = self.api(
            "PATCH", "/settings/pop", {"spam": "include"}, headers={"if-match": etag}
        )
        self.assertEqual((stale.status, stale.code), (412, "precondition_failed"))
        self.assertEqual(self.account().pop.spam, "only")
        self.assertEqual(
            self.api("PATCH", "/settings/pop", {"spam": "include"}).status, 200
        )

    def test_free_plan(self) -> None:
        """A Free-plan account past the cut-off is refused with the CLI's
        words (403)."""
        config = Config(
            server=ServerConfig(hostname="example.com"),
            accounts=AccountsConfig(bcrypt_cost=4, free_pop_cutoff=_cutoff()),
        )
        web = dataclasses.replace(self.router._web, config=config)
        self.router = Router(web)
        add_account(self.store, "free@example.com", plan="free")
        token = self.token("free@example.com", "write", "x")
        answer = self.api(
            "PATCH", "/settings/pop", {"enabled": True, "mode": "all"}, token=token
        )
        self.assertEqual((answer.status, answer.code), (403, "not_allowed"))
        self.assertIn("not available on the Free plan", answer.body["error"]["message"])

    def test_imap(self) -> None:
        """IMAP access reads and switches."""
        self.assertEqual(self.api("GET", "/settings/imap").body, {"enabled": True})
        off = self.api("PATCH", "/settings/imap", {"enabled": False})
        self.assertEqual(off.body, {"enabled": False})
        self.assertFalse(self.account().imap_enabled)

    def test_app_passwords(self) -> None:
        """POST returns the password once (201); it is listed without it,
        with where it was used; DELETE revokes (204); then 404."""
        made = self.api("POST", "/app-passwords", {"label": "phone"})
        self.assertEqual(made.status, 201)
        secret = made.body["password"]
        self.assertRegex(secret, r"^[a-z0-9]{4}( [a-z0-9]{4}){3}$")
        listed = self.api("GET", "/app-passwords")
        self.assertEqual(
            listed.body,
            {
                "items": [
                    {
                        "id": made.body["id"],
                        "label": "phone",
                        "created": "2023-11-14T22:13:20Z",
                        "last_used": None,
                        "last_used_from": None,
                        "pop_start": "setting",
                    }
                ],
                "next_cursor": None,
            },
        )
        self.assertNotIn(secret, json.dumps(listed.body))
        gone = self.api("DELETE", f"/app-passwords/{made.body['id']}")
        self.assertEqual((gone.status, gone.body), (204, None))
        again = self.api("DELETE", f"/app-passwords/{made.body['id']}")
        self.assertEqual((again.status, again.code), (404, "not_found"))
        for bad in ("x", "1e3", "9" * 30):
            self.assertEqual(self.api("DELETE", f"/app-passwords/{bad}").status, 404)
        refused = self.api("POST", "/app-passwords", {"label": "a\x07b"})
        self.assertEqual(
            (refused.status, refused.body["error"]["message"]),
            (422, "the label contains control characters"),
        )

    def test_app_password_pop_start(self) -> None:
        """POST takes an optional ``pop_start`` (``setting`` when left out),
        answers with it and lists it; another value is 422 with the
        service's words and creates nothing."""
        made = self.api(
            "POST", "/app-passwords", {"label": "phone", "pop_start": "first-login"}
        )
        self.assertEqual(
            (made.status, sorted(made.body), made.body["pop_start"]),
            (201, ["created", "id", "label", "password", "pop_start"], "first-login"),
        )
        plain = self.api("POST", "/app-passwords", {"label": "laptop"})
        self.assertEqual(plain.body["pop_start"], "setting")
        listed = self.api("GET", "/app-passwords").body["items"]
        self.assertEqual(
            [(p["label"], p["pop_start"]) for p in listed],
            [("phone", "first-login"), ("laptop", "setting")],
        )
        for start in ("later", None, 1):
            refused = self.api(
                "POST", "/app-passwords", {"label": "x", "pop_start": start}
            )
            self.assertEqual((refused.status, refused.code), (422, "invalid"), start)
        self.assertEqual(
            self.api(
                "POST", "/app-passwords", {"label": "x", "pop_start": "later"}
            ).body["error"]["message"],
            "the POP start must be one of setting, first-login",
        )
        self.assertEqual(len(self.api("GET", "/app-passwords").body["items"]), 2)

    def test_pagination(self) -> None:
        """Lists come in pages of ``limit`` with an opaque cursor; a bad
        limit or cursor is 422."""
        for n in range(5):
            self.api("POST", "/app-passwords", {"label": f"p{n}"})
        first = self.api("GET", "/app-passwords?limit=2")
        labels = [p["label"] for p in first.body["items"]]
        cursor = first.body["next_cursor"]
        second = self.api("GET", f"/app-passwords?limit=2&cursor={cursor}")
        third = self.api(
            "GET", f"/app-passwords?limit=2&cursor={second.body['next_cursor']}"
        )
        labels += [p["label"] for p in second.body["items"] + third.body["items"]]
        self.assertEqual(labels, ["p0", "p1", "p2", "p3", "p4"])
        self.assertIsNone(third.body["next_cursor"])
        for query in ("limit=0", "limit=501", "limit=x", "cursor=nope", "cursor=="):
            answer = self.api("GET", f"/app-passwords?{query}")
            self.assertEqual(answer.status, 422, query)

    def test_activity_and_two_factor(self) -> None:
        """Activity lists sign-ins (here: none yet); two-factor its state."""
        self.assertEqual(
            self.api("GET", "/activity").body, {"items": [], "next_cursor": None}
        )
        self.assertEqual(self.api("GET", "/two-factor").body, {"state": "off"})


class TokenTests(ApiCase):
    def test_missing_and_wrong_token(self) -> None:
        """No token or a wrong one: 401 with a Bearer challenge; the
        document itself needs none."""
        for token in (None, "zpop_" + "a" * 32, "junk"):
            answer = self.api("GET", "/me", token=token)
            self.assertEqual((answer.status, answer.code), (401, "unauthorized"))
            self.assertEqual(answer.header("www-authenticate"), 'Bearer realm="zpop"')
        self.assertEqual(self.api("GET", "/openapi.json", token=None).status, 200)

    def test_bad_tokens_banned(self) -> None:
        """Bad tokens count as failed logins: the fifth bans the client
        (429), even for a good token, and are audited."""
        with capturedLogs() as events:
            for n in range(5):
                self.api("GET", "/me", token=f"zpop_{'b' * 31}{n}")
        self.assertEqual(self.api("GET", "/me").status, 429)
        failed = [e for e in events if e.get("reason") == "bad token"]
        self.assertEqual(len(failed), 5)
        self.assertEqual(failed[0]["protocol"], "api")

    def test_scopes_and_audiences(self) -> None:
        """A read token cannot change anything; a personal token cannot
        reach /admin, nor an admin token /me."""
        read = self.api(
            "PATCH", "/settings/pop", {"spam": "only"}, token=self.user_read
        )
        self.assertEqual((read.status, read.code), (403, "insufficient_scope"))
        self.assertEqual(self.account().pop.spam, "exclude")
        self.assertEqual(
            self.api("GET", "/settings/pop", token=self.user_read).status, 200
        )
        self.assertEqual(self.api("GET", "/admin/domains").status, 403)
        self.assertEqual(self.api("GET", "/me", token=self.admin_write).status, 403)
        self.assertEqual(
            self.api(
                "POST", "/admin/domains", {"name": "new.example"}, token=self.admin_read
            ).status,
            403,
        )

    def test_last_use_recorded(self) -> None:
        """A token's use is recorded, at most once a minute."""
        self.api("GET", "/me")
        [token] = [
            t
            for t in result(api_tokens.list_tokens(self.store, ALICE))
            if t.label == "script"
        ]
        self.assertEqual(token.last_used, self.clock.seconds())

    def test_changes_audited(self) -> None:
        """Every change is an audit line naming the token's label; reads
        are not."""
        with capturedLogs() as events:
            self.api("GET", "/settings/pop")
            self.api("PATCH", "/settings/pop", {"spam": "only"})
        audit = [e for e in events if "api change" in e.get("log_format", "")]
        self.assertEqual(len(audit), 1)
        self.assertEqual(
            (audit[0]["label"], audit[0]["owner"], audit[0]["status"]),
            ("script", ALICE, 200),
        )


class ProtocolTests(ApiCase):
    def test_unknown_path_and_method(self) -> None:
        """404 and 405 (with Allow) carry the error body."""
        missing = self.api("GET", "/nothing/here")
        self.assertEqual((missing.status, missing.code), (404, "not_found"))
        wrong = self.api("DELETE", "/settings/pop")
        self.assertEqual((wrong.status, wrong.code), (405, "method_not_allowed"))
        self.assertEqual(wrong.header("allow"), "GET, PATCH, HEAD")
        self.assertEqual(self.api("TRACE", "/me").status, 405)

    def test_bodies(self) -> None:
        """Not JSON: 400; not application/json: 415; deep nesting: 400."""
        broken = self.api(
            "PATCH",
            "/settings/pop",
            raw=b"{",
            headers={"content-type": "application/json"},
        )
        self.assertEqual((broken.status, broken.code), (400, "bad_json"))
        plain = self.api(
            "PATCH", "/settings/pop", raw=b"{}", headers={"content-type": "text/plain"}
        )
        self.assertEqual(plain.status, 415)
        deep = self.api(
            "PATCH",
            "/settings/pop",
            raw=b"[" * 15000,
            headers={"content-type": "application/json"},
        )
        self.assertEqual(deep.status, 400)
        latin = self.api(
            "PATCH",
            "/settings/pop",
            raw=b'{"spam": "\xff"}',
            headers={"content-type": "application/json"},
        )
        self.assertEqual(latin.status, 400)

    def test_openapi_lists_every_route(self) -> None:
        """The document names exactly the operations the resource serves."""
        document = self.api("GET", "/openapi.json", token=None).body
        served = {(op.method.lower(), op.path) for op in self.router._api._operations}
        documented = {
            (method, path)
            for path, methods in document["paths"].items()
            for method in methods
        }
        self.assertEqual(documented, served)
        self.assertEqual(document["openapi"], "3.1.0")
        ids = [
            entry["operationId"]
            for methods in document["paths"].values()
            for entry in methods.values()
        ]
        self.assertEqual(len(ids), len(set(ids)))
        linked = {
            link["operationId"]
            for methods in document["paths"].values()
            for entry in methods.values()
            for answer in entry["responses"].values()
            for link in answer.get("links", {}).values()
        }
        self.assertGreater(len(linked), 5)
        self.assertLessEqual(linked, set(ids))


class AdminTests(ApiCase):
    def test_domains_and_accounts(self) -> None:
        """An admin token hosts a domain, creates an account on it with a
        password the rule checks, changes its plan, and deletes it."""
        added = self.api(
            "POST",
            "/admin/domains",
            {"name": "New.Example", "organization": True},
            token=self.admin_write,
        )
        self.assertEqual(
            (added.status, added.body["name"], added.body["organization"]),
            (201, "new.example", True),
        )
        again = self.api(
            "POST", "/admin/domains", {"name": "new.example"}, token=self.admin_write
        )
        self.assertEqual((again.status, again.code), (409, "conflict"))
        weak = self.api(
            "POST",
            "/admin/accounts",
            {"address": "bob@new.example", "password": "password"},
            token=self.admin_write,
        )
        self.assertEqual(weak.status, 422)
        made = self.api(
            "POST",
            "/admin/accounts",
            {
                "address": "bob@new.example",
                "password": "long-and-unusual-9",
                "plan": "free",
            },
            token=self.admin_write,
        )
        self.assertEqual((made.status, made.body["plan"]), (201, "free"))
        self.assertEqual(made.body["organization"], True)
        plan = self.api(
            "PATCH",
            "/admin/accounts/bob@new.example",
            {"plan": "paid"},
            token=self.admin_write,
        )
        self.assertEqual(plan.body["plan"], "paid")
        unhosted = self.api(
            "POST",
            "/admin/accounts",
            {"address": "x@nowhere.example"},
            token=self.admin_write,
        )
        self.assertEqual((unhosted.status, unhosted.code), (422, "not_hosted"))
        listed = self.api("GET", "/admin/accounts", token=self.admin_read)
        self.assertIn("bob@new.example", [a["address"] for a in listed.body["items"]])
        gone = self.api(
            "DELETE", "/admin/accounts/bob@new.example", token=self.admin_write
        )
        self.assertEqual(gone.status, 204)
        self.assertEqual(
            self.api(
                "GET", "/admin/accounts/bob@new.example", token=self.admin_read
            ).status,
            404,
        )

    def test_account_settings_and_two_factor(self) -> None:
        """The operator changes an account's POP settings, requires and
        resets two-factor, and gets a reset link on the web address."""
        pop = self.api(
            "PATCH",
            f"/admin/accounts/{ALICE}/settings/pop",
            {"mode": "all"},
            token=self.admin_write,
        )
        self.assertEqual((pop.status, pop.body["mode"]), (200, "all"))
        queue = self.api(
            "PATCH",
            f"/admin/accounts/{ALICE}/settings/pop",
            {"queue": "per-device"},
            token=self.admin_write,
        )
        self.assertEqual(
            (queue.status, queue.body["queue"], queue.body["mode"]),
            (200, "per-device", "all"),
        )
        self.assertEqual(self.account().pop.queue, "per-device")
        shown = self.api("GET", f"/admin/accounts/{ALICE}", token=self.admin_read)
        self.assertEqual(shown.body["pop"]["queue"], "per-device")
        bad = self.api(
            "PATCH",
            f"/admin/accounts/{ALICE}/settings/pop",
            {"queue": "none"},
            token=self.admin_write,
        )
        self.assertEqual((bad.status, bad.code), (422, "invalid"))
        required = self.api(
            "PATCH",
            f"/admin/accounts/{ALICE}/two-factor",
            {"state": "required"},
            token=self.admin_write,
        )
        self.assertEqual(required.body, {"state": "required"})
        self.assertTrue(self.account().two_factor_required)
        reset = self.api(
            "PATCH",
            f"/admin/accounts/{ALICE}/two-factor",
            {"state": "off"},
            token=self.admin_write,
        )
        self.assertEqual(reset.body, {"state": "off"})
        link = self.api(
            "POST", f"/admin/accounts/{ALICE}/reset-link", token=self.admin_write
        )
        self.assertEqual(link.status, 201)
        self.assertTrue(
            link.body["link"].startswith("https://example.com:8443/reset?token=")
        )
        self.assertEqual(
            self.api(
                "GET",
                "/admin/accounts/not-an-address/two-factor",
                token=self.admin_read,
            ).status,
            404,
        )

    def test_queue(self) -> None:
        """The queue lists (empty here); an unknown id is 404 with the
        queue's words; retry of all answers counts."""
        self.assertEqual(
            self.api("GET", "/admin/queue", token=self.admin_read).body,
            {"items": [], "next_cursor": None},
        )
        missing = self.api("DELETE", "/admin/queue/7", token=self.admin_write)
        self.assertEqual(
            (missing.status, missing.body["error"]["message"]),
            (404, "no queued message 7"),
        )
        retried = self.api("POST", "/admin/queue/retry", token=self.admin_write)
        self.assertEqual((retried.status, retried.body["due"]), (200, 0))


def _cutoff() -> Any:
    import datetime

    return datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


class TokenPageTests(ApiCase):
    def setUp(self) -> None:
        super().setUp()
        self.sign_in()

    def test_create_use_revoke(self) -> None:
        """/settings/api-tokens makes a token shown once in #new-secret,
        of the scope chosen; it works on the API; the list shows it
        without the token; revoking it ends it."""
        answer = self.post(
            "/settings/api-tokens", {"label": "backup script", "scope": "write"}
        )
        match = re.search(r'id="new-secret"[^>]*>(zpop_[a-z0-9]+)<', answer.body)
        assert match is not None, answer.body
        token = match.group(1)
        changed = self.api("PATCH", "/settings/pop", {"spam": "only"}, token=token)
        self.assertEqual(changed.status, 200)
        listing = self.request("GET", "/settings/api-tokens").body
        self.assertIn("backup script", listing)
        self.assertNotIn(token, listing)
        [mine] = [
            t
            for t in result(api_tokens.list_tokens(self.store, ALICE))
            if t.label == "backup script"
        ]
        self.assertEqual(mine.scope, "write")
        revoked = self.post("/settings/api-tokens", {"id": str(mine.id)})
        self.assertIn("was revoked", revoked.body)
        self.assertEqual(self.api("GET", "/me", token=token).status, 401)

    def test_refusals(self) -> None:
        """A bad scope or label is 400; another account's token id or an
        admin token's cannot be revoked here; <script> is inert."""
        bad = self.post("/settings/api-tokens", {"label": "x", "scope": "admin"})
        self.assertEqual((bad.status, "Choose read or write." in bad.body), (400, True))
        empty = self.post("/settings/api-tokens", {"label": "  "})
        self.assertEqual(empty.status, 400)
        admin = result(api_tokens.list_tokens(self.store))[-1]
        self.assertIsNone(admin.address)
        refused = self.post("/settings/api-tokens", {"id": str(admin.id)})
        self.assertEqual(refused.status, 400)
        self.assertIn(
            admin.id, [t.id for t in result(api_tokens.list_tokens(self.store))]
        )
        self.post("/settings/api-tokens", {"label": "<script>alert(1)</script>"})
        body = self.request("GET", "/settings/api-tokens").body
        self.assertIn("&lt;script&gt;", body)
        self.assertNotIn("<script", body)


class AdminParityTests(ApiCase):
    """What ``zpop account passwd``, ``account recovery``, ``alias add``,
    ``imap`` and ``domain dns`` do, through an admin token."""

    def admin(self, method: str, path: str, body: Any = None) -> Json:
        return self.api(method, path, body, token=self.admin_write)

    def test_password_and_recovery(self) -> None:
        """PATCH sets the primary password (the CLI's rule refuses a weak
        one) and the recovery address (not the account's own)."""
        weak = self.admin("PATCH", f"/admin/accounts/{ALICE}", {"password": "password"})
        self.assertEqual(weak.status, 422)
        before = self.account().password_hash
        ok = self.admin(
            "PATCH",
            f"/admin/accounts/{ALICE}",
            {
                "password": "amber kettle 93 north",
                "recovery_address": "me@elsewhere.example",
            },
        )
        self.assertEqual(
            (ok.status, ok.body["recovery_address"]), (200, "me@elsewhere.example")
        )
        self.assertNotEqual(self.account().password_hash, before)
        own = self.admin(
            "PATCH", f"/admin/accounts/{ALICE}", {"recovery_address": ALICE}
        )
        self.assertEqual(own.status, 422)
        self.assertIn("another mailbox", own.body["error"]["message"])

    def test_alias_and_imap(self) -> None:
        """An alias is added (201) and listed; a taken one is 409; IMAP
        access switches with its ETag."""
        added = self.admin(
            "POST", f"/admin/accounts/{ALICE}/aliases", {"alias": "sales@example.com"}
        )
        self.assertEqual(
            (added.status, added.body["aliases"]), (201, ["sales@example.com"])
        )
        taken = self.admin(
            "POST", f"/admin/accounts/{ALICE}/aliases", {"alias": "sales@example.com"}
        )
        self.assertEqual(taken.status, 409)
        imap = self.admin("GET", f"/admin/accounts/{ALICE}/settings/imap")
        off = self.api(
            "PATCH",
            f"/admin/accounts/{ALICE}/settings/imap",
            {"enabled": False},
            token=self.admin_write,
            headers={"if-match": str(imap.header("etag"))},
        )
        self.assertEqual((off.status, off.body), (200, {"enabled": False}))
        self.assertFalse(self.account().imap_enabled)

    def test_domain_dns(self) -> None:
        """The records zpop domain dns prints, as JSON; an unhosted domain
        is 404, with the CLI's words."""
        found = self.admin("GET", "/admin/domains/example.com/dns")
        self.assertEqual(found.status, 200)
        kinds = {r["type"] for r in found.body["records"]}
        self.assertLessEqual({"MX", "TXT", "SRV", "CNAME"}, kinds)
        self.assertIn(
            {
                "name": "example.com.",
                "ttl": 3600,
                "type": "TXT",
                "data": '"v=spf1 mx -all"',
            },
            found.body["records"],
        )
        missing = self.admin("GET", "/admin/domains/nowhere.example/dns")
        self.assertEqual(missing.status, 404)
        self.assertEqual(
            missing.body["error"]["message"], "nowhere.example is not a hosted domain"
        )
