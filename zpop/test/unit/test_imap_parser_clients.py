"""Tests for zpop.imap.framer and zpop.imap.parser together, with the
commands real clients send: Python's imaplib (its own bytes, through a
fake server), mbsync and Thunderbird."""

from __future__ import annotations

import base64
import datetime
import imaplib

from twisted.trial.unittest import SynchronousTestCase

from zpop.imap.fetch_items import Attribute, BodySection, Fetch, Section
from zpop.imap.framer import CommandFramer, Complete, Continue, RawLine
from zpop.imap.parser import (
    Append,
    Authenticate,
    Command,
    Copy,
    Id,
    ListMailboxes,
    Login,
    Select,
    Status,
    Store,
    parse_command,
)
from zpop.imap.search_keys import Flag, Search
from zpop.test.unit.test_imap_parser import seq, wire


class FakeServer(imaplib.IMAP4):
    """An imaplib client wired to a framer: what it sends is framed and
    parsed as the server would, and answered just enough for imaplib to
    go on (OK to all, + to literals and AUTHENTICATE)."""

    def __init__(self) -> None:
        self.commands: list[Command] = []
        self.raw_lines: list[bytes] = []
        super().__init__()

    def open(
        self, host: str = "", port: int = 143, timeout: float | None = None
    ) -> None:
        self.framer = CommandFramer(max_literal=lambda name: 10_000)
        self.replies = bytearray(b"* OK ready\r\n")

    def send(self, data: bytes) -> None:
        events = self.framer.feed(data)
        while events:
            for event in events:
                self.answer(event)
            events = self.framer.feed(b"")

    def answer(self, event: object) -> None:
        if isinstance(event, Continue):
            self.replies += b"+ go on\r\n"
        elif isinstance(event, RawLine):
            self.raw_lines.append(event.data)
            self.replies += b"%s OK done\r\n" % self.commands[-1].tag.encode()
        elif isinstance(event, Complete):
            command = parse_command(event.segments)
            self.commands.append(command)
            if command.name == "CAPABILITY":
                self.replies += b"* CAPABILITY IMAP4rev1 AUTH=PLAIN ENABLE\r\n"
            if command.name == "AUTHENTICATE":
                self.replies += b"+ \r\n"
                self.framer.expect_line()
            else:
                self.replies += b"%s OK done\r\n" % command.tag.encode()

    def readline(self) -> bytes:
        end = self.replies.index(b"\n") + 1
        line = bytes(self.replies[:end])
        del self.replies[:end]
        return line

    def read(self, size: int) -> bytes:
        data = bytes(self.replies[:size])
        del self.replies[:size]
        return data

    def shutdown(self) -> None:
        pass


class ClientTests(SynchronousTestCase):
    def test_imaplib(self) -> None:
        """Python's imaplib, as it sends each command."""
        client = FakeServer()
        client.login("fred@example.com", 'pass "word"\\')
        client.select()
        client.append("INBOX", None, None, b"Subject: x\n\nbody\n")
        client.append(
            "Sent",
            "(\\Seen)",
            datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=datetime.UTC),
            b"x",
        )
        client.fetch("1", "(BODY.PEEK[HEADER.FIELDS (From Subject)])")
        client.uid("STORE", "5", "+FLAGS", "(\\Seen)")
        client.uid("FETCH", "1:*", "(UID FLAGS)")
        client.search(None, "UNSEEN")
        client.status("INBOX", "(MESSAGES UNSEEN)")
        client.list()
        client.copy("1:3", "Archive")
        self.assertEqual(
            [(c.name, c.args) for c in client.commands],
            [
                ("CAPABILITY", None),
                ("LOGIN", Login(b"fred@example.com", b'pass "word"\\')),
                ("SELECT", Select("INBOX")),
                ("APPEND", Append("INBOX", (), None, b"Subject: x\r\n\r\nbody\r\n")),
                ("APPEND", Append("Sent", ("\\Seen",), 1700000000.0, b"x")),
                (
                    "FETCH",
                    Fetch(
                        seq(b"1"),
                        (
                            BodySection(
                                Section((), "HEADER.FIELDS", ("From", "Subject")),
                                peek=True,
                            ),
                        ),
                    ),
                ),
                ("UID STORE", Store(seq(b"5"), "add", ("\\Seen",))),
                (
                    "UID FETCH",
                    Fetch(seq(b"1:*"), (Attribute("UID"), Attribute("FLAGS"))),
                ),
                ("SEARCH", Search(Flag("\\Seen", False))),
                ("STATUS", Status("INBOX", ("MESSAGES", "UNSEEN"))),
                ("LIST", ListMailboxes("", ("*",))),
                ("COPY", Copy(seq(b"1:3"), "Archive")),
            ],
        )

    def test_imaplib_authenticate(self) -> None:
        """AUTHENTICATE: the response line comes raw, after the + ."""
        client = FakeServer()
        client.authenticate("PLAIN", lambda challenge: b"\0fred\0secret")
        self.assertEqual(
            [(c.name, c.args) for c in client.commands[1:]],
            [("AUTHENTICATE", Authenticate("PLAIN"))],
        )
        self.assertEqual(client.raw_lines, [base64.b64encode(b"\0fred\0secret")])

    def test_mbsync(self) -> None:
        """isync/mbsync, with LITERAL+."""
        self.assertEqual(
            [
                c.args
                for c in wire(
                    b"5 UID FETCH 1:* (UID FLAGS)\r\n"
                    b'6 APPEND "INBOX" (\\Seen) {5+}\r\nHello\r\n'
                    b"7 UID STORE 3 +FLAGS.SILENT \\Deleted\r\n"
                )
            ],
            [
                Fetch(seq(b"1:*"), (Attribute("UID"), Attribute("FLAGS"))),
                Append("INBOX", ("\\Seen",), None, b"Hello"),
                Store(seq(b"3"), "add", ("\\Deleted",), True),
            ],
        )

    def test_thunderbird(self) -> None:
        self.assertEqual(
            [
                c.args
                for c in wire(
                    b'2 ID ("name" "Thunderbird" "version" "115.3.1")\r\n'
                    b'5 select "INBOX" (CONDSTORE)\r\n'
                    b"7 UID fetch 1:* (FLAGS) (CHANGEDSINCE 1)\r\n"
                )
            ],
            [
                Id((("name", "Thunderbird"), ("version", "115.3.1"))),
                Select("INBOX", True),
                Fetch(
                    seq(b"1:*"),
                    (Attribute("UID"), Attribute("FLAGS"), Attribute("MODSEQ")),
                    1,
                ),
            ],
        )
