"""Forgot password on the real server: the link ``zpop account reset-link``
prints opened over HTTPS (http.client, as test_web does), the password set
there accepted by POP3S, the link good once, and no token in the log."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from twisted.trial.unittest import TestCase

from zpop.test.harness import HOSTNAME, ZpopServer, start_server
from zpop.test.integration.test_web import CSRF, Browser

ADDRESS = f"carol@{HOSTNAME}"
NEW = "violet lantern orbit 42"


class ResetLinkServerTests(TestCase):
    def server(self) -> ZpopServer:
        server = start_server(self, listeners={"pop3": "", "submission": "", "mx": ""})
        server.zpop("domain", "add", HOSTNAME)
        # Federated: no primary password; the link is its way to a first one.
        server.zpop("account", "add", ADDRESS, "--federated")
        server.zpop("pop", "enable", ADDRESS, "--mode", "all")
        return server

    def pop3s_login(self, server: ZpopServer, password: str) -> list[bytes]:
        raw = socket.create_connection(("127.0.0.1", server.ports["pop3s"]), timeout=30)
        with server.ssl_context().wrap_socket(
            raw, server_hostname=f"pop.{HOSTNAME}"
        ) as s:
            stream = s.makefile("rwb")
            stream.readline()
            stream.write(f"USER {ADDRESS}\r\nPASS {password}\r\n".encode())
            stream.flush()
            return [stream.readline()[:3], stream.readline()[:3]]

    def test_reset_link_over_https(self) -> None:
        server = self.server()
        link = server.zpop("account", "reset-link", ADDRESS).strip()
        url = urlsplit(link)
        self.assertEqual(
            (url.scheme, url.hostname, url.path), ("https", HOSTNAME, "/reset")
        )
        token = url.query.partition("=")[2]
        target = f"{url.path}?{url.query}"
        browser = Browser(server)
        status, _, page = browser.request("GET", target)
        self.assertEqual(status, 200)
        match = CSRF.search(page)
        assert match is not None, page
        form = {
            "csrf": match.group(1),
            "token": token,
            "new_password": NEW,
            "confirm_password": NEW,
        }
        status, headers, _ = browser.request("POST", "/reset", form)
        self.assertEqual((status, headers["location"]), (303, ["/login?reset=1"]))
        self.assertEqual(self.pop3s_login(server, NEW), [b"+OK", b"+OK"])
        # Once only: the same link is now the generic page, and the form too.
        status, _, page = browser.request("GET", target)
        self.assertEqual(status, 400)
        self.assertIn("invalid or has expired", page)
        status, _, _ = browser.request("POST", "/reset", form)
        self.assertEqual(status, 400)
        # Signing in to the web works with it as well.
        status, headers, _ = browser.post(
            "/login", {"address": ADDRESS, "password": NEW}
        )
        self.assertEqual((status, headers["location"]), (303, ["/settings"]))
        log = server.log_text()
        self.assertIn("web GET /reset 200", log)
        self.assertNotIn(token, log)
        self.assertNotIn(NEW, log)

    def test_forgot_form_over_https(self) -> None:
        """The form answers the same for a known and an unknown address;
        with a hosted recovery address the link lands in its Inbox."""
        server = self.server()
        server.add_account(f"dave@{HOSTNAME}", "correct horse battery")
        server.zpop("account", "recovery", ADDRESS, f"dave@{HOSTNAME}")
        browser = Browser(server)
        known = browser.post("/login/forgot", {"address": ADDRESS})
        unknown = browser.post("/login/forgot", {"address": f"nobody@{HOSTNAME}"})
        self.assertEqual((known[0], unknown[0]), (200, 200))
        self.assertEqual(known[2], unknown[2])
        listing = server.zpop("messages", f"dave@{HOSTNAME}")
        self.assertIn(f"Set your password for {ADDRESS}", listing)
