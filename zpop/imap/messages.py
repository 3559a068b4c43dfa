"""The IMAP commands on the selected folder's messages: FETCH, STORE,
SEARCH, COPY, MOVE, EXPUNGE, UID EXPUNGE, CHECK, CLOSE, UNSELECT, IDLE;
a mixin of ``zpop.imap.server.IMAPServer``.

Message numbers change only when the session says so: before FETCH,
STORE and SEARCH the session takes in other sessions' changes but holds
back their expunges (RFC 3501 §7.4.1); the other commands take in all.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from zpop.accounts.errors import InvalidInput
from zpop.accounts.idle import Watch
from zpop.accounts.imap_account import (
    SEEN,
    ImapAccount,
    NotFound,
    StoreError,
    StoreOp,
)
from zpop.imap import parser
from zpop.imap import search_keys as k
from zpop.imap.fetch import LiteralBroken, MessageFetch, internal_date, write_fetch
from zpop.imap.fetch_items import Attribute, FetchItem
from zpop.imap.folders import flag_bits
from zpop.imap.responses import Refusal
from zpop.imap.search import matcher
from zpop.imap.selected import Selected
from zpop.imap.sequences import SequenceSet
from zpop.imap.values import Atom, Value


class MessageCommands:
    """The selected-state commands; the session supplies the rest."""

    account: ImapAccount | None
    selected: Selected | None
    clock: IReactorTime
    transport: Any
    send: Callable[..., None]
    _tagged: Callable[[str, str, str], None]
    _write: Callable[[str | bytes], None]
    _framer: Any
    _raw: tuple[str, Callable[[bytes], Any]] | None
    _closing: bool
    _watch: Watch | None = None
    _idling: tuple[str, str] | None = None

    def _session(self) -> tuple[ImapAccount, Selected]:
        assert self.account is not None and self.selected is not None
        return self.account, self.selected

    async def catch_up(self, expunges: bool = True) -> None:
        """Take in the folder's changes and tell the client."""
        account, selected = self._session()
        try:
            changes = await account.folder_changes(
                selected.folder.id, selected.highest_modseq
            )
        except NotFound:
            self.selected = None
            self.transport.write(b"* BYE The selected mailbox was deleted\r\n")
            self.transport.loseConnection()
            raise Refusal("[NONEXISTENT] The mailbox was deleted") from None
        for response in selected.catch_up(changes, expunges):
            self.send(*response)

    def _indexes(self, messages: SequenceSet, uid: bool) -> list[int]:
        _, selected = self._session()
        if uid:
            return selected.indexes_for_uids(
                (r.start, r.stop - 1) for r in messages.resolve(selected.largest_uid())
            )
        if messages.exceeds(len(selected)):
            raise Refusal(
                "No such message (the sequence set is past the last)", bad=True
            )
        return selected.indexes_for_numbers(
            (r.start, r.stop - 1) for r in messages.resolve(len(selected))
        )

    # -- FETCH ------------------------------------------------------------

    def do_FETCH(self, command: parser.Command) -> Coroutine[Any, Any, None]:
        return self._fetch(command)

    do_UID_FETCH = do_FETCH

    async def _fetch(self, command: parser.Command) -> None:
        args = command.args
        assert isinstance(args, parser.Fetch)
        await self.catch_up(expunges=command.uid)
        account, selected = self._session()
        indexes = self._indexes(args.messages, command.uid)
        if args.changed_since is not None:
            indexes = [i for i in indexes if selected.modseqs[i] > args.changed_since]
        sets_seen = not selected.read_only and any(i.sets_seen for i in args.items)
        if sets_seen:
            unseen = [selected.uids[i] for i in indexes if not selected.flags[i] & SEEN]
            if unseen:
                changed = await account.store_flags(
                    selected.folder.id, unseen, StoreOp.ADD, SEEN, []
                )
                for entry in changed.changed:
                    selected.set_flags(entry)
        items = list(args.items)
        if sets_seen and not any(_is(i, "FLAGS") for i in items):
            items.append(Attribute("FLAGS"))
        reads = (
            any(self._simple(selected, 0, i) is None for i in items)
            if indexes
            else False
        )
        gone = False
        for index in indexes:
            entry = selected.entry(index)
            fetch = MessageFetch(account, entry)

            def simple(item: FetchItem, index: int = index) -> Value | None:
                return self._simple(selected, index, item)

            try:
                if reads:
                    # Read before the response starts, so a message another
                    # session expunged is left out whole (RFC 9051 §7.4.1).
                    await fetch.header()
                await write_fetch(self.transport, index + 1, fetch, items, simple)
            except LiteralBroken:
                self._closing = True
                return
            except NotFound:
                if not reads:
                    raise
                gone = True
        if gone:
            raise Refusal("[EXPUNGEISSUED] Some messages were expunged meanwhile")
        self._tagged(command.tag, "OK", f"{command.name} done")

    @staticmethod
    def _simple(selected: Selected, index: int, item: FetchItem) -> Value | None:
        if not isinstance(item, Attribute):
            return None
        name = item.name
        if name == "UID":
            return int(selected.uids[index])
        if name == "FLAGS":
            return selected.flag_value(index)
        if name == "RFC822.SIZE":
            return int(selected.sizes[index])
        if name == "INTERNALDATE":
            return internal_date(selected.received[index])
        if name == "MODSEQ":
            return (selected.modseqs[index],)
        return None

    # -- STORE ------------------------------------------------------------

    def do_STORE(self, command: parser.Command) -> Coroutine[Any, Any, None]:
        return self._store(command)

    do_UID_STORE = do_STORE

    async def _store(self, command: parser.Command) -> None:
        args = command.args
        assert isinstance(args, parser.Store)
        await self.catch_up(expunges=command.uid)
        account, selected = self._session()
        if selected.read_only:
            raise Refusal("[READ-ONLY] The mailbox is open read-only (EXAMINE)")
        indexes = self._indexes(args.messages, command.uid)
        bits, keywords = flag_bits(args.flags)
        try:
            changed = await account.store_flags(
                selected.folder.id,
                [selected.uids[i] for i in indexes],
                StoreOp(args.mode),
                bits,
                keywords,
                args.unchanged_since,
            )
        except InvalidInput as e:
            raise Refusal(f"[LIMIT] {e}") from None
        touched = {e.uid for e in changed.changed}
        for entry in changed.changed:
            selected.set_flags(entry)
        for index in indexes:
            uid = selected.uids[index]
            if uid in changed.modified:
                continue
            if args.silent and uid in touched and args.unchanged_since is None:
                continue
            items: list[Value] = [Atom("FLAGS"), selected.flag_value(index)]
            if command.uid:
                items = [Atom("UID"), uid, *items]
            if selected.condstore:
                items += [Atom("MODSEQ"), (selected.modseqs[index],)]
            self.send(index + 1, Atom("FETCH"), tuple(items))
        if changed.modified:
            numbers = (
                changed.modified
                if command.uid
                else [i + 1 for i in indexes if selected.uids[i] in changed.modified]
            )
            wire = SequenceSet.of(numbers).to_wire()
            self._tagged(
                command.tag, "OK", f"[MODIFIED {wire}] Conditional STORE failed"
            )
            return
        self._tagged(command.tag, "OK", f"{command.name} done")

    # -- SEARCH ----------------------------------------------------------

    def do_SEARCH(self, command: parser.Command) -> Coroutine[Any, Any, None]:
        return self._search(command)

    do_UID_SEARCH = do_SEARCH

    async def _search(self, command: parser.Command) -> None:
        args = command.args
        assert isinstance(args, parser.Search)
        if args.returns is not None:
            # ESEARCH (RFC 4731) is not offered: no client may rely on it.
            raise Refusal("SEARCH RETURN is not supported here", bad=True)
        await self.catch_up(expunges=command.uid)
        account, selected = self._session()
        test = matcher(args.key, selected, account)
        found: list[int] = []
        for index in range(len(selected)):
            if await test(index):
                found.append(selected.uids[index] if command.uid else index + 1)
        values: list[Value] = [Atom("SEARCH"), *found]
        if found and _uses_modseq(args.key):
            highest = max(
                selected.modseqs[selected.index_of(n) if command.uid else n - 1]  # type: ignore[index]
                for n in found
            )
            values.append((Atom("MODSEQ"), highest))
        self.send(*values)
        self._tagged(command.tag, "OK", f"{command.name} done")

    # -- COPY, MOVE -------------------------------------------------------

    def do_COPY(self, command: parser.Command) -> Coroutine[Any, Any, None]:
        return self._copy(command, move=False)

    def do_MOVE(self, command: parser.Command) -> Coroutine[Any, Any, None]:
        return self._copy(command, move=True)

    do_UID_COPY = do_COPY
    do_UID_MOVE = do_MOVE

    async def _copy(self, command: parser.Command, move: bool) -> None:
        args = command.args
        assert isinstance(args, parser.Copy)
        await self.catch_up(expunges=command.uid)
        account, selected = self._session()
        if move and selected.read_only:
            raise Refusal("[READ-ONLY] The mailbox is open read-only (EXAMINE)")
        indexes = self._indexes(args.messages, command.uid)
        uids = [selected.uids[i] for i in indexes]
        try:
            copied = await account.copy(selected.folder.id, uids, args.mailbox, move)
        except NotFound:
            raise Refusal("[TRYCREATE] No such mailbox") from None
        code = ""
        if copied.uids:
            source = SequenceSet.of(a for a, _ in copied.uids).to_wire()
            target = SequenceSet.of(b for _, b in copied.uids).to_wire()
            code = f"[COPYUID {copied.uid_validity} {source} {target}] "
        if move:
            if code:
                self.send(Atom("OK"), Atom(code.strip()), Atom("Moved"))
            for response in selected.forget([a for a, _ in copied.uids]):
                self.send(*response)
            self._tagged(command.tag, "OK", f"{command.name} done")
            return
        self._tagged(command.tag, "OK", f"{code}{command.name} done")

    # -- EXPUNGE, CLOSE, UNSELECT, CHECK ------------------------------------

    def do_EXPUNGE(self, command: parser.Command) -> Coroutine[Any, Any, None]:
        return self._expunge(command, None)

    def do_UID_EXPUNGE(self, command: parser.Command) -> Coroutine[Any, Any, None]:
        assert isinstance(command.args, parser.Expunge)
        return self._expunge(command, command.args.messages)

    async def _expunge(self, command: parser.Command, only: SequenceSet | None) -> None:
        await self.catch_up()
        account, selected = self._session()
        if selected.read_only:
            raise Refusal("[READ-ONLY] The mailbox is open read-only (EXAMINE)")
        uids = None
        if only is not None:
            uids = [selected.uids[i] for i in self._indexes(only, uid=True)]
        try:
            gone = await account.expunge(selected.folder.id, uids)
        except StoreError:
            raise Refusal("[UNAVAILABLE] Temporary server error, try again later")
        for response in selected.forget(gone):
            self.send(*response)
        await self.catch_up()
        self._tagged(command.tag, "OK", f"{command.name} done")

    def do_CLOSE(self, command: parser.Command) -> Coroutine[Any, Any, None]:
        return self._close_folder(command)

    async def _close_folder(self, command: parser.Command) -> None:
        account, selected = self._session()
        if not selected.read_only:
            # RFC 3501 §6.4.2: expunge silently.
            await account.expunge(selected.folder.id)
        self.selected = None
        self._tagged(command.tag, "OK", "CLOSE done")

    def do_UNSELECT(self, command: parser.Command) -> None:
        self.selected = None
        self._tagged(command.tag, "OK", "UNSELECT done")

    def do_CHECK(self, command: parser.Command) -> Coroutine[Any, Any, None]:
        return self._check(command)

    async def _check(self, command: parser.Command) -> None:
        await self.catch_up()
        self._tagged(command.tag, "OK", "CHECK done")

    # -- IDLE (RFC 2177) ----------------------------------------------------

    def do_IDLE(self, command: parser.Command) -> None:
        self._write("+ idling")
        self._idling = (command.tag, command.name)
        self._framer.expect_line()
        self._raw = (command.tag, self._idle_done)
        if self.account is not None and self.selected is not None:
            selected = self.selected
            self._watch = self.account.watch(
                selected.folder.id, selected.highest_modseq, self._idle_wake
            )

    def _idle_wake(self, modseq: int | None) -> None:
        """The selected folder changed (or went): tell the client now."""
        if self._idling is None or self.selected is None:
            return
        d = Deferred.fromCoroutine(self.catch_up())
        d.addErrback(lambda _: None)

    def _stop_idle(self) -> None:
        if self._watch is not None and self.account is not None:
            self.account.unwatch(self._watch)
        self._watch = None

    def _idle_done(self, line: bytes) -> None:
        self._stop_idle()
        tag, _ = self._idling or ("*", "IDLE")
        self._idling = None
        if line.strip().upper() != b"DONE":
            self._tagged(tag, "BAD", "Expected DONE to end IDLE")
            return
        self._tagged(tag, "OK", "IDLE done")


def _is(item: FetchItem, name: str) -> bool:
    return isinstance(item, Attribute) and item.name == name


def _uses_modseq(key: Any) -> bool:
    if isinstance(key, k.ModSeq):
        return True
    if isinstance(key, k.And):
        return any(_uses_modseq(x) for x in key.keys)
    if isinstance(key, k.Or):
        return _uses_modseq(key.left) or _uses_modseq(key.right)
    if isinstance(key, k.Not):
        return _uses_modseq(key.key)
    return False
