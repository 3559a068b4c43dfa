"""Tests for zpop.imap.sequences: IMAP sequence sets, parsed, resolved
without building lists, and written back."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from zpop.imap.sequences import STAR, SequenceError, SequenceSet


def message(text: bytes) -> str:
    """The error SequenceSet.parse gives for ``text``."""
    try:
        SequenceSet.parse(text)
    except SequenceError as e:
        return str(e)
    raise AssertionError(f"{text!r} parsed")


class ParseTests(SynchronousTestCase):
    def test_forms(self) -> None:
        """Numbers, ranges in either order, *, and comma lists."""
        self.assertEqual(SequenceSet.parse(b"1").ranges, ((1, 1),))
        self.assertEqual(SequenceSet.parse(b"2:4").ranges, ((2, 4),))
        self.assertEqual(SequenceSet.parse(b"4:2").ranges, ((4, 2),))
        self.assertEqual(SequenceSet.parse(b"*").ranges, ((STAR, STAR),))
        self.assertEqual(SequenceSet.parse(b"3:*").ranges, ((3, STAR),))
        self.assertEqual(
            SequenceSet.parse(b"2,4:7,9,12:*").ranges,
            ((2, 2), (4, 7), (9, 9), (12, STAR)),
        )
        self.assertEqual(
            SequenceSet.parse(b"4294967295").ranges, ((4294967295, 4294967295),)
        )

    def test_zero(self) -> None:
        for text in (b"0", b"0:5", b"5:0", b"1,0"):
            self.assertEqual(message(text), "message number 0 is not valid", text)

    def test_out_of_range(self) -> None:
        for text in (b"4294967296", b"1:9999999999", b"99999999999999999999"):
            self.assertEqual(message(text), "message number out of range", text)
        self.assertEqual(message(b"00000000001"), "invalid sequence set")

    def test_malformed(self) -> None:
        for text in (
            b"",
            b",",
            b"1,",
            b",1",
            b"1::2",
            b"1:2:3",
            b":",
            b"1:",
            b"01",
            b"-1",
            b"1.5",
            b"$",
            b"**",
            b"1 2",
        ):
            self.assertEqual(message(text), "invalid sequence set", text)

    def test_too_many_ranges(self) -> None:
        self.assertEqual(
            len(SequenceSet.parse(b",".join([b"1"] * 10_000)).ranges), 10_000
        )
        self.assertEqual(
            message(b",".join([b"1"] * 10_001)), "too many ranges in sequence set"
        )


class ResolveTests(SynchronousTestCase):
    def test_rfc_examples(self) -> None:
        """RFC 3501 section 9: 2,4:7,9,12:* of 15 messages, and *:4,5:7
        of 10, coalesced."""
        self.assertEqual(
            SequenceSet.parse(b"2,4:7,9,12:*").resolve(15),
            (range(2, 3), range(4, 8), range(9, 10), range(12, 16)),
        )
        self.assertEqual(SequenceSet.parse(b"*:4,5:7").resolve(10), (range(4, 11),))

    def test_merge(self) -> None:
        """Overlapping and adjacent ranges merge; order does not matter."""
        self.assertEqual(
            SequenceSet.parse(b"9,1:3,4,2:2,20:10,7").resolve(100),
            (range(1, 5), range(7, 8), range(9, 21)),
        )

    def test_clipped(self) -> None:
        """Nothing above ``largest``; 3291:* holds the last UID even if it
        is below 3291 (RFC 3501 seq-range)."""
        self.assertEqual(SequenceSet.parse(b"3291:*").resolve(100), (range(100, 101),))
        self.assertEqual(SequenceSet.parse(b"5:9").resolve(3), ())
        self.assertEqual(SequenceSet.parse(b"*").resolve(0), ())
        self.assertEqual(SequenceSet.parse(b"1:*").resolve(0), ())

    def test_huge_range(self) -> None:
        """1:4294967295 is one range object, never a list."""
        resolved = SequenceSet.parse(b"1:4294967295").resolve(4294967295)
        self.assertEqual(resolved, (range(1, 4294967296),))
        self.assertEqual(len(resolved[0]), 4294967295)

    def test_contains(self) -> None:
        numbers = SequenceSet.parse(b"2,4:7,12:*,1000:2000000000")
        self.assertEqual(
            [n for n in range(0, 20) if numbers.contains(n, 15)],
            [2, 4, 5, 6, 7, 12, 13, 14, 15],
        )
        self.assertTrue(numbers.contains(15, 15))
        self.assertFalse(numbers.contains(16, 15))
        self.assertTrue(numbers.contains(3, 3))
        self.assertFalse(numbers.contains(1000, 15))
        big = SequenceSet.parse(b"1000:2000000000,7")
        self.assertTrue(big.contains(1999999999, 4294967295))
        self.assertFalse(big.contains(2000000001, 4294967295))
        self.assertFalse(big.contains(999, 4294967295))
        self.assertTrue(big.contains(7, 4294967295))

    def test_exceeds(self) -> None:
        """Message numbers beyond the mailbox, or * of an empty one."""
        self.assertFalse(SequenceSet.parse(b"1:5,*").exceeds(5))
        self.assertTrue(SequenceSet.parse(b"1:6").exceeds(5))
        self.assertTrue(SequenceSet.parse(b"*").exceeds(0))
        self.assertFalse(SequenceSet.parse(b"*").exceeds(1))


class WireTests(SynchronousTestCase):
    def test_of(self) -> None:
        """The compact form of given numbers, for COPYUID and APPENDUID."""
        self.assertEqual(SequenceSet.of([5, 1, 2, 3, 3]).to_wire(), "1:3,5")
        self.assertEqual(SequenceSet.of([7]).to_wire(), "7")
        self.assertEqual(SequenceSet.of(range(10, 20)).to_wire(), "10:19")
        self.assertEqual(SequenceSet.of([4294967295]).to_wire(), "4294967295")

    def test_of_bad(self) -> None:
        for numbers in ([], [0], [4294967296], [-1, 2]):
            self.assertRaises(SequenceError, SequenceSet.of, numbers)

    def test_parsed(self) -> None:
        """A parsed set is written as given."""
        for text in (b"4:2", b"1:*", b"*", b"2,4:7,9,12:*"):
            self.assertEqual(SequenceSet.parse(text).to_wire(), text.decode())

    def test_value(self) -> None:
        """Equal and hashable by ranges, so commands compare."""
        self.assertEqual(SequenceSet.parse(b"1:3"), SequenceSet([(1, 3)]))
        self.assertNotEqual(SequenceSet.parse(b"1:3"), SequenceSet.parse(b"3:1"))
        self.assertEqual(len({SequenceSet.parse(b"1"), SequenceSet.of([1])}), 1)
        self.assertEqual(repr(SequenceSet.parse(b"1:*")), "SequenceSet('1:*')")
