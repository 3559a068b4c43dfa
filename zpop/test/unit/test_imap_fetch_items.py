"""Tests for zpop.imap.fetch_items: FETCH data items, sections, partial
ranges, their response labels, through parse_command."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from zpop.imap.fetch_items import (
    MACROS,
    Attribute,
    BodySection,
    Fetch,
    FetchItem,
    Section,
)
from zpop.imap.parser import ParseError, parse_command
from zpop.imap.sequences import SequenceSet


def fetch(text: bytes) -> Fetch:
    command = parse_command((text,))
    assert isinstance(command.args, Fetch)
    return command.args


def items(text: bytes) -> tuple[FetchItem, ...]:
    return fetch(b"A1 FETCH 1 " + text).items


def labels(text: bytes) -> list[str]:
    return [item.label for item in items(text)]


def body(
    part: tuple[int, ...] = (),
    text: str | None = None,
    fields: tuple[str, ...] = (),
    peek: bool = False,
    partial: tuple[int, int] | None = None,
) -> BodySection:
    return BodySection(Section(part, text, fields), peek, partial)


class ItemTests(SynchronousTestCase):
    def error(self, text: bytes) -> str:
        with self.assertRaises(ParseError) as caught:
            parse_command((b"A1 FETCH 1 " + text,))
        self.assertEqual(caught.exception.tag, "A1")
        return caught.exception.message

    def test_rfc_examples(self) -> None:
        """RFC 3501 sections 6.4.5, 6.4.8 and 8."""
        self.assertEqual(
            fetch(b"A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])"),
            Fetch(
                SequenceSet.parse(b"2:4"),
                (Attribute("FLAGS"), body((), "HEADER.FIELDS", ("DATE", "FROM"))),
            ),
        )
        self.assertEqual(
            fetch(b"A999 UID FETCH 4827313:4828442 FLAGS"),
            Fetch(
                SequenceSet.parse(b"4827313:4828442"),
                (Attribute("UID"), Attribute("FLAGS")),
            ),
        )
        self.assertEqual(items(b"full"), MACROS["FULL"])
        self.assertEqual(items(b"body[header]"), (body((), "HEADER"),))

    def test_macros(self) -> None:
        self.assertEqual(
            labels(b"ALL"), ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"]
        )
        self.assertEqual(labels(b"fast"), ["FLAGS", "INTERNALDATE", "RFC822.SIZE"])
        self.assertEqual(
            labels(b"FULL"),
            ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"],
        )
        self.assertEqual(self.error(b"(ALL)"), "unknown fetch item ALL")
        self.assertEqual(self.error(b"(FAST FLAGS)"), "unknown fetch item FAST")

    def test_attributes(self) -> None:
        names = (
            "ENVELOPE FLAGS INTERNALDATE RFC822 RFC822.HEADER RFC822.SIZE"
            " RFC822.TEXT BODY BODYSTRUCTURE UID MODSEQ"
        )
        self.assertEqual(
            items(b"(" + names.lower().encode() + b")"),
            tuple(Attribute(n) for n in names.split()),
        )
        self.assertEqual(
            [i.sets_seen for i in items(b"(RFC822 RFC822.TEXT RFC822.HEADER FLAGS)")],
            [True, True, False, False],
        )

    def test_sections(self) -> None:
        """Every section form of RFC 3501 section 6.4.5's example."""
        for spec, expected in (
            (b"", body()),
            (b"HEADER", body((), "HEADER")),
            (b"TEXT", body((), "TEXT")),
            (b"1", body((1,))),
            (b"3.1", body((3, 1))),
            (b"4.1.MIME", body((4, 1), "MIME")),
            (b"4.2.HEADER", body((4, 2), "HEADER")),
            (b"4.2.2.1", body((4, 2, 2, 1))),
            (b"2.text", body((2,), "TEXT")),
            (b"1.HEADER.FIELDS (To)", body((1,), "HEADER.FIELDS", ("To",))),
            (
                b"HEADER.FIELDS.NOT (X-A x-b)",
                body((), "HEADER.FIELDS.NOT", ("X-A", "x-b")),
            ),
        ):
            self.assertEqual(items(b"BODY[" + spec + b"]"), (expected,), spec)

    def test_header_list_literal(self) -> None:
        command = parse_command(
            (b'A1 FETCH 1 BODY.PEEK[HEADER.FIELDS ("Subject" {4}', b"Date", b")]")
        )
        assert isinstance(command.args, Fetch)
        self.assertEqual(
            command.args.items,
            (body((), "HEADER.FIELDS", ("Subject", "Date"), peek=True),),
        )

    def test_labels(self) -> None:
        """Upper case, names as given, PEEK dropped, partial as <origin>
        (twisted#5613 answered BODY[]<0.100>)."""
        self.assertEqual(
            labels(
                b"(body.peek[header.fields (From Subject)] BODY[]<0.100> "
                b"BODY.PEEK[1.2.mime]<512.1> body[4.text] BODY[])"
            ),
            [
                "BODY[HEADER.FIELDS (From Subject)]",
                "BODY[]<0>",
                "BODY[1.2.MIME]<512>",
                "BODY[4.TEXT]",
                "BODY[]",
            ],
        )
        self.assertEqual(
            labels(b'BODY[HEADER.FIELDS ("X(a)" "X]b")]'),
            ['BODY[HEADER.FIELDS ("X(a)" "X]b")]'],
        )

    def test_partial(self) -> None:
        self.assertEqual(
            items(b"BODY.PEEK[]<0.4294967295>"),
            (body(peek=True, partial=(0, 4294967295)),),
        )
        for text, message in (
            (b"BODY[]<0.0>", "bad partial length"),
            (b"BODY[]<0>", "bad partial length"),
            (b"BODY[]<.5>", "bad partial offset"),
            (b"BODY[]<0.5", "missing end of partial range"),
            (b"BODY[]<0.4294967296>", "partial length out of range"),
            (b"BODY[]<4294967296.1>", "partial offset out of range"),
            (b"BODY[]<0.5>x", "bad fetch item"),
            (b"BODY[]<-1.5>", "bad partial offset"),
        ):
            self.assertEqual(self.error(text), message, text)

    def test_bad_sections(self) -> None:
        for text, message in (
            (b"BODY[0]", "bad section part number"),
            (b"BODY[01]", "bad section part number"),
            (b"BODY[1.0.2]", "bad section part number"),
            (b"BODY[4294967296]", "bad section part number"),
            (b"BODY[MIME]", "bad section"),
            (b"BODY[1.]", "bad section"),
            (b"BODY[.1]", "bad section"),
            (b"BODY[1..2]", "bad section"),
            (b"BODY[HEADER.2]", "bad section"),
            (b"BODY[FOO]", "bad section"),
            (b"BODY[HEADER.FIELDS]", "missing header list"),
            (b"BODY[HEADER.FIELDS ()]", "empty header list"),
            (b"BODY[HEADER.FIELDS (From]", "missing header field name"),
            (b"BODY[HEADER.FIELDS (From:)]", "bad header field name"),
            (b"BODY[HEADER.FIELDS  (From)]", "extra space before header list"),
            (b"BODY[HEADER", "missing end of section"),
            (b"BODY[TEXT (x)]", "bad end of section"),
            (b"BODY[ ]", "bad section"),
            (b"BODY.PEEK", "unknown fetch item BODY.PEEK"),
            (b"BODY[1]x", "bad fetch item"),
        ):
            self.assertEqual(self.error(text), message, text)

    def test_part_depth(self) -> None:
        deep = b".".join([b"1"] * 32)
        self.assertEqual(items(b"BODY[" + deep + b"]"), (body((1,) * 32),))
        self.assertEqual(
            self.error(b"BODY[" + deep + b".1]"), "section part nested too deeply"
        )

    def test_bad_items(self) -> None:
        for text, message in (
            (b"", "missing fetch item"),
            (b"()", "missing fetch item"),
            (b"(FLAGS", "missing fetch item"),
            (b"(FLAGS )", "missing fetch item"),
            (b"FLAGS)", "unbalanced parenthesis"),
            (b"(FLAGS  UID)", "extra space before fetch item"),
            (b"FLAGS UID", "bad FETCH modifiers"),
            (b"BINARY[1]", "unknown fetch item BINARY"),
            (b"FLAGS[]", "unknown fetch item FLAGS"),
            (b"FLAGS-X", "bad fetch item"),
            (b"((FLAGS))", "bad fetch item"),
            (b"(" * 1000, "bad fetch item"),
            (b"X" * 100, "unknown fetch item " + "X" * 40 + "..."),
        ):
            self.assertEqual(self.error(text), message, text)

    def test_repeats(self) -> None:
        """An item asked twice is answered once."""
        self.assertEqual(labels(b"(FLAGS UID flags)"), ["FLAGS", "UID"])


class ModifierTests(SynchronousTestCase):
    def test_changedsince(self) -> None:
        """RFC 7162 section 3.1.4.1: MODSEQ comes with CHANGEDSINCE."""
        self.assertEqual(
            fetch(b"s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)"),
            Fetch(
                SequenceSet.parse(b"1:*"),
                (Attribute("UID"), Attribute("FLAGS"), Attribute("MODSEQ")),
                12345,
            ),
        )
        self.assertEqual(
            fetch(b"A1 FETCH 1 (MODSEQ FLAGS) (changedsince 0)").items,
            (Attribute("MODSEQ"), Attribute("FLAGS")),
        )

    def test_bad_modifiers(self) -> None:
        for text, message in (
            (b"FLAGS (VANISHED)", "unknown FETCH modifier VANISHED"),
            (b"FLAGS ()", "missing FETCH modifier"),
            (b"FLAGS (CHANGEDSINCE)", "missing mod-sequence"),
            (b"FLAGS (CHANGEDSINCE 1", "missing FETCH modifier"),
            (b"FLAGS (CHANGEDSINCE 1 CHANGEDSINCE 2)", "CHANGEDSINCE given twice"),
            (b"FLAGS (CHANGEDSINCE 9223372036854775808)", "mod-sequence out of range"),
            (b"FLAGS (CHANGEDSINCE 1) x", "unexpected extra arguments to FETCH"),
        ):
            with self.assertRaises(ParseError) as caught:
                parse_command((b"A1 FETCH 1 " + text,))
            self.assertEqual(caught.exception.message, message, text)
