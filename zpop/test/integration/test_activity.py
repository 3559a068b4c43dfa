"""Sign-in activity on the real server: POP3S logins (a wrong password, an
app password) and a web sign-in, then ``/settings/activity`` over HTTPS
lists them with their protocol, credential label and result."""

from __future__ import annotations

import re
import socket
import time

from twisted.trial.unittest import TestCase

from zpop.test.harness import HOSTNAME, ZpopServer, start_server
from zpop.test.integration.test_web import ADDRESS, PASSWORD, Browser


def pop_login(server: ZpopServer, secret: str) -> bytes:
    """The reply to PASS on a POP3S connection."""
    raw = socket.create_connection(("127.0.0.1", server.ports["pop3s"]), timeout=30)
    with server.ssl_context().wrap_socket(raw, server_hostname=f"pop.{HOSTNAME}") as s:
        stream = s.makefile("rwb")
        stream.readline()
        stream.write(f"USER {ADDRESS}\r\nPASS {secret}\r\n".encode())
        stream.flush()
        stream.readline()
        reply = stream.readline()
        stream.write(b"QUIT\r\n")
        stream.flush()
        stream.readline()
    return reply


def rows(page: str) -> list[list[str]]:
    """The cells of the rows of ``id="activity"``'s body."""
    table = page[page.index('id="activity"') :]
    body = table[table.index("<tbody>") : table.index("</tbody>")]
    return [
        re.findall(r"<td>(.*?)</td>", row)
        for row in re.findall(r"<tr>(.*?)</tr>", body)
    ]


class ActivityServerTests(TestCase):
    def test_pop_and_web_listed(self) -> None:
        """Two POP3S logins and one web sign-in are listed, newest first."""
        server = start_server(self, listeners={"pop3": "", "submission": "", "mx": ""})
        server.zpop("domain", "add", HOSTNAME)
        server.add_account(ADDRESS, PASSWORD)
        server.zpop("pop", "enable", ADDRESS, "--mode", "all")
        secret = server.zpop(
            "app-password", "create", ADDRESS, "--label", "<b>Thunderbird</b>"
        ).strip()
        self.assertEqual(pop_login(server, "not the password")[:4], b"-ERR")
        self.assertEqual(pop_login(server, secret)[:3], b"+OK")
        browser = Browser(server)
        status, _, _ = browser.post(
            "/login", {"address": ADDRESS, "password": PASSWORD}
        )
        self.assertEqual(status, 303)
        deadline = time.monotonic() + 10
        while True:
            status, _, page = browser.request("GET", "/settings/activity")
            found = rows(page)
            if len(found) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(status, 200)
        self.assertEqual(
            [cells[1:] for cells in found],
            [
                ["Web", "127.0.0.1", "primary password", "succeeded"],
                [
                    "POP3",
                    "127.0.0.1",
                    "app password “&lt;b&gt;Thunderbird&lt;/b&gt;”",
                    "succeeded",
                ],
                ["POP3", "127.0.0.1", "-", "failed: wrong password"],
            ],
        )
        self.assertRegex(found[0][0], r"^\d{4}-\d\d-\d\d \d\d:\d\d UTC$")
