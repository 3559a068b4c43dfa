"""Per-device POP queues on the real server with real clients: mpop with
one app password (the phone) and fetchmail with another (the laptop) each
receive every message; a DELE by one leaves the other's queue intact; the
originals move to Trash only after both deleted them; the download log
names both devices; and two devices fetch at the same time."""

from __future__ import annotations

import os
import poplib
import subprocess

from twisted.trial.unittest import TestCase

from zpop.test.harness import HOSTNAME, ZpopServer, start_server
from zpop.test.integration.test_pop3 import POP3Client
from zpop.test.mail_clients import run_mpop
from zpop.test.tools import require_tool

PERSONAL = f"pop.{HOSTNAME}"
ADDRESS = f"devices@{HOSTNAME}"
PASSWORD = "correct horse battery staple 42"


class PerDeviceQueueTests(TestCase):
    def setUp(self) -> None:
        self.mpop = require_tool("mpop")
        self.fetchmail = require_tool("fetchmail")
        self.server = start_server(
            self, listeners={"pop3": "", "submission": "", "mx": ""}
        )
        server = self.server
        server.zpop("domain", "add", HOSTNAME)
        server.add_account(ADDRESS, PASSWORD)
        server.zpop("pop", "enable", ADDRESS, "--mode", "all")
        server.zpop("pop", "deletion", ADDRESS, "delete")
        shown = server.zpop("pop", "queue", ADDRESS, "per-device")
        self.assertIn("per-device", shown)
        self.phone = self.app_password("phone")
        self.laptop = self.app_password("laptop")
        for subject in ("device one", "device two"):
            message = f"From: a@example.org\nSubject: {subject}\n\nbody {subject}\n"
            server.zpop("deliver", ADDRESS, stdin=message.encode())
        self.cafile = os.path.join(server.dir, "ca.pem")
        with open(self.cafile, "w", encoding="ascii") as f:
            f.write(server.certificate_pem())

    def app_password(self, label: str) -> str:
        return self.server.zpop(
            "app-password", "create", ADDRESS, "--label", label
        ).strip()

    def run_mpop(self) -> list[str]:
        """One mpop run as the phone, deleting what it fetched (keep off);
        the subjects it delivered."""
        server: ZpopServer = self.server
        mbox = os.path.join(server.dir, "phone.mbox")
        done = run_mpop(server, self.mpop, ADDRESS, self.phone, mbox)
        self.assertEqual(
            done.returncode, 0, done.stderr.decode() + done.stdout.decode()
        )
        with open(mbox, "rb") as f:
            return subjects_in(f.read())

    def run_fetchmail(self, keep: bool, run: int) -> list[str]:
        """One fetchmail run as the laptop, through an MDA into files;
        ``keep`` or delete what it fetched; the subjects it delivered.
        ``fetchall``: fetchmail remembers the UIDLs it kept (.fetchids)
        and would skip them, and what is in the queue is the question."""
        server: ZpopServer = self.server
        out = os.path.join(server.dir, f"laptop-{run}")
        os.makedirs(out)
        rc = os.path.join(server.dir, "fetchmailrc")
        with open(rc, "w", encoding="utf-8") as f:
            f.write(
                f"poll 127.0.0.1 service {server.ports['pop3s']} protocol pop3"
                f' user "{ADDRESS}" password "{self.laptop}"'
                f" ssl sslcertck sslcertfile {self.cafile} sslcommonname {PERSONAL}"
                f" {'keep' if keep else 'nokeep'} fetchall"
                f" mda \"/bin/sh -c 'cat > {out}/msg.$$$$'\"\n"
            )
        os.chmod(rc, 0o600)
        done = subprocess.run(
            [
                self.fetchmail,
                "-f",
                rc,
                "--nodetach",
                "--nosyslog",
                "-v",
                "--pidfile",
                os.path.join(server.dir, "fm.pid"),
            ],
            capture_output=True,
            timeout=90,
            env=dict(os.environ, HOME=server.dir),
        )
        # fetchmail exits 1 for "no mail", 0 when it delivered some.
        self.assertIn(
            done.returncode, (0, 1), done.stdout.decode() + done.stderr.decode()
        )
        found: list[str] = []
        for name in sorted(os.listdir(out)):
            with open(os.path.join(out, name), "rb") as f:
                found += subjects_in(f.read())
        self.assertEqual(done.returncode == 1, not found, done.stdout.decode())
        return sorted(found)

    def folders(self) -> dict[str, str]:
        """Subject -> folder of every message, from ``zpop messages``."""
        lines = self.server.zpop("messages", ADDRESS).splitlines()
        rows = [line.split() for line in lines[1:]]
        return {" ".join(row[5:]): row[1] for row in rows}

    def test_two_clients_two_queues(self) -> None:
        """Both clients receive every message; the phone's deletions leave
        the laptop's queue intact and the originals in the Inbox; after the
        laptop deletes too they are in Trash; the log lists both devices."""
        both = ["device one", "device two"]
        self.assertEqual(self.run_fetchmail(keep=True, run=1), both)
        self.assertEqual(sorted(self.run_mpop()), both)
        self.assertEqual(self.run_mpop(), [])
        self.assertEqual(self.folders(), {"device one": "Inbox", "device two": "Inbox"})
        self.assertEqual(self.run_fetchmail(keep=False, run=2), both)
        self.assertEqual(self.folders(), {"device one": "Trash", "device two": "Trash"})
        self.assertEqual(self.run_fetchmail(keep=False, run=3), [])

        lines = self.server.zpop("pop", "log", ADDRESS).splitlines()[1:]
        events = sorted(
            (
                "phone" if "app password phone" in line else "laptop",
                line.split()[-3],
                line.split()[-1],
            )
            for line in lines
            if "app password" in line
        )
        self.assertEqual(len(lines), len(events), lines)
        self.assertEqual(
            events,
            sorted(
                [
                    (device, "retr", n)
                    for device in ("laptop", "laptop", "phone")
                    for n in ("one", "two")
                ]
                + [
                    (device, "dele", n)
                    for device in ("laptop", "phone")
                    for n in ("one", "two")
                ]
            ),
        )

    def test_devices_fetch_at_once(self) -> None:
        """While the phone's session is open, the laptop (fetchmail) fetches
        its whole queue; a second phone session is refused [IN-USE]."""
        phone = POP3Client(self.server, PERSONAL)
        self.addCleanup(phone.close)
        phone.user(ADDRESS)
        phone.pass_(self.phone)
        self.assertEqual(len(phone.list()[1]), 2)
        self.assertEqual(
            self.run_fetchmail(keep=True, run=1), ["device one", "device two"]
        )
        again = POP3Client(self.server, PERSONAL)
        try:
            again.user(ADDRESS)
            with self.assertRaises(poplib.error_proto) as caught:
                again.pass_(self.phone)
        finally:
            again.close()
        self.assertTrue(
            caught.exception.args[0].startswith(b"-ERR [IN-USE] "),
            caught.exception.args[0],
        )
        phone.dele(1)
        phone.quit()
        self.assertEqual(
            self.run_fetchmail(keep=True, run=2), ["device one", "device two"]
        )

    def queue_of(self, secret: str) -> list[str]:
        """The subjects in the queue of the device logging in with
        ``secret``, read with poplib (nothing deleted)."""
        client = POP3Client(self.server, PERSONAL)
        try:
            client.user(ADDRESS)
            client.pass_(secret)
            count = len(client.list()[1])
            found = [
                subjects_in(b"\n".join(client.top(n, 0)[1]))
                for n in range(1, count + 1)
            ]
            client.quit()
        finally:
            client.close()
        return [subject for each in found for subject in each]

    def test_kill_around_quit(self) -> None:
        """kill -9 after the phone's DELE but before QUIT applies nothing;
        after the +OK to QUIT the phone's deletion survives kill -9, and
        the laptop's queue is untouched either way."""
        both = ["device one", "device two"]
        self.assertEqual(self.queue_of(self.laptop), both)
        phone = POP3Client(self.server, PERSONAL)
        phone.user(ADDRESS)
        phone.pass_(self.phone)
        phone.dele(1)
        self.server.kill()
        phone.close()
        self.server.restart()
        self.assertEqual(self.queue_of(self.phone), both)
        phone = POP3Client(self.server, PERSONAL)
        phone.user(ADDRESS)
        phone.pass_(self.phone)
        phone.dele(1)
        self.assertEqual(phone.quit(), b"+OK Bye, 1 messages deleted")
        self.server.kill()
        self.server.restart()
        self.assertEqual(self.queue_of(self.phone), ["device two"])
        self.assertEqual(self.queue_of(self.laptop), both)
        self.assertEqual(self.folders(), {"device one": "Inbox", "device two": "Inbox"})


def subjects_in(data: bytes) -> list[str]:
    """The Subject values of the messages in ``data`` (an mbox or one file)."""
    return [
        line[len(b"Subject: ") :].decode()
        for line in data.splitlines()
        if line.startswith(b"Subject: ")
    ]
