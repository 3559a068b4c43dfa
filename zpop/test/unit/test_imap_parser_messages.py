"""Tests for zpop.imap.parser: the commands on messages (APPEND, STORE,
COPY, MOVE, UID EXPUNGE), RFC examples and hostile forms."""

from __future__ import annotations

from zpop.imap.fetch_items import Attribute, Fetch
from zpop.imap.parser import Append, Command, Copy, Expunge, Store
from zpop.imap.search_keys import All, Search
from zpop.test.unit.test_imap_parser import ErrorCase, args, parse, seq, wire


class AppendTests(ErrorCase):
    def test_rfc_example(self) -> None:
        """RFC 3501 section 6.3.11, through the framer."""
        message = (
            b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
            b"Subject: afternoon meeting\r\n\r\nHello Joe\r\n"
        )
        data = b"A003 APPEND saved-messages (\\Seen) {%d}\r\n%b\r\n" % (
            len(message),
            message,
        )
        self.assertEqual(
            [c.args for c in wire(data)],
            [Append("saved-messages", ("\\Seen",), None, message)],
        )

    def test_forms(self) -> None:
        self.assertEqual(
            args(b"A1 APPEND INBOX {3}", b"abc", b""), Append("INBOX", (), None, b"abc")
        )
        self.assertEqual(
            args(b'A1 APPEND "INBOX" (\\Seen) {3+}', b"abc", b""),
            Append("INBOX", ("\\Seen",), None, b"abc"),
        )
        self.assertEqual(
            args(b'A1 APPEND x () " 7-Feb-1994 21:52:25 -0800" {0}', b"", b""),
            Append("x", (), 760686745.0, b""),
        )
        self.assertEqual(
            args(
                b"A1 APPEND x (\\seen \\DRAFT $Forwarded \\Seen)"
                b' "17-jul-1996 02:44:25 -0700" {1}',
                b"a",
                b"",
            ),
            Append("x", ("\\Seen", "\\Draft", "$Forwarded"), 837596665.0, b"a"),
        )

    def test_dates(self) -> None:
        """Zones east and west, a leap second, and what is no date-time."""
        for text, expected in (
            (b"01-Jan-1970 00:00:00 +0000", 0.0),
            (b"01-Jan-1970 01:00:00 +0100", 0.0),
            (b"31-Dec-1969 23:30:00 -0030", 0.0),
            (b"31-Dec-1998 23:59:60 +0000", 915148800.0),
            (b"29-Feb-2000 12:00:00 +2359", 951739260.0),
        ):
            self.assertEqual(
                args(b'A1 APPEND x "' + text + b'" {1}', b"a", b"").internal_date,
                expected,
                text,
            )
        for text in (
            b"1-Jan-1970 00:00:00 +0000",
            b"001-Jan-1970 00:00:00 +0000",
            b"30-Feb-2000 00:00:00 +0000",
            b"01-Jan-70 00:00:00 +0000",
            b"01-Foo-1970 00:00:00 +0000",
            b"01-Jan-1970 24:00:00 +0000",
            b"01-Jan-1970 00:60:00 +0000",
            b"01-Jan-1970 00:00:61 +0000",
            b"01-Jan-1970 00:00:00 +0060",
            b"01-Jan-1970 00:00:00 +2400",
            b"01-Jan-1970 00:00:00 0000",
            b"01-Jan-1970 00:00:00 UTC",
            b"01-Jan-1970 00:00:00",
            b"01-Jan-1970  00:00:00 +0000",
            b"01-Jan-0000 00:00:00 +0000",
            b"",
        ):
            self.assertEqual(
                self.error(b'A1 APPEND x "' + text + b'" {1}', b"a", b""),
                ("A1", "bad date-time"),
                text,
            )

    def test_errors(self) -> None:
        for segments, message in (
            ((b'A1 APPEND x "msg"',), "bad date-time"),
            ((b"A1 APPEND x msg",), "APPEND message must be a literal"),
            ((b"A1 APPEND x",), "missing message literal"),
            ((b"A1 APPEND x (\\Seen)",), "missing message literal"),
            ((b"A1 APPEND x (\\Recent) {1}", b"a", b""), "\\Recent cannot be set"),
            ((b"A1 APPEND x (\\Foo) {1}", b"a", b""), "unknown flag \\Foo"),
            ((b"A1 APPEND x (\\Seen {1}", b"a", b""), "bad flag"),
            ((b"A1 APPEND x ((\\Seen)) {1}", b"a", b""), "bad flag"),
            ((b"A1 APPEND x {1}", b"\0", b""), "NUL in message"),
            (
                (b"A1 APPEND x {1}", b"a", b" {1}", b"b", b""),
                "unexpected extra arguments to APPEND",
            ),
            ((b"A1 APPEND x {1}", b"a", b" "), "trailing space after APPEND"),
            ((b"A1 APPEND x {1}", b"a", b"x"), "unexpected extra arguments to APPEND"),
        ):
            self.assertEqual(self.error(*segments), ("A1", message), segments)


class StoreTests(ErrorCase):
    def test_rfc_examples(self) -> None:
        """RFC 3501 sections 6.4.6 and 8, RFC 7162 section 3.1.3."""
        self.assertEqual(
            args(b"A003 STORE 2:4 +FLAGS (\\Deleted)"),
            Store(seq(b"2:4"), "add", ("\\Deleted",)),
        )
        self.assertEqual(
            args(b"a005 store 12 +flags \\deleted"),
            Store(seq(b"12"), "add", ("\\Deleted",)),
        )
        self.assertEqual(
            parse(
                b"a103 UID STORE 6,4,8 (UNCHANGEDSINCE 12121230045)"
                b" +FLAGS.SILENT (\\Deleted)"
            ),
            Command(
                "a103",
                "UID STORE",
                Store(seq(b"6,4,8"), "add", ("\\Deleted",), True, 12121230045),
            ),
        )

    def test_forms(self) -> None:
        """Every action, lists and bare flags, keywords as given."""
        for action, mode, silent in (
            (b"FLAGS", "replace", False),
            (b"flags.silent", "replace", True),
            (b"+FLAGS", "add", False),
            (b"-Flags", "remove", False),
            (b"-FLAGS.SILENT", "remove", True),
        ):
            self.assertEqual(
                args(b"a STORE 1:* " + action + b" (\\SEEN $Label1 NonJunk)"),
                Store(seq(b"1:*"), mode, ("\\Seen", "$Label1", "NonJunk"), silent),
            )
        self.assertEqual(args(b"a STORE 1 FLAGS ()"), Store(seq(b"1"), "replace", ()))
        self.assertEqual(
            args(b"a STORE 1 +FLAGS \\Answered \\flagged x"),
            Store(seq(b"1"), "add", ("\\Answered", "\\Flagged", "x")),
        )
        self.assertEqual(
            args(b"a STORE 1 (unchangedsince 0) FLAGS ()"),
            Store(seq(b"1"), "replace", (), False, 0),
        )

    def test_errors(self) -> None:
        for line, message in (
            (b"a STORE 1 +FLAGS (\\Recent)", "\\Recent cannot be set"),
            (b"a STORE 1 +FLAGS \\Recent", "\\Recent cannot be set"),
            (b"a STORE 1 +FLAGS (\\Foo)", "unknown flag \\Foo"),
            (b"a STORE 1 +FLAGS (\\*)", "bad flag"),
            (b"a STORE 1 +FLAGS (\\)", "missing flag"),
            (b"a STORE 1 +FLAGS (a b", "missing flag"),
            (b"a STORE 1 +FLAGS (a) b", "unexpected extra arguments to STORE"),
            (b"a STORE 1 +FLAGS", "missing flags"),
            (b"a STORE 1 +FLAGS ", "missing flag"),
            (b'a STORE 1 +FLAGS ("x")', "bad flag"),
            (b"a STORE 1 +FLAGS (x%)", "bad flag"),
            (b"a STORE 1 *FLAGS (x)", "bad STORE action"),
            (b"a STORE 1 FLAGS.LOUD (x)", "bad STORE action"),
            (b"a STORE 1 +FLAGS.SILENT.SILENT (x)", "bad STORE action"),
            (b"a STORE 1 (UNCHANGEDSINCE) FLAGS (x)", "missing mod-sequence"),
            (
                b"a STORE 1 (UNCHANGEDSINCE 1 FLAGS (x)",
                "bad end of STORE modifiers",
            ),
            (b"a STORE 1 (NOMODSEQ 1) FLAGS (x)", "unknown STORE modifier NOMODSEQ"),
            (b"a STORE 0 FLAGS (x)", "message number 0 is not valid"),
            (b"a STORE FLAGS (x)", "bad sequence set"),
            (b"a STORE 1", "missing STORE action"),
        ):
            self.assertEqual(self.error(line), ("a", message), line)


class MessageCommandTests(ErrorCase):
    def test_copy_move_expunge(self) -> None:
        """RFC 3501 section 6.4.7, RFC 6851, RFC 4315."""
        self.assertEqual(args(b"A003 COPY 2:4 MEETING"), Copy(seq(b"2:4"), "MEETING"))
        self.assertEqual(
            parse(b"a UID MOVE 42:69 foo"),
            Command("a", "UID MOVE", Copy(seq(b"42:69"), "foo")),
        )
        self.assertEqual(args(b"a MOVE * inbox"), Copy(seq(b"*"), "INBOX"))
        self.assertEqual(args(b"a UID COPY 1,3 Trash"), Copy(seq(b"1,3"), "Trash"))
        self.assertEqual(
            parse(b"A003 UID EXPUNGE 3000:3002"),
            Command("A003", "UID EXPUNGE", Expunge(seq(b"3000:3002"))),
        )
        for line, message in (
            (b"a COPY 1", "missing mailbox name"),
            (b"a COPY x y", "bad sequence set"),
            (b"a COPY 1:2:3 y", "invalid sequence set"),
            (b"a COPY 1,4294967296 y", "message number out of range"),
            (b"a COPY 1abc y", "bad sequence set"),
            (b"a MOVE 1 a b", "unexpected extra arguments to MOVE"),
            (b"a UID EXPUNGE", "missing sequence set"),
            (b"a UID EXPUNGE 1 2", "unexpected extra arguments to UID EXPUNGE"),
        ):
            self.assertEqual(self.error(line), ("a", message), line)

    def test_search_and_fetch(self) -> None:
        """The SEARCH and FETCH grammars have their own tests; here, only
        that the commands reach them."""
        self.assertEqual(parse(b"a SEARCH ALL"), Command("a", "SEARCH", Search(All())))
        self.assertEqual(
            parse(b"a FETCH 1 UID"),
            Command("a", "FETCH", Fetch(seq(b"1"), (Attribute("UID"),))),
        )
