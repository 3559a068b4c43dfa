"""Client autoconfiguration on the real server: Thunderbird's autoconfig,
Outlook's POX Autodiscover and the MTA-STS policy over the ``web``
listener's real TLS, with the policy's id as ``zpop domain dns`` prints it."""

from __future__ import annotations

import http.client
import socket
import xml.etree.ElementTree as ET

from twisted.trial.unittest import TestCase

from zpop.accounts.dns_records import mta_sts_id
from zpop.test.harness import HOSTNAME, ZpopServer, start_server
from zpop.test.unit.test_autoconfig import RESPONSE, pox, protocols, servers

ORGANIZATION = "corp.test"


def fetch(
    server: ZpopServer,
    method: str,
    path: str,
    body: bytes | None = None,
    host: str | None = None,
) -> tuple[int, str, bytes]:
    """(status, content type, body) of one HTTPS request, certificate and
    host name checked."""
    raw = socket.create_connection(("127.0.0.1", server.ports["web"]), timeout=30)
    tls = server.ssl_context().wrap_socket(raw, server_hostname=HOSTNAME)
    conn = http.client.HTTPSConnection(HOSTNAME, server.ports["web"], timeout=30)
    conn.sock = tls
    headers = {"Content-Type": "text/xml"} if body is not None else {}
    if host is not None:
        headers["Host"] = host
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    return response.status, response.getheader("content-type") or "", data


class AutoconfigServerTests(TestCase):
    """A server without IMAP listeners: the documents offer POP3 alone
    (IMAP first when served is tested in zpop.test.unit.test_autoconfig)."""

    def setUp(self) -> None:
        self.server = start_server(
            self,
            listeners={"pop3": "", "imaps": "", "imap": "", "submission": "", "mx": ""},
        )
        self.server.zpop("domain", "add", HOSTNAME)
        self.server.zpop("domain", "add", ORGANIZATION, "--organization")
        self.server.add_account(f"alice@{HOSTNAME}", "correct horse battery")

    def test_thunderbird(self) -> None:
        """Both Thunderbird paths answer over HTTPS: POP3 (IMAP is off) on the
        host of the domain's kind, SMTP 465 and 587; an unknown address of a hosted
        domain gets the account's bytes, an unhosted domain 404."""
        path = "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress="
        status, kind, alice = fetch(self.server, "GET", f"{path}alice@{HOSTNAME}")
        _, _, nobody = fetch(self.server, "GET", f"{path}nobody@{HOSTNAME}")
        _, _, corp = fetch(
            self.server,
            "GET",
            f"/mail/config-v1.1.xml?emailaddress=bob@{ORGANIZATION}",
        )
        missing = fetch(self.server, "GET", f"{path}alice@example.org")[0]
        root = ET.fromstring(alice)
        self.assertEqual(
            (status, kind, alice == nobody, missing),
            (200, "application/xml; charset=utf-8", True, 404),
        )
        self.assertEqual(
            [s[:4] for s in servers(root, "incomingServer")],
            [("pop3", f"pop.{HOSTNAME}", "995", "SSL")],
        )
        self.assertEqual(
            [s[:4] for s in servers(root, "outgoingServer")],
            [
                ("smtp", f"smtp.{HOSTNAME}", "465", "SSL"),
                ("smtp", f"smtp.{HOSTNAME}", "587", "STARTTLS"),
            ],
        )
        self.assertEqual(
            [s[1] for s in servers(ET.fromstring(corp), "incomingServer")],
            [f"poppro.{HOSTNAME}"],
        )

    def test_outlook(self) -> None:
        """Outlook's POX request, both casings, gets the 2006a settings (POP3,
        IMAP being off, and SMTP); a body that is not one gets 400."""
        for path in (
            "/autodiscover/autodiscover.xml",
            "/Autodiscover/Autodiscover.xml",
        ):
            status, kind, body = fetch(
                self.server, "POST", path, pox(f"bob@{ORGANIZATION}")
            )
            found = protocols(ET.fromstring(body))
            self.assertEqual(
                (
                    status,
                    kind,
                    [(p["Type"], p["Server"], p["Port"], p["SSL"]) for p in found],
                    {p["LoginName"] for p in found},
                ),
                (
                    200,
                    "application/xml; charset=utf-8",
                    [
                        ("POP3", f"poppro.{HOSTNAME}", "995", "on"),
                        ("SMTP", f"smtp.{HOSTNAME}", "465", "on"),
                        ("SMTP", f"smtp.{HOSTNAME}", "587", "off"),
                    ],
                    {f"bob@{ORGANIZATION}"},
                ),
                path,
            )
        status, _, body = fetch(self.server, "POST", path, b"<not-pox/>")
        code = ET.fromstring(body).findtext(
            f"{RESPONSE}Response/{RESPONSE}Error/{RESPONSE}ErrorCode"
        )
        self.assertEqual((status, code), (400, "600"))

    def test_mta_sts(self) -> None:
        """The policy is served on mta-sts.<hosted domain> only, and its id
        is the one ``zpop domain dns`` publishes."""
        status, kind, policy = fetch(
            self.server, "GET", "/.well-known/mta-sts.txt", host=f"mta-sts.{HOSTNAME}"
        )
        other = fetch(self.server, "GET", "/.well-known/mta-sts.txt")[0]
        self.assertEqual(
            (status, kind, policy.split(b"\r\n")[:3], other),
            (
                200,
                "text/plain; charset=utf-8",
                [b"version: STSv1", b"mode: testing", f"mx: smtp.{HOSTNAME}".encode()],
                404,
            ),
        )
        printed = self.server.zpop("domain", "dns", HOSTNAME)
        self.assertIn(
            f'_mta-sts.{HOSTNAME}. 3600 IN TXT "v=STSv1;'
            f' id={mta_sts_id(policy.decode())}"',
            printed,
        )
