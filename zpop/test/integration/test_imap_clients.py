"""Real IMAP clients against the real server: mbsync (isync) two-way sync
into a Maildir and back, flags included, byte for byte; offlineimap3;
fetchmail and getmail6 in IMAP mode."""

from __future__ import annotations

import hashlib
import os
import re
import ssl
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


def debian_python_env(**extra: str) -> dict[str, str]:
    """The environment for a Debian Python program (getmail, offlineimap):
    without the PYTHONPATH trial's workers get, which would load this
    interpreter's modules into Debian's."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return {**env, **extra}


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


class GetmailTests(ImapMixin, TestCase):
    def test_getmail_imap(self) -> None:
        """getmail6's SimpleIMAPSSLRetriever, certificate and host name
        checked, hands each new message to an MDA byte for byte (an
        external MDA: getmail delivers to a Maildir only as non-root),
        leaving it on the server; a second run delivers nothing."""
        getmail = require_tool("getmail")
        address = self.account()
        self.deliver(address, MESSAGE)
        self.deliver(address, b"Subject: second\r\n\r\nsecond body\r\n")
        cafile = os.path.join(self.server.dir, "ca.pem")
        with open(cafile, "w", encoding="ascii") as f:
            f.write(self.server.certificate_pem())
        maildir = os.path.join(self.server.dir, "gm")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(maildir, sub))
        rc = os.path.join(self.server.dir, "getmailrc")
        with open(rc, "w", encoding="utf-8") as f:
            f.write(
                textwrap.dedent(f"""\
                [retriever]
                type = SimpleIMAPSSLRetriever
                server = 127.0.0.1
                port = {self.server.ports["imaps"]}
                username = {address}
                password = {PASSWORD}
                ca_certs = {cafile}
                ssl_cert_hostname = {HOST}
                mailboxes = ("INBOX",)
                record_mailbox = false

                [destination]
                type = MDA_external
                path = /bin/sh
                arguments = ("-c", "cat > {maildir}/new/$$$$")
                allow_root_commands = true

                [options]
                read_all = false
                delete = false
                delivered_to = false
                received = false
                verbose = 0
                """)
            )
        command = [getmail, "--getmaildir", self.server.dir, "--rcfile", rc]
        env = debian_python_env()
        first = subprocess.run(command, capture_output=True, timeout=90, env=env)
        self.assertEqual(first.returncode, 0, first.stdout + first.stderr)
        bodies = []
        for name in os.listdir(os.path.join(maildir, "new")):
            with open(os.path.join(maildir, "new", name), "rb") as f:
                bodies.append(f.read())
        # getmail puts its Return-Path: field on top (none in the message).
        sent = [lf(MESSAGE), b"Subject: second\n\nsecond body\n"]
        self.assertEqual(
            sorted(bodies), sorted(b"Return-Path: <unknown>\n" + m for m in sent)
        )
        again = subprocess.run(command, capture_output=True, timeout=90, env=env)
        self.assertEqual(again.returncode, 0, again.stdout + again.stderr)
        self.assertEqual(len(os.listdir(os.path.join(maildir, "new"))), 2)
        client = self.login(address)
        self.assertEqual(ok(client.select("INBOX")), [b"2"])


class OfflineimapTests(ImapMixin, TestCase):
    def test_offlineimap_sync(self) -> None:
        """offlineimap3 mirrors every folder into a Maildir, then sends a
        flag set locally back to the server."""
        offlineimap = require_tool("offlineimap")
        address = self.account()
        self.deliver(address, MESSAGE)
        # Pinned by fingerprint: offlineimap checks a CA-signed certificate's
        # name against remotehost, 127.0.0.1 here.
        der = ssl.PEM_cert_to_DER_cert(self.server.certificate_pem())
        fingerprint = hashlib.sha512(der).hexdigest()
        local = os.path.join(self.server.dir, "oi")
        rc = os.path.join(self.server.dir, "offlineimaprc")
        with open(rc, "w", encoding="utf-8") as f:
            f.write(
                textwrap.dedent(f"""\
                [general]
                accounts = zpop
                metadata = {self.server.dir}/oi-meta
                ui = basic

                [Account zpop]
                localrepository = local
                remoterepository = remote

                [Repository local]
                type = Maildir
                localfolders = {local}

                [Repository remote]
                type = IMAP
                remotehost = 127.0.0.1
                remoteport = {self.server.ports["imaps"]}
                remoteuser = {address}
                remotepass = {PASSWORD}
                ssl = yes
                cert_fingerprint = {fingerprint}
                """)
            )
        env = debian_python_env(HOME=self.server.dir)
        command = [offlineimap, "-c", rc, "-o", "-u", "basic"]
        self.offlineimap(command, env)
        self.assertEqual(
            sorted(os.listdir(local)), ["Drafts", "INBOX", "Sent", "Spam", "Trash"]
        )
        [name] = os.listdir(os.path.join(local, "INBOX", "cur")) + os.listdir(
            os.path.join(local, "INBOX", "new")
        )
        path = next(
            os.path.join(local, "INBOX", sub, name)
            for sub in ("cur", "new")
            if os.path.exists(os.path.join(local, "INBOX", sub, name))
        )
        with open(path, "rb") as f:
            self.assertEqual(f.read(), lf(MESSAGE))
        base = name.split(":2,")[0]
        os.rename(path, os.path.join(local, "INBOX", "cur", base + ":2,FS"))
        self.offlineimap(command, env)
        client = self.login(address)
        ok(client.select("INBOX"))
        self.assertEqual(
            ok(client.fetch("1", "(FLAGS)")), [b"1 (FLAGS (\\Seen \\Flagged))"]
        )

    def offlineimap(self, command: list[str], env: dict[str, str]) -> str:
        result = subprocess.run(command, capture_output=True, timeout=120, env=env)
        output = (result.stdout + result.stderr).decode(errors="replace")
        self.assertEqual(result.returncode, 0, output)
        return output
