"""The web settings on the real server: the ``web`` listener over real
TLS, driven with Python's http.client trusting the server's self-signed
certificate, its changes seen by ``zpop account show`` and by POP."""

from __future__ import annotations

import http.client
import re
import socket
import ssl
from typing import Any
from urllib.parse import urlencode

from twisted.trial.unittest import TestCase

from zpop.test.harness import HOSTNAME, ZpopServer, start_server
from zpop.test.integration.test_workers import wait_for
from zpop.test.stores import make_sqlite_store
from zpop.test.unit import test_web_pages as unit

ADDRESS = f"alice@{HOSTNAME}"
PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


class Browser:
    """Just enough of a browser: one TLS connection per request, cookies
    kept by name."""

    def __init__(self, server: ZpopServer, port: int | None = None) -> None:
        self.server = server
        self.port = port or server.ports["web"]
        self.cookies: dict[str, str] = {}

    def connect(self) -> ssl.SSLSocket:
        """A TLS connection to the web listener, handshake done."""
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        return self.server.ssl_context().wrap_socket(raw, server_hostname=HOSTNAME)

    def request(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        tls: ssl.SSLSocket | None = None,
    ) -> tuple[int, dict[str, list[str]], str]:
        conn = http.client.HTTPSConnection(HOSTNAME, self.port, timeout=30)
        conn.sock = tls or self.connect()
        headers = {"Accept-Language": "en"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            text = response.read().decode("utf-8")
            found: dict[str, list[str]] = {}
            for name, value in response.getheaders():
                found.setdefault(name.lower(), []).append(value)
        finally:
            conn.close()
        for cookie in found.get("set-cookie", []):
            name, _, rest = cookie.partition("=")
            if "Max-Age=0" in cookie:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = rest.split(";", 1)[0]
        return response.status, found, text

    def post(
        self, path: str, form: dict[str, str]
    ) -> tuple[int, dict[str, list[str]], str]:
        _, _, page = self.request("GET", path.split("?")[0])
        match = CSRF.search(page)
        assert match is not None, page
        return self.request("POST", path, {**form, "csrf": match.group(1)})


class WebServerTests(TestCase):
    def server(self, **kwargs: Any) -> ZpopServer:
        server = start_server(self, **kwargs)
        server.zpop("domain", "add", HOSTNAME)
        server.add_account(ADDRESS, PASSWORD)
        return server

    def test_sign_in_and_change_pop(self) -> None:
        """Over HTTPS: sign in, set POP to "from now on" with Spam included
        and deletion to Trash; `zpop account show` shows it, and the next
        POP3S login is let in."""
        server = self.server(listeners={"pop3": "", "submission": "", "mx": ""})
        browser = Browser(server)
        status, headers, _ = browser.request("GET", "/")
        self.assertEqual((status, headers["location"]), (302, ["/login"]))
        status, headers, _ = browser.post(
            "/login", {"address": ADDRESS, "password": PASSWORD}
        )
        (cookie,) = [c for c in headers["set-cookie"] if c.startswith("__Host-zpop=")]
        self.assertEqual(
            (
                status,
                headers["location"],
                "; Secure; HttpOnly; SameSite=Strict; Path=/" in cookie,
            ),
            (303, ["/settings"], True),
        )
        status, headers, page = browser.request("GET", "/settings/pop")
        self.assertEqual(
            (status, headers["cache-control"], headers["strict-transport-security"]),
            (200, ["no-store"], ["max-age=31536000; includeSubDomains"]),
        )
        self.assertIn("Disabled", page)
        status, headers, _ = browser.post(
            "/settings/pop", {"pop": "new", "spam": "include", "deletion": "delete"}
        )
        self.assertEqual(
            (status, headers["location"]), (303, ["/settings/pop?saved=1"])
        )
        shown = server.zpop("account", "show", ADDRESS)
        self.assertIn("POP access:        enabled, mode new (mail received from", shown)
        self.assertIn("include (POP offers the Inbox and Spam)", shown)
        self.assertIn(
            "delete (a message deleted by a POP client moves to Trash)", shown
        )
        raw = socket.create_connection(("127.0.0.1", server.ports["pop3s"]), timeout=30)
        with server.ssl_context().wrap_socket(
            raw, server_hostname=f"pop.{HOSTNAME}"
        ) as s:
            stream = s.makefile("rwb")
            stream.readline()
            stream.write(f"USER {ADDRESS}\r\nPASS {PASSWORD}\r\n".encode())
            stream.flush()
            replies = [stream.readline(), stream.readline()]
        self.assertEqual([r[:3] for r in replies], [b"+OK", b"+OK"])
        self.assertIn("login succeeded protocol=web", server.log_text())
        self.assertNotIn(PASSWORD, server.log_text())

    def test_workers_share_sessions(self) -> None:
        """With two processes on the listener, both serve it, and a session
        started on one connection is known on every later one, whichever
        process serves it (sessions live in the store)."""
        server = self.server(
            # 20 connections at once, beyond the default per-client share.
            settings={
                "server": {"workers": "2"},
                "auth": {"max_connections_per_client": "100"},
            },
            listeners={"pop3": "", "submission": "", "mx": "", "smtps": ""},
        )
        browser = Browser(server)
        status, _, _ = browser.post(
            "/login", {"address": ADDRESS, "password": PASSWORD}
        )
        self.assertEqual(status, 303)
        # Opened at once, so both processes' accept loops get some.
        connections = [browser.connect() for _ in range(20)]
        statuses = [
            browser.request("GET", "/settings/pop", tls=tls)[0] for tls in connections
        ]
        self.assertEqual(statuses, [200] * 20)

        def lines() -> list[str]:
            return [
                line
                for line in server.log_text(current=True).splitlines()
                if "web GET /settings/pop 200" in line
            ]

        # A worker's log lines reach the main process's log through a pipe.
        wait_for(lambda: len(lines()) >= 20)
        found = lines()
        by_worker = [line for line in found if "[worker 1: " in line]
        self.assertEqual(len(found), 20)
        self.assertGreater(len(by_worker), 0)
        self.assertLess(len(by_worker), 20)

    def test_body_too_large(self) -> None:
        """A request body over the limit is refused with 413."""
        server = self.server(listeners={"pop3": "", "submission": "", "mx": ""})
        browser = Browser(server)
        status, _, _ = browser.request("POST", "/login", {"address": "x" * 40000})
        self.assertEqual(status, 413)


class SQLiteSessionStoreTests(unit.SessionStoreTests):
    """The web session tests on a SQLite file (its table, ON DELETE CASCADE)."""

    def make_store(self) -> Any:
        store = make_sqlite_store(self.mktemp())
        self.addCleanup(store.close)
        return store
