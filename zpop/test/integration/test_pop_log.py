"""The POP download log and LOGIN-DELAY on the real server: mpop fetches
with an app password, then ``zpop pop log``, ``GET /api/v1/pop/downloads``
and ``/settings/downloads`` list its RETRs and DELEs; poplib over TLS meets
an enforced LOGIN-DELAY."""

from __future__ import annotations

import json
import os
import poplib
import urllib.request

from twisted.trial.unittest import TestCase

from zpop.test.harness import HOSTNAME, start_server
from zpop.test.integration.test_pop3 import POP3Client
from zpop.test.integration.test_web import ADDRESS, PASSWORD, Browser
from zpop.test.mail_clients import run_mpop
from zpop.test.tools import require_tool


class PopLogServerTests(TestCase):
    def test_mpop_downloads_listed(self) -> None:
        """mpop with an app password (keep off): two RETRs and two DELEs,
        labelled with the app password and 127.0.0.1, in all three views."""
        mpop = require_tool("mpop")
        server = start_server(self, listeners={"pop3": "", "submission": "", "mx": ""})
        server.zpop("domain", "add", HOSTNAME)
        server.add_account(ADDRESS, PASSWORD)
        server.zpop("pop", "enable", ADDRESS, "--mode", "all")
        server.zpop("pop", "deletion", ADDRESS, "delete")
        secret = server.zpop(
            "app-password", "create", ADDRESS, "--label", "laptop"
        ).strip()
        for subject in ("log one", "log two"):
            message = f"From: a@example.org\nSubject: {subject}\n\nbody\n"
            server.zpop("deliver", ADDRESS, stdin=message.encode())
        mbox = os.path.join(server.dir, "fetched.mbox")
        done = run_mpop(server, mpop, ADDRESS, secret, mbox)
        self.assertEqual(done.returncode, 0, done.stderr.decode())

        lines = server.zpop("pop", "log", ADDRESS).splitlines()
        self.assertEqual(
            lines[0].split(),
            ["TIME", "DEVICE", "CLIENT", "MESSAGE", "ACTION", "SUBJECT"],
        )
        self.assertEqual(len(lines), 5, lines)
        for line in lines[1:]:
            self.assertIn("  app password laptop  127.0.0.1  ", line)
        actions = sorted((line.split()[-3], line.split()[-1]) for line in lines[1:])
        self.assertEqual(
            actions,
            [("dele", "one"), ("dele", "two"), ("retr", "one"), ("retr", "two")],
        )

        token = server.zpop("api-token", "create", ADDRESS, "--label", "t").strip()
        context = server.ssl_context()
        context.check_hostname = False
        request = urllib.request.Request(
            f"https://127.0.0.1:{server.ports['web']}/api/v1/pop/downloads",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, context=context, timeout=30) as r:
            page = json.loads(r.read())
        self.assertEqual(
            sorted((i["action"], i["subject"]) for i in page["items"]),
            [
                ("dele", "log one"),
                ("dele", "log two"),
                ("retr", "log one"),
                ("retr", "log two"),
            ],
        )
        self.assertEqual(
            {(i["device"], i["client"]) for i in page["items"]},
            {("app password laptop", "127.0.0.1")},
        )

        browser = Browser(server)
        status, _, _ = browser.post(
            "/login", {"address": ADDRESS, "password": PASSWORD}
        )
        self.assertEqual(status, 303)
        status, _, html = browser.request("GET", "/settings/downloads")
        self.assertEqual(status, 200)
        table = html[html.index('id="downloads"') :]
        self.assertEqual(table.count("app password “laptop”"), 4)
        self.assertEqual(table.count("<td>127.0.0.1</td>"), 4)
        self.assertEqual(table.count("<td>deleted</td>"), 2)
        self.assertEqual(table.count("<td>downloaded</td>"), 2)

    def test_login_delay_with_poplib(self) -> None:
        """An enforced LOGIN-DELAY is advertised and refuses a second login
        with [LOGIN-DELAY] once the password was verified."""
        server = start_server(
            self,
            listeners={"pop3": "", "submission": "", "mx": ""},
            settings={"pop": {"login_delay_free": "3600", "login_delay_paid": "3600"}},
        )
        server.zpop("domain", "add", HOSTNAME)
        server.add_account(ADDRESS, PASSWORD)
        server.zpop("pop", "enable", ADDRESS, "--mode", "all")
        client = POP3Client(server)
        self.assertEqual(client.capa()["LOGIN-DELAY"], ["3600"])
        client.user(ADDRESS)
        client.pass_(PASSWORD)
        self.assertEqual(client.capa()["LOGIN-DELAY"], ["3600"])
        client.quit()
        client = POP3Client(server)
        try:
            client.user(ADDRESS)
            with self.assertRaises(poplib.error_proto) as caught:
                client.pass_(PASSWORD)
        finally:
            client.close()
        self.assertTrue(
            caught.exception.args[0].startswith(b"-ERR [LOGIN-DELAY] "),
            caught.exception.args[0],
        )
