"""The selected folder as one IMAP session sees it: message sequence
numbers, UIDs and flags, kept in step with the store.

A session numbers messages 1..n; the numbers change only when the session
is told (EXISTS, EXPUNGE), so other sessions' changes are taken in at the
points the protocol allows (RFC 3501 §7.4.1, §5.5: not while answering
FETCH, STORE or SEARCH) by ``catch_up``, which turns the store's
``FolderChanges`` into the untagged responses to send.

The messages are kept in parallel arrays (about 40 bytes a message) rather
than a tuple each: a session on a 100,000-message INBOX holds one copy.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from zpop.accounts.imap_account import (
    Folder,
    FolderChanges,
    FolderView,
    MailboxEntry,
    flag_names,
)
from zpop.imap.values import Atom, Value

_NO_KEYWORDS: tuple[str, ...] = ()

#: An untagged response's values (``3 EXPUNGE``).
Response = tuple[Value, ...]


def flag_atoms(flags: int, keywords: tuple[str, ...]) -> tuple[Atom, ...]:
    return tuple(Atom(name) for name in flag_names(flags, keywords))


@dataclass
class Selected:
    """One session's view of its selected folder."""

    folder: Folder
    read_only: bool
    #: Whether the client enabled CONDSTORE (MODSEQ in FETCH responses).
    condstore: bool = False
    ids: array = field(default_factory=lambda: array("q"))
    uids: array = field(default_factory=lambda: array("q"))
    modseqs: array = field(default_factory=lambda: array("q"))
    flags: array = field(default_factory=lambda: array("B"))
    sizes: array = field(default_factory=lambda: array("q"))
    received: array = field(default_factory=lambda: array("d"))
    #: Keywords of the messages that have any, by UID.
    keywords: dict[int, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def open(cls, view: FolderView, read_only: bool) -> Selected:
        selected = cls(view.folder, read_only)
        for entry in view.entries:
            selected._append(entry)
        return selected

    def _append(self, entry: MailboxEntry) -> None:
        self.ids.append(entry.id)
        self.uids.append(entry.uid)
        self.modseqs.append(entry.modseq)
        self.flags.append(entry.flags)
        self.sizes.append(entry.size)
        self.received.append(entry.received)
        if entry.keywords:
            self.keywords[entry.uid] = entry.keywords

    def __len__(self) -> int:
        return len(self.uids)

    @property
    def uid_next(self) -> int:
        return self.folder.next_uid

    @property
    def highest_modseq(self) -> int:
        return self.folder.highest_modseq

    def largest_uid(self) -> int:
        """The UID ``*`` stands for in a UID set: the last message's, or
        (empty folder) the last UID the folder gave."""
        return self.uids[-1] if self.uids else self.folder.next_uid - 1

    def index_of(self, uid: int) -> int | None:
        """The 0-based index of a UID, or None."""
        i = bisect_left(self.uids, uid)
        return i if i < len(self.uids) and self.uids[i] == uid else None

    def indexes_for_uids(self, ranges: Iterable[tuple[int, int]]) -> list[int]:
        """The indexes of the messages whose UIDs fall in the (low, high)
        ranges, ascending and once each."""
        found: set[int] = set()
        for low, high in ranges:
            start = bisect_left(self.uids, low)
            end = bisect_left(self.uids, high + 1)
            found.update(range(start, end))
        return sorted(found)

    def indexes_for_numbers(self, ranges: Iterable[tuple[int, int]]) -> list[int]:
        """The indexes of sequence numbers in the (low, high) ranges; the
        caller has checked that each number exists."""
        found: set[int] = set()
        for low, high in ranges:
            found.update(range(low - 1, min(high, len(self.uids))))
        return sorted(found)

    def flag_value(self, index: int) -> tuple[Atom, ...]:
        uid = self.uids[index]
        return flag_atoms(self.flags[index], self.keywords.get(uid, _NO_KEYWORDS))

    def entry(self, index: int) -> MailboxEntry:
        uid = self.uids[index]
        return MailboxEntry(
            self.ids[index],
            uid,
            self.modseqs[index],
            self.flags[index],
            self.keywords.get(uid, _NO_KEYWORDS),
            self.sizes[index],
            self.received[index],
        )

    def set_flags(self, entry: MailboxEntry) -> int | None:
        """Take in a message's new flags (a STORE's own result); its index,
        or None if the session no longer has it."""
        index = self.index_of(entry.uid)
        if index is None:
            return None
        self.flags[index] = entry.flags
        self.modseqs[index] = entry.modseq
        if entry.keywords:
            self.keywords[entry.uid] = entry.keywords
        else:
            self.keywords.pop(entry.uid, None)
        return index

    def catch_up(self, changes: FolderChanges, expunges: bool = True) -> list[Response]:
        """Take in what changed in the store since the session last looked;
        the untagged responses that tell the client, in order: EXPUNGEs
        (highest number first, so each number is right when sent), then
        FETCH FLAGS for changed messages, then EXISTS for new ones.

        With ``expunges`` False (during FETCH, STORE, SEARCH) nothing is
        removed; the expunges stay pending in the store's record and come
        at the next catch-up that allows them.
        """
        responses: list[Response] = []
        gone = changes.expunged if expunges else ()
        if gone:
            responses.extend(self._remove(gone))
        new: list[MailboxEntry] = []
        last = self.uids[-1] if self.uids else 0
        for entry in changes.changed:
            if entry.uid > last:
                new.append(entry)
                continue
            index = self.index_of(entry.uid)
            if index is None:
                continue
            if (entry.flags, entry.keywords) != (
                self.flags[index],
                self.keywords.get(entry.uid, _NO_KEYWORDS),
            ) or (self.condstore and entry.modseq != self.modseqs[index]):
                self.set_flags(entry)
                responses.append(self.flags_response(index))
            else:
                self.modseqs[index] = entry.modseq
        for entry in new:
            self._append(entry)
        if new:
            responses.append((len(self.uids), Atom("EXISTS")))
        if expunges or not changes.expunged:
            self.folder = changes.folder
        else:
            # The expunges stay to come: catch up from the same MODSEQ.
            self.folder = replace(
                changes.folder, highest_modseq=self.folder.highest_modseq
            )
        return responses

    def flags_response(self, index: int) -> Response:
        items: list[Value] = [Atom("FLAGS"), self.flag_value(index)]
        if self.condstore:
            items += [Atom("MODSEQ"), (self.modseqs[index],)]
        return (index + 1, Atom("FETCH"), items)

    def _remove(self, uids: Sequence[int]) -> Iterator[Response]:
        indexes = sorted(
            (i for i in map(self.index_of, uids) if i is not None), reverse=True
        )
        if not indexes:
            return
        keep = sorted(set(range(len(self.uids))) - set(indexes))
        for name in ("ids", "uids", "modseqs", "flags", "sizes", "received"):
            old = getattr(self, name)
            setattr(self, name, array(old.typecode, (old[i] for i in keep)))
        for uid in uids:
            self.keywords.pop(uid, None)
        for index in indexes:
            yield (index + 1, Atom("EXPUNGE"))

    def forget(self, uids: Sequence[int]) -> list[Response]:
        """The session's own EXPUNGE or MOVE: remove and say so."""
        return list(self._remove(uids))
