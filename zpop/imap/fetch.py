"""FETCH (RFC 3501 §6.4.5, §7.4.2; CONDSTORE's MODSEQ): one message's
response items, with its body parts streamed from the store.

What needs only the message's record (FLAGS, UID, RFC822.SIZE,
INTERNALDATE, MODSEQ) costs no read; ENVELOPE and the header sections read
the header alone; BODY[]/RFC822 and their partials stream the stored bytes
in chunks with back-pressure (``zpop.retrieval.BodyProducer``), never
holding the message; BODYSTRUCTURE and part sections parse the message's
MIME tree (``zpop.imap.structure``), which reads it whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred, succeed

from zpop.accounts.imap_account import ImapAccount, MailboxEntry, NotFound
from zpop.imap.envelope import HEADER_END, envelope
from zpop.imap.fetch_items import Attribute, BodySection, FetchItem
from zpop.imap.sections import (
    HEADER,
    Section,
    header_fields,
    partial,
    section_range,
    total,
)
from zpop.imap.structure import Part, bodystructure, parse
from zpop.imap.values import Atom, Value, encode
from zpop.retrieval import CHUNK_SIZE, BodyProducer

_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()

#: Header bytes read for ENVELOPE and header sections before giving up on
#: finding the blank line (the rest counts as body).
HEADER_LIMIT = 256 * 1024


def internal_date(when: float) -> str:
    t = time.gmtime(when)
    return (
        f"{t.tm_mday:02d}-{_MONTHS[t.tm_mon - 1]}-{t.tm_year:04d}"
        f" {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )


class RangeReader:
    """``read(n)`` over byte ranges of one stored body, for BodyProducer."""

    crlf_only = True

    def __init__(
        self, account: ImapAccount, message_id: int, ranges: Sequence[tuple[int, int]]
    ) -> None:
        self._account = account
        self._message_id = message_id
        self._ranges = [r for r in ranges if r[1] > r[0]]

    def read(self, size: int) -> Deferred[bytes]:
        if not self._ranges:
            return succeed(b"")
        start, end = self._ranges[0]
        take = min(size, end - start)
        if start + take >= end:
            self._ranges.pop(0)
        else:
            self._ranges[0] = (start + take, end)
        return self._account.read_body(self._message_id, start, take)


class PassThrough:
    """BodyProducer's transform for IMAP: the stored bytes as they are."""

    done = False

    def feed(self, chunk: bytes) -> bytes:
        return chunk

    def finish(self) -> bytes:
        return b""


class MessageFetch:
    """The FETCH items of one message, read as lazily as they allow."""

    def __init__(self, account: ImapAccount, entry: MailboxEntry) -> None:
        self.account = account
        self.entry = entry
        self._header: bytes | None = None
        self._whole: bytes | None = None
        self._tree: Part | None = None

    async def header(self) -> bytes:
        """The header section with its blank line (or all, if none)."""
        if self._header is None:
            if self._whole is not None:
                data = self._whole
            else:
                data = await self.account.read_body(self.entry.id, 0, HEADER_LIMIT)
            found = HEADER_END.search(data)
            self._header = data if found is None else data[: found.end()]
        return self._header

    async def whole(self) -> bytes:
        if self._whole is None:
            chunks = []
            offset = 0
            while offset < self.entry.size:
                chunk = await self.account.read_body(
                    self.entry.id, offset, CHUNK_SIZE * 4
                )
                if not chunk:
                    break
                chunks.append(chunk)
                offset += len(chunk)
            self._whole = b"".join(chunks)
        return self._whole

    async def tree(self) -> Part:
        if self._tree is None:
            self._tree = parse(await self.whole())
        return self._tree

    async def ranges(
        self, item: BodySection | Attribute
    ) -> tuple[list[tuple[int, int]], bytes | None]:
        """What an item sends: byte ranges of the stored message to
        stream, or the bytes themselves (filtered header fields)."""
        size = self.entry.size
        if isinstance(item, Attribute):
            if item.name == "RFC822":
                return [(0, size)], None
            header = await self.header()
            if item.name == "RFC822.HEADER":
                return [(0, len(header))], None
            return [(len(header), size)], None
        section = item.section
        if not section.part and section.text is None:
            ranges = [(0, size)]
        elif not section.part and section.text in (HEADER, "TEXT"):
            header = await self.header()
            ranges = (
                [(0, len(header))] if section.text == HEADER else [(len(header), size)]
            )
        elif not section.part and section.text in (
            "HEADER.FIELDS",
            "HEADER.FIELDS.NOT",
        ):
            data = header_fields(
                await self.header(), section.fields, section.text == "HEADER.FIELDS.NOT"
            )
            return [], self._cut(data, item.partial)
        else:
            tree = await self.tree()
            spec = Section(section.part, section.text, section.fields)
            found = section_range(tree, spec)
            if spec.filtered:
                whole = await self.whole()
                data = header_fields(
                    b"".join(whole[a:b] for a, b in found),
                    spec.fields,
                    spec.exclude,
                )
                return [], self._cut(data, item.partial)
            ranges = found
        if item.partial is not None:
            ranges = partial(ranges, *item.partial)
        return ranges, None

    @staticmethod
    def _cut(data: bytes, where: tuple[int, int] | None) -> bytes:
        if where is None:
            return data
        offset, length = where
        return data[offset : offset + length]

    async def value(self, item: FetchItem) -> Value:
        """An item's value when it is not streamed."""
        assert isinstance(item, Attribute)
        name = item.name
        if name == "ENVELOPE":
            return envelope(await self.header())
        if name == "BODYSTRUCTURE":
            return bodystructure(await self.tree(), extended=True)
        if name == "BODY":
            return bodystructure(await self.tree(), extended=False)
        raise AssertionError(name)


STREAMED = frozenset({"RFC822", "RFC822.HEADER", "RFC822.TEXT"})


class LiteralBroken(Exception):
    """A literal was announced and its message vanished before it was all
    sent: the connection is being closed."""


async def write_fetch(
    transport: Any,
    number: int,
    fetch: MessageFetch,
    items: Sequence[FetchItem],
    simple: Callable[[FetchItem], Value | None],
) -> None:
    """``* number FETCH (...)`` for one message, streaming literals.

    ``simple`` gives an item's value from the session's record (FLAGS,
    UID...), or None if the message must be read for it.
    """
    transport.write(b"* %d FETCH (" % number)
    # The caller has read the message's header: a NotFound past this point
    # is a race within one response (zpop.imap.messages handles it).
    first = True
    for item in items:
        prefix = b"" if first else b" "
        first = False
        value = simple(item)
        if value is not None:
            transport.write(prefix + Atom(item.label).encode() + b" " + encode(value))
            continue
        if isinstance(item, BodySection) or item.name in STREAMED:
            ranges, data = await fetch.ranges(item)
            label = Atom(item.label).encode()
            if data is not None:
                transport.write(prefix + label + b" " + encode(data))
                continue
            reader = RangeReader(fetch.account, fetch.entry.id, ranges)
            # The first chunk before the literal is announced: a message
            # expunged meanwhile fails here, while the reply can still end.
            head = await maybeDeferred(reader.read, CHUNK_SIZE)
            transport.write(prefix + label + b" {%d}\r\n" % total(ranges) + head)
            try:
                await BodyProducer(transport, reader, PassThrough()).start()
            except NotFound:
                # Gone between two chunks: the literal cannot be finished.
                transport.loseConnection()
                raise LiteralBroken() from None
            continue
        transport.write(
            prefix + Atom(item.label).encode() + b" " + encode(await fetch.value(item))
        )
    transport.write(b")\r\n")
