"""Tests for zpop.imap.parser: tags, command names, strings and literals,
mailbox names, and the commands before a mailbox is selected, strictly
to RFC 3501's grammar and its extensions. test_imap_parser_messages has
the commands on messages, test_imap_parser_clients real clients' forms."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from zpop.imap import parser
from zpop.imap.framer import CommandFramer, Complete
from zpop.imap.parser import (
    Authenticate,
    Command,
    Enable,
    Id,
    ListMailboxes,
    Login,
    Mailbox,
    ParseError,
    Rename,
    Select,
    Status,
    parse_command,
)
from zpop.imap.sequences import SequenceSet
from zpop.test import properties  # noqa: F401 (the hypothesis profile)


def parse(*segments: bytes, utf8: bool = False) -> Command:
    return parse_command(segments, utf8=utf8)


def args(*segments: bytes, utf8: bool = False) -> object:
    return parse(*segments, utf8=utf8).args


def seq(text: bytes) -> SequenceSet:
    return SequenceSet.parse(text)


def wire(data: bytes) -> list[Command]:
    """The commands a client's bytes hold, framed as the server frames."""
    framer = CommandFramer(max_literal=lambda name: 10_000)
    commands = []
    events = framer.feed(data)
    while events:
        for event in events:
            if isinstance(event, Complete):
                commands.append(parse_command(event.segments))
        events = framer.feed(b"")
    return commands


class ErrorCase(SynchronousTestCase):
    def error(self, *segments: bytes, utf8: bool = False) -> tuple[str | None, str]:
        with self.assertRaises(ParseError) as caught:
            parse_command(segments, utf8=utf8)
        return caught.exception.tag, caught.exception.message


class TagTests(ErrorCase):
    def test_tags(self) -> None:
        """Any ASTRING-CHAR but "+", "]" included."""
        for tag in ("A1", "a.b", "x]y", "!#$&'-/0", "~_^`|", "t" * 1000):
            self.assertEqual(parse(tag.encode() + b" NOOP"), Command(tag, "NOOP"))

    def test_bad_tags(self) -> None:
        """No tag to answer with: an untagged BAD."""
        for line in (
            b"+ NOOP",
            b"* NOOP",
            b"A+1 NOOP",
            b"A(1 NOOP",
            b"A%1 NOOP",
            b'"A1" NOOP',
            b"{2} NOOP",
            b" A1 NOOP",
            b"\0A1 NOOP",
            b"A\x001 NOOP",
            "Ä1 NOOP".encode(),
            b"A\t1 NOOP",
        ):
            self.assertEqual(self.error(line), (None, "bad tag"), line)
        self.assertEqual(self.error(b""), (None, "empty command line"))
        self.assertEqual(self.error(b"A1 NOOP", b"x"), (None, "malformed command"))
        self.assertEqual(self.error(), (None, "malformed command"))


class CommandNameTests(ErrorCase):
    def test_names(self) -> None:
        self.assertEqual(parse(b"a1 noop"), Command("a1", "NOOP"))
        self.assertEqual(parse(b"A1 NoOp"), Command("A1", "NOOP"))
        for line, message in (
            (b"A1", "missing command name"),
            (b"A1 ", "missing command name"),
            (b"A1  NOOP", "extra space before command name"),
            (b"A1 (NOOP)", "bad command name"),
            (b"A1 FOO", "unknown command FOO"),
            (b"A1 XAPPLEPUSHSERVICE", "unknown command XAPPLEPUSHSERVICE"),
            (b"A1 " + b"Z" * 100, "unknown command " + "Z" * 40 + "..."),
            (b"A1 UID", "missing UID command"),
            (b"A1 UID FOO 1", "unknown command UID FOO"),
            (b"A1 UID NOOP", "unknown command UID NOOP"),
            (b"A1 UID  FETCH 1 FLAGS", "extra space before UID command"),
            (b"A1 NO\0OP", "unknown command NO"),
            (b"A1 NOOP\0", "unexpected extra arguments to NOOP"),
            (b"A1 NOOP ", "trailing space after NOOP"),
            (b"A1 NOOP x", "unexpected extra arguments to NOOP"),
        ):
            self.assertEqual(self.error(line), ("A1", message), line)

    def test_no_arguments(self) -> None:
        """RFC 3501 section 6 examples and the extensions' commands."""
        for line, name in (
            (b"abcd CAPABILITY", "CAPABILITY"),
            (b"a002 NOOP", "NOOP"),
            (b"A023 LOGOUT", "LOGOUT"),
            (b"a002 STARTTLS", "STARTTLS"),
            (b"A002 IDLE", "IDLE"),
            (b"A001 NAMESPACE", "NAMESPACE"),
            (b"A342 UNSELECT", "UNSELECT"),
            (b"A341 CLOSE", "CLOSE"),
            (b"FXXZ CHECK", "CHECK"),
            (b"A202 EXPUNGE", "EXPUNGE"),
        ):
            command = parse(line)
            self.assertEqual(command, Command(line.split()[0].decode(), name))
            self.assertFalse(command.uid)
            self.assertEqual(
                self.error(line + b" x")[1], f"unexpected extra arguments to {name}"
            )

    def test_states(self) -> None:
        """Each command in the set of one state; UID forms selected-only."""
        sets = (
            parser.ANY,
            parser.NOT_AUTHENTICATED,
            parser.AUTHENTICATED,
            parser.SELECTED,
        )
        names = [name for names in sets for name in names]
        self.assertEqual(len(names), len(set(names)))
        self.assertEqual(set(names), parser.COMMANDS)
        self.assertEqual(parser.ANY, {"CAPABILITY", "NOOP", "LOGOUT", "ID"})
        self.assertEqual(
            parser.NOT_AUTHENTICATED, {"STARTTLS", "LOGIN", "AUTHENTICATE"}
        )
        self.assertIn("ENABLE", parser.AUTHENTICATED)
        self.assertIn("UID EXPUNGE", parser.SELECTED)


class StringTests(ErrorCase):
    def test_forms(self) -> None:
        """An astring as atom, quoted (two escapes only) or literal."""
        self.assertEqual(args(b"A1 LOGIN fred x]y"), Login(b"fred", b"x]y"))
        self.assertEqual(
            args(b'A1 LOGIN "fr ed" "a\\\\b\\"c"'), Login(b"fr ed", b'a\\b"c')
        )
        self.assertEqual(args(b'A1 LOGIN "" ""'), Login(b"", b""))
        self.assertEqual(
            args(b"A001 LOGIN {11}", b"FRED FOOBAR", b" {7}", b"fat man", b""),
            Login(b"FRED FOOBAR", b"fat man"),
        )
        self.assertEqual(args(b"A1 LOGIN {0}", b"", b" {0}", b"", b""), Login(b"", b""))
        self.assertEqual(args(b"A1 LOGIN {2}", b"\r\n", b" x"), Login(b"\r\n", b"x"))
        self.assertEqual(
            args('A1 LOGIN "jörg" x'.encode()), Login("jörg".encode(), b"x")
        )

    def test_bad_quoted(self) -> None:
        for line, message in (
            (b'A1 LOGIN "fred', "unterminated quoted string"),
            (b'A1 LOGIN "fred\\', "unterminated quoted string"),
            (b'A1 LOGIN "fr\\ed" x', "bad escape in quoted string"),
            (b'A1 LOGIN "fr\red" x', "bad character in quoted string"),
            (b'A1 LOGIN "fr\ned" x', "bad character in quoted string"),
            (b'A1 LOGIN "fr\0ed" x', "bad character in quoted string"),
            (b'A1 LOGIN "fr\xe9d" x', "user name is not UTF-8"),
            (b'A1 LOGIN "a"b c', "bad password"),
            (b"A1 LOGIN fr\0ed x", "bad password"),
            (b'A1 LOGIN fred "x"y', "unexpected extra arguments to LOGIN"),
        ):
            self.assertEqual(self.error(line), ("A1", message), line)

    def test_bad_literals(self) -> None:
        for segments, message in (
            ((b"A1 LOGIN {3}", b"a\0b", b" x"), "NUL in user name"),
            ((b"A1 LOGIN {4}", b"abc", b" x"), "literal size mismatch"),
            ((b"A1 LOGIN {3}x", b"abc", b" x"), "bad user name"),
            ((b"A1 LOGIN x{3}", b"abc", b" x"), "bad password"),
            ((b"A1 LOGIN {3}", b"abc", b"x y"), "bad password"),
            ((b"A1 LOGIN {3}",), "bad user name"),
            ((b"A1 LOGIN {abc}", b"abc", b" x"), "bad user name"),
        ):
            self.assertEqual(self.error(*segments), ("A1", message), segments)

    def test_arity(self) -> None:
        for line, message in (
            (b"A1 LOGIN", "missing user name"),
            (b"A1 LOGIN fred", "missing password"),
            (b"A1 LOGIN fred ", "missing password"),
            (b"A1 LOGIN fred x y", "unexpected extra arguments to LOGIN"),
            (b"A1 LOGIN fred  x", "extra space before password"),
            (b"A1 LOGIN (fred) x", "bad user name"),
        ):
            self.assertEqual(self.error(line), ("A1", message), line)


class AuthenticationTests(ErrorCase):
    def test_login(self) -> None:
        """RFC 3501 sections 6.2.3 and 8."""
        self.assertEqual(args(b"a001 LOGIN SMITH SESAME"), Login(b"SMITH", b"SESAME"))
        self.assertEqual(args(b"a001 login mrc secret"), Login(b"mrc", b"secret"))

    def test_authenticate(self) -> None:
        """RFC 4959 initial responses, kept as base64 for the SASL layer."""
        self.assertEqual(args(b"A001 AUTHENTICATE GSSAPI"), Authenticate("GSSAPI"))
        self.assertEqual(
            args(b"a AUTHENTICATE plain dGVzdAB0ZXN0AHRlc3Q="),
            Authenticate("PLAIN", b"dGVzdAB0ZXN0AHRlc3Q="),
        )
        self.assertEqual(
            args(b"a AUTHENTICATE EXTERNAL ="), Authenticate("EXTERNAL", b"=")
        )
        for line, message in (
            (b"a AUTHENTICATE", "missing mechanism name"),
            (b"a AUTHENTICATE PLAIN abc", "initial response is not base64"),
            (b"a AUTHENTICATE PLAIN ab=c", "initial response is not base64"),
            (b"a AUTHENTICATE PLAIN ====", "initial response is not base64"),
            (b'a AUTHENTICATE PLAIN "YWJj"', "bad initial response"),
            (
                b"a AUTHENTICATE PLAIN YWJj x",
                "unexpected extra arguments to AUTHENTICATE",
            ),
            (b'a AUTHENTICATE "PLAIN"', "bad mechanism name"),
        ):
            self.assertEqual(self.error(line), ("a", message), line)

    def test_id(self) -> None:
        """RFC 2971 and its bounds."""
        self.assertEqual(
            args(b'a023 ID ("name" "sodr" "version" "19.34" "vendor" NIL)'),
            Id((("name", "sodr"), ("version", "19.34"), ("vendor", None))),
        )
        self.assertEqual(args(b"a042 ID NIL"), Id(None))
        self.assertEqual(args(b"a042 ID ()"), Id(()))
        self.assertEqual(
            args(b"a ID ({4}", b"name", b' "Mail")'), Id((("name", "Mail"),))
        )
        pairs = b" ".join(b'"f%d" "v"' % i for i in range(30))
        self.assertEqual(len(args(b"a ID (" + pairs + b")").params), 30)
        for line, message in (
            (b"a ID (" + pairs + b' "x" "y")', "too many ID fields"),
            (b'a ID ("' + b"f" * 31 + b'" "v")', "ID field or value too long"),
            (b'a ID ("f" "' + b"v" * 1025 + b'")', "ID field or value too long"),
            (b'a ID (name "x")', "bad ID field"),
            (b'a ID ("name")', "missing ID value"),
            (b'a ID ("name" x)', "bad ID value"),
            (b'a ID ("name" "x"', "missing ID field"),
            (b'a ID ("name" "x") x', "unexpected extra arguments to ID"),
            (b"a ID", "missing ID parameters"),
            (b"a ID nil x", "unexpected extra arguments to ID"),
        ):
            self.assertEqual(self.error(line), ("a", message), line)
        self.assertEqual(
            self.error(b"a ID ({1}", b"\xff", b' "x")'),
            ("a", "ID field or value is not UTF-8"),
        )

    def test_enable(self) -> None:
        """RFC 5161: capability atoms, upper-case, each once."""
        self.assertEqual(
            args(b"t2 ENABLE CONDSTORE X-GOOD-IDEA condstore"),
            Enable(("CONDSTORE", "X-GOOD-IDEA")),
        )
        self.assertEqual(args(b"t ENABLE UTF8=ACCEPT"), Enable(("UTF8=ACCEPT",)))
        self.assertEqual(self.error(b"t ENABLE"), ("t", "missing capability"))
        self.assertEqual(self.error(b't ENABLE "X"'), ("t", "bad capability"))


class MailboxNameTests(ErrorCase):
    def test_inbox(self) -> None:
        """INBOX in any case, also as the first level, and only that."""
        for name, expected in (
            (b"inbox", "INBOX"),
            (b'"InBoX"', "INBOX"),
            (b"inbox/Sent", "INBOX/Sent"),
            (b"iNBOX/a/inbox", "INBOX/a/inbox"),
            (b"inbox.Sent", "inbox.Sent"),
            (b"inboxes", "inboxes"),
            (b"Archive/inbox", "Archive/inbox"),
            ('"\u0131nbox"'.encode(), None),
            (b"&ATE-nbox", "\u0131nbox"),
            (b"NIL", "NIL"),
            (b'""', ""),
        ):
            if expected is None:
                self.assertEqual(
                    self.error(b"A1 CREATE " + name),
                    ("A1", "bad mailbox name encoding"),
                )
                continue
            self.assertEqual(args(b"A1 CREATE " + name), Mailbox(expected), name)

    def test_modified_utf7(self) -> None:
        self.assertEqual(args(b"A1 SELECT &ZeVnLIqe-"), Select("日本語"))
        self.assertEqual(args(b'A1 SELECT "Entw&APw-rfe"'), Select("Entwürfe"))
        self.assertEqual(args(b"A1 DELETE a&-b"), Mailbox("a&b"))
        self.assertEqual(args(b"A1 DELETE {6}", b"&ZeU-x", b""), Mailbox("日x"))
        for name in (
            b"&Jjo!",
            b"&U,BTFw-&ZeVnLIqe-",
            b"&AGE-",
            b"&2D0-",
            b"a&",
            b"&,,,-",
        ):
            self.assertEqual(
                self.error(b"A1 DELETE " + name),
                ("A1", "bad mailbox name encoding"),
                name,
            )
        self.assertEqual(
            self.error('A1 DELETE "Entwürfe"'.encode()),
            ("A1", "bad mailbox name encoding"),
        )

    def test_control_characters(self) -> None:
        for name in (b"&AAA-", b"&AAk-", b"&AB8-", b"&AH8-", b"&AJ8-"):
            self.assertEqual(
                self.error(b"A1 CREATE " + name),
                ("A1", "control character in mailbox name"),
                name,
            )
        self.assertEqual(
            self.error(b"A1 CREATE {3}", b"a\x01b", b"", utf8=True),
            ("A1", "control character in mailbox name"),
        )

    def test_utf8_accept(self) -> None:
        """After ENABLE UTF8=ACCEPT names are UTF-8, & is just &."""
        self.assertEqual(
            args('A1 SELECT "Entwürfe"'.encode(), utf8=True), Select("Entwürfe")
        )
        self.assertEqual(args(b"A1 SELECT &ZeVnLIqe-", utf8=True), Select("&ZeVnLIqe-"))
        self.assertEqual(
            self.error(b"A1 SELECT {1}", b"\xff", b"", utf8=True),
            ("A1", "bad mailbox name encoding"),
        )


class MailboxCommandTests(ErrorCase):
    def test_rfc_examples(self) -> None:
        """RFC 3501 sections 6.3.1 to 6.3.7."""
        self.assertEqual(args(b"A142 SELECT INBOX"), Select("INBOX"))
        self.assertEqual(args(b"A932 EXAMINE blurdybloop"), Select("blurdybloop"))
        self.assertEqual(args(b"A003 CREATE owatagusiam/"), Mailbox("owatagusiam/"))
        self.assertEqual(args(b"A683 DELETE blurdybloop"), Mailbox("blurdybloop"))
        self.assertEqual(
            args(b"A683 RENAME blurdybloop sarasota"), Rename("blurdybloop", "sarasota")
        )
        self.assertEqual(
            args(b"A002 SUBSCRIBE #news.comp.mail.mime"),
            Mailbox("#news.comp.mail.mime"),
        )
        self.assertEqual(
            args(b"A002 UNSUBSCRIBE #news.comp.mail.mime"),
            Mailbox("#news.comp.mail.mime"),
        )

    def test_select_condstore(self) -> None:
        """RFC 7162 section 3.1.8."""
        self.assertEqual(args(b"a142 SELECT INBOX (CONDSTORE)"), Select("INBOX", True))
        self.assertEqual(args(b"a EXAMINE x (condstore)"), Select("x", True))
        for line, message in (
            (b"a SELECT INBOX (QRESYNC (1 2))", "unknown SELECT parameter QRESYNC"),
            (b"a EXAMINE INBOX ()", "missing EXAMINE parameter"),
            (b"a SELECT INBOX (CONDSTORE", "missing SELECT parameter"),
            (b"a SELECT INBOX CONDSTORE", "bad SELECT parameters"),
            (b"a SELECT", "missing mailbox name"),
        ):
            self.assertEqual(self.error(line), ("a", message), line)

    def test_arity(self) -> None:
        for line, message in (
            (b"a CREATE", "missing mailbox name"),
            (b"a CREATE a b", "unexpected extra arguments to CREATE"),
            (b"a RENAME a", "missing new mailbox name"),
            (b"a RENAME a b c", "unexpected extra arguments to RENAME"),
            (b"a DELETE (x)", "bad mailbox name"),
            (b"a DELETE x%", "unexpected extra arguments to DELETE"),
        ):
            self.assertEqual(self.error(line), ("a", message), line)

    def test_status(self) -> None:
        """RFC 3501 section 6.3.10, CONDSTORE, RFC 9051's SIZE."""
        self.assertEqual(
            args(b"A042 STATUS blurdybloop (UIDNEXT MESSAGES)"),
            Status("blurdybloop", ("UIDNEXT", "MESSAGES")),
        )
        self.assertEqual(
            args(
                b"a STATUS inbox (messages recent uidnext uidvalidity unseen"
                b" highestmodseq size MESSAGES)"
            ),
            Status(
                "INBOX",
                (
                    "MESSAGES",
                    "RECENT",
                    "UIDNEXT",
                    "UIDVALIDITY",
                    "UNSEEN",
                    "HIGHESTMODSEQ",
                    "SIZE",
                ),
            ),
        )
        for line, message in (
            (b"a STATUS x ()", "missing status item"),
            (b"a STATUS x (FOO)", "unknown status item FOO"),
            (b"a STATUS x MESSAGES", "bad status items"),
            (b"a STATUS x", "missing status items"),
            (b"a STATUS x (MESSAGES", "missing status item"),
        ):
            self.assertEqual(self.error(line), ("a", message), line)


class ListTests(ErrorCase):
    def test_rfc3501(self) -> None:
        """RFC 3501 sections 6.3.8 and 6.3.9."""
        self.assertEqual(args(b'A101 LIST "" ""'), ListMailboxes("", ("",)))
        self.assertEqual(
            args(b'A102 LIST #news.comp.mail.misc ""'),
            ListMailboxes("#news.comp.mail.misc", ("",)),
        )
        self.assertEqual(args(b"A202 LIST ~/Mail/ %"), ListMailboxes("~/Mail/", ("%",)))
        self.assertEqual(args(b'A LIST "" *'), ListMailboxes("", ("*",)))
        self.assertEqual(args(b"A LIST inbox/ x]*"), ListMailboxes("INBOX/", ("x]*",)))
        self.assertEqual(
            args(b'A002 LSUB "#news." "comp.mail.*"'),
            ListMailboxes("#news.", ("comp.mail.*",)),
        )
        self.assertEqual(
            args(b"A LIST &ZeU-/ &ZeVnLIqe-*"), ListMailboxes("日/", ("日本語*",))
        )

    def test_extended(self) -> None:
        """RFC 5258, RFC 6154 SPECIAL-USE, RFC 5819 LIST-STATUS."""
        self.assertEqual(
            args(b'A02 LIST (SUBSCRIBED) "" "*"'),
            ListMailboxes("", ("*",), frozenset({"SUBSCRIBED"}), extended=True),
        )
        self.assertEqual(
            args(b'A03 LIST () "" "%" RETURN (CHILDREN)'),
            ListMailboxes(
                "", ("%",), frozenset(), frozenset({"CHILDREN"}), extended=True
            ),
        )
        self.assertEqual(
            args(b'A05 LIST (subscribed remote RECURSIVEMATCH) "" ("foo" "foo/%" foo)'),
            ListMailboxes(
                "",
                ("foo", "foo/%"),
                frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH"}),
                extended=True,
            ),
        )
        self.assertEqual(
            args(b'A02 LIST "" % RETURN (STATUS (MESSAGES UNSEEN) SUBSCRIBED)'),
            ListMailboxes(
                "",
                ("%",),
                return_options=frozenset({"STATUS", "SUBSCRIBED"}),
                status_items=("MESSAGES", "UNSEEN"),
                extended=True,
            ),
        )
        self.assertEqual(
            args(b't3 LIST (SPECIAL-USE RECURSIVEMATCH) "" "*" RETURN (SPECIAL-USE)'),
            ListMailboxes(
                "",
                ("*",),
                frozenset({"SPECIAL-USE", "RECURSIVEMATCH"}),
                frozenset({"SPECIAL-USE"}),
                extended=True,
            ),
        )
        self.assertEqual(
            args(b'A LIST "" % RETURN ()'),
            ListMailboxes("", ("%",), extended=True),
        )

    def test_errors(self) -> None:
        for line, message in (
            (b"A LIST", "missing reference"),
            (b'A LIST ""', "missing mailbox pattern"),
            (b'A LIST "" % x', "bad LIST RETURN options"),
            (b'A LIST "" % RETURN', "missing LIST RETURN options"),
            (b'A LIST "" % RETURN (FOO)', "unknown LIST RETURN option FOO"),
            (b'A LIST "" % RETURN (STATUS)', "missing status items"),
            (b'A LIST "" % RETURN (STATUS ())', "missing status item"),
            (b'A LIST (FOO) "" %', "unknown LIST option FOO"),
            (
                b'A LIST (RECURSIVEMATCH) "" %',
                "RECURSIVEMATCH needs another selection option",
            ),
            (
                b'A LIST (REMOTE RECURSIVEMATCH) "" %',
                "RECURSIVEMATCH needs another selection option",
            ),
            (b'A LIST (SUBSCRIBED) ""', "missing mailbox pattern"),
            (b'A LIST "" ()', "missing mailbox pattern"),
            (b'A LIST "" (a', "missing mailbox pattern"),
            (b"A LIST % %", "bad reference"),
            (b'A LSUB "" % RETURN ()', "unexpected extra arguments to LSUB"),
            (b'A LSUB "" (%)', "bad mailbox pattern"),
            (b'A LIST "" &Jjo!', "bad mailbox name encoding"),
        ):
            self.assertEqual(self.error(line), ("A", message), line)


#: Commands made of the parts of real ones, in any order.
words = st.sampled_from(
    sorted(parser.COMMANDS)
    + ["(", ")", "[", "]", "<0.5>", '"', '"x"', "\\Seen", "\\Recent", "NIL"]
    + ["1:*", "0", "*", "4294967296", "BODY[1.MIME]", "HEADER.FIELDS", "OR", "NOT"]
    + ["&ZeU-", "&Jjo!", "1-Feb-1994", "CHANGEDSINCE", "RETURN", "{3}", "x\0"]
)


class ParserProperties(SynchronousTestCase):
    @given(st.lists(words, max_size=12), st.sampled_from([" ", "  ", "", "("]))
    def test_only_parse_errors(self, parts: list[str], glue: str) -> None:
        """Any command parses or is a ParseError, whose message is one
        printable ASCII line."""
        line = ("A1 " + glue.join(parts)).encode()
        try:
            command = parse_command((line,))
        except ParseError as e:
            self.assertEqual(e.tag, "A1")
            self.assertTrue(e.message.isprintable() and e.message.isascii(), e.message)
        else:
            self.assertIn(command.name, parser.COMMANDS)
