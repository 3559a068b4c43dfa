"""SPF, DKIM and DMARC on the real MX: a twisted.names DNS server on
loopback holds the records (``[dns] resolver`` points at it), mail comes
in with smtplib, and ``zpop messages`` and POP show where it went and the
Authentication-Results field it got."""

from __future__ import annotations

import smtplib
import time

import dkim
from twisted.trial.unittest import TestCase

from zpop.test.dkim_keys import ed25519_key, rsa_key
from zpop.test.dns_server import DnsServer
from zpop.test.harness import HOSTNAME, start_server
from zpop.test.integration.test_dkim import dkim_records
from zpop.test.integration.test_pop3 import POP3Client

BOB = f"bob@{HOSTNAME}"
PASSWORD = "correct horse battery staple 42"


class InboundAuthenticationTests(TestCase):
    def setUp(self) -> None:
        self.dns = DnsServer(self.mktemp())
        self.addCleanup(self.dns.stop)
        self.server = start_server(
            self,
            listeners={"pop3": "", "smtps": "", "submission": "", "web": ""},
            settings={"dns": {"resolver": self.dns.address, "timeout": "2"}},
        )
        self.server.zpop("domain", "add", HOSTNAME)
        self.server.add_account(BOB, PASSWORD)
        self.server.zpop("pop", "enable", BOB, "--mode", "all")
        self.server.zpop("pop", "spam", BOB, "include")
        # The test client connects from 127.0.0.1.
        self.dns.add("good.example", "TXT", "v=spf1 ip4:127.0.0.1 -all")
        self.dns.add("_dmarc.good.example", "TXT", "v=DMARC1; p=reject")
        self.dns.add("strict.example", "TXT", "v=spf1 -all")
        self.dns.add("_dmarc.strict.example", "TXT", "v=DMARC1; p=reject")
        self.dns.add("careful.example", "TXT", "v=spf1 -all")
        self.dns.add("_dmarc.careful.example", "TXT", "v=DMARC1; p=quarantine")

    def send(self, sender: str, body: bytes) -> None:
        client = smtplib.SMTP("127.0.0.1", self.server.ports["mx"], timeout=30)
        try:
            client.ehlo("client.good.example")
            client.sendmail(sender, [BOB], body)
        finally:
            client.close()

    def refused(self, sender: str, body: bytes) -> tuple[int, bytes]:
        try:
            self.send(sender, body)
        except smtplib.SMTPDataError as e:
            return e.smtp_code, e.smtp_error
        raise AssertionError("the message was accepted")

    def fetched(self) -> list[tuple[str, bytes]]:
        """(folder, header section) of each message, via zpop messages and
        POP (spam included)."""
        lines = self.server.zpop("messages", BOB).splitlines()[1:]
        folders = [line.split()[1] for line in lines]
        client = POP3Client(self.server, f"pop.{HOSTNAME}")
        try:
            client.user(BOB)
            client.pass_(PASSWORD)
            count = len(client.list()[1])
            headers = [b"\r\n".join(client.top(n, 0)[1]) for n in range(1, count + 1)]
            client.quit()
        finally:
            client.close()
        return list(zip(folders, headers, strict=True))

    def message(self, sender: str, subject: str, extra: bytes = b"") -> bytes:
        return (
            f"From: {sender}\r\nTo: {BOB}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@test>\r\n".encode()
            + extra
            + b"\r\nhello\r\n"
        )

    def test_spf_pass_and_results_field(self) -> None:
        """SPF pass aligned with From passes DMARC: Inbox, with our
        Authentication-Results field on top and a forged one removed."""
        forged = f"Authentication-Results: {HOSTNAME}; dmarc=pass\r\n".encode()
        other = b"Authentication-Results: elsewhere.example; spf=fail\r\n"
        self.send(
            "ann@good.example",
            forged + other + self.message("ann@good.example", "good"),
        )
        [(folder, header)] = self.fetched()
        self.assertEqual(folder, "Inbox")
        self.assertTrue(
            header.startswith(f"Authentication-Results: {HOSTNAME};".encode()), header
        )
        self.assertIn(b"spf=pass smtp.mailfrom=good.example", header)
        self.assertIn(
            b"dmarc=pass (p=reject dis=none) header.from=good.example", header
        )
        self.assertEqual(
            header.count(f"Authentication-Results: {HOSTNAME}".encode()), 1
        )
        self.assertIn(other.rstrip(), header)

    def test_dmarc_reject_and_quarantine(self) -> None:
        """p=reject failing: 550 5.7.1 and nothing stored; p=quarantine
        failing: the Spam folder."""
        code, text = self.refused(
            "x@strict.example", self.message("x@strict.example", "no")
        )
        self.assertEqual(code, 550)
        self.assertIn(b"5.7.1", text)
        self.send("x@careful.example", self.message("x@careful.example", "maybe"))
        [(folder, header)] = self.fetched()
        self.assertEqual(folder, "Spam")
        self.assertIn(b"dmarc=fail (p=quarantine dis=quarantine)", header)

    def test_dkim_rsa_and_ed25519(self) -> None:
        """Both kinds of signature are verified; an aligned DKIM pass
        passes DMARC where SPF fails."""
        rsa_private, rsa_public = rsa_key()
        ed_private, ed_public = ed25519_key()
        self.dns.add("r1._domainkey.strict.example", "TXT", rsa_public)
        self.dns.add("e1._domainkey.strict.example", "TXT", ed_public)
        body = self.message("x@strict.example", "signed")
        first = dkim.sign(body, b"r1", b"strict.example", rsa_private, linesep=b"\r\n")
        second = dkim.sign(
            body,
            b"e1",
            b"strict.example",
            ed_private,
            signature_algorithm=b"ed25519-sha256",
            linesep=b"\r\n",
        )
        self.send("x@strict.example", first + second + body)
        [(folder, header)] = self.fetched()
        self.assertEqual(folder, "Inbox")
        self.assertIn(b"dkim=pass header.d=strict.example header.s=r1", header)
        self.assertIn(b"dkim=pass header.d=strict.example header.s=e1", header)
        self.assertIn(b"spf=fail", header)
        self.assertIn(b"dmarc=pass", header)

    def test_forged_hosted_from(self) -> None:
        """From: a hosted address, sent from outside: never the Inbox."""
        self.send("x@good.example", self.message(BOB, "forged"))
        [(folder, header)] = self.fetched()
        self.assertEqual(folder, "Spam")
        self.assertIn(f"header.from={HOSTNAME}".encode(), header)

    def test_dns_timeout(self) -> None:
        """No answer for the DMARC record: 451 4.4.3, and once DNS answers
        the retry is delivered."""
        self.dns.silent.append("_dmarc.slow.example")
        self.dns.add("slow.example", "TXT", "v=spf1 -all")
        self.dns.write()
        code, text = self.refused(
            "x@slow.example", self.message("x@slow.example", "slow")
        )
        self.assertEqual((code, text[:5]), (451, b"4.4.3"))
        self.dns.silent.clear()
        self.dns.write()
        self.send("x@slow.example", self.message("x@slow.example", "slow"))
        [(folder, header)] = self.fetched()
        self.assertEqual(folder, "Inbox")
        self.assertIn(b"dmarc=none", header)


class ZpopToZpopTests(TestCase):
    """One zpop signs what bob submits; another zpop's MX, asking a DNS
    server that publishes the first one's keys, verifies both signatures
    and passes DMARC on them alone (the sender's SPF fails)."""

    timeout = 180

    def test_signed_mail_passes_at_the_receiving_mx(self) -> None:
        dns = DnsServer(self.mktemp())
        self.addCleanup(dns.stop)
        receiver = start_server(
            self,
            listeners={"pop3": "", "smtps": "", "submission": "", "web": ""},
            settings={
                "server": {"hostname": "mx.remote.example"},
                "dns": {"resolver": dns.address},
            },
        )
        receiver.zpop("domain", "add", "remote.example")
        receiver.add_account("ann@remote.example", PASSWORD)
        sender = start_server(
            self,
            listeners={"pop3": "", "pop3s": "", "smtps": "", "mx": "", "web": ""},
            settings={
                "outbound": {"scan_interval": "600"},
                "routes": {"remote.example": f"127.0.0.1:{receiver.ports['mx']}"},
            },
        )
        sender.zpop("domain", "add", HOSTNAME)
        sender.add_account(BOB, PASSWORD)
        for name, value in dkim_records(
            sender.zpop("domain", "dkim", HOSTNAME)
        ).items():
            dns.add(name, "TXT", value)
        dns.add(HOSTNAME, "TXT", "v=spf1 -all")
        dns.add(f"_dmarc.{HOSTNAME}", "TXT", "v=DMARC1; p=reject")

        client = smtplib.SMTP("127.0.0.1", sender.ports["submission"], timeout=30)
        with client:
            client._host = f"smtp.{HOSTNAME}"  # type: ignore[attr-defined]
            client.starttls(context=sender.ssl_context())
            client.login(BOB, PASSWORD)
            client.sendmail(
                BOB,
                ["ann@remote.example"],
                f"From: {BOB}\r\nTo: ann@remote.example\r\nSubject: hi\r\n\r\n"
                "hello\r\n",
            )
        deadline = time.monotonic() + 30
        while True:
            listed = receiver.zpop("messages", "ann@remote.example").splitlines()[1:]
            if listed:
                break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"nothing arrived\n{sender.log_text()}\n{receiver.log_text()}"
                )
            time.sleep(0.2)
        self.assertEqual([line.split()[1] for line in listed], ["Inbox"])
        receiver.zpop("pop", "enable", "ann@remote.example", "--mode", "all")
        client = POP3Client(receiver, "pop.mx.remote.example")
        try:
            client.user("ann@remote.example")
            client.pass_(PASSWORD)
            header = b"\r\n".join(client.top(1, 0)[1])
            client.quit()
        finally:
            client.close()
        self.assertTrue(
            header.startswith(b"Authentication-Results: mx.remote.example;"), header
        )
        self.assertEqual(header.count(f"dkim=pass header.d={HOSTNAME}".encode()), 2)
        self.assertIn(b"spf=fail", header)
        self.assertIn(
            f"dmarc=pass (p=reject dis=none) header.from={HOSTNAME}".encode(), header
        )
