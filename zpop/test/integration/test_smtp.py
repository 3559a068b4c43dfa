"""SMTP end to end: the real server (twistd) on loopback with real TLS,
driven by Python's smtplib, swaks and raw sockets; what was sent is read
back over POP3S and with ``zpop messages``."""

from __future__ import annotations

import poplib
import smtplib
import socket
import ssl
import subprocess
from typing import Any

from twisted.trial.unittest import TestCase

from zpop.test.harness import HOSTNAME, ZpopServer
from zpop.test.tools import require_tool

SMTP_HOST = f"smtp.{HOSTNAME}"
POP_HOST = f"pop.{HOSTNAME}"
ALICE = f"alice@{HOSTNAME}"
BOB = f"bob@{HOSTNAME}"
PASSWORD = "correct horse battery"
MESSAGE = (
    f"From: Alice <{ALICE}>\r\nTo: <{BOB}>\r\nSubject: lunch?\r\n\r\nAt noon.\r\n"
).encode()


class SMTPClient(smtplib.SMTP):
    """smtplib to 127.0.0.1 whose STARTTLS checks the certificate for
    smtp.example.test."""

    def __init__(self, server: ZpopServer, port: int) -> None:
        self._zpop_context = server.ssl_context()
        super().__init__("127.0.0.1", port, local_hostname="client.test", timeout=30)
        self._host = SMTP_HOST

    def starttls_checked(self) -> Any:
        return self.starttls(context=self._zpop_context)


class SMTPSClient(smtplib.SMTP_SSL):
    """smtplib over implicit TLS to 127.0.0.1, checking smtp.example.test."""

    def __init__(self, server: ZpopServer, port: int) -> None:
        super().__init__(
            SMTP_HOST,
            port,
            local_hostname="client.test",
            timeout=30,
            context=server.ssl_context(),
        )

    def _get_socket(self, host: str, port: int, timeout: float) -> ssl.SSLSocket:
        sock = socket.create_connection(("127.0.0.1", port), timeout)
        return self.context.wrap_socket(sock, server_hostname=SMTP_HOST)


class POP3Client(poplib.POP3_SSL):
    def __init__(self, server: ZpopServer) -> None:
        super().__init__(
            POP_HOST, server.ports["pop3s"], context=server.ssl_context(), timeout=30
        )

    def _create_socket(self, timeout: float) -> ssl.SSLSocket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout)
        return self.context.wrap_socket(sock, server_hostname=self.host)


class ServerTestCase(TestCase):
    """A fresh server with alice (sender, alias al@) and bob (POP enabled)."""

    timeout = 120
    settings: dict[str, dict[str, str]] = {}

    def setUp(self) -> None:
        self.server = ZpopServer(settings=self.settings)
        self.addCleanup(self.server.cleanup)
        self.server.start()
        self.zpop("domain", "add", HOSTNAME)
        for address in (ALICE, BOB):
            self.server.add_account(address, PASSWORD)
        self.zpop("pop", "enable", BOB, "--mode", "all")
        self.zpop("alias", "add", ALICE, f"al@{HOSTNAME}")

    def zpop(self, *args: str, stdin: bytes = b"") -> str:
        return self.server.zpop(*args, stdin=stdin)

    def pop_messages(self) -> list[bytes]:
        """Every message bob's next POP session retrieves."""
        pop = POP3Client(self.server)
        try:
            pop.user(BOB)
            pop.pass_(PASSWORD)
            count, _ = pop.stat()
            return [b"\r\n".join(pop.retr(i + 1)[1]) for i in range(count)]
        finally:
            pop.quit()

    def sent_subjects(self) -> list[str]:
        lines = self.zpop("messages", ALICE, "--folder", "Sent").splitlines()
        return [line.rsplit(None, 1)[-1] for line in lines[1:] if line.strip()]

    def submission(self) -> SMTPClient:
        client = SMTPClient(self.server, self.server.ports["submission"])
        self.addCleanup(client.close)
        client.ehlo()
        client.starttls_checked()
        client.ehlo()
        return client


class SMTPIntegrationTests(ServerTestCase):
    """Submission, MX and the attacks, with default limits."""

    def test_send_587_smtplib(self) -> None:
        """587 with STARTTLS and AUTH: bob's next POP session retrieves
        exactly that message; alice's Sent folder has its copy."""
        client = self.submission()
        client.login(ALICE, PASSWORD)
        refused = client.sendmail(ALICE, [BOB], MESSAGE)
        client.quit()
        [retrieved] = self.pop_messages()
        header, _, body = retrieved.partition(b"\r\n\r\n")
        self.assertEqual(
            (
                refused,
                body,
                header.split(b"\r\n")[0],
                b"\r\nSubject: lunch?\r\n" in header,
                self.sent_subjects(),
            ),
            (
                {},
                b"At noon.",
                b"Received: from client.test ([127.0.0.1])",
                True,
                ["lunch?"],
            ),
        )

    def test_send_465_smtplib(self) -> None:
        """465 with implicit TLS: login, send, POP retrieves it."""
        client = SMTPSClient(self.server, self.server.ports["smtps"])
        client.login(ALICE, PASSWORD)
        client.sendmail(ALICE, [BOB], MESSAGE)
        client.quit()
        [retrieved] = self.pop_messages()
        self.assertEqual(retrieved.split(b"\r\n\r\n")[1], b"At noon.")

    def swaks(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                require_tool("swaks"),
                "--server",
                "127.0.0.1",
                "--helo",
                "client.test",
                "--auth",
                "PLAIN",
                "--auth-user",
                ALICE,
                "--auth-password",
                PASSWORD,
                "--from",
                ALICE,
                "--to",
                BOB,
                "--header",
                "Subject: via swaks",
                "--body",
                "Hello from swaks.",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def test_swaks_465_and_587(self) -> None:
        """swaks sends through 465 (--tls-on-connect) and 587 (--tls)."""
        smtps = self.swaks(
            "--port", str(self.server.ports["smtps"]), "--tls-on-connect"
        )
        submission = self.swaks("--port", str(self.server.ports["submission"]), "--tls")
        messages = self.pop_messages()
        self.assertEqual(
            (
                smtps.returncode,
                submission.returncode,
                " 250 2.0.0 Message accepted as " in submission.stdout,
                [m.split(b"\r\n\r\n", 1)[1].strip() for m in messages],
                self.sent_subjects(),
            ),
            (0, 0, True, [b"Hello from swaks."] * 2, ["swaks", "swaks"]),
        )

    def test_two_factor(self) -> None:
        """2FA on: the primary password gets 534, an app password logs in."""
        self.zpop("twofactor", "enable", ALICE)
        secret = self.zpop("app-password", "create", ALICE, "--label", "mail").strip()
        client = self.submission()
        error = self.assertRaises(
            smtplib.SMTPAuthenticationError, client.login, ALICE, PASSWORD
        )
        code, text = client.login(ALICE, secret)
        self.assertEqual(
            (error.smtp_code, error.smtp_error, code, text),
            (
                534,
                b"5.7.9 Application-specific password required"
                b" (two-factor authentication is on)",
                235,
                b"2.7.0 Authentication successful",
            ),
        )

    def test_spoofed_sender(self) -> None:
        """Another account's envelope sender or From: is refused; an alias
        is accepted."""
        client = self.submission()
        client.login(ALICE, PASSWORD)
        envelope = client.mail(BOB)
        client.rset()
        client.mail(f"al@{HOSTNAME}")
        client.rcpt(BOB)
        header = client.data(MESSAGE.replace(b"Alice <alice@", b"Bob <bob@"))
        client.rset()
        client.mail(f"al@{HOSTNAME}")
        client.rcpt(BOB)
        alias = client.data(MESSAGE.replace(b"alice@", b"al@"))
        self.assertEqual(
            (envelope, header, alias[0]),
            (
                (553, f"5.7.1 Sender address not owned by {ALICE}".encode()),
                (553, f"5.7.1 Sender address not owned by {ALICE}".encode()),
                250,
            ),
        )

    def test_open_relay_attempts(self) -> None:
        """The MX refuses every relay attempt from 127.0.0.1 with 554 5.7.1
        and accepts hosted recipients."""
        client = smtplib.SMTP("127.0.0.1", self.server.ports["mx"], timeout=30)
        self.addCleanup(client.close)
        client.ehlo("relay-test.example")
        client.mail("scanner@remote.example")
        replies = [
            client.rcpt(address)
            for address in (
                "victim@remote.example",
                f"victim%remote.example@{HOSTNAME}",
                f"remote.example!victim@{HOSTNAME}",
                f"@{HOSTNAME}:victim@remote.example",
                f'"victim@remote.example"@{HOSTNAME}',
                "victim@[127.0.0.1]",
            )
        ]
        self.assertEqual(
            (replies, client.rcpt(BOB)),
            ([(554, b"5.7.1 Relay access denied")] * 6, (250, b"2.1.5 Recipient OK")),
        )

    def raw(self, port: int) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.addCleanup(sock.close)
        self.read_reply(sock)
        return sock

    @staticmethod
    def read_reply(sock: Any) -> bytes:
        """One complete (possibly multi-line) reply."""
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
            lines = data.split(b"\r\n")
            if data.endswith(b"\r\n") and lines[-2][3:4] == b" ":
                return data

    def test_starttls_injection(self) -> None:
        """Commands pipelined after STARTTLS in plaintext never run, inside
        TLS or out: the client is out of sync, gets 554 5.5.0 and is closed;
        a client that waits for the 220 gets TLS."""
        sock = self.raw(self.server.ports["submission"])
        sock.sendall(b"EHLO client.test\r\n")
        self.read_reply(sock)
        sock.sendall(b"STARTTLS\r\nRSET\r\nMAIL FROM:<alice@example.test>\r\n")
        refused = sock.recv(65536)
        closed = sock.recv(65536)
        sock = self.raw(self.server.ports["submission"])
        sock.sendall(b"EHLO client.test\r\n")
        self.read_reply(sock)
        sock.sendall(b"STARTTLS\r\n")
        ready = self.read_reply(sock)
        tls = self.server.ssl_context().wrap_socket(sock, server_hostname=SMTP_HOST)
        tls.sendall(b"NOOP\r\n")
        first = self.read_reply(tls)
        self.assertEqual(
            (refused, closed, ready, first),
            (
                b"554 5.5.0 Error: SMTP protocol synchronization\r\n",
                b"",
                b"220 2.0.0 Ready to start TLS\r\n",
                b"250 2.0.0 OK\r\n",
            ),
        )

    def test_smuggling(self) -> None:
        """Bare-LF/CR end-of-data variants never make a second message:
        554 5.5.2 and nothing reaches bob's mailbox."""
        replies = []
        for ending in (b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\n", b"\r.\r\n"):
            sock = self.raw(self.server.ports["mx"])
            sock.sendall(b"EHLO client.test\r\n")
            self.read_reply(sock)
            sock.sendall(
                b"MAIL FROM:<a@remote.example>\r\n"
                b"RCPT TO:<" + BOB.encode() + b">\r\nDATA\r\n"
            )
            data = b""
            while not data.endswith(b"354 End data with <CR><LF>.<CR><LF>\r\n"):
                chunk = sock.recv(65536)
                self.assertTrue(chunk, data)
                data += chunk
            sock.sendall(
                b"Subject: one\r\n\r\nfirst"
                + ending
                + b"MAIL FROM:<"
                + ALICE.encode()
                + b">\r\nRCPT TO:<"
                + BOB.encode()
                + b">\r\nDATA\r\n"
                b"Subject: smuggled\r\n\r\nevil\r\n.\r\nQUIT\r\n"
            )
            rest = b""
            while chunk := sock.recv(65536):
                rest += chunk
            replies.append(rest)
        self.assertEqual(
            (replies, self.pop_messages()),
            (
                [
                    b"554 5.5.2 Bare CR or LF in message data is not accepted\r\n"
                    b"221 2.0.0 Bye\r\n"
                ]
                * 5,
                [],
            ),
        )

    def test_kill_after_250_keeps_message(self) -> None:
        """kill -9 right after the 250 to DATA: the message survives."""
        client = self.submission()
        client.login(ALICE, PASSWORD)
        client.mail(ALICE)
        client.rcpt(BOB)
        code, _ = client.data(MESSAGE)
        self.server.kill()
        self.server.start()
        [retrieved] = self.pop_messages()
        self.assertEqual(
            (code, retrieved.split(b"\r\n\r\n")[1], self.sent_subjects()),
            (250, b"At noon.", ["lunch?"]),
        )


class LimitsIntegrationTests(ServerTestCase):
    """Size and recipient limits from the config file."""

    settings = {"limits": {"message_size": "2K", "recipients": "2"}}

    def test_size_and_recipient_limits(self) -> None:
        """SIZE advertised and enforced at MAIL and after DATA; the third
        recipient gets 452 4.5.3."""
        client = self.submission()
        client.login(ALICE, PASSWORD)
        advertised = client.esmtp_features.get("size")
        too_big = client.mail(ALICE, ["SIZE=4096"])
        client.mail(ALICE)
        rcpts = [
            client.rcpt(r)
            for r in (BOB, f"x@{HOSTNAME}", "y@remote.example", "z@remote.example")
        ]
        client.rset()
        client.mail(ALICE)
        client.rcpt(BOB)
        data = client.data(MESSAGE + b"x" * 3000 + b"\r\n")
        self.assertEqual(
            (advertised, too_big, rcpts, data, self.pop_messages()),
            (
                "2048",
                (552, b"5.3.4 Message size exceeds fixed maximum message size"),
                [
                    (250, b"2.1.5 Recipient OK"),
                    (550, b"5.1.1 Recipient address rejected: User unknown"),
                    (250, b"2.1.5 Recipient OK"),
                    (452, b"4.5.3 Too many recipients"),
                ],
                (552, b"5.3.4 Message size exceeds fixed maximum message size"),
                [],
            ),
        )
