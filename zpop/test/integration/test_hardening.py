"""What a hostile client, a crashing disk and a confused mail client do to
the real server (twistd on loopback, real TLS): a full disk loses nothing,
endless lines and blind pipelining end the session, dropped connections
log their logout line and no traceback, and a client retrying one wrong
password with every mechanism is not banned."""

from __future__ import annotations

import base64
import itertools
import os
import poplib
import re
import smtplib
import socket
import sqlite3
import subprocess
import time

from twisted.trial.unittest import SkipTest, TestCase

from zpop.store import DATABASE_NAME
from zpop.test.harness import HOSTNAME, ZpopServer
from zpop.test.integration.test_pop3 import PERSONAL, POP3Client

PASSWORD = "correct horse battery"
SMTP_HOST = f"smtp.{HOSTNAME}"
_counter = itertools.count()


def require_root(what: str) -> None:
    """Skip without root, except in CI, which runs as root: there it fails."""
    if os.geteuid() != 0:
        message = f"{what} needs root"
        if os.environ.get("CI"):
            raise AssertionError(message)
        raise SkipTest(message)


def fill(directory: str) -> str:
    """Fill the file system holding ``directory`` to the last byte; returns
    the filler file's path."""
    path = os.path.join(directory, "filler")
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 20, 4096, 1):
            block = b"\0" * size
            while True:  # bounded by the file system's size
                try:
                    f.write(block)
                except OSError:
                    break
    return path


class Served(TestCase):
    """A fresh server with bob (POP enabled, primary password)."""

    timeout = 120
    settings: dict[str, dict[str, str]] = {}

    def setUp(self) -> None:
        self.server = self.make_server()
        self.server.start()
        self.server.zpop("domain", "add", HOSTNAME)
        self.bob = f"bob{next(_counter)}@{HOSTNAME}"
        self.server.add_account(self.bob, PASSWORD)
        self.server.zpop("pop", "enable", self.bob, "--mode", "all")

    def make_server(self) -> ZpopServer:
        server = ZpopServer(settings=self.settings)
        self.addCleanup(server.cleanup)
        return server

    def raw(self, port: str) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.server.ports[port]), 10)
        self.addCleanup(sock.close)
        return sock

    def read_until_closed(self, sock: socket.socket, limit: float = 10) -> bytes:
        """Everything the server sends until it closes (bounded in time)."""
        sock.settimeout(limit)
        data = b""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
        return data

    def wait_for_log(self, pattern: str, limit: float = 10) -> re.Match[str]:
        deadline = time.monotonic() + limit
        while True:  # bounded by the deadline
            match = re.search(pattern, self.server.log_text(current=True))
            if match is not None:
                return match
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{pattern!r} not logged:\n{self.server.log_text()}"
                )
            time.sleep(0.05)

    def retrieve_all(self) -> list[bytes]:
        client = POP3Client(self.server)
        client.user(self.bob)
        client.pass_(PASSWORD)
        count, _ = client.stat()
        bodies = [b"\r\n".join(client.retr(n + 1)[1]) for n in range(count)]
        client.quit()
        return bodies


class FullDiskTests(Served):
    """The data directory on a tiny tmpfs that the test fills up."""

    def make_server(self) -> ZpopServer:
        require_root("mounting a tmpfs")
        server = ZpopServer(settings=self.settings)
        os.makedirs(server.data, mode=0o700)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "zpop-full",
             server.data],
            check=True,
        )
        self.addCleanup(subprocess.run, ["umount", "-l", server.data], check=True)
        self.addCleanup(server.cleanup)
        return server

    def submit(self, body: bytes) -> tuple[int, bytes]:
        """Send ``body`` from bob to bob over 587; the reply to DATA."""
        port = self.server.ports["submission"]
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s._host = SMTP_HOST  # the name TLS checks (smtplib API)
            s.starttls(context=self.server.ssl_context())
            s.login(self.bob, PASSWORD)
            s.mail(self.bob)
            s.rcpt(self.bob)
            return s.data(body)

    def test_full_disk_loses_nothing(self) -> None:
        """With the disk full: DATA gets 452 4.3.1, a QUIT with deletions
        -ERR [SYS/TEMP] and applies nothing, ``zpop deliver`` exits 1 with
        a clear message, and reads go on. Once space is freed everything
        works again without a restart and nothing stored before is damaged."""
        for n in range(3):
            text = os.urandom(3000).hex()
            code, _ = self.submit(
                f"From: {self.bob}\r\nSubject: before {n}\r\n\r\n".encode()
                + "".join(text[i : i + 76] + "\r\n" for i in range(0, 6000, 76))
                .encode()
            )
            self.assertEqual(code, 250)
        before = self.retrieve_all()
        self.assertEqual(len(before), 3)
        database = os.path.join(self.server.data, DATABASE_NAME)
        with sqlite3.connect(database) as conn:
            # An empty WAL: any write must now grow a file.
            self.assertEqual(
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0], 0
            )
        filler = fill(self.server.data)

        big = f"From: {self.bob}\r\nSubject: too big for the disk\r\n\r\n".encode()
        self.assertEqual(
            self.submit(big + (b"y" * 998 + b"\r\n") * 2000),
            (452, b"4.3.1 Insufficient system storage, try again later"),
        )

        client = POP3Client(self.server)
        client.user(self.bob)
        client.pass_(PASSWORD)
        self.assertEqual(b"\r\n".join(client.retr(1)[1]), before[0])
        client.dele(1)
        client.dele(2)
        with self.assertRaises(poplib.error_proto) as quit_refused:  # type: ignore[attr-defined]
            client.quit()
        self.assertEqual(
            quit_refused.exception.args[0],
            b"-ERR [SYS/TEMP] Could not apply the deletions; nothing was deleted",
        )

        delivered = self.server.cli(
            "deliver", self.bob, stdin=b"Subject: cli\n\n" + b"z" * 500_000 + b"\n"
        )
        self.assertEqual(
            (delivered.returncode, delivered.stderr.decode()),
            (
                1,
                f"zpop: error: the disk holding {database} is full: free some"
                " space, nothing was written\n",
            ),
        )
        self.assertEqual(self.retrieve_all(), before)

        os.unlink(filler)
        code, _ = self.submit(big)
        self.assertEqual(code, 250)
        ok = self.server.cli("deliver", self.bob, stdin=b"Subject: cli\n\nok\n")
        self.assertEqual(ok.returncode, 0)
        after = self.retrieve_all()
        self.assertEqual((after[:3], len(after)), (before, 5))
        client = POP3Client(self.server)
        client.user(self.bob)
        client.pass_(PASSWORD)
        client.dele(1)
        self.assertEqual(client.quit(), b"+OK Bye, 1 messages deleted")
        self.assertEqual(self.retrieve_all(), after[1:])
        with sqlite3.connect(database) as conn:
            checked = conn.execute("PRAGMA integrity_check").fetchall()
        self.assertEqual(checked, [("ok",)])
        self.assertIsNotNone(self.server.process)
        self.assertIsNone(self.server.process.poll())  # type: ignore[union-attr]
        full = [
            line
            for line in self.server.log_text().splitlines()
            if "is full: free some space" in line
        ]
        # Sign-in activity and the download log of sessions without
        # deletions are written a second later, best effort: when such a
        # write meets the full disk too, it says so in a line of its own
        # (one per batch, so a few at most here).
        later = [line for line in full if " not recorded: " in line]
        self.assertEqual(len(full) - len(later), 2)
        self.assertLessEqual(len(later), 4)
        for line in later:
            self.assertRegex(line, r"(sign-in activity|POP download log) not recorded")


class LineAbuseTests(Served):
    def test_pop3_endless_line(self) -> None:
        """4 MB without a line break on POP3S gets one -ERR and the connection
        is closed at once, while another client is served meanwhile."""
        raw = self.server.ssl_context().wrap_socket(
            self.raw("pop3s"), server_hostname=PERSONAL
        )
        self.assertTrue(raw.recv(1024).startswith(b"+OK"))
        started = time.monotonic()
        sent = 0
        try:
            while sent < 4 << 20:
                raw.sendall(b"A" * 65536)
                sent += 65536
        except OSError:
            pass
        other = POP3Client(self.server)
        other.user(self.bob)
        other.pass_(PASSWORD)
        self.assertEqual(other.stat(), (0, 0))
        other.quit()
        self.assertEqual(
            self.read_until_closed(raw),
            b"-ERR Line too long, closing the connection\r\n",
        )
        self.assertLess(time.monotonic() - started, 10)
        self.wait_for_log(r"logout - client=127\.0\.0\.1 tls=TLSv1\.[23] .*ended=abuse")

    def test_smtp_endless_line(self) -> None:
        """The same on the MX: one 421 and the connection is closed."""
        sock = self.raw("mx")
        self.assertTrue(sock.recv(1024).startswith(b"220"))
        try:
            for _ in range(64):
                sock.sendall(b"B" * 65536)
        except OSError:
            pass
        self.assertEqual(
            self.read_until_closed(sock),
            b"421 4.7.0 Line too long, closing connection\r\n",
        )


class SynchronizationTests(Served):
    def test_blind_pipelining_on_mx(self) -> None:
        """The byte sequence a smuggling probe sends across DATA, in one
        segment after a real 354, gets 554 5.5.0 and a close; the second
        message is not stored."""
        sock = self.raw("mx")
        f = sock.makefile("rb")
        self.assertTrue(f.readline().startswith(b"220"))
        for command in (b"EHLO probe.example", b"MAIL FROM:<a@x.example>",
                        f"RCPT TO:<{self.bob}>".encode(), b"DATA"):
            sock.sendall(command + b"\r\n")
            while (line := f.readline())[3:4] == b"-":
                pass
            self.assertIn(line[:3], (b"250", b"354"), command)
        sock.sendall(
            b"Subject: first\r\n\r\none\r\n.\r\nMAIL FROM:<a@x.example>\r\n"
            + f"RCPT TO:<{self.bob}>".encode()
            + b"\r\nDATA\r\nSubject: second\r\n\r\ntwo\r\n.\r\n"
        )
        replies = [line[:30] for line in f.read().split(b"\r\n")]
        self.assertEqual(
            replies,
            [b"250 2.0.0 Message accepted as ", b"250 2.1.0 Sender OK",
             b"250 2.1.5 Recipient OK",
             b"554 5.5.0 Error: SMTP protocol", b""],
        )
        [stored] = self.retrieve_all()
        self.assertIn(b"Subject: first", stored)
        self.wait_for_log(r"improper pipelining after DATA from 127\.0\.0\.1")
        self.wait_for_log(r"smtp session mx client=127\.0\.0\.1 .*ended=pipelining")


class DroppedSessionTests(Served):
    def test_dropped_plaintext_smtp(self) -> None:
        """A plaintext SMTP connection dropped mid-session logs its logout
        line (tls=none) and no traceback (the cleanup checks the log)."""
        for _ in range(3):
            sock = socket.create_connection(("127.0.0.1", self.server.ports["mx"]))
            sock.recv(1024)
            sock.sendall(b"EHLO x.example\r\n")
            sock.recv(1024)
            sock.close()
        self.wait_for_log(
            r"(smtp session mx client=127\.0\.0\.1 account=- tls=none"
            r" accepted=0 ended=dropped\n.*){3}"
        )

    def test_pop3s_without_login(self) -> None:
        """A POP3S session that never logs in names its TLS version."""
        client = POP3Client(self.server)
        client.capa()
        client.quit()
        self.wait_for_log(r"logout - client=127\.0\.0\.1 tls=TLSv1\.3 .*ended=quit")


class RetryingClientTests(Served):
    """A real client's mechanism sequence with a stale password."""

    settings = {
        "auth": {
            "failure_delay": "0.01",
            "failure_delay_max": "0.05",
            "ban_threshold": "10",
        }
    }

    def pop_attempts(self, password: str) -> None:
        """What Thunderbird does on "Get Messages": AUTH PLAIN, AUTH LOGIN,
        then USER/PASS, each refused."""
        client = POP3Client(self.server)
        plain = base64.b64encode(f"\0{self.bob}\0{password}".encode()).decode()
        with self.assertRaises(poplib.error_proto):  # type: ignore[attr-defined]
            client._shortcmd(f"AUTH PLAIN {plain}")
        client.close()
        client = POP3Client(self.server)
        self.assertTrue(client._shortcmd("AUTH LOGIN").startswith(b"+ "))
        self.assertTrue(
            client._shortcmd(base64.b64encode(self.bob.encode()).decode())
            .startswith(b"+ ")
        )
        with self.assertRaises(poplib.error_proto):  # type: ignore[attr-defined]
            client._shortcmd(base64.b64encode(password.encode()).decode())
        client.close()
        client = POP3Client(self.server)
        client.user(self.bob)
        with self.assertRaises(poplib.error_proto):  # type: ignore[attr-defined]
            client.pass_(password)
        client.close()

    def smtp_attempts(self, password: str) -> None:
        """A send: AUTH PLAIN, then AUTH LOGIN, each refused."""
        for mechanism in ("PLAIN", "LOGIN"):
            with smtplib.SMTP(
                "127.0.0.1", self.server.ports["submission"], timeout=30
            ) as s:
                s._host = SMTP_HOST
                s.starttls(context=self.server.ssl_context())
                s.ehlo()
                s.user, s.password = self.bob, password
                with self.assertRaises(smtplib.SMTPAuthenticationError):
                    s.auth(mechanism, getattr(s, f"auth_{mechanism.lower()}"))

    def test_stale_password_not_banned(self) -> None:
        """Two fetch-and-send rounds with the old password (10 failures, the
        ban threshold) do not ban the user's address; a guessing loop of
        distinct passwords still is."""
        for _ in range(2):
            self.pop_attempts("the old password")
            self.smtp_attempts("the old password")
        failures = len(
            re.findall(r"login failed .*reason=bad credentials", self.server.log_text())
        )
        self.assertEqual(failures, 10)
        self.assertEqual(self.retrieve_all(), [])
        for n in range(10):
            client = POP3Client(self.server)
            client.user(self.bob)
            with self.assertRaises(poplib.error_proto):  # type: ignore[attr-defined]
                client.pass_(f"guess {n}")
            client.close()
        client = POP3Client(self.server)
        client.user(self.bob)
        with self.assertRaises(poplib.error_proto) as banned:  # type: ignore[attr-defined]
            client.pass_(PASSWORD)
        self.assertEqual(
            banned.exception.args[0],
            b"-ERR [SYS/TEMP] Too many failed logins, try again later",
        )
