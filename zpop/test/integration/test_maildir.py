"""Tests for reading Maildirs (zpop.maildir): folders, names, order."""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from zpop import maildir


def touch(path: str, data: bytes = b"Subject: x\n\nx\n") -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def make(root: str, *folders: str) -> None:
    for folder in ("", *folders):
        for sub in ("new", "cur", "tmp"):
            os.makedirs(os.path.join(root, folder, sub), exist_ok=True)


class ParseNameTests(SynchronousTestCase):
    def test_modern(self) -> None:
        """Seconds, microseconds after M, and the S flag are read."""
        self.assertEqual(
            maildir.parse_name("1700000000.M123456P45.host,S=300,W=310:2,FS"),
            (1700000000, 123456, True),
        )

    def test_unseen_and_other_separators(self) -> None:
        """No S flag means unseen; ';2,' and '!2,' info separators work."""
        self.assertEqual(
            maildir.parse_name("1700000000.M1P2.h:2,RT"), (1700000000, 1, False)
        )
        self.assertEqual(
            maildir.parse_name("1700000000.M1P2.h;2,S"), (1700000000, 1, True)
        )
        self.assertEqual(
            maildir.parse_name("1700000000.M1P2.h!2,S"), (1700000000, 1, True)
        )
        self.assertEqual(
            maildir.parse_name("1700000000.M1P2.h"), (1700000000, 1, False)
        )

    def test_old_and_odd(self) -> None:
        """Old-style names have no microseconds; names without a time give None."""
        self.assertEqual(
            maildir.parse_name("1700000000.45_2.host"), (1700000000, 0, False)
        )
        self.assertEqual(maildir.parse_name("msg-1:2,S"), (None, 0, True))
        self.assertEqual(maildir.parse_name("1700000000"), (1700000000, 0, False))


class FolderTests(SynchronousTestCase):
    def test_not_a_maildir(self) -> None:
        """Without cur/ and new/ it is not a Maildir."""
        root = self.mktemp()
        os.makedirs(root)
        self.assertRaises(maildir.NotAMaildirError, maildir.folders, root)
        self.assertRaises(maildir.NotAMaildirError, maildir.folders, root + "/none")

    def test_new_only(self) -> None:
        """A Maildir with only new/ (no cur/, no tmp/) is accepted."""
        root = self.mktemp()
        touch(os.path.join(root, "new", "1.a"))
        found, skipped = maildir.arrival_order(root)
        self.assertEqual([e.name for e in found], ["1.a"])

    def test_mapping(self) -> None:
        """Maildir++ subfolders map onto zpop folders case-insensitively;
        unknown ones and non-Maildir dot-directories are reported or ignored."""
        root = self.mktemp()
        make(root, ".Spam", ".junk", ".Sent", ".TRASH", ".Deleted Messages", ".Work")
        os.makedirs(os.path.join(root, ".notmaildir"))
        touch(os.path.join(root, ".file"))
        self.assertEqual(
            [(f.name, f.target) for f in maildir.folders(root)],
            [
                ("(top level)", "Inbox"),
                (".Deleted Messages", "Trash"),
                (".Sent", "Sent"),
                (".Spam", "Spam"),
                (".TRASH", "Trash"),
                (".Work", None),
                (".junk", "Spam"),
            ],
        )


class OrderTests(SynchronousTestCase):
    def test_arrival_order(self) -> None:
        """All folders merge by time, then microseconds, then name; tmp/,
        dot-files and new/'s flags are ignored; mtime stands in for a time."""
        root = self.mktemp()
        make(root, ".Sent", ".Other")
        touch(os.path.join(root, "cur", "1700000002.M5P1.h:2,S"))
        touch(os.path.join(root, ".Sent", "cur", "1700000001.M9P1.h:2,S"))
        touch(os.path.join(root, "new", "1700000001.M10P1.h:2,S"))
        touch(os.path.join(root, "new", "1700000001.M10P0.h"))
        touch(os.path.join(root, "tmp", "1600000000.M1P1.h"))
        touch(os.path.join(root, "new", ".1600000000.hidden"))
        touch(os.path.join(root, ".Other", "new", "1600000000.M1P1.h"))
        odd = touch(os.path.join(root, "cur", "odd:2,"))
        os.utime(odd, (1700000003.5, 1700000003.5))
        found, skipped = maildir.arrival_order(root)
        self.assertEqual([f.name for f in skipped], [".Other"])
        self.assertEqual(
            [(e.folder, e.name, e.received, e.seen) for e in found],
            [
                ("Sent", "1700000001.M9P1.h:2,S", 1700000001.0, True),
                ("Inbox", "1700000001.M10P0.h", 1700000001.0, False),
                ("Inbox", "1700000001.M10P1.h:2,S", 1700000001.0, False),
                ("Inbox", "1700000002.M5P1.h:2,S", 1700000002.0, True),
                ("Inbox", "odd:2,", 1700000003.5, False),
            ],
        )
