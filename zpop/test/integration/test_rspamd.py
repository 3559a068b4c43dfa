"""rspamd as the MX's spam filter, end to end: the real zpop server with
``[spam] rspamd`` pointed at a real rspamd on loopback
(zpop.test.rspamd_server), mail sent to the MX with smtplib, and where it
went read back with POP3S and ``zpop messages``.

rspamd classifies with its own shipped rules: GTUBE is ``reject``; a
clean message is ``no action``; the harness's test rules put a Subject
containing ``zpop-test-spam`` at ``add header`` and ``zpop-test-grey`` at
``greylist`` (rspamd's default thresholds, 6 and 4)."""

from __future__ import annotations

import email.utils
import os
import re
import smtplib

from twisted.trial.unittest import TestCase

from zpop.test.harness import HOSTNAME, ServerError, ZpopServer
from zpop.test.integration.test_smtp import POP3Client
from zpop.test.rspamd_server import GTUBE, start_rspamd

BOB = f"bob@{HOSTNAME}"
PASSWORD = "correct horse battery"
SENDER = "carol@example.org"


def message(subject: str, text: str = "At noon?", extra: str = "") -> bytes:
    """A plain message from outside to bob, with the fields rspamd expects."""
    return (
        f"From: Carol <{SENDER}>\r\nTo: <{BOB}>\r\nSubject: {subject}\r\n"
        f"Date: {email.utils.formatdate()}\r\n"
        f"Message-ID: {email.utils.make_msgid(domain='example.org')}\r\n"
        f"{extra}\r\n{text}\r\n"
    ).encode()


class RspamdTestCase(TestCase):
    """A real rspamd and a zpop server using it, bob hosted (POP on)."""

    timeout = 120
    fail_policy = "accept"

    def setUp(self) -> None:
        self.rspamd = start_rspamd(self)
        self.server = self.start_server(
            {"rspamd": self.rspamd.url, "fail_policy": self.fail_policy}
        )

    def start_server(self, spam: dict[str, str]) -> ZpopServer:
        server = ZpopServer(settings={"spam": spam})
        self.addCleanup(server.cleanup)
        server.start()
        server.zpop("domain", "add", HOSTNAME)
        server.add_account(BOB, PASSWORD)
        server.zpop("pop", "enable", BOB, "--mode", "all")
        return server

    def send(self, body: bytes) -> tuple[int, bytes]:
        """Send ``body`` to bob through the MX; the reply to the data."""
        client = smtplib.SMTP(
            "127.0.0.1",
            self.server.ports["mx"],
            local_hostname="mail.example.org",
            timeout=60,
        )
        self.addCleanup(client.close)
        client.ehlo()
        client.mail(SENDER)
        client.rcpt(BOB)
        reply: tuple[int, bytes] = client.data(body)
        client.quit()
        return reply

    def pop_messages(self) -> list[bytes]:
        """What bob's next POP session retrieves."""
        pop = POP3Client(self.server)
        try:
            pop.user(BOB)
            pop.pass_(PASSWORD)
            count, _ = pop.stat()
            return [b"\r\n".join(pop.retr(i + 1)[1]) for i in range(count)]
        finally:
            pop.quit()

    def folders(self) -> list[str]:
        """The folder of each of bob's messages, in order."""
        lines = self.server.zpop("messages", BOB).splitlines()
        return [line.split()[1] for line in lines[1:] if line.strip()]

    def below_results(self, stored: bytes) -> bytes:
        """A stored message without the Authentication-Results field that
        the MX's SPF/DKIM/DMARC checks put on top of every message."""
        match = re.match(
            rb"Authentication-Results: "
            + re.escape(HOSTNAME.encode())
            + rb";[^\r\n]*(?:\r\n[ \t][^\r\n]*)*\r\n",
            stored,
        )
        self.assertIsNotNone(match, stored[:500])
        assert match is not None
        return stored[match.end() :]

    def status(self, stored: bytes) -> str:
        """The X-Spam-Status field of a stored message, unfolded."""
        match = re.search(
            rb"^X-Spam-Status:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", stored, re.M
        )
        self.assertIsNotNone(match, stored[:500])
        assert match is not None
        return re.sub(r"\r\n(?=[ \t])", "", match.group(1).decode()).strip()


class ClassificationTests(RspamdTestCase):
    """rspamd's actions through the MX."""

    def test_gtube_refused(self) -> None:
        """GTUBE (rspamd: reject) is refused with 550 5.7.1, nothing stored."""
        answer = self.rspamd.check(message("test", GTUBE))
        self.assertEqual(answer["action"], "reject")
        self.assertEqual(
            self.send(message("test", GTUBE)),
            (550, b"5.7.1 message refused as spam"),
        )
        self.assertEqual(self.folders(), [])

    def test_clean_to_inbox(self) -> None:
        """A clean message (no action) lands in the Inbox, with rspamd's
        score and symbols on top; what rspamd saw was the real envelope."""
        code, _ = self.send(message("lunch"))
        self.assertEqual(code, 250)
        [stored] = self.pop_messages()
        self.assertTrue(
            self.below_results(stored).startswith(b"X-Spam-Status: No, score="),
            stored[:300],
        )
        status = self.status(stored)
        self.assertRegex(
            status,
            r'^No, score=-?\d+\.\d\d required=15\.00 action="no action"\s'
            r"symbols=[A-Z_]+\(-?\d+\.\d\d\)",
        )
        for line in stored.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
            self.assertLessEqual(len(line), 78, line)
        self.assertEqual(self.folders(), ["Inbox"])
        [scanned] = [
            line
            for line in self.rspamd.log_text().splitlines()
            if "rspamd_task_write_log" in line
        ]
        self.assertIn("ip: 127.0.0.1,", scanned)
        self.assertIn(f"from: <{SENDER}>", scanned)
        self.assertIn(f"rcpts: <{BOB}>", scanned)
        self.assertRegex(scanned, r"qid: <[^>]+>")

    def test_add_header_to_spam(self) -> None:
        """A message rspamd scores at "add header" lands in Spam, its status
        field naming the rule."""
        subject = "zpop-test-spam offer"
        self.assertEqual(self.rspamd.check(message(subject))["action"], "add header")
        code, _ = self.send(message(subject))
        self.assertEqual(code, 250)
        self.assertEqual(self.folders(), ["Spam"])
        self.server.zpop("pop", "spam", BOB, "only")
        [stored] = self.pop_messages()
        status = self.status(stored)
        self.assertRegex(
            status, r'^Yes, score=\d+\.\d\d required=15\.00 action="add header"'
        )
        self.assertIn("ZPOP_TEST_SPAM(7.00)", status)

    def test_greylist_deferred(self) -> None:
        """A message rspamd greylists is deferred with 451 4.7.1."""
        subject = "zpop-test-grey offer"
        self.assertEqual(self.rspamd.check(message(subject))["action"], "greylist")
        self.assertEqual(
            self.send(message(subject)),
            (451, b"4.7.1 message deferred by the spam filter, try later"),
        )
        self.assertEqual(self.folders(), [])


class AcceptPolicyTests(RspamdTestCase):
    """``fail_policy = accept``: mail flows while rspamd is down."""

    def test_rspamd_stopped(self) -> None:
        """With rspamd stopped mid-test mail is still delivered, filed by
        the upstream X-Spam-Flag, and the server logs one line per message."""
        self.assertEqual(self.send(message("before"))[0], 250)
        self.rspamd.stop()
        self.assertEqual(self.send(message("during"))[0], 250)
        self.assertEqual(
            self.send(message("flagged", extra="X-Spam-Flag: YES\r\n"))[0], 250
        )
        self.assertEqual(self.folders(), ["Inbox", "Inbox", "Spam"])
        failures = [
            line
            for line in self.server.log_text().splitlines()
            if "rspamd at " in line and " failed for " in line
        ]
        self.assertEqual(len(failures), 2, failures)
        self.assertIn("cannot connect", failures[0])
        self.assertIn("fail_policy=accept", failures[0])
        [before, during] = self.pop_messages()
        self.assertTrue(self.below_results(before).startswith(b"X-Spam-Status: No,"))
        self.assertNotIn(b"X-Spam-Status", during)


class TempfailPolicyTests(RspamdTestCase):
    """``fail_policy = tempfail``: mail waits while rspamd is down."""

    fail_policy = "tempfail"

    def test_rspamd_stopped(self) -> None:
        """With rspamd stopped mid-test the MX defers mail with 451 4.7.1;
        once rspamd is back it is accepted again."""
        self.assertEqual(self.send(message("before"))[0], 250)
        self.rspamd.stop()
        self.assertEqual(
            self.send(message("during")),
            (451, b"4.7.1 spam filter unavailable, try again later"),
        )
        self.rspamd.start()
        self.assertEqual(self.send(message("after"))[0], 250)
        self.assertEqual(self.folders(), ["Inbox", "Inbox"])


class PasswordTests(RspamdTestCase):
    """``password_file``: the Password rspamd's controller demands."""

    def setUp(self) -> None:
        self.rspamd = start_rspamd(self, controller_password="s3cret pass")
        path = os.path.abspath(self.mktemp())
        with open(path, "w", encoding="utf-8") as f:
            f.write("s3cret pass\nsecond line ignored\n")
        self.server = self.start_server(
            {"rspamd": self.rspamd.controller_url, "password_file": path}
        )

    def test_password_sent(self) -> None:
        """The password file's first line opens rspamd's controller: the
        message is classified (Inbox, with the status field)."""
        self.assertEqual(self.send(message("lunch"))[0], 250)
        [stored] = self.pop_messages()
        self.assertTrue(
            self.below_results(stored).startswith(b"X-Spam-Status: No, score="),
            stored[:300],
        )

    def test_wrong_password(self) -> None:
        """A wrong password is an unusable answer (401): the fail policy
        (accept) delivers, and the log says why."""
        path = os.path.abspath(self.mktemp())
        with open(path, "w", encoding="utf-8") as f:
            f.write("wrong\n")
        self.server = self.start_server(
            {"rspamd": self.rspamd.controller_url, "password_file": path}
        )
        self.assertEqual(self.send(message("lunch"))[0], 250)
        self.assertEqual(self.folders(), ["Inbox"])
        self.assertIn("HTTP status 401; fail_policy=accept", self.server.log_text())


class ConfigurationTests(TestCase):
    """What ``[spam]`` settings the server refuses at start."""

    timeout = 60

    def test_missing_password_file(self) -> None:
        """A password_file that cannot be read stops the start with a
        message naming the setting (no traceback)."""
        server = ZpopServer(
            settings={
                "spam": {
                    "rspamd": "http://127.0.0.1:9",
                    "password_file": "/nonexistent/pw",
                }
            }
        )
        self.addCleanup(server.cleanup)
        with self.assertRaises(ServerError) as raised:
            server.start()
        self.assertIn("[spam] password_file:", str(raised.exception))
        self.assertIn("/nonexistent/pw", str(raised.exception))
