"""Real IMAP clients against the real server: mbsync (isync) two-way sync
into a Maildir and back, flags included, byte for byte; fetchmail in IMAP
mode."""

from __future__ import annotations

import os
import re
import subprocess
import textwrap

from twisted.trial.unittest import TestCase

from zpop.test.integration.test_imap import (
    HOST,
    MESSAGE,
    PASSWORD,
    ImapMixin,
    ok,
)
from zpop.test.tools import require_tool


def lf(message: bytes) -> bytes:
    return message.replace(b"\r\n", b"\n")


def without_tuid(message: bytes) -> bytes:
    """mbsync's own X-TUID field out: it adds one to every message it
    copies, either way, to find it again after a crash (isync's sync.c)."""
    return re.sub(rb"(?m)^X-TUID: [^\r\n]*\r?\n", b"", message)


class MbsyncTests(ImapMixin, TestCase):
    def mbsync(self, rc: str) -> str:
        result = subprocess.run(
            [require_tool("mbsync"), "-c", rc, "-a"], capture_output=True, timeout=120
        )
        output = (result.stdout + result.stderr).decode(errors="replace")
        self.assertEqual(result.returncode, 0, output)
        return output

    def config(self, address: str, maildir: str) -> str:
        cafile = os.path.join(self.server.dir, "ca.pem")
        with open(cafile, "w", encoding="ascii") as f:
            f.write(self.server.certificate_pem())
        rc = os.path.join(self.server.dir, "mbsyncrc")
        with open(rc, "w", encoding="utf-8") as f:
            f.write(
                textwrap.dedent(f"""\
                IMAPAccount zpop
                Host 127.0.0.1
                Port {self.server.ports["imaps"]}
                User {address}
                Pass "{PASSWORD}"
                SSLType IMAPS
                CertificateFile {cafile}

                IMAPStore remote
                Account zpop

                MaildirStore local
                Path {maildir}/
                Inbox {maildir}/INBOX
                SubFolders Verbatim

                Channel zpop
                Far :remote:
                Near :local:
                Patterns *
                Create Both
                Expunge Both
                SyncState *
                Sync All
                """)
            )
        return rc

    @staticmethod
    def files(folder: str) -> dict[str, bytes]:
        found = {}
        for sub in ("cur", "new"):
            directory = os.path.join(folder, sub)
            for name in os.listdir(directory):
                with open(os.path.join(directory, name), "rb") as f:
                    found[name] = without_tuid(f.read())
        return found

    def test_two_way_sync(self) -> None:
        """Down: every folder, each message byte-exact with its flags. Up: a
        flag set locally, a new local message and a local deletion reach
        the server on the next run."""
        address = self.account()
        self.deliver(address, MESSAGE)
        self.deliver(address, b"Subject: second\r\n\r\nsecond body\r\n")
        client = self.login(address)
        ok(client.create("Work"))
        ok(client.append("Work", "(\\Seen)", None, b"Subject: w\r\n\r\nwork\r\n"))
        ok(client.select("INBOX"))
        ok(client.store("2", "+FLAGS", "(\\Flagged)"))
        maildir = os.path.join(self.server.dir, "Mail")
        os.mkdir(maildir)
        rc = self.config(address, maildir)
        self.mbsync(rc)
        # A Maildir holds LF line ends (mbsync converts; CRLF on the wire).
        inbox = self.files(os.path.join(maildir, "INBOX"))
        second = b"Subject: second\r\n\r\nsecond body\r\n"
        self.assertEqual(sorted(inbox.values()), sorted([lf(MESSAGE), lf(second)]))
        flagged = [n for n, body in inbox.items() if b"second" in body]
        self.assertTrue(flagged[0].endswith(":2,F"), flagged)
        work = self.files(os.path.join(maildir, "Work"))
        self.assertEqual(list(work.values()), [b"Subject: w\n\nwork\n"])
        self.assertTrue(next(iter(work)).endswith(":2,S"))
        self.assertEqual(
            sorted(os.listdir(maildir)),
            ["Drafts", "INBOX", "Sent", "Spam", "Trash", "Work"],
        )
        # Up: flag the first message seen, delete the second, add one.
        cur = os.path.join(maildir, "INBOX", "cur")
        for name, body in inbox.items():
            path = (
                os.path.join(cur, name)
                if os.path.exists(os.path.join(cur, name))
                else (os.path.join(maildir, "INBOX", "new", name))
            )
            base = name.split(":2,")[0]
            if body == lf(MESSAGE):
                os.rename(path, os.path.join(cur, base + ":2,S"))
            else:
                os.rename(path, os.path.join(cur, base + ":2,FT"))
        local = b"Subject: from the laptop\r\n\r\nwritten offline\r\n"
        with open(os.path.join(maildir, "INBOX", "new", "1.local.host"), "wb") as f:
            f.write(lf(local))
        self.mbsync(rc)
        ok(client.select("INBOX"))
        fetched = ok(client.fetch("1:*", "(FLAGS BODY.PEEK[])"))
        messages = [item for item in fetched if isinstance(item, tuple)]
        self.assertEqual(
            [
                (re.search(rb"FLAGS \(([^)]*)\)", head).group(1), without_tuid(body))  # type: ignore[union-attr]
                for head, body in messages
            ],
            [(b"\\Seen", MESSAGE), (b"", local)],
        )


class FetchmailTests(ImapMixin, TestCase):
    def test_fetchmail_imap(self) -> None:
        """fetchmail in IMAP mode over TLS fetches the unseen messages through
        an MDA, byte for byte, and with ``keep`` leaves them on the server,
        seen; a second run fetches nothing."""
        fetchmail = require_tool("fetchmail")
        address = self.account()
        self.deliver(address, MESSAGE)
        out = os.path.join(self.server.dir, "fetched")
        os.makedirs(out)
        cafile = os.path.join(self.server.dir, "ca.pem")
        with open(cafile, "w", encoding="ascii") as f:
            f.write(self.server.certificate_pem())
        rc = os.path.join(self.server.dir, "fetchmailrc")
        with open(rc, "w", encoding="utf-8") as f:
            f.write(
                f"poll 127.0.0.1 service {self.server.ports['imaps']} protocol imap"
                f' user "{address}" password "{PASSWORD}"'
                f" ssl sslcertck sslcertfile {cafile} sslcommonname {HOST}"
                f" keep mda \"/bin/sh -c 'cat > {out}/msg.$$$$'\"\n"
            )
        os.chmod(rc, 0o600)
        pidfile = os.path.join(self.server.dir, "fm.pid")
        command = [
            fetchmail,
            "-f",
            rc,
            "--nodetach",
            "--nosyslog",
            "--pidfile",
            pidfile,
        ]
        env = dict(os.environ, HOME=self.server.dir)
        first = subprocess.run(command, capture_output=True, timeout=90, env=env)
        self.assertEqual(first.returncode, 0, first.stdout + first.stderr)
        [name] = os.listdir(out)
        with open(os.path.join(out, name), "rb") as f:
            fetched = f.read()
        # fetchmail adds its Received: field on top and writes LF line ends.
        self.assertTrue(fetched.endswith(lf(MESSAGE)), fetched)
        again = subprocess.run(command, capture_output=True, timeout=90, env=env)
        # fetchmail's exit status 1: no mail.
        self.assertEqual(again.returncode, 1, again.stdout + again.stderr)
        client = self.login(address)
        ok(client.select("INBOX"))
        self.assertEqual(ok(client.fetch("1", "(FLAGS)")), [b"1 (FLAGS (\\Seen))"])
