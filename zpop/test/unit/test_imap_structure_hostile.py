"""Tests for zpop.imap.structure on hostile messages: nesting bombs,
boundary floods, NUL bytes and huge header lines stay bounded and never
raise."""

from __future__ import annotations

import json
import random
import time

from twisted.trial.unittest import SynchronousTestCase

from zpop.imap.envelope import MAX_ADDRESS_FIELD, envelope
from zpop.imap.sections import (
    HEADER,
    MIME,
    TEXT,
    Section,
    section_range,
)
from zpop.imap.structure import MAX_DEPTH_CEILING, Part, bodystructure, parse
from zpop.imap.values import encode
from zpop.test import imap_corpus as corpus
from zpop.test.imap_corpus import (
    body,
    crlf,
    fetch,
    lower_type,
    structure,
    wire,
)


class HostileTests(SynchronousTestCase):
    def assert_fast(self, started: float, limit: float = 1.0) -> None:
        self.assertLess(time.perf_counter() - started, limit)

    def test_deep_nesting(self) -> None:
        """10,000 nested multiparts: 20 levels, then one opaque leaf that
        holds the rest; nothing recurses on the input."""
        raw = nested_multiparts(10000)
        started = time.perf_counter()
        tree = parse(raw)
        self.assert_fast(started)
        chain = list(tree.walk())
        self.assertEqual(len(chain), 21)
        self.assertEqual([lower_type(p) for p in chain[:20]], ["multipart/mixed"] * 20)
        leaf = chain[20]
        self.assertEqual(
            (leaf.type, leaf.subtype, leaf.children),
            ("application", "octet-stream", []),
        )
        start = raw.index(b"boundary=b20\r\n\r\n") + len(b"boundary=b20\r\n\r\n")
        self.assertEqual(
            (leaf.body_start, leaf.body_end), (start, raw.index(b"\r\n--b19--"))
        )
        value = encode(bodystructure(tree))
        self.assertEqual(value.count(b'"mixed" ("boundary" "b'), 20)
        self.assertEqual(Part.from_json(json.loads(json.dumps(tree.to_json()))), tree)
        deepest = parse(raw, max_depth=MAX_DEPTH_CEILING)
        self.assertEqual(len(list(deepest.walk())), MAX_DEPTH_CEILING + 1)
        self.assertEqual(
            encode(bodystructure(deepest)).count(b'"mixed"'), MAX_DEPTH_CEILING
        )

    def test_nested_messages(self) -> None:
        raw = b"".join(
            b"Subject: level %d\r\nContent-Type: message/rfc822\r\n\r\n" % i
            for i in range(10000)
        )
        tree = parse(raw + b"end\r\n")
        chain = list(tree.walk())
        self.assertEqual(len(chain), 21)
        self.assertEqual(lower_type(chain[20]), "application/octet-stream")
        self.assertEqual(encode(bodystructure(tree)).count(b'"message" "rfc822"'), 20)

    def test_near_boundaries(self) -> None:
        """600,000 lines that start like the boundary but are not it (6 MB)."""
        junk = b"--boundx\r\n" * 600000
        raw = (
            crlf(
                "MIME-Version: 1.0",
                "Content-Type: multipart/mixed; boundary=bound",
                "",
                "--bound",
                "",
            )
            + junk
            + b"--bound--\r\n"
        )
        started = time.perf_counter()
        tree = parse(raw)
        self.assert_fast(started)
        self.assertEqual(len(tree.children), 1)
        self.assertEqual(body(raw, tree.children[0]), junk[:-2])
        self.assertEqual(tree.children[0].lines, 599999)

    def test_a_million_delimiters(self) -> None:
        """A million real delimiters (5 MB): the part budget stops the walk."""
        raw = (
            crlf("MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=b", "")
            + b"--b\r\n" * 1000000
        )
        started = time.perf_counter()
        tree = parse(raw)
        self.assert_fast(started)
        self.assertEqual(len(tree.children), 9999)
        self.assertEqual(
            {(p.body_start - p.header_start, p.size) for p in tree.children}, {(0, 0)}
        )
        self.assertEqual(Part.from_json(json.loads(json.dumps(tree.to_json()))), tree)

    def test_many_dash_lines(self) -> None:
        raw = (
            crlf(
                "MIME-Version: 1.0",
                "Content-Type: multipart/mixed; boundary=b",
                "",
                "--b",
                "",
            )
            + b"-----\r\n" * 1000000
        )
        started = time.perf_counter()
        tree = parse(raw)
        self.assert_fast(started)
        self.assertEqual(tree.children[0].size, 7 * 1000000)

    def test_nul_bytes(self) -> None:
        raw = crlf(
            b"Subject: \0",
            b"MIME-Version: 1.0",
            b'Content-Type: multipart/mixed; boundary="\0b"',
            b"",
            b"--\0b",
            b"Content-Type: text/plain; name=\0",
            b"",
            b"a\0b",
            b"--\0b--",
        )
        tree = parse(raw)
        self.assertEqual(fetch(raw, Section((1,))), b"a\0b")
        self.assertEqual(tree.boundary, "\ufffdb")
        self.assertEqual(
            structure(raw, extended=False),
            b'(("text" "plain" ("name" {3}\r\n\xef\xbf\xbd "charset" "us-ascii")'
            b' NIL NIL "7bit" 3 0) "mixed")',
        )
        value = envelope(raw)
        assert isinstance(value, tuple)
        self.assertEqual(value[1], "\ufffd")

    def test_megabyte_header_lines(self) -> None:
        subject = b"x" * 1000000
        raw = (
            b"Subject: " + subject + b"\r\n"
            b"To: " + b"a@b, " * 200000 + b"\r\n"
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; " + b";" * 1000000 + b"charset=utf-8\r\n"
            b"Content-Description: " + b"(" * 1000000 + b"\r\n"
            b"\r\n"
            b"body\r\n"
        )
        started = time.perf_counter()
        tree = parse(raw)
        value = envelope(raw[: tree.body_start])
        self.assert_fast(started)
        self.assertEqual(tree.params, (("charset", "utf-8"),))
        self.assertEqual(tree.description, "(" * 1000000)
        assert isinstance(value, tuple)
        self.assertEqual(value[1], subject.decode())
        # The To field is read up to its last comma within the limit.
        self.assertEqual(MAX_ADDRESS_FIELD, 65536)
        self.assertEqual(wire(value[5]), b"(" + b'(NIL NIL "a" "b")' * 13107 + b")")
        self.assertEqual(tree.lines, 1)

    def test_hostile_address_fields(self) -> None:
        """A megabyte of punctuation costs bounded time and gives at most a
        filler address."""
        missing = b'((NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN"))'
        cases = {
            b"<" * 1000000: missing,
            b",<" * 500000: missing,
            b"(" * 1000000: b"NIL",
            b"()" * 500000: b"NIL",
            b'"' * 1000000: missing,
            b"\\" * 1000000: b"NIL",
        }
        for junk, expected in cases.items():
            started = time.perf_counter()
            value = envelope(b"From: " + junk + b"\r\n\r\n")
            self.assert_fast(started)
            assert isinstance(value, tuple)
            self.assertEqual(wire(value[2]), expected, junk[:2])


class RobustnessTests(SynchronousTestCase):
    """Messages cut short anywhere, or with bytes replaced by the ones MIME
    parsing turns on: parsing never raises and the tree stays well formed."""

    def check(self, raw: bytes) -> None:
        tree = parse(raw)
        self.assertEqual((tree.header_start, tree.body_end), (0, len(raw)))
        for part in tree.walk():
            self.assertLessEqual(part.header_start, part.body_start)
            self.assertLessEqual(part.body_start, part.body_end)
            previous = part.body_start
            for child in part.children:
                self.assertLessEqual(previous, child.header_start)
                self.assertLessEqual(child.body_end, part.body_end)
                previous = child.body_end
            self.assertEqual(bool(part.children), part.is_multipart or part.is_message)
        self.assertEqual(Part.from_json(json.loads(json.dumps(tree.to_json()))), tree)
        self.assertEqual(encode(bodystructure(tree))[:1], b"(")
        self.assertEqual(encode(envelope(raw))[:1], b"(")
        for numbers in ((1,), (2,), (1, 1), (2, 1), (2, 2, 1)):
            for text in (None, HEADER, TEXT, MIME):
                for start, end in section_range(tree, Section(numbers, text)):
                    self.assertLessEqual(0, start)
                    self.assertLessEqual(start, end)
                    self.assertLessEqual(end, len(raw))

    def test_truncated(self) -> None:
        """Cut at every third byte (and at the end): every kind of place
        (mid-boundary, mid-header, between CR and LF) comes up."""
        for raw in (corpus.RFC822_ATTACHMENT, corpus.DIGEST, corpus.BARE_LF):
            for cut in [*range(0, len(raw), 3), len(raw)]:
                self.check(raw[:cut])

    def test_mutated(self) -> None:
        rng = random.Random(3501)
        alphabet = b'-\r\n:;"<>()@,= \tbx\0\xff'
        for raw in (corpus.NESTED, corpus.RFC822_ATTACHMENT, corpus.DIGEST):
            for _ in range(60):
                mutated = bytearray(raw)
                for _ in range(rng.randint(1, 20)):
                    mutated[rng.randrange(len(mutated))] = rng.choice(alphabet)
                self.check(bytes(mutated))


def nested_multiparts(count: int) -> bytes:
    """``count`` multiparts, each the only part of the one around it."""
    head = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        for i in range(count)
    )
    tail = b"".join(b"\r\n--b%d--" % i for i in reversed(range(count)))
    return (
        b"Subject: deep\r\nMIME-Version: 1.0\r\n"
        + head
        + b"Content-Type: text/plain\r\n\r\nleaf"
        + tail
        + b"\r\n"
    )
