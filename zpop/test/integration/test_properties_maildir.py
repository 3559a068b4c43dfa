"""Property tests for reading Maildirs (zpop.maildir) and ``zpop import``.

Temp Maildirs with arbitrary file names and contents: the listing never
fails, holds every message file of new/ and cur/ exactly once (never tmp/
or dot-files), in arrival order; ``zpop import`` (test_admin's in-process
``main``) stores every well-formed one exactly once, in that order, with
its folder, time and seen flag, and counts the others as malformed.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from zpop import admin, maildir
from zpop.test import properties  # noqa: F401 (the hypothesis profile)
from zpop.test.integration import test_admin
from zpop.test.integration.test_admin import write_maildir_file
from zpop.test.properties import MemoryTemp

#: Maildir++ folder -> zpop folder (None: skipped).
FOLDERS = {"": "Inbox", ".Spam": "Spam", ".Junk": "Spam", ".Sent": "Sent",
           ".Trash": "Trash", ".Work": None}  # fmt: skip
SUBS = ["new", "cur", "tmp"]
MTIME = 1_650_000_000.0


@dataclass(frozen=True)
class File:
    folder: str
    sub: str
    name: str
    data: bytes
    #: When the name says nothing: the file's mtime.
    mtime: float


#: File names as any system might leave them (no "/" or NUL, not too long).
odd_names = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="/\0"),
    min_size=1,
    max_size=20,
).filter(lambda s: s not in (".", "..") and len(s.encode()) < 200)
#: Modern names: seconds, microseconds, a unique part, maybe flags.
modern_names = st.builds(
    lambda seconds, micro, pid, flags: (
        f"{seconds}.M{micro}P{pid}.host" + ("" if flags is None else f":2,{flags}")
    ),
    st.integers(min_value=1_600_000_000, max_value=1_600_000_005),
    st.integers(min_value=0, max_value=999_999),
    st.integers(min_value=0, max_value=10**6),
    st.none() | st.sampled_from(["", "S", "FS", "RT", "DFRST"]),
)
contents = st.binary(max_size=60)
files = st.builds(
    File,
    folder=st.sampled_from(sorted(FOLDERS)),
    sub=st.sampled_from(SUBS),
    name=odd_names | modern_names,
    data=contents,
    mtime=st.floats(min_value=1e9, max_value=2e9).map(round),
)


def unique(found: list[File]) -> list[File]:
    """One file per path (the last one generated wins)."""
    by_path = {(f.folder, f.sub, f.name): f for f in found}
    return list(by_path.values())


def write(root: str, found: list[File]) -> None:
    shutil.rmtree(root, ignore_errors=True)
    for folder in FOLDERS:
        for sub in SUBS:
            os.makedirs(os.path.join(root, folder, sub), exist_ok=True)
    for f in found:
        path = write_maildir_file(root, os.path.join(f.folder, f.sub), f.name, f.data)
        os.utime(path, (f.mtime, f.mtime))


def offered(f: File) -> bool:
    """Whether a file is a message of a folder zpop imports."""
    return (
        FOLDERS[f.folder] is not None and f.sub != "tmp" and not f.name.startswith(".")
    )


class ListingProperties(MemoryTemp, SynchronousTestCase):
    def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())

    @settings(max_examples=20)
    @given(st.lists(files, max_size=12).map(unique))
    def test_any_names(self, found: list[File]) -> None:
        """new/ and cur/ files are listed once, sorted; no time in a name: mtime."""
        write(self.root, found)
        entries, skipped = maildir.arrival_order(self.root)
        self.assertEqual([f.name for f in skipped], [".Work"])
        expected = {
            (os.path.join(self.root, f.folder, f.sub, f.name), FOLDERS[f.folder])
            for f in found
            if offered(f)
        }
        self.assertEqual(len(entries), len(expected))
        self.assertEqual({(e.path, e.folder) for e in entries}, expected)
        self.assertEqual(entries, sorted(entries, key=lambda e: e.order))
        by_path = {os.path.join(self.root, f.folder, f.sub, f.name): f for f in found}
        for e in entries:
            f = by_path[e.path]
            seconds, micro, seen = maildir.parse_name(f.name)
            self.assertEqual(e.received, f.mtime if seconds is None else seconds)
            self.assertEqual(e.seen, seen and f.sub == "cur")

    @given(modern_names)
    def test_modern_names(self, name: str) -> None:
        """Seconds, microseconds and the S flag are read from a modern name."""
        seconds, rest = name.split(".M", 1)
        micro = rest.split("P", 1)[0]
        flags = name.partition(":2,")[2]
        self.assertEqual(
            maildir.parse_name(name), (int(seconds), int(micro), "S" in flags)
        )

    @given(odd_names)
    def test_parse_any_name(self, name: str) -> None:
        """Any name gives (seconds or None, microseconds, seen), never an error."""
        seconds, micro, seen = maildir.parse_name(name)
        self.assertTrue(seconds is None or 0 <= seconds < 10**12)
        self.assertTrue(0 <= micro < 10**6)
        self.assertIsInstance(seen, bool)
        if seconds is not None:
            self.assertTrue(name[:1].isdigit())


def message(i: int, body: bytes, kind: str) -> bytes:
    """A well-formed message (a unique Subject, any body) or a malformed one."""
    if kind == "good":
        return b"Subject: m%d\nX: y\n\n" % i + body.replace(b"\0", b"")
    return {"empty": b"", "nul": b"Subject: x\n\n\0", "header": b"no header\n"}[kind]


class ImportProperties(MemoryTemp, test_admin.AdminTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.setup_accounts()
        self.root = os.path.abspath(self.mktemp())
        self.address = "alice@example.org"

    def stored(self) -> list[object]:
        account = self.account(self.address)
        return admin.result_of(self.store().list_messages(account.id))

    @settings(max_examples=8)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(sorted(FOLDERS)),
                st.sampled_from(SUBS),
                modern_names | odd_names.filter(lambda n: not n[:1].isdigit()),
                contents,
                st.sampled_from(["good", "good", "good", "empty", "nul", "header"]),
            ),
            max_size=8,
        )
    )
    def test_import(self, specs: list[tuple[str, str, str, bytes, str]]) -> None:
        """Good messages are stored once, in arrival order; bad ones are counted."""
        found = unique(
            [
                File(folder, sub, name, message(i, body, kind), MTIME + i)
                for i, (folder, sub, name, body, kind) in enumerate(specs)
            ]
        )
        write(self.root, found)
        before = len(self.stored())
        status, out, err = self.zpop("import", self.address, self.root)
        self.assertEqual(status, 0, err)
        wanted = []
        malformed = 0
        for f in found:
            if not offered(f):
                continue
            seconds, micro, seen = maildir.parse_name(f.name)
            received = f.mtime if seconds is None else float(seconds)
            key = (received, micro, f.name)
            if f.data.startswith(b"Subject: m"):
                subject = f.data.split(b"\n", 1)[0][9:].decode()
                flag = seen and f.sub == "cur"
                wanted.append((key, (FOLDERS[f.folder], received, subject, flag)))
            else:
                malformed += 1
        wanted.sort(key=lambda pair: pair[0])
        stored = self.stored()[before:]
        self.assertEqual(
            [(m.folder, m.received, m.subject, m.seen) for m in stored],  # type: ignore[attr-defined]
            [value for _, value in wanted],
        )
        self.assertIn(f"imported {len(wanted)} messages into {self.address}\n", out)
        if malformed:
            self.assertIn(f"skipped {malformed} malformed files (see warnings)", out)
        else:
            self.assertNotIn("malformed", out)
