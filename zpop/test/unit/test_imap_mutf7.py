"""Tests for zpop.imap.mutf7: modified UTF-7 mailbox names, strictly one
spelling a name."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from zpop.imap import mutf7

#: (modified UTF-7, the name): RFC 3501 section 5.1.3's example and
#: names clients create.
VECTORS = [
    (b"INBOX", "INBOX"),
    (b"", ""),
    (b"&-", "&"),
    (b"a&-b&-", "a&b&"),
    (b"&ZeVnLIqe-", "日本語"),
    (b"Entw&APw-rfe", "Entwürfe"),
    (b"~peter/mail/&U,BTFw-/&ZeVnLIqe-", "~peter/mail/台北/日本語"),
    (b"&U,BTF2XlZyyKng-", "台北日本語"),
    (b"&Jjo-!", "☺!"),
    (b"&2D3eAA-", "\U0001f600"),
    (b"&AAk-", "\t"),
    (b"&ZeU-&-", "日&"),
    (b"Gel&APY-schte Elemente", "Gelöschte Elemente"),
    (b"&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-", "Отправленные"),
]


class MUTF7Tests(SynchronousTestCase):
    def test_decode(self) -> None:
        for wire, name in VECTORS:
            self.assertEqual(mutf7.decode(wire), name, wire)

    def test_encode(self) -> None:
        for wire, name in VECTORS:
            self.assertEqual(mutf7.encode(name), wire, name)

    def test_round_trip(self) -> None:
        """Every code point but surrogates, in runs of each length mod 3."""
        for start in range(0x80, 0x110000, 0x1357):
            for length in (1, 2, 3, 4):
                name = "a" + "".join(
                    chr(c)
                    for c in range(start, start + length)
                    if not 0xD800 <= c < 0xE000
                )
                self.assertEqual(mutf7.decode(mutf7.encode(name)), name)

    def test_encode_lone_surrogate(self) -> None:
        self.assertRaises(ValueError, mutf7.encode, "\ud800")

    def test_malformed(self) -> None:
        """Each way to spell a name other than its one spelling."""
        for wire, reason in (
            (b"&Jjo!", "unterminated base64 in mailbox name"),
            (b"&ZeVnLIqe", "unterminated base64 in mailbox name"),
            (b"&", "unterminated base64 in mailbox name"),
            (b"&U,BTFw-&ZeVnLIqe-", "superfluous shift in mailbox name"),
            (b"&Jj/-", "bad base64 in mailbox name"),
            (b"&Jjo=-", "bad base64 in mailbox name"),
            (b"&J-", "bad base64 in mailbox name"),
            (b"&Jj-", "bad base64 in mailbox name"),
            (b"&Jjp-", "bad base64 in mailbox name"),
            (b"&ZeVnLIqeA-", "bad base64 in mailbox name"),
            (b"&AGE-", "printable ASCII in base64 in mailbox name"),
            (b"&ACY-", "printable ASCII in base64 in mailbox name"),
            (b"&2D0-", "unpaired surrogate in mailbox name"),
            (b"&3gA-", "unpaired surrogate in mailbox name"),
            (b"&2D3YPQ-", "unpaired surrogate in mailbox name"),
            (b"caf\xc3\xa9", "mailbox name is not 7-bit printable text"),
            (b"a\tb", "mailbox name is not 7-bit printable text"),
            (b"a\x7fb", "mailbox name is not 7-bit printable text"),
            (b"a\0b", "mailbox name is not 7-bit printable text"),
        ):
            with self.assertRaises(mutf7.DecodeError) as caught:
                mutf7.decode(wire)
            self.assertEqual(str(caught.exception), reason, wire)
