"""Tests for zpop.imap.search_keys: SEARCH criteria as a tree, through
parse_command as the server calls it."""

from __future__ import annotations

import datetime

from twisted.trial.unittest import SynchronousTestCase

from zpop.imap.parser import ParseError, UnsupportedCharset, parse_command
from zpop.imap.search_keys import (
    All,
    And,
    Date,
    Flag,
    Header,
    Key,
    Messages,
    ModSeq,
    Not,
    Or,
    Search,
    Size,
    Text,
)
from zpop.imap.sequences import SequenceSet


def search(*segments: bytes) -> Search:
    """The Search of ``A1 SEARCH <segments>``."""
    command = parse_command((b"A1 SEARCH " + segments[0], *segments[1:]))
    assert isinstance(command.args, Search)
    return command.args


def key(text: bytes) -> Key:
    return search(text).key


def seen(present: bool = True) -> Flag:
    return Flag("\\Seen", present)


class SearchErrorCase(SynchronousTestCase):
    def error(self, text: bytes) -> str:
        with self.assertRaises(ParseError) as caught:
            parse_command((b"A1 SEARCH " + text,))
        self.assertEqual(caught.exception.tag, "A1")
        return caught.exception.message


class KeyTests(SearchErrorCase):
    def test_rfc_examples(self) -> None:
        """RFC 3501 section 6.4.4."""
        self.assertEqual(
            search(b'FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"'),
            Search(
                And(
                    (
                        Flag("\\Flagged", True),
                        Date("internal", "since", datetime.date(1994, 2, 1)),
                        Not(Text("from", "Smith")),
                    )
                )
            ),
        )
        self.assertEqual(
            search(b'TEXT "string not in mailbox"'),
            Search(Text("text", "string not in mailbox")),
        )
        self.assertEqual(
            search(b"CHARSET UTF-8 TEXT {6}", "Bücher".encode()[:6], b""),
            Search(Text("text", "Büche"), charset="UTF-8"),
        )

    def test_flags(self) -> None:
        """Every flag key, NEW and OLD spelled out, keywords as given."""
        expected = {
            b"ANSWERED": Flag("\\Answered", True),
            b"deleted": Flag("\\Deleted", True),
            b"Draft": Flag("\\Draft", True),
            b"FLAGGED": Flag("\\Flagged", True),
            b"RECENT": Flag("\\Recent", True),
            b"SEEN": seen(),
            b"UNANSWERED": Flag("\\Answered", False),
            b"UNDELETED": Flag("\\Deleted", False),
            b"UNDRAFT": Flag("\\Draft", False),
            b"UNFLAGGED": Flag("\\Flagged", False),
            b"UNSEEN": seen(False),
            b"OLD": Flag("\\Recent", False),
            b"NEW": And((Flag("\\Recent", True), seen(False))),
            b"KEYWORD $Forwarded": Flag("$Forwarded", True),
            b"UNKEYWORD Junk": Flag("Junk", False),
            b"ALL": All(),
        }
        for text, value in expected.items():
            self.assertEqual(key(text), value, text)

    def test_text(self) -> None:
        for name, field in (
            (b"BCC", "bcc"),
            (b"BODY", "body"),
            (b"CC", "cc"),
            (b"FROM", "from"),
            (b"SUBJECT", "subject"),
            (b"TEXT", "text"),
            (b"TO", "to"),
        ):
            self.assertEqual(key(name + b" x@y"), Text(field, "x@y"))
        self.assertEqual(key(b'SUBJECT ""'), Text("subject", ""))
        self.assertEqual(key('SUBJECT "Grüße"'.encode()), Text("subject", "Grüße"))
        self.assertEqual(key(b"HEADER Message-ID <a@b>"), Header("Message-ID", "<a@b>"))
        self.assertEqual(key(b'HEADER X-FOO ""'), Header("X-FOO", ""))

    def test_dates(self) -> None:
        day = datetime.date(1994, 2, 1)
        for name, field, comparison in (
            (b"BEFORE", "internal", "before"),
            (b"ON", "internal", "on"),
            (b"SINCE", "internal", "since"),
            (b"SENTBEFORE", "sent", "before"),
            (b"SENTON", "sent", "on"),
            (b"SENTSINCE", "sent", "since"),
        ):
            self.assertEqual(
                key(name + b" 1-Feb-1994"),
                Date(field, comparison, day),
            )
        self.assertEqual(key(b'ON "01-FEB-1994"'), Date("internal", "on", day))
        self.assertEqual(
            key(b"ON 29-feb-2024"), Date("internal", "on", datetime.date(2024, 2, 29))
        )

    def test_bad_dates(self) -> None:
        for text in (
            b"ON 30-Feb-1994",
            b"ON 29-Feb-2023",
            b"ON 1-Foo-1994",
            b"ON 001-Feb-1994",
            b"ON 1-Feb-94",
            b"ON 1-Feb-0000",
            b"ON 1 Feb 1994",
            b"ON 1-Feb-1994x",
            b"ON {10}",
            b'ON " 1-Feb-1994"',
            b"ON 1994-02-01",
        ):
            self.assertEqual(self.error(text), "bad date", text)
        self.assertEqual(self.error(b"ON"), "missing date")

    def test_numbers(self) -> None:
        self.assertEqual(key(b"LARGER 0"), Size("larger", 0))
        self.assertEqual(key(b"SMALLER 10000"), Size("smaller", 10000))
        self.assertEqual(key(b"LARGER 9223372036854775807"), Size("larger", 2**63 - 1))
        self.assertEqual(self.error(b"LARGER 9223372036854775808"), "size out of range")
        self.assertEqual(self.error(b"LARGER -1"), "bad size")
        self.assertEqual(self.error(b"LARGER 1k"), "bad size")

    def test_sets(self) -> None:
        self.assertEqual(key(b"1:*"), Messages(SequenceSet.parse(b"1:*"), uid=False))
        self.assertEqual(
            key(b"UID 4,8:9"), Messages(SequenceSet.parse(b"4,8:9"), uid=True)
        )
        self.assertEqual(key(b"*"), Messages(SequenceSet.parse(b"*"), uid=False))
        self.assertEqual(self.error(b"0"), "message number 0 is not valid")
        self.assertEqual(self.error(b"UID 1:0"), "message number 0 is not valid")
        self.assertEqual(self.error(b"UID $"), "bad sequence set")

    def test_logic(self) -> None:
        """OR, NOT and groups; a group of one key is the key."""
        self.assertEqual(
            key(b"OR SEEN (FLAGGED DELETED)"),
            Or(seen(), And((Flag("\\Flagged", True), Flag("\\Deleted", True)))),
        )
        self.assertEqual(key(b"NOT (SEEN)"), Not(seen()))
        self.assertEqual(key(b"((SEEN))"), seen())
        self.assertEqual(
            key(b"OR OR FROM a TO a CC a"),
            Or(Or(Text("from", "a"), Text("to", "a")), Text("cc", "a")),
        )

    def test_modseq(self) -> None:
        """RFC 7162 section 3.1.5, and its flag entry names."""
        self.assertEqual(key(b"MODSEQ 620162338"), ModSeq(620162338))
        self.assertEqual(key(b"MODSEQ 0"), ModSeq(0))
        self.assertEqual(
            key(b'MODSEQ "/flags/\\\\draft" all 620162338'),
            ModSeq(620162338, "\\Draft", "all"),
        )
        self.assertEqual(
            key(b'MODSEQ "/FLAGS/$MDNSent" PRIV 5'), ModSeq(5, "$MDNSent", "priv")
        )
        self.assertEqual(
            self.error(b'MODSEQ "/flags/\\\\recent" all 1'), "bad MODSEQ entry name"
        )
        self.assertEqual(self.error(b'MODSEQ "/x/y" all 1'), "bad MODSEQ entry name")
        self.assertEqual(
            self.error(b'MODSEQ "/flags/a" public 1'), "bad MODSEQ entry type"
        )
        self.assertEqual(
            self.error(b"MODSEQ 9223372036854775808"), "mod-sequence out of range"
        )


class ProgramTests(SearchErrorCase):
    def test_charset(self) -> None:
        self.assertEqual(search(b"CHARSET us-ascii ALL"), Search(All(), "US-ASCII"))
        self.assertEqual(search(b'CHARSET "UTF-8" ALL'), Search(All(), "UTF-8"))
        with self.assertRaises(UnsupportedCharset) as caught:
            parse_command((b"A1 SEARCH CHARSET ISO-8859-1 TEXT x",))
        self.assertEqual(
            (caught.exception.tag, caught.exception.charset), ("A1", "ISO-8859-1")
        )
        self.assertEqual(self.error(b"CHARSET UTF-8"), "missing search criteria")
        self.assertEqual(self.error(b'CHARSET "\x01" ALL'), "bad charset")
        self.assertEqual(self.error(b'CHARSET "a b" ALL'), "bad charset")

    def test_undecodable_text(self) -> None:
        """Text must be UTF-8 (US-ASCII being a part of it)."""
        with self.assertRaises(ParseError) as caught:
            parse_command((b"A1 SEARCH TEXT {2}", b"\xff\xfe", b""))
        self.assertEqual(caught.exception.message, "search text is not UTF-8")

    def test_esearch(self) -> None:
        """RFC 4731 RETURN options; an empty list means ALL."""
        self.assertEqual(
            search(b"RETURN (MIN COUNT) FLAGGED"),
            Search(Flag("\\Flagged", True), returns=frozenset({"MIN", "COUNT"})),
        )
        self.assertEqual(
            search(b"RETURN () CHARSET UTF-8 ALL"),
            Search(All(), "UTF-8", frozenset({"ALL"})),
        )
        self.assertEqual(
            self.error(b"RETURN (SAVE) ALL"), "unknown SEARCH RETURN option SAVE"
        )
        self.assertEqual(self.error(b"RETURN (MIN"), "missing SEARCH RETURN option")

    def test_uid_search(self) -> None:
        command = parse_command((b"A1 UID SEARCH UID 1:* UNSEEN",))
        self.assertEqual(
            (command.name, command.uid, command.args),
            (
                "UID SEARCH",
                True,
                Search(And((Messages(SequenceSet.parse(b"1:*"), True), seen(False)))),
            ),
        )

    def test_errors(self) -> None:
        with self.assertRaises(ParseError) as caught:
            parse_command((b"A1 SEARCH",))
        self.assertEqual(caught.exception.message, "missing search criteria")
        for text, message in (
            (b"", "missing search key"),
            (b"FOO", "unknown search key FOO"),
            (b"SEEN  UNSEEN", "extra space before search key"),
            (b"SEEN ", "missing search key"),
            (b"()", "missing search key"),
            (b"(SEEN", "missing search key"),
            (b"SEEN)", "unbalanced parenthesis"),
            (b"(SEEN))", "unbalanced parenthesis"),
            (b"OR SEEN", "missing search key"),
            (b"NOT", "missing search key"),
            (b"FROM", "missing search text"),
            (b'FROM "x', "unterminated quoted string"),
            (b"HEADER", "missing header field name"),
            (b"HEADER Subject", "missing search text"),
            (b'HEADER "Sub ject" x', "bad header field name"),
            (b"HEADER Subject: x", "bad header field name"),
            (b"KEYWORD \\Seen", "bad keyword"),
            (b"KEYWORD", "missing keyword"),
            (b"SE\x00EN", "unknown search key SE"),
            (b"SEEN\x00", "bad search key"),
        ):
            self.assertEqual(self.error(text), message, text)

    def test_nesting_bomb(self) -> None:
        """A tree of keys 32 deep is fine (31 NOTs and their key); one
        deeper is not, however it nests."""
        self.assertEqual(key(b"NOT " * 31 + b"ALL"), _nots(31, All()))
        self.assertEqual(key(b"(" * 31 + b"ALL" + b")" * 31), All())
        for bomb in (
            b"NOT " * 32 + b"ALL",
            b"(" * 32 + b"ALL" + b")" * 32,
            b"OR " * 32 + b"ALL " * 32 + b"ALL",
            b"(" * 10000,
            b"NOT " * 10000 + b"ALL",
        ):
            self.assertEqual(self.error(bomb), "search criteria nested too deeply")


def _nots(depth: int, inner: Key) -> Key:
    for _ in range(depth):
        inner = Not(inner)
    return inner
