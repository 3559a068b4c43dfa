"""The settings API on the real server: tokens made by ``zpop api-token``,
JSON over HTTPS with urllib, the change seen by ``zpop account show`` and
the next POP3S session, the OpenAPI document validated with
openapi-spec-validator, and the whole API fuzzed by schemathesis (a bounded
number of examples per operation) with a user and an admin token: no 5xx,
and every status, header, content type and body as the document says."""

from __future__ import annotations

import json
import os
import poplib
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

from twisted.trial.unittest import TestCase

from zpop.test.harness import HOSTNAME, ZpopServer, start_server

ADDRESS = f"dana@{HOSTNAME}"
PASSWORD = "quartz meadow 71 lamp"
#: Examples schemathesis makes per operation and phase: enough to reach
#: every branch the schema describes, bounded for the suite's time.
EXAMPLES = "15"
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    )
)


class ApiServerTests(TestCase):
    def setUp(self) -> None:
        self.server: ZpopServer = start_server(
            self, listeners={"pop3": "", "submission": "", "mx": "", "smtps": ""}
        )
        self.server.zpop("domain", "add", HOSTNAME)
        self.server.add_account(ADDRESS, PASSWORD)
        self.base = f"https://127.0.0.1:{self.server.ports['web']}/api/v1"
        self.context = self.server.ssl_context()
        self.context.check_hostname = False

    def token(self, *args: str) -> str:
        return self.server.zpop("api-token", "create", *args).strip()

    def call(
        self, method: str, path: str, token: str | None, body: Any = None
    ) -> tuple[int, Any, dict[str, str]]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=30) as r:
                raw, status, headers = r.read(), r.status, dict(r.headers)
        except urllib.error.HTTPError as e:
            raw, status, headers = e.read(), e.code, dict(e.headers)
        return status, json.loads(raw) if raw else None, headers

    def test_pop_on_with_a_token(self) -> None:
        """A write token turns POP on "from now on" with Spam included; the
        CLI shows it and POP3S takes the password; a read token may look
        but not change."""
        write = self.token(ADDRESS, "--scope", "write", "--label", "script")
        read = self.token(ADDRESS, "--label", "monitor")
        refused, body, _ = self.call("PATCH", "/settings/pop", read, {"mode": "all"})
        self.assertEqual((refused, body["error"]["code"]), (403, "insufficient_scope"))
        status, body, headers = self.call(
            "PATCH",
            "/settings/pop",
            write,
            {"enabled": True, "mode": "new", "spam": "include"},
        )
        self.assertEqual((status, body["mode"], body["spam"]), (200, "new", "include"))
        self.assertTrue(headers["ETag"].startswith('"'))
        shown = self.server.zpop("account", "show", ADDRESS)
        self.assertIn("POP access:        enabled, mode new", shown)
        self.assertIn("POP spam:          include", shown)
        pop = poplib.POP3_SSL(
            "127.0.0.1", self.server.ports["pop3s"], context=self.context, timeout=30
        )
        try:
            pop.user(ADDRESS)
            self.assertTrue(pop.pass_(PASSWORD).startswith(b"+OK"))
        finally:
            pop.quit()
        # No token reads mail: POP3S refuses one as a password.
        pop = poplib.POP3_SSL(
            "127.0.0.1", self.server.ports["pop3s"], context=self.context, timeout=30
        )
        try:
            pop.user(ADDRESS)
            with self.assertRaises(poplib.error_proto):
                pop.pass_(write)
        finally:
            pop.close()
        self.assertEqual(self.call("GET", "/settings/pop", read)[1], body)
        self.assertEqual(self.call("GET", "/me", None)[0], 401)
        self.assertIn(
            "api change PATCH /api/v1/settings/pop status=200 token=script",
            self.server.log_text(),
        )

    def test_openapi_document_validates(self) -> None:
        """The served document is valid OpenAPI 3.1."""
        from openapi_spec_validator import validate

        status, document, _ = self.call("GET", "/openapi.json", None)
        self.assertEqual(status, 200)
        validate(document)
        self.assertEqual(document["openapi"], "3.1.0")

    def fuzz(self, token: str, *selection: str) -> None:
        """schemathesis against the real server: it exits 0 only if every
        check held for every generated request."""
        ca = os.path.join(self.server.dir, "ca.pem")
        with open(ca, "w", encoding="ascii") as f:
            f.write(self.server.certificate_pem())
        st = os.path.join(os.path.dirname(sys.executable), "st")
        run = subprocess.run(
            [
                st,
                "run",
                f"{self.base.replace('127.0.0.1', 'localhost')}/openapi.json",
                "--header",
                f"Authorization: Bearer {token}",
                "--tls-verify",
                ca,
                "--checks",
                CHECKS,
                "--max-examples",
                EXAMPLES,
                "--workers",
                "1",
                "--seed",
                "1",
                "--no-color",
                "--generation-database",
                "none",
                *selection,
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=self.server.dir,
        )
        self.assertEqual(run.returncode, 0, run.stdout[-6000:] + run.stderr[-2000:])
        # A traceback in the server's log fails the test at cleanup.
        self.assertIn("passed", run.stdout)

    def test_fuzz_user_operations(self) -> None:
        """The user's operations, with a personal write token."""
        self.fuzz(
            self.token(ADDRESS, "--scope", "write", "--label", "fuzz"),
            "--exclude-path-regex",
            "^/admin",
        )

    def test_fuzz_admin_operations(self) -> None:
        """The operator's operations, with an admin write token."""
        self.fuzz(
            self.token("--admin", "--scope", "write", "--label", "fuzz"),
            "--include-path-regex",
            "^/admin",
        )
