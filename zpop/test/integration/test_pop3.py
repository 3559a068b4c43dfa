"""POP3 end to end: the real server (twistd) on loopback with real TLS,
settings changed with the real ``zpop`` command while it runs, and real
clients: Python's poplib, curl, mpop and fetchmail."""

from __future__ import annotations

import itertools
import os
import poplib
import socket
import sqlite3
import ssl
import subprocess

from twisted.trial.unittest import TestCase

from zpop.store import DATABASE_NAME
from zpop.store.locks import MaildropLocks
from zpop.test.harness import HOSTNAME, ZpopServer
from zpop.test.mail_clients import run_mpop
from zpop.test.tools import require_tool

PERSONAL = f"pop.{HOSTNAME}"
ORGANIZATION = f"poppro.{HOSTNAME}"
PASSWORD = "correct horse battery"
_counter = itertools.count()


class POP3Client(poplib.POP3_SSL):
    """poplib over TLS to 127.0.0.1, sending ``host`` as SNI and checking it."""

    def __init__(
        self, server: ZpopServer, host: str = PERSONAL, port: int | None = None
    ) -> None:
        self._server = server
        super().__init__(
            host,
            port or server.ports["pop3s"],
            context=server.ssl_context(),
            timeout=30,
        )

    def _create_socket(self, timeout: float) -> ssl.SSLSocket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout)
        return self.context.wrap_socket(sock, server_hostname=self.host)


class ServerMixin:
    """A fresh server (and data directory) for each test."""

    server: ZpopServer
    settings: dict[str, dict[str, str]] = {}

    def setUp(self) -> None:
        self.server = ZpopServer(settings=self.settings)
        self.addCleanup(self.server.cleanup)  # type: ignore[attr-defined]
        self.server.start()
        for domain, flags in ((HOSTNAME, ()), ("corp.test", ("--organization",))):
            self.zpop("domain", "add", domain, *flags)

    def zpop(self, *args: str, stdin: bytes = b"", status: int = 0) -> str:
        return self.server.zpop(*args, stdin=stdin, status=status)

    def account(
        self, *flags: str, domain: str = HOSTNAME, enable: str | None = "all"
    ) -> str:
        address = f"user{next(_counter)}@{domain}"
        if "--federated" in flags:
            self.zpop("account", "add", address, *flags)
        else:
            self.server.add_account(address, PASSWORD, *flags)
        if enable:
            self.zpop("pop", "enable", address, "--mode", enable)
        return address

    def deliver(self, address: str, *subjects: str, folder: str = "Inbox") -> None:
        for subject in subjects:
            message = f"From: a@example.org\nSubject: {subject}\n\nbody of {subject}\n"
            self.zpop("deliver", address, "--folder", folder, stdin=message.encode())

    def login(
        self, address: str, password: str = PASSWORD, host: str = PERSONAL
    ) -> POP3Client:
        client = POP3Client(self.server, host)
        client.user(address)
        client.pass_(password)
        return client

    def refusal(
        self, address: str, password: str = PASSWORD, host: str = PERSONAL
    ) -> str:
        client = POP3Client(self.server, host)
        try:
            client.user(address)
            with self.assertRaises(poplib.error_proto) as caught:  # type: ignore[attr-defined]
                client.pass_(password)
            return caught.exception.args[0].decode()
        finally:
            client.close()

    def subjects(
        self, address: str, password: str = PASSWORD, host: str = PERSONAL
    ) -> list[str]:
        client = self.login(address, password, host)
        try:
            return [
                self.subject_of(client, n) for n in range(1, len(client.list()[1]) + 1)
            ]
        finally:
            client.quit()

    @staticmethod
    def subject_of(client: POP3Client, number: int) -> str:
        for line in client.top(number, 0)[1]:
            if line.startswith(b"Subject: "):
                return line[9:].decode()
        raise AssertionError(f"message {number} has no Subject")


class POP3SettingsTests(ServerMixin, TestCase):
    """Each POP access setting, changed with `zpop` while the server runs."""

    def test_full_session(self) -> None:
        """poplib: STAT, LIST, UIDL, RETR with exact sizes, DELE and QUIT."""
        address = self.account()
        self.deliver(address, "one", "two")
        client = self.login(address)
        count, total = client.stat()
        sizes = [int(line.split()[1]) for line in client.list()[1]]
        self.assertEqual((count, total), (2, sum(sizes)))
        uids = [line.split()[1] for line in client.uidl()[1]]
        self.assertEqual(len(set(uids)), 2)
        response, lines, octets = client.retr(1)
        self.assertEqual(response, b"+OK %d octets" % sizes[0])
        self.assertEqual(sum(len(line) + 2 for line in lines), sizes[0])
        self.assertIn(b"Subject: one", lines)
        client.dele(1)
        self.assertEqual(client.quit(), b"+OK Bye, 1 messages deleted")
        client = self.login(address)
        self.assertEqual([line.split()[1] for line in client.uidl()[1]], uids[1:])
        client.quit()

    def test_disabled_by_default(self) -> None:
        """A new account has POP off; disabling refuses the next login."""
        address = self.account(enable=None)
        self.assertEqual(
            self.refusal(address), "-ERR [AUTH] POP access is disabled for this account"
        )
        self.zpop("pop", "enable", address, "--mode", "all")
        self.subjects(address)
        self.zpop("pop", "disable", address)
        self.assertEqual(
            self.refusal(address), "-ERR [AUTH] POP access is disabled for this account"
        )

    def test_wrong_password_and_unknown_user(self) -> None:
        """Unknown user and wrong password get the same answer."""
        address = self.account()
        self.assertEqual(
            self.refusal(address, "wrong"), "-ERR [AUTH] Authentication failed"
        )
        self.assertEqual(
            self.refusal(f"nobody@{HOSTNAME}"), "-ERR [AUTH] Authentication failed"
        )
        self.assertEqual(
            self.refusal(address.split("@")[0]),
            "-ERR [AUTH] Log in with your full email address",
        )

    def test_modes(self) -> None:
        """'new' hides older mail; 'all' offers it again, even mail removed by DELE."""
        address = self.account(enable=None)
        self.deliver(address, "old")
        self.zpop("pop", "enable", address, "--mode", "new")
        self.assertEqual(self.subjects(address), [])
        self.deliver(address, "new1", "new2")
        client = self.login(address)
        self.assertEqual([self.subject_of(client, n) for n in (1, 2)], ["new1", "new2"])
        client.dele(1)
        client.quit()
        self.assertEqual(self.subjects(address), ["new2"])
        self.zpop("pop", "enable", address, "--mode", "all")
        self.assertEqual(self.subjects(address), ["old", "new1", "new2"])

    def test_spam(self) -> None:
        """exclude, include and only choose Inbox, Inbox+Spam, Spam."""
        address = self.account()
        self.deliver(address, "ham1")
        self.deliver(address, "spam1", folder="Spam")
        self.deliver(address, "ham2")
        self.assertEqual(self.subjects(address), ["ham1", "ham2"])
        self.zpop("pop", "spam", address, "include")
        self.assertEqual(self.subjects(address), ["ham1", "spam1", "ham2"])
        self.zpop("pop", "spam", address, "only")
        self.assertEqual(self.subjects(address), ["spam1"])
        self.zpop("pop", "spam", address, "exclude")
        self.assertEqual(self.subjects(address), ["ham1", "ham2"])

    def test_deletion_policies(self) -> None:
        """keep leaves a deleted message in the Inbox; delete moves it to Trash."""
        address = self.account()
        self.deliver(address, "kept", "trashed", "stays")
        client = self.login(address)
        client.dele(1)
        client.quit()
        self.zpop("pop", "deletion", address, "delete")
        client = self.login(address)
        client.dele(1)
        client.quit()
        self.assertEqual(self.subjects(address), ["stays"])
        listing = self.zpop("messages", address).splitlines()[1:]
        folders = {line.split()[-1]: line.split()[1] for line in listing}
        self.assertEqual(
            folders, {"kept": "Inbox", "trashed": "Trash", "stays": "Inbox"}
        )

    def test_two_factor(self) -> None:
        """Two-factor on: the primary password is told to use an app password."""
        address = self.account()
        self.zpop("twofactor", "enable", address)
        self.assertEqual(
            self.refusal(address),
            "-ERR [AUTH] Application-specific password required"
            " (two-factor authentication is on)",
        )
        secret = self.zpop(
            "app-password", "create", address, "--label", "phone"
        ).strip()
        self.assertEqual(self.subjects(address, secret), [])
        self.zpop("twofactor", "disable", address)
        self.assertEqual(self.subjects(address), [])

    def test_revoked_app_password(self) -> None:
        """A revoked app password no longer logs in."""
        address = self.account()
        secret = self.zpop(
            "app-password", "create", address, "--label", "laptop"
        ).strip()
        self.assertEqual(self.subjects(address, secret), [])
        ident = self.zpop("app-password", "list", address).splitlines()[1].split()[0]
        self.zpop("app-password", "revoke", address, ident)
        self.assertEqual(
            self.refusal(address, secret), "-ERR [AUTH] Authentication failed"
        )

    def test_federated(self) -> None:
        """A federated account logs in with an app password or one it set later."""
        address = self.account("--federated")
        self.assertEqual(
            self.refusal(address, "guess"), "-ERR [AUTH] Authentication failed"
        )
        secret = self.zpop("app-password", "create", address, "--label", "mua").strip()
        self.assertEqual(self.subjects(address, secret), [])
        self.zpop(
            "account",
            "passwd",
            address,
            "--password-stdin",
            stdin=b"a new primary one\n",
        )
        self.assertEqual(self.subjects(address, "a new primary one"), [])

    def test_sni_host(self) -> None:
        """SNI naming the other kind's POP host is refused with the right host."""
        personal = self.account()
        organization = self.account(domain="corp.test")
        self.assertEqual(
            self.refusal(organization, host=PERSONAL),
            f"-ERR [AUTH] Organization accounts use {ORGANIZATION}",
        )
        self.assertEqual(
            self.refusal(personal, host=ORGANIZATION),
            f"-ERR [AUTH] Personal accounts use {PERSONAL}",
        )
        self.assertEqual(self.subjects(organization, host=ORGANIZATION), [])
        self.assertEqual(self.subjects(personal, host=PERSONAL), [])

    def test_in_use(self) -> None:
        """A second concurrent session is refused [IN-USE]; the first goes on."""
        address = self.account()
        self.deliver(address, "x")
        first = self.login(address)
        self.assertEqual(
            self.refusal(address),
            "-ERR [IN-USE] Another POP session is already using this mailbox",
        )
        self.assertEqual(first.stat()[0], 1)
        first.quit()
        self.assertEqual(self.subjects(address), ["x"])

    def test_snapshot(self) -> None:
        """Mail arriving during a session shows up at the next login."""
        address = self.account()
        self.deliver(address, "before")
        client = self.login(address)
        self.deliver(address, "during")
        self.assertEqual(client.stat()[0], 1)
        client.quit()
        self.assertEqual(self.subjects(address), ["before", "during"])

    def test_stls_listener(self) -> None:
        """On the plaintext listener, passwords wait for STLS, then login works."""
        address = self.account()
        client = poplib.POP3("127.0.0.1", self.server.ports["pop3"], timeout=30)
        self.assertIn("STLS", client.capa())
        self.assertNotIn("USER", client.capa())
        with self.assertRaises(poplib.error_proto) as caught:  # type: ignore[attr-defined]
            client.user(address)
        self.assertEqual(
            caught.exception.args[0],
            b"-ERR [AUTH] Log in only over TLS: issue STLS first",
        )
        client.stls(self.server.ssl_context())
        client.user(address)
        client.pass_(PASSWORD)
        self.assertEqual(client.stat(), (0, 0))
        client.quit()

    def test_tls_versions(self) -> None:
        """TLS 1.1 is refused on the POP3S listener; 1.2 works."""
        context = self.server.ssl_context()
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.set_ciphers("ALL:@SECLEVEL=0")
        with self.assertRaises(ssl.SSLError):
            with socket.create_connection(
                ("127.0.0.1", self.server.ports["pop3s"]), 10
            ) as s:
                context.wrap_socket(s, server_hostname=PERSONAL)
        context = self.server.ssl_context()
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        with socket.create_connection(
            ("127.0.0.1", self.server.ports["pop3s"]), 10
        ) as s:
            with context.wrap_socket(s, server_hostname=PERSONAL) as tls:
                self.assertEqual(tls.version(), "TLSv1.2")
                self.assertTrue(tls.recv(100).startswith(b"+OK"))

    def test_hostile_input(self) -> None:
        """Garbage, bad numbers and over-long lines get -ERR; the session goes on."""
        address = self.account()
        self.deliver(address, "x")
        client = self.login(address)
        for command, reply in (
            ("RETR 0", b"-ERR No such message: 0"),
            ("RETR 2", b"-ERR No such message: 2"),
            ("RETR -1", b"-ERR Invalid message number: use a positive whole number"),
            ("TOP 1 x", b"-ERR Invalid line count: use a whole number of lines"),
            ("APOP a b", b"-ERR Unknown command: APOP"),
            ("X" * 5000, b"-ERR Line too long"),
        ):
            with self.assertRaises(poplib.error_proto) as caught:  # type: ignore[attr-defined]
                client._shortcmd(command)
            self.assertEqual(caught.exception.args[0], reply)
        self.assertEqual(client.stat()[0], 1)
        client.quit()


class SecurityTests(ServerMixin, TestCase):
    """Revocation mid-session and connection floods, against the real server."""

    settings = {"auth": {"failure_delay": "0.01", "max_connections_per_client": "5"}}

    def test_revoked_mid_session(self) -> None:
        """A session whose app password is revoked gets -ERR at its next command,
        is closed, and its deletions are not applied."""
        address = self.account()
        self.deliver(address, "keep me")
        secret = self.zpop(
            "app-password", "create", address, "--label", "tablet"
        ).strip()
        client = self.login(address, secret)
        client.dele(1)
        ident = self.zpop("app-password", "list", address).splitlines()[1].split()[0]
        self.zpop("app-password", "revoke", address, ident)
        with self.assertRaises(poplib.error_proto) as caught:  # type: ignore[attr-defined]
            client.quit()
        self.assertEqual(
            caught.exception.args[0],
            b"-ERR [AUTH] The password of this session was revoked",
        )
        self.assertEqual(client.file.read(), b"")
        self.assertEqual(self.subjects(address), ["keep me"])

    def test_flood_from_one_address(self) -> None:
        """One address holding its connection quota is refused more; another
        address still logs in and reads its mail."""
        address = self.account()
        self.deliver(address, "still served")
        port = self.server.ports["pop3s"]
        context = self.server.ssl_context()
        held = []
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", port), 10, ("127.0.0.2", 0))
            tls = context.wrap_socket(sock, server_hostname=PERSONAL)
            self.assertTrue(tls.recv(200).startswith(b"+OK"))
            held.append(tls)
        try:
            sock = socket.create_connection(("127.0.0.1", port), 10, ("127.0.0.2", 0))
            with context.wrap_socket(sock, server_hostname=PERSONAL) as tls:
                self.assertEqual(
                    tls.recv(200),
                    b"-ERR [SYS/TEMP] Too many connections, try again later\r\n",
                )
            self.assertEqual(self.subjects(address), ["still served"])
        finally:
            for tls in held:
                tls.close()


class FreePlanTests(ServerMixin, TestCase):
    """The Free-plan cut-off, as an operator moves it."""

    settings = {"accounts": {"free_pop_cutoff": "2100-01-01"}}

    def test_cutoff(self) -> None:
        """Free accounts created after the cut-off cannot enable POP nor log in."""
        address = f"free{next(_counter)}@{HOSTNAME}"
        self.zpop(
            "account",
            "add",
            address,
            "--plan",
            "free",
            "--password-stdin",
            stdin=PASSWORD.encode() + b"\n",
        )
        self.zpop("pop", "enable", address, "--mode", "all")
        self.assertEqual(self.subjects(address), [])
        server = self.server
        server.stop()
        with open(server.config_path, encoding="utf-8") as f:
            text = f.read()
        with open(server.config_path, "w", encoding="utf-8") as f:
            f.write(text.replace("= 2100-01-01", "= 2000-01-01"))
        server.restart()
        self.assertEqual(
            self.refusal(address),
            "-ERR [AUTH] POP access is not available on the Free plan",
        )
        other = f"free{next(_counter)}@{HOSTNAME}"
        self.zpop("account", "add", other, "--plan", "free")
        error = self.zpop("pop", "enable", other, "--mode", "all", status=1)
        self.assertIn("not available on the Free plan", error)


class CrashTests(ServerMixin, TestCase):
    """kill -9 around QUIT: no unacknowledged deletion, no lost acknowledged
    one, and the mailbox served at once after the restart: the killed
    process's maildrop lock ended with it."""

    def setUp(self) -> None:
        super().setUp()
        self.address = self.account()
        self.deliver(self.address, "a", "b", "c")

    def assert_lock_free(self) -> None:
        """Another process can take the account's maildrop lock now."""
        database = os.path.join(self.server.data, DATABASE_NAME)
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            (account_id,) = conn.execute(
                "SELECT id FROM accounts WHERE address = ?", (self.address,)
            ).fetchone()
        finally:
            conn.close()
        locks = MaildropLocks(f"{database}-pop-locks")
        try:
            self.assertTrue(locks.acquire(account_id, "test"))
        finally:
            locks.close()

    def test_kill_between_dele_and_quit(self) -> None:
        """A server killed after DELE but before QUIT deletes nothing, and
        leaves no lock behind."""
        client = self.login(self.address)
        client.dele(1)
        client.dele(2)
        self.server.kill()
        client.close()
        self.assert_lock_free()
        self.server.restart()
        # The first login after the restart is served: no [IN-USE], no wait.
        self.assertEqual(self.subjects(self.address), ["a", "b", "c"])

    def test_kill_after_quit(self) -> None:
        """Deletions acknowledged by +OK to QUIT survive kill -9 right after."""
        client = self.login(self.address)
        client.dele(1)
        client.dele(3)
        self.assertEqual(client.quit(), b"+OK Bye, 2 messages deleted")
        self.server.kill()
        self.server.restart()
        self.assertEqual(self.subjects(self.address), ["b"])


class RealClientTests(ServerMixin, TestCase):
    """Debian's POP3 clients against the real server, checking what they fetched."""

    def cafile(self) -> str:
        path = os.path.join(self.server.dir, "ca.pem")
        with open(path, "w", encoding="ascii") as f:
            f.write(self.server.certificate_pem())
        return path

    def test_curl(self) -> None:
        """curl lists the maildrop and retrieves a message byte for byte."""
        curl = require_tool("curl")
        address = self.account()
        self.deliver(address, "for curl")
        port = self.server.ports["pop3s"]
        base = [
            curl,
            "--silent",
            "--show-error",
            "--cacert",
            self.cafile(),
            "--resolve",
            f"{PERSONAL}:{port}:127.0.0.1",
            "--user",
            f"{address}:{PASSWORD}",
        ]
        url = f"pop3s://{PERSONAL}:{port}/"
        listing = subprocess.run(
            base + [url], capture_output=True, timeout=60, check=True
        )
        client = self.login(address)
        size = client.list()[1][0].split()[1]
        expected = b"\r\n".join(client.retr(1)[1]) + b"\r\n"
        client.quit()
        self.assertEqual(listing.stdout, b"1 " + size + b"\r\n")
        message = subprocess.run(
            base + [url + "1"], capture_output=True, timeout=60, check=True
        )
        self.assertEqual(message.stdout, expected)

    def test_mpop(self) -> None:
        """mpop fetches every message into an mbox and deletes them (keep off)."""
        mpop = require_tool("mpop")
        address = self.account()
        self.deliver(address, "mpop one", "mpop two")
        mbox = os.path.join(self.server.dir, f"{address}.mbox")
        done = run_mpop(self.server, mpop, address, PASSWORD, mbox)
        self.assertEqual(
            done.returncode, 0, done.stderr.decode() + done.stdout.decode()
        )
        with open(mbox, "rb") as f:
            fetched = f.read()
        self.assertEqual(fetched.count(b"\nSubject: mpop "), 2)
        self.assertLess(fetched.index(b"mpop one"), fetched.index(b"mpop two"))
        self.assertEqual(self.subjects(address), [])
        self.zpop("pop", "enable", address, "--mode", "all")
        self.assertEqual(self.subjects(address), ["mpop one", "mpop two"])

    def test_fetchmail(self) -> None:
        """fetchmail retrieves every message over TLS through an MDA, keeping them."""
        fetchmail = require_tool("fetchmail")
        address = self.account()
        self.deliver(address, "fm one", "fm two")
        out = os.path.join(self.server.dir, "fetched")
        os.makedirs(out, exist_ok=True)
        rc = os.path.join(self.server.dir, "fetchmailrc")
        with open(rc, "w", encoding="utf-8") as f:
            f.write(
                f"poll 127.0.0.1 service {self.server.ports['pop3s']} protocol pop3"
                f' user "{address}" password "{PASSWORD}"'
                f" ssl sslcertck sslcertfile {self.cafile()} sslcommonname {PERSONAL}"
                f" keep mda \"/bin/sh -c 'cat > {out}/msg.$$$$'\"\n"
            )
        os.chmod(rc, 0o600)
        env = dict(os.environ, HOME=self.server.dir)
        done = subprocess.run(
            [
                fetchmail,
                "-f",
                rc,
                "--nodetach",
                "--nosyslog",
                "-v",
                "--pidfile",
                os.path.join(self.server.dir, "fm.pid"),
            ],
            capture_output=True,
            timeout=90,
            env=env,
        )
        self.assertEqual(
            done.returncode, 0, done.stdout.decode() + done.stderr.decode()
        )
        subjects = []
        for name in sorted(os.listdir(out)):
            with open(os.path.join(out, name), "rb") as f:
                for line in f.read().splitlines():
                    if line.startswith(b"Subject: "):
                        subjects.append(line[9:].decode())
        self.assertEqual(sorted(subjects), ["fm one", "fm two"])
        self.assertEqual(self.subjects(address), ["fm one", "fm two"])


class LargeMessageTests(ServerMixin, TestCase):
    """A 50 MB RETR streams in bounded memory."""

    settings = {"limits": {"message_size": "64M"}}

    def rss_peak_kb(self) -> int:
        pid = self.server.process.pid  # type: ignore[union-attr]
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        raise AssertionError("no VmHWM")

    def test_retr_50mb(self) -> None:
        """RETR of 50 MB arrives intact and grows the server's peak memory by < 8 MB."""
        address = self.account()
        line = b"0123456789" * 9 + b"\r\n"
        body = b"Subject: big\r\n\r\n" + b"." + line * (50 * 1024 * 1024 // len(line))
        self.zpop("deliver", address, stdin=body)
        # Warm up: one small RETR so lazily allocated buffers are counted before.
        self.deliver(address, "small")
        client = self.login(address)
        client.retr(2)
        before = self.rss_peak_kb()
        size = int(client.list(1).split()[2])
        self.assertEqual(size, len(body))
        client._putcmd("RETR 1")
        self.assertEqual(client._getresp(), b"+OK %d octets" % size)
        received = 0
        first = None
        while True:
            chunk, _ = client._getline()
            if chunk == b".":
                break
            if first is None:
                first = chunk
            received += len(chunk) + 2
        growth = self.rss_peak_kb() - before
        client.quit()
        # Raw lines: the one body line starting with "." arrives dot-stuffed.
        self.assertEqual(first, b"Subject: big")
        self.assertEqual(received, size + 1)
        self.assertLess(growth, 8 * 1024, f"peak RSS grew by {growth} kB")
