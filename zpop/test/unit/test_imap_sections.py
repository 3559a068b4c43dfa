"""Tests for zpop.imap.sections: FETCH sections and partial fetches as
byte ranges of the stored message."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from zpop.imap.sections import (
    HEADER,
    HEADER_FIELDS,
    HEADER_FIELDS_NOT,
    MIME,
    TEXT,
    Section,
    find_part,
    header_fields,
    partial,
    section_range,
    total,
)
from zpop.imap.structure import parse
from zpop.test import imap_corpus as corpus
from zpop.test.imap_corpus import (
    body,
    crlf,
    fetch,
    lower_type,
    read,
)


class SectionTests(SynchronousTestCase):
    def test_single_part(self) -> None:
        raw = corpus.PLAIN_ASCII
        split = raw.index(b"\r\n\r\n") + 4
        tree = parse(raw)
        self.assertEqual(
            (tree.header_start, tree.body_start, tree.body_end), (0, split, len(raw))
        )
        self.assertEqual(section_range(tree, Section()), [(0, len(raw))])
        self.assertEqual(section_range(tree, Section(text=HEADER)), [(0, split)])
        self.assertEqual(section_range(tree, Section(text=TEXT)), [(split, len(raw))])
        # Part 1 of a single-part message is its body, 1.MIME its header.
        self.assertEqual(section_range(tree, Section((1,))), [(split, len(raw))])
        self.assertEqual(section_range(tree, Section((1,), MIME)), [(0, split)])
        for missing in ((2,), (1, 1), (1, 2)):
            self.assertEqual(section_range(tree, Section(missing)), [], missing)
        self.assertEqual(section_range(tree, Section((1,), HEADER)), [])
        self.assertEqual(
            fetch(
                raw, Section(text=HEADER_FIELDS, fields=("SUBJECT", "from", "X-None"))
            ),
            b"From: Alice Example <alice@example.org>\r\nSubject: Lunch on"
            b" Thursday?\r\n\r\n",
        )
        self.assertEqual(tree.size, len(raw) - split)
        self.assertEqual(tree.lines, 5)

    def test_multipart_and_message(self) -> None:
        raw = corpus.RFC822_ATTACHMENT
        inner_start = raw.index(b"Message-ID: <notes.7")
        inner_body = raw.index(b"--fwd-inner\r\n")
        inner_end = raw.index(b"\r\n--fwd-outer--")
        mime2 = raw.index(b"Content-Type: message/rfc822")
        cases: dict[Section, bytes] = {
            Section((1,)): b"See the forwarded message.",
            Section((1,), MIME): b"Content-Type: text/plain; charset=us-ascii\r\n\r\n",
            Section((2,)): raw[inner_start:inner_end],
            Section((2,), MIME): raw[mime2:inner_start],
            Section((2,), HEADER): raw[inner_start:inner_body],
            Section((2,), TEXT): raw[inner_body:inner_end],
            Section((2, 1)): b"1. Budget approved.",
            Section((2, 2)): b"<ol><li>Budget approved.</li></ol>",
            Section((2, 2), MIME): b"Content-Type: text/html; charset=us-ascii\r\n\r\n",
            # Dovecot's reading: a leaf has a part 1, itself.
            Section((2, 1, 1)): b"1. Budget approved.",
            Section((2, 1, 1, 1)): b"",
            Section((2, 3)): b"",
            Section((3,)): b"",
            Section((1,), HEADER): b"",
            Section((1,), TEXT): b"",
            Section((2, 1), HEADER): b"",
            Section((2,), HEADER_FIELDS, ("subject", "cc")): (
                b"Cc: Judy <judy@example.org>\r\nSubject: Meeting notes\r\n\r\n"
            ),
            Section(
                (2,), HEADER_FIELDS_NOT, ("Message-ID", "Date", "From", "MIME-Version")
            ): (
                b"Reply-To: team@example.org\r\nTo: team@example.org\r\n"
                b"Cc: Judy <judy@example.org>\r\nSubject: Meeting notes\r\n"
                b'Content-Type: multipart/alternative; boundary="fwd-inner"\r\n\r\n'
            ),
            Section(
                text=HEADER_FIELDS, fields=("Subject",)
            ): b"Subject: Fwd: Meeting notes\r\n\r\n",
            Section((3,), HEADER_FIELDS, ("Subject",)): b"",
        }
        for section, expected in cases.items():
            self.assertEqual(fetch(raw, section), expected, section)

    def test_nested_numbering(self) -> None:
        """RFC 3501's numbering through multipart > multipart > multipart."""
        tree = parse(corpus.NESTED)
        png = find_part(tree, (1, 2, 2))
        assert png is not None
        self.assertEqual(lower_type(png), "image/png")
        self.assertEqual(png.content_id, "<photo1@mua.example>")
        self.assertEqual(
            fetch(corpus.NESTED, Section((1, 2, 1))),
            b'<p>Here is the photo:</p><img src="cid:photo1@mua.example">',
        )
        self.assertEqual(
            fetch(corpus.NESTED, Section((2,))), b"item,amount\r\ntrain,42.00"
        )
        self.assertEqual(find_part(tree, (1, 3)), None)
        self.assertEqual(find_part(tree, (1, 2, 3)), None)
        self.assertIs(find_part(tree, ()), tree)

    def test_digest_messages(self) -> None:
        raw = corpus.DIGEST
        mallory = raw.index(b"From: Mallory")
        self.assertEqual(fetch(raw, Section((2,), MIME)), b"\r\n")
        self.assertEqual(fetch(raw, Section((2, 1))), b"Hello list.\r\n")
        self.assertEqual(
            fetch(raw, Section((2,), HEADER)),
            raw[mallory : raw.index(b"Hello list.")],
        )
        self.assertEqual(
            fetch(raw, Section((3,), HEADER_FIELDS, ("In-Reply-To",))),
            b"In-Reply-To: <hello@example.com>\r\n\r\n",
        )

    def test_top_level_message_rfc822(self) -> None:
        raw = crlf(
            "From: wrapper@example.com",
            "Content-Type: message/rfc822",
            "",
            "Subject: inner",
            "",
            "inner body",
        )
        tree = parse(raw)
        self.assertTrue(tree.is_message)
        self.assertEqual(
            fetch(raw, Section((1,))), b"Subject: inner\r\n\r\ninner body\r\n"
        )
        self.assertEqual(fetch(raw, Section((1,), HEADER)), b"Subject: inner\r\n\r\n")
        self.assertEqual(fetch(raw, Section((1, 1))), b"inner body\r\n")
        self.assertEqual(fetch(raw, Section((1, 1), MIME)), b"Subject: inner\r\n\r\n")
        self.assertEqual(fetch(raw, Section((1, 2))), b"")

    def test_offsets(self) -> None:
        """Offsets of every part of the bare-LF message, found by hand."""
        raw = corpus.BARE_LF
        tree = parse(raw)
        first = raw.index(b"--eol\r\n") + 7
        first_body = raw.index(b"one\n")
        second = raw.index(b"three\n--eol\r\n") + 13
        second_body = raw.index(b"four")
        self.assertEqual(
            [(p.header_start, p.body_start, p.body_end, p.lines) for p in tree.walk()],
            [
                (0, first - 7, len(raw), 0),
                (first, first_body, second - 8, 2),
                (second, second_body, second_body + 4, 0),
            ],
        )
        self.assertEqual(body(raw, tree.children[0]), b"one\ntwo\r\nthree")

    def test_header_fields(self) -> None:
        header = (
            b"Subject: folded\r\n subject\r\n"
            b"no colon here\r\n"
            b"X-Spam : yes\r\n"
            b"subject: second\r\n"
            b"\r\n"
        )
        self.assertEqual(
            header_fields(header, ["SUBJECT"]),
            b"Subject: folded\r\n subject\r\nsubject: second\r\n\r\n",
        )
        self.assertEqual(
            header_fields(header, ["subject"], exclude=True),
            b"no colon here\r\nX-Spam : yes\r\n\r\n",
        )
        self.assertEqual(header_fields(header, ["x-spam"]), b"X-Spam : yes\r\n\r\n")
        self.assertEqual(header_fields(header, ["To"]), b"\r\n")
        # No blank line, no blank line added (RFC 3501's one exception).
        self.assertEqual(
            header_fields(corpus.HEADER_ONLY, ["subject"]),
            b"Subject: header only\r\n",
        )
        self.assertEqual(header_fields(b"A: 1\nB: 2\n\nbody", ["b"]), b"B: 2\n\n")
        self.assertEqual(header_fields(b"", ["b"]), b"")
        self.assertEqual(header_fields(b"\r\nA: 1\r\n", ["a"]), b"\r\n")

    def test_section_validation(self) -> None:
        for bad in (
            lambda: Section(text="BODY"),
            lambda: Section(text=MIME),
            lambda: Section((0,)),
            lambda: Section(text=HEADER_FIELDS),
            lambda: Section(text=HEADER, fields=("a",)),
        ):
            self.assertRaises(ValueError, bad)
        self.assertTrue(Section(text=HEADER_FIELDS_NOT, fields=("a",)).exclude)
        self.assertFalse(Section(text=HEADER_FIELDS, fields=("a",)).exclude)


class PartialTests(SynchronousTestCase):
    def test_one_range(self) -> None:
        self.assertEqual(partial([(10, 20)], 0), [(10, 20)])
        self.assertEqual(partial([(10, 20)], 5, 3), [(15, 18)])
        self.assertEqual(partial([(10, 20)], 9, 1), [(19, 20)])
        self.assertEqual(partial([(10, 20)], 5, 100), [(15, 20)])
        self.assertEqual(partial([(10, 20)], 10), [])
        self.assertEqual(partial([(10, 20)], 11, 5), [])
        self.assertEqual(partial([(10, 20)], 0, 0), [])

    def test_many_ranges(self) -> None:
        ranges = [(0, 5), (10, 15), (20, 20), (30, 35)]
        self.assertEqual(partial(ranges, 3, 4), [(3, 5), (10, 12)])
        self.assertEqual(partial(ranges, 5, 5), [(10, 15)])
        self.assertEqual(partial(ranges, 7), [(12, 15), (30, 35)])
        self.assertEqual(partial(ranges, 14, 50), [(34, 35)])
        self.assertEqual(partial([], 0, 5), [])
        self.assertEqual(total(ranges), 15)
        self.assertEqual(total(partial(ranges, 3, 4)), 4)

    def test_on_a_message(self) -> None:
        """BODY[2.1]<3.7> and BODY[2.1]<15.100> read exactly those bytes."""
        raw = corpus.RFC822_ATTACHMENT
        ranges = section_range(parse(raw), Section((2, 1)))
        self.assertEqual(read(raw, partial(ranges, 3, 7)), b"Budget ")
        self.assertEqual(read(raw, partial(ranges, 15, 100)), b"ved.")
        self.assertEqual(read(raw, partial(ranges, 19, 100)), b"")

    def test_negative(self) -> None:
        self.assertRaises(ValueError, partial, [(0, 1)], -1)
        self.assertRaises(ValueError, partial, [(0, 1)], 0, -1)
