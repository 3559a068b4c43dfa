"""Tests for the local delivery services of zpop.delivery (``zpop deliver``
and ``zpop import``): limits, refusals, the import's batches and skipped
files, on a MemoryStore with entries and bytes held in memory."""

from __future__ import annotations

import errno
import io
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from zpop import delivery
from zpop.maildir import Entry
from zpop.store import Message, NewMessage
from zpop.test.stores import add_account, make_store, result

NOW = 1_700_000_000.0
MESSAGE = b"Subject: Hello\n\nHi Alice\n"


class LocalTestCase(SynchronousTestCase):
    """alice@example.com (alias al@) on a MemoryStore."""

    def setUp(self) -> None:
        self.store = make_store()
        self.addCleanup(self.store.close)
        self.alice = add_account(self.store, "alice@example.com", password=None)
        result(self.store.add_alias("alice@example.com", "al@example.com"))

    def stored(self) -> list[Message]:
        found: list[Message] = result(self.store.list_messages(self.alice.id))
        return found


class DeliverLocalTests(LocalTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.clock = Clock()
        self.clock.advance(NOW)

    def deliver(
        self, raw: Any, address: str = "alice@example.com", folder: str = "Inbox"
    ) -> Any:
        return delivery.deliver_local(self.store, self.clock, address, raw, folder, 100)

    def refused(self, raw: Any, **kwargs: str) -> str:
        """The reason deliver_local gives, once nothing was stored."""
        failure = self.failureResultOf(
            self.deliver(raw, **kwargs), delivery.DeliveryRefused
        )
        self.assertEqual(self.stored(), [])
        return str(failure.value)

    def test_deliver(self) -> None:
        """A message for an alias (any case) lands normalised in the owner's
        folder, received now, and the result names the account."""
        delivered = self.successResultOf(self.deliver(MESSAGE, "AL@example.com"))
        self.assertEqual(delivered.account.address, "alice@example.com")
        message = delivered.message
        self.assertEqual(
            (message.folder, message.subject, message.received, message.size),
            ("Inbox", "Hello", NOW, len(MESSAGE.replace(b"\n", b"\r\n"))),
        )
        self.assertEqual(self.stored(), [message])

    def test_spam_from_a_stream(self) -> None:
        """Spam is a delivery folder; a stream is read to its end."""
        delivered = self.successResultOf(
            self.deliver(io.BytesIO(MESSAGE), folder="Spam")
        )
        self.assertEqual(delivered.message.folder, "Spam")

    def test_unknown_recipient(self) -> None:
        """An unknown address is refused before the stream is read."""
        stream = io.BytesIO(MESSAGE)
        failure = self.failureResultOf(
            self.deliver(stream, "x@example.com"), delivery.UnknownRecipient
        )
        self.assertEqual(
            (str(failure.value), failure.value.address, stream.tell()),
            ("no account or alias x@example.com", "x@example.com", 0),
        )

    def test_over_the_limit(self) -> None:
        """Over the limit is refused, and a stream is read only one byte past
        it."""
        stream = io.BytesIO(b"Subject: big\n\n" + b"x" * 1000)
        self.assertEqual(
            self.refused(stream),
            "the message is over the size limit of 100 bytes: nothing stored",
        )
        self.assertEqual(stream.tell(), 101)

    def test_malformed(self) -> None:
        """A malformed message, or one over the limit once its line ends are
        CRLF, is refused saying why."""
        for raw, why in (
            (b"", "the message is empty"),
            (b"Subject: x\n\nnul\0\n", "the message contains a NUL byte"),
            (
                b"Subject: x\n\n" + b"y" * 85 + b"\n",
                "the message is 101 bytes, over the limit of 100",
            ),
        ):
            self.assertEqual(
                self.refused(raw), f"malformed message: {why}: nothing stored"
            )

    def test_folders(self) -> None:
        """Only Inbox and Spam take delivered mail."""
        self.assertEqual(
            self.refused(MESSAGE, folder="Trash"),
            "mail is delivered to Inbox or Spam, not Trash: nothing stored",
        )


def entry(name: str, folder: str = "Inbox", seen: bool = False) -> Entry:
    """A Maildir entry received at the time its name starts with."""
    received = float(name.split(".")[0])
    return Entry(f"/maildir/cur/{name}", folder, received, 0, name, seen)


class Files:
    """File contents by entry name, read as import_messages reads files;
    a name without contents is a file that cannot be read."""

    def __init__(self, contents: dict[str, bytes]) -> None:
        self.contents = contents
        self.sizes: list[int] = []

    def read(self, e: Entry, size: int) -> bytes:
        self.sizes.append(size)
        if e.name not in self.contents:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", e.path)
        return self.contents[e.name][:size]


class ImportTests(LocalTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.batches: list[int] = []
        store_messages = self.store.store_messages

        def counting(account_id: int, batch: list[NewMessage]) -> Any:
            self.batches.append(len(batch))
            return store_messages(account_id, batch)

        self.patch(self.store, "store_messages", counting)

    def import_(
        self, entries: list[Entry], files: Files, **kwargs: Any
    ) -> delivery.ImportTally:
        """The tally of importing ``entries`` (limit 100 bytes) from ``files``."""
        tally: delivery.ImportTally = self.successResultOf(
            delivery.import_messages(
                self.store, self.alice, entries, 100, read=files.read, **kwargs
            )
        )
        return tally

    def test_import(self) -> None:
        """Entries land in order with their folder, time and seen flag, and
        the tally counts every folder; files are read bounded."""
        entries = [
            entry("10.a"),
            entry("11.b", "Spam"),
            entry("12.c", "Trash", seen=True),
            entry("13.d"),
        ]
        files = Files({e.name: b"Subject: %s\n\nx" % e.name.encode() for e in entries})
        tally = self.import_(entries, files)
        self.assertEqual(
            (tally.account, tally.per_folder, tally.skipped, tally.imported),
            (
                self.alice,
                {"Inbox": 2, "Spam": 1, "Sent": 0, "Trash": 1, "Drafts": 0},
                (),
                4,
            ),
        )
        self.assertEqual(
            [(m.folder, m.received, m.subject, m.seen, m.uid) for m in self.stored()],
            [
                ("Inbox", 10.0, "10.a", False, 1),
                ("Spam", 11.0, "11.b", False, 2),
                ("Trash", 12.0, "12.c", True, 3),
                ("Inbox", 13.0, "13.d", False, 4),
            ],
        )
        self.assertEqual((self.batches, files.sizes), ([4], [101] * 4))

    def test_batches_by_count(self) -> None:
        """A batch is committed every batch_messages messages."""
        entries = [entry(f"{i}.m") for i in range(1, 8)]
        files = Files({e.name: b"S: x\n\nx" for e in entries})
        self.import_(entries, files, batch_messages=3)
        self.assertEqual(self.batches, [3, 3, 1])

    def test_batches_by_bytes(self) -> None:
        """A batch is committed once it holds batch_bytes bytes (CRLF)."""
        entries = [entry(f"{i}.m") for i in range(1, 6)]
        # 30 bytes each once CRLF: the second message of a batch reaches 60.
        files = Files({e.name: b"S: x\n\n" + b"x" * 20 for e in entries})
        self.import_(entries, files, batch_bytes=60)
        self.assertEqual(self.batches, [2, 2, 1])

    def test_skipped(self) -> None:
        """Unreadable, malformed and over-size files are left out, reported
        as they are met and in the tally; the rest is imported."""
        entries = [entry(n) for n in ("1.ok", "2.gone", "3.nul", "4.big", "5.ok")]
        files = Files(
            {
                "1.ok": b"Subject: one\n\nx",
                "3.nul": b"\0\0",
                "4.big": b"S: x\n\n" + b"x" * 200,
                "5.ok": b"Subject: five\n\nx",
            }
        )
        reported: list[delivery.Skipped] = []
        tally = self.import_(entries, files, on_skip=reported.append)
        self.assertEqual(
            [(s.entry.name, s.reason, s.detail) for s in reported],
            [
                ("2.gone", "unreadable", "No such file or directory"),
                ("3.nul", "malformed", "the message contains a NUL byte"),
                ("4.big", "malformed", "over the size limit of 100 bytes"),
            ],
        )
        self.assertEqual(
            (tally.skipped, tally.imported, tally.malformed, tally.unreadable),
            (tuple(reported), 2, 2, 1),
        )
        self.assertEqual([m.subject for m in self.stored()], ["one", "five"])

    def test_nothing(self) -> None:
        """No entries: every folder counts 0 and nothing is committed."""
        tally = self.import_([], Files({}))
        self.assertEqual(
            (tally.per_folder, tally.imported, self.batches),
            (dict.fromkeys(("Inbox", "Spam", "Sent", "Trash", "Drafts"), 0), 0, []),
        )
