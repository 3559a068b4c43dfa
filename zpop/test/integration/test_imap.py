"""IMAP end to end: the real server (twistd) on loopback with real TLS,
driven by Python's imaplib and curl; the POP/IMAP rules of one mailbox."""

from __future__ import annotations

import imaplib
import itertools
import os
import poplib
import re
import socket
import sqlite3
import ssl
import subprocess
import time
from contextlib import closing
from typing import Any

import bcrypt
from twisted.trial.unittest import TestCase

from zpop.store import DATABASE_NAME, schema
from zpop.test.harness import HOSTNAME, ZpopServer
from zpop.test.integration.test_pop3 import POP3Client
from zpop.test.tools import require_tool

HOST = f"pop.{HOSTNAME}"
PASSWORD = "correct horse battery"
_counter = itertools.count()

MESSAGE = (
    b"From: Ann <ann@example.org>\r\n"
    b"To: bob@example.test\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?=\r\n"
    b"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <m1@example.org>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/alternative; boundary=b\r\n"
    b"\r\n"
    b"--b\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"hello there\r\n"
    b"--b\r\n"
    b"Content-Type: text/html\r\n"
    b"\r\n"
    b"<p>hello</p>\r\n"
    b"--b--\r\n"
)


class IMAPS(imaplib.IMAP4_SSL):
    """imaplib over TLS to 127.0.0.1, sending ``HOST`` as SNI."""

    def __init__(self, server: ZpopServer) -> None:
        super().__init__(HOST, server.ports["imaps"], ssl_context=server.ssl_context())

    def _create_socket(self, timeout: Any = None) -> ssl.SSLSocket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout)
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


class ImapMixin:
    server: ZpopServer

    def setUp(self) -> None:
        self.server = ZpopServer()
        self.addCleanup(self.server.cleanup)  # type: ignore[attr-defined]
        self.server.start()
        self.server.zpop("domain", "add", HOSTNAME)

    def account(self) -> str:
        address = f"user{next(_counter)}@{HOSTNAME}"
        self.server.add_account(address, PASSWORD)
        return address

    def deliver(self, address: str, body: bytes, folder: str = "Inbox") -> None:
        self.server.zpop("deliver", address, "--folder", folder, stdin=body)

    def login(self, address: str) -> IMAPS:
        client = IMAPS(self.server)
        client.login(address, PASSWORD)
        self.addCleanup(_logout, client)  # type: ignore[attr-defined]
        return client


def _logout(client: imaplib.IMAP4) -> None:
    try:
        client.logout()
    except (imaplib.IMAP4.error, OSError):
        pass


def ok(result: tuple[str, list[Any]]) -> list[Any]:
    typ, data = result
    assert typ == "OK", (typ, data)
    return data


class ImaplibTests(ImapMixin, TestCase):
    def test_capabilities_and_login(self) -> None:
        """Before login: IMAP4rev1, LITERAL+, SASL-IR, ID, AUTH=PLAIN under
        TLS; after it, the full list."""
        client = IMAPS(self.server)
        self.addCleanup(_logout, client)
        before = set(client.capabilities)
        self.assertLessEqual(
            {"IMAP4REV1", "LITERAL+", "SASL-IR", "ID", "AUTH=PLAIN"}, before
        )
        self.assertNotIn("LOGINDISABLED", before)
        address = self.account()
        client.login(address, PASSWORD)
        caps = ok(client.capability())[-1]
        self.assertEqual(
            caps.decode().split(),
            "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UIDPLUS MOVE"
            " UNSELECT SPECIAL-USE CHILDREN CONDSTORE".split(),
        )

    def test_wrong_password(self) -> None:
        address = self.account()
        client = IMAPS(self.server)
        self.addCleanup(_logout, client)
        with self.assertRaises(imaplib.IMAP4.error) as caught:
            client.login(address, "wrong")
        self.assertEqual(
            str(caught.exception), "b'[AUTHENTICATIONFAILED] Authentication failed'"
        )

    def test_list_select_fetch(self) -> None:
        """LIST shows the built-in folders with their SPECIAL-USE; SELECT
        answers UIDVALIDITY, UIDNEXT, PERMANENTFLAGS, UNSEEN,
        HIGHESTMODSEQ; FETCH answers flags, sizes, ENVELOPE,
        BODYSTRUCTURE, whole and partial bodies."""
        address = self.account()
        self.deliver(address, MESSAGE)
        client = self.login(address)
        listed = sorted(line.decode() for line in ok(client.list()))
        self.assertEqual(
            listed,
            [
                '(\\HasNoChildren \\Drafts) "/" "Drafts"',
                '(\\HasNoChildren \\Junk) "/" "Spam"',
                '(\\HasNoChildren \\Sent) "/" "Sent"',
                '(\\HasNoChildren \\Trash) "/" "Trash"',
                '(\\HasNoChildren) "/" "INBOX"',
            ],
        )
        self.assertEqual(ok(client.select("INBOX")), [b"1"])
        for code, value in (
            ("UIDNEXT", b"2"),
            ("UNSEEN", b"1"),
            ("HIGHESTMODSEQ", b"2"),
        ):
            self.assertEqual(client.untagged_responses[code], [value], code)
        self.assertEqual(
            client.untagged_responses["PERMANENTFLAGS"],
            [b"(\\Seen \\Answered \\Flagged \\Deleted \\Draft \\*)"],
        )
        size = len(MESSAGE)
        items = "(UID FLAGS RFC822.SIZE BODY.PEEK[]<0.6>)"
        [(head, _), tail] = ok(client.fetch("1", items))
        self.assertEqual(head, b"1 (UID 1 FLAGS () RFC822.SIZE %d BODY[]<0> {6}" % size)
        self.assertEqual(tail, b")")
        [(_, whole), _] = ok(client.fetch("1", "(BODY.PEEK[])"))
        self.assertEqual(whole, MESSAGE)
        [(_, part), _] = ok(client.fetch("1", "(BODY.PEEK[1])"))
        self.assertEqual(part, b"hello there")
        [structure] = ok(client.fetch("1", "(BODYSTRUCTURE)"))
        self.assertEqual(
            structure,
            b'1 (BODYSTRUCTURE (("text" "plain" ("charset" "utf-8") NIL NIL "7bit"'
            b' 11 0 NIL NIL NIL NIL)("text" "html" ("charset" "us-ascii") NIL NIL'
            b' "7bit" 12 0 NIL NIL NIL NIL) "alternative" ("boundary" "b") NIL NIL'
            b" NIL))",
        )
        [envelope] = ok(client.fetch("1", "(ENVELOPE FLAGS)"))
        self.assertEqual(
            envelope,
            b'1 (ENVELOPE ("Tue, 01 Dec 2026 10:00:00 +0000" "=?utf-8?q?caf=C3=A9?="'
            b' (("Ann" NIL "ann" "example.org")) (("Ann" NIL "ann" "example.org"))'
            b' (("Ann" NIL "ann" "example.org")) ((NIL NIL "bob" "example.test"))'
            b' NIL NIL NIL "<m1@example.org>") FLAGS ())',
        )
        fetched = ok(client.fetch("1", "(BODY[1])"))
        self.assertEqual(
            (fetched[0], fetched[1]),
            ((b"1 (BODY[1] {11}", b"hello there"), b" FLAGS (\\Seen))"),
        )

    def test_append_store_search_copy_move_expunge(self) -> None:
        address = self.account()
        client = self.login(address)
        # imaplib's own form: no flags, no date.
        data = ok(client.append("INBOX", None, None, MESSAGE))  # type: ignore[arg-type]
        validity = self.validity(client)
        self.assertEqual(data, [b"[APPENDUID %s 1] APPEND done" % validity])
        two = b"Subject: two\r\n\r\nx\r\n"
        ok(client.append("INBOX", "(\\Flagged $Work)", None, two))
        ok(client.select("INBOX"))
        self.assertEqual(ok(client.search(None, "FLAGGED")), [b"2"])
        client.literal = "café".encode()  # type: ignore[attr-defined]
        self.assertEqual(ok(client.search("UTF-8", "SUBJECT")), [b"1"])
        self.assertEqual(ok(client.search(None, "KEYWORD", "$Work")), [b"2"])
        self.assertEqual(ok(client.search(None, "BODY", "hello")), [b"1"])
        self.assertEqual(ok(client.uid("SEARCH", "UNFLAGGED")), [b"1"])
        stored = ok(client.store("1", "+FLAGS", "(\\Seen \\Deleted)"))
        self.assertEqual(stored, [b"1 (FLAGS (\\Seen \\Deleted))"])
        ok(client.create("Work/2026"))
        ok(client.uid("COPY", "2", "Work/2026"))
        [copyuid] = client.response("COPYUID")[1]
        self.assertRegex(copyuid.decode(), r"^\d+ 2 1$")
        ok(client.uid("MOVE", "2", "Spam"))
        self.assertEqual(client.response("EXPUNGE"), ("EXPUNGE", [b"2"]))
        self.assertEqual(ok(client.expunge()), [b"1"])
        self.assertEqual(
            ok(client.status("Work/2026", "(MESSAGES UIDNEXT)")),
            [b'"Work/2026" (MESSAGES 1 UIDNEXT 2)'],
        )
        self.assertEqual(ok(client.select("INBOX")), [b"0"])
        ok(client.rename("Work", "Jobs"))
        names = sorted(line.decode() for line in ok(client.list('""', "Jobs*")))
        self.assertEqual(
            names,
            ['(\\HasChildren) "/" "Jobs"', '(\\HasNoChildren) "/" "Jobs/2026"'],
        )
        typ, data = client.delete("Jobs")
        self.assertEqual((typ, data), ("NO", [b"[CANNOT] Jobs has folders below it"]))

    def test_examine_subscriptions_condstore_and_closing(self) -> None:
        """EXAMINE is read-only; LSUB follows UNSUBSCRIBE; LIST RETURN
        STATUS; CHANGEDSINCE and UNCHANGEDSINCE (CONDSTORE); UID EXPUNGE
        only the UIDs given; CHECK, UNSELECT, CLOSE (which expunges)."""
        address = self.account()
        for n in range(3):
            self.deliver(address, b"Subject: %d\r\n\r\nx\r\n" % n)
        client = self.login(address)
        typ, data = client.select("INBOX", readonly=True)
        self.assertEqual((typ, data), ("OK", [b"3"]))
        self.assertEqual(client.response("READ-ONLY"), ("READ-ONLY", [b""]))
        typ, data = client.store("1", "+FLAGS", "(\\Seen)")
        self.assertEqual(
            (typ, data),
            ("NO", [b"[READ-ONLY] The mailbox is open read-only (EXAMINE)"]),
        )
        ok(client.unsubscribe("Spam"))
        self.assertEqual(
            sorted(ok(client.lsub())),
            [
                b'() "/" "Drafts"',
                b'() "/" "INBOX"',
                b'() "/" "Sent"',
                b'() "/" "Trash"',
            ],
        )
        listed = ok(
            client._simple_command(
                "LIST", '""', "INBOX", "RETURN", "(STATUS (MESSAGES))"
            )
        )
        self.assertEqual(
            client.response("STATUS"), ("STATUS", [b'"INBOX" (MESSAGES 3)'])
        )
        self.assertEqual(listed, [b"LIST done"])
        ok(client.select("INBOX"))
        self.assertEqual(client.response("CLOSED"), ("CLOSED", [b""]))
        [highest] = client.response("HIGHESTMODSEQ")[1]
        ok(client.store("2", "+FLAGS", "(\\Flagged)"))
        changed = ok(client.fetch("1:*", f"(FLAGS) (CHANGEDSINCE {int(highest)})"))
        self.assertEqual(
            changed, [b"2 (FLAGS (\\Flagged) MODSEQ (%d))" % (int(highest) + 1)]
        )
        typ, data = client._simple_command(
            "STORE", "1:2", f"(UNCHANGEDSINCE {int(highest)})", "+FLAGS", "(\\Seen)"
        )
        self.assertEqual(typ, "OK")
        self.assertEqual(data, [b"[MODIFIED 2] Conditional STORE failed"])
        ok(client.store("1:3", "+FLAGS", "(\\Deleted)"))
        ok(client.uid("EXPUNGE", "2"))
        self.assertEqual(client.response("EXPUNGE"), ("EXPUNGE", [b"2"]))
        ok(client.check())
        ok(client._simple_command("UNSELECT"))
        ok(client.select("INBOX"))
        ok(client.close())
        self.assertEqual(ok(client.select("INBOX")), [b"0"])

    @staticmethod
    def validity(client: imaplib.IMAP4) -> bytes:
        [line] = ok(client.status("INBOX", "(UIDVALIDITY)"))
        match = re.search(rb"UIDVALIDITY (\d+)", line)
        assert match is not None
        return match.group(1)

    def test_pop_and_imap_share_the_mailbox(self) -> None:
        """POP's UIDL is the same before and after IMAP moves a message
        out of Spam into INBOX; an IMAP expunge is gone from POP's next
        snapshot; POP's lock never blocks IMAP."""
        address = self.account()
        self.server.zpop("pop", "enable", address, "--mode", "all")
        self.server.zpop("pop", "spam", address, "include")
        self.deliver(address, MESSAGE)
        self.deliver(address, b"Subject: junk\r\n\r\nx\r\n", folder="Spam")
        pop = POP3Client(self.server)
        pop.user(address)
        pop.pass_(PASSWORD)
        before = pop.uidl()[1]
        imap = self.login(address)
        ok(imap.select("Spam"))
        ok(imap.uid("MOVE", "1", "INBOX"))
        pop.quit()
        pop = POP3Client(self.server)
        pop.user(address)
        pop.pass_(PASSWORD)
        self.assertEqual(
            sorted(u.split()[1] for u in pop.uidl()[1]),
            sorted(u.split()[1] for u in before),
        )
        ok(imap.select("INBOX"))
        ok(imap.store("1", "+FLAGS", "\\Deleted"))
        ok(imap.expunge())
        with self.assertRaises(poplib.error_proto) as caught:
            pop.retr(1)
        self.assertEqual(
            caught.exception.args[0],
            b"-ERR [SYS/TEMP] This message was deleted by another session",
        )
        pop.quit()
        pop = POP3Client(self.server)
        pop.user(address)
        pop.pass_(PASSWORD)
        self.assertEqual(len(pop.uidl()[1]), 1)
        pop.quit()


class IdleTests(ImapMixin, TestCase):
    def test_new_mail_and_flags_reach_idle_sessions(self) -> None:
        """Mail stored by another process (``zpop deliver``) reaches an IDLE
        session within 2 seconds; a flag another session sets reaches it
        as FETCH FLAGS."""
        address = self.account()
        self.deliver(address, MESSAGE)
        idler = self.login(address)
        ok(idler.select("INBOX"))
        idler.send(b"i1 IDLE\r\n")
        self.assertEqual(idler.readline(), b"+ idling\r\n")
        started = time.monotonic()
        self.deliver(address, b"Subject: new\r\n\r\nnew\r\n")
        delivered = time.monotonic()
        self.assertEqual(idler.readline(), b"* 2 EXISTS\r\n")
        self.assertLess(time.monotonic() - delivered, 2.0, started)
        other = self.login(address)
        ok(other.select("INBOX"))
        ok(other.store("1", "+FLAGS", "(\\Flagged)"))
        self.assertEqual(idler.readline(), b"* 1 FETCH (FLAGS (\\Flagged))\r\n")
        idler.send(b"DONE\r\n")
        self.assertEqual(idler.readline(), b"i1 OK IDLE done\r\n")


class DurabilityTests(ImapMixin, TestCase):
    def test_kill_after_ok(self) -> None:
        """What IMAP acknowledged (an APPEND's OK, a STORE, an EXPUNGE)
        survives kill -9 of the server right after the reply."""
        address = self.account()
        self.deliver(address, MESSAGE)
        client = self.login(address)
        ok(client.append("INBOX", "(\\Flagged)", None, b"Subject: kept\r\n\r\nx\r\n"))
        ok(client.select("INBOX"))
        ok(client.store("1", "+FLAGS", "(\\Deleted)"))
        ok(client.expunge())
        self.server.kill()
        self.server.restart()
        client = self.login(address)
        ok(client.select("INBOX"))
        self.assertEqual(
            ok(client.fetch("1:*", "(UID FLAGS)")), [b"1 (UID 2 FLAGS (\\Flagged))"]
        )


class StartTLSTests(ImapMixin, TestCase):
    def test_login_disabled_before_tls(self) -> None:
        address = self.account()
        client = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"])
        self.addCleanup(_logout, client)
        self.assertIn("LOGINDISABLED", client.capabilities)
        self.assertIn("STARTTLS", client.capabilities)
        with self.assertRaises(imaplib.IMAP4.error) as caught:
            client.login(address, PASSWORD)
        self.assertIn("PRIVACYREQUIRED", str(caught.exception))
        client.starttls(self.server.ssl_context())
        client.login(address, PASSWORD)
        self.assertEqual(ok(client.select("INBOX")), [b"0"])


class CurlTests(ImapMixin, TestCase):
    def test_list_fetch_upload(self) -> None:
        require_tool("curl")
        address = self.account()
        self.deliver(address, MESSAGE)
        base = f"imaps://{HOST}:{self.server.ports['imaps']}"
        common = [
            "curl",
            "-sS",
            "--cacert",
            self.server.certificate_path,
            "--resolve",
            f"{HOST}:{self.server.ports['imaps']}:127.0.0.1",
            "--user",
            f"{address}:{PASSWORD}",
        ]
        listed = subprocess.run([*common, base + "/"], capture_output=True, check=True)
        self.assertIn(b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n', listed.stdout)
        fetched = subprocess.run(
            [*common, base + "/INBOX;UID=1"], capture_output=True, check=True
        )
        self.assertEqual(fetched.stdout, MESSAGE)
        draft = self.mktemp()
        with open(draft, "wb") as f:
            f.write(b"Subject: draft\r\n\r\ntext\r\n")
        subprocess.run(
            [*common, "-T", draft, base + "/Drafts"], capture_output=True, check=True
        )
        client = self.login(address)
        self.assertEqual(ok(client.select("Drafts")), [b"1"])


class UpgradeTests(TestCase):
    def test_pop_uidls_survive_the_upgrade(self) -> None:
        """A version 17 installation (POP only), upgraded by the server at
        start: poplib sees the UIDLs it saw before, so no client downloads
        anything again, and IMAP numbers the messages by the same uids."""
        server = ZpopServer(init=False)
        self.addCleanup(server.cleanup)
        os.makedirs(server.data)
        database = os.path.join(server.data, DATABASE_NAME)
        schema.migrate(database, to_version=17)
        address = f"old@{HOSTNAME}"
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4))
        with closing(sqlite3.connect(database)) as conn, conn:
            conn.execute(
                "INSERT INTO domains (name, organization, created) VALUES (?, 0, 0)",
                (HOSTNAME,),
            )
            conn.execute(
                "INSERT INTO accounts (address, domain_id, plan, created,"
                " password_hash, uid_validity, next_uid, pop_enabled, pop_mode,"
                " pop_spam) VALUES (?, 1, 'paid', 0, ?, 48879, 9, 1, 'all',"
                " 'include')",
                (address, hashed),
            )
            for folder, uid in (("Inbox", 3), ("Spam", 5), ("Inbox", 8)):
                body = b"Subject: %d\r\n\r\nbody %d\r\n" % (uid, uid)
                conn.execute(
                    "INSERT INTO messages (account_id, folder, uid, received, size,"
                    " subject) VALUES (1, ?, ?, 0, ?, ?)",
                    (folder, uid, len(body), str(uid)),
                )
                conn.execute(
                    "INSERT INTO body_chunks VALUES (last_insert_rowid(), 0, ?)",
                    (body,),
                )
        server.start()
        pop = POP3Client(server)
        pop.user(address)
        pop.pass_(PASSWORD)
        self.assertEqual(pop.uidl()[1], [b"1 beef-3", b"2 beef-5", b"3 beef-8"])
        pop.quit()
        client = IMAPS(server)
        self.addCleanup(_logout, client)
        client.login(address, PASSWORD)
        ok(client.select("INBOX"))
        self.assertEqual(ok(client.uid("SEARCH", "ALL")), [b"3 8"])
        self.assertTrue(
            any(n.endswith(".backup") for n in os.listdir(server.data)),
            "the server backs the version 17 database up before upgrading it",
        )
