"""SEARCH (RFC 3501 §6.4.4, CONDSTORE's MODSEQ): a parsed key as a test
of one message of the selected folder.

Keys on the session's record (flags, UIDs, numbers, sizes, dates, MODSEQ)
read nothing; header keys read the header, BODY and TEXT the message, in
the order a key needs them, once per message. Header values are compared
decoded (RFC 2047); bodies as stored, case-insensitively.
"""

from __future__ import annotations

import datetime
import email.header
import email.parser
import email.policy
import email.utils
from collections.abc import Awaitable, Callable

from zpop.accounts.imap_account import FLAG_BITS, ImapAccount
from zpop.imap import search_keys as k
from zpop.imap.fetch import MessageFetch
from zpop.imap.selected import Selected

Test = Callable[[int], Awaitable[bool]]

_HEADER_FIELDS = {
    "bcc": "Bcc",
    "cc": "Cc",
    "from": "From",
    "subject": "Subject",
    "to": "To",
}


def _decoded(value: str) -> str:
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (ValueError, LookupError, UnicodeError):
        return value


class _Message:
    """One message's header and text, read when a key first needs them."""

    def __init__(self, fetch: MessageFetch) -> None:
        self._fetch = fetch
        self._fields: email.message.Message | None = None

    async def fields(self) -> email.message.Message:
        if self._fields is None:
            header = await self._fetch.header()
            self._fields = email.parser.BytesHeaderParser(
                policy=email.policy.compat32
            ).parsebytes(header)
        return self._fields

    async def header_values(self, name: str) -> list[str]:
        return [_decoded(str(v)) for v in (await self.fields()).get_all(name, [])]

    async def body_text(self) -> str:
        whole = await self._fetch.whole()
        header = await self._fetch.header()
        return whole[len(header) :].decode("utf-8", "replace").lower()

    async def all_text(self) -> str:
        return (await self._fetch.whole()).decode("utf-8", "replace").lower()


def _day(when: float) -> datetime.date:
    return datetime.datetime.fromtimestamp(when, datetime.UTC).date()


def _compare(day: datetime.date, comparison: str, wanted: datetime.date) -> bool:
    if comparison == "before":
        return day < wanted
    if comparison == "on":
        return day == wanted
    return day >= wanted


def matcher(key: k.Key, selected: Selected, account: ImapAccount) -> Test:
    """A test of the message at an index; messages read at most once."""
    cache: dict[int, _Message] = {}

    def message(index: int) -> _Message:
        found = cache.get(index)
        if found is None:
            cache.clear()
            found = cache[index] = _Message(
                MessageFetch(account, selected.entry(index))
            )
        return found

    async def test(key: k.Key, index: int) -> bool:
        if isinstance(key, k.All):
            return True
        if isinstance(key, k.And):
            for part in key.keys:
                if not await test(part, index):
                    return False
            return True
        if isinstance(key, k.Or):
            return await test(key.left, index) or await test(key.right, index)
        if isinstance(key, k.Not):
            return not await test(key.key, index)
        if isinstance(key, k.Flag):
            return _flag(selected, index, key.name) == key.present
        if isinstance(key, k.Messages):
            if key.uid:
                return key.numbers.contains(
                    selected.uids[index], selected.largest_uid()
                )
            return key.numbers.contains(index + 1, len(selected))
        if isinstance(key, k.Size):
            size = int(selected.sizes[index])
            return size > key.size if key.comparison == "larger" else size < key.size
        if isinstance(key, k.ModSeq):
            return int(selected.modseqs[index]) >= key.modseq
        if isinstance(key, k.Date):
            if key.field == "internal":
                day = _day(selected.received[index])
            else:
                dates = await message(index).header_values("Date")
                try:
                    day = email.utils.parsedate_to_datetime(dates[0]).date()
                except (IndexError, TypeError, ValueError):
                    return False
            return _compare(day, key.comparison, key.date)
        if isinstance(key, k.Header):
            values = await message(index).header_values(key.name)
            wanted = key.value.lower()
            return any(wanted in v.lower() for v in values)
        if isinstance(key, k.Text):
            wanted = key.value.lower()
            if key.field in _HEADER_FIELDS:
                values = await message(index).header_values(_HEADER_FIELDS[key.field])
                return any(wanted in v.lower() for v in values)
            if key.field == "body":
                return wanted in await message(index).body_text()
            return wanted in await message(index).all_text()
        raise AssertionError(f"unknown search key {key!r}")

    async def run(index: int) -> bool:
        return await test(key, index)

    return run


def _flag(selected: Selected, index: int, name: str) -> bool:
    bit = FLAG_BITS.get(name)
    if bit is not None:
        return bool(selected.flags[index] & bit)
    if name == "\\Recent":
        return False
    words = selected.keywords.get(selected.uids[index], ())
    return name.lower() in (w.lower() for w in words)
