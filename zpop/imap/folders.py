"""The IMAP commands on folders (authenticated state): LIST, LSUB,
STATUS, CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, SELECT, EXAMINE,
APPEND, NAMESPACE, ENABLE; a mixin of ``zpop.imap.server.IMAPServer``."""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from typing import Any

from zpop.accounts.errors import InvalidInput
from zpop.accounts.imap_account import (
    DELIMITER,
    FLAG_BITS,
    INBOX,
    SEEN,
    SPECIAL_USE,
    AlreadyExists,
    Folder,
    FolderRefused,
    ImapAccount,
    NotFound,
    StoreError,
)
from zpop.delivery import subject_of
from zpop.imap import mutf7, parser
from zpop.imap.responses import Refusal
from zpop.imap.selected import Selected
from zpop.imap.values import Atom, Value, encode
from zpop.wire.lines import to_crlf

SYSTEM_FLAGS = tuple(Atom(name) for name in FLAG_BITS)

#: What ENABLE can turn on (RFC 5161): CONDSTORE (RFC 7162).
ENABLEABLE = frozenset({"CONDSTORE"})


def flag_bits(flags: tuple[Atom, ...]) -> tuple[int, list[str]]:
    """System flag bits and keywords of a parsed flag list."""
    bits = 0
    keywords: list[str] = []
    for flag in flags:
        bit = FLAG_BITS.get(str(flag))
        if bit is None:
            keywords.append(str(flag))
        else:
            bits |= bit
    return bits, keywords


def pattern_matcher(reference: str, pattern: str) -> Callable[[str], bool]:
    """A LIST pattern (RFC 3501 §6.3.8) as a test: ``*`` matches anything,
    ``%`` anything but the delimiter; INBOX matches in any case."""
    full = (
        reference + pattern
        if reference and not pattern.startswith(DELIMITER)
        else pattern
    )
    parts = []
    for ch in full:
        if ch == "*":
            parts.append(".*")
        elif ch == "%":
            parts.append(f"[^{re.escape(DELIMITER)}]*")
        else:
            parts.append(re.escape(ch))
    regex = re.compile("".join(parts), re.DOTALL)
    inbox = re.compile("".join(parts), re.DOTALL | re.IGNORECASE)

    def matches(name: str) -> bool:
        if name == INBOX or name.startswith(INBOX + DELIMITER):
            return inbox.fullmatch(name) is not None
        return regex.fullmatch(name) is not None

    return matches


class FolderCommands:
    """The folder commands; the session supplies the rest."""

    account: ImapAccount | None
    selected: Selected | None
    enabled: set[str]
    send: Callable[..., None]
    _tagged: Callable[[str, str, str], None]
    catch_up: Callable[..., Coroutine[Any, Any, None]]

    def _account(self) -> ImapAccount:
        assert self.account is not None
        return self.account

    def mailbox_name(self, name: str) -> str:
        """A folder name as responses give it (modified UTF-7 unless the
        client enabled UTF8=ACCEPT)."""
        return mutf7.encode(name).decode("ascii")

    async def _folder(self, name: str) -> Folder:
        try:
            folder: Folder = await self._account().get_folder(name)
        except NotFound:
            raise Refusal("[NONEXISTENT] No such mailbox") from None
        return folder

    # -- ENABLE, NAMESPACE ----------------------------------------------

    def do_ENABLE(self, command: parser.Command) -> None:
        assert isinstance(command.args, parser.Enable)
        turned = [c for c in command.args.capabilities if c in ENABLEABLE]
        new = [c for c in turned if c not in self.enabled]
        self.enabled.update(turned)
        if self.selected is not None and "CONDSTORE" in self.enabled:
            self.selected.condstore = True
        self.send(Atom("ENABLED"), *(Atom(c) for c in new))
        self._tagged(command.tag, "OK", "ENABLE done")

    def do_NAMESPACE(self, command: parser.Command) -> None:
        self.send(Atom("NAMESPACE"), (("", DELIMITER),), None, None)
        self._tagged(command.tag, "OK", "NAMESPACE done")

    # -- LIST, LSUB, STATUS ---------------------------------------------

    def do_LIST(self, command: parser.Command) -> Coroutine[Any, Any, None]:
        return self._list(command, lsub=False)

    def do_LSUB(self, command: parser.Command) -> Coroutine[Any, Any, None]:
        return self._list(command, lsub=True)

    async def _list(self, command: parser.Command, lsub: bool) -> None:
        args = command.args
        assert isinstance(args, parser.ListMailboxes)
        word = Atom("LSUB" if lsub else "LIST")
        if args.patterns == ("",):
            # RFC 3501 §6.3.8: the delimiter and the root.
            self.send(word, (Atom("\\Noselect"),), DELIMITER, "")
            self._tagged(command.tag, "OK", f"{word} done")
            return
        folders = await self._account().list_folders()
        names = {f.name for f in folders}
        tests = [pattern_matcher(args.reference, p) for p in args.patterns]
        only_subscribed = lsub or "SUBSCRIBED" in args.select_options
        only_special = "SPECIAL-USE" in args.select_options
        show_subscribed = "SUBSCRIBED" in args.return_options or (
            "SUBSCRIBED" in args.select_options
        )
        for folder in folders:
            if not any(test(folder.name) for test in tests):
                continue
            if only_subscribed and not folder.subscribed:
                continue
            use = SPECIAL_USE.get(folder.role) if folder.role else None
            if only_special and use is None:
                continue
            attributes: list[Value] = []
            prefix = folder.name + DELIMITER
            has_children = any(n.startswith(prefix) for n in names)
            if not lsub:
                attributes.append(
                    Atom("\\HasChildren" if has_children else "\\HasNoChildren")
                )
                if use is not None:
                    attributes.append(Atom(use))
            if show_subscribed and folder.subscribed:
                attributes.append(Atom("\\Subscribed"))
            self.send(
                word, tuple(attributes), DELIMITER, self.mailbox_name(folder.name)
            )
            if args.status_items is not None:
                await self._status_line(folder.name, args.status_items)
        self._tagged(command.tag, "OK", f"{word} done")

    def do_STATUS(self, command: parser.Command) -> Coroutine[Any, Any, None]:
        return self._status(command)

    async def _status(self, command: parser.Command) -> None:
        args = command.args
        assert isinstance(args, parser.Status)
        await self._status_line(args.mailbox, args.items)
        self._tagged(command.tag, "OK", "STATUS done")

    async def _status_line(self, name: str, items: tuple[str, ...]) -> None:
        folder = await self._folder(name)
        values = {
            "MESSAGES": folder.messages,
            "RECENT": 0,
            "UIDNEXT": folder.next_uid,
            "UIDVALIDITY": folder.uid_validity,
            "UNSEEN": folder.unseen,
            "HIGHESTMODSEQ": folder.highest_modseq,
            "SIZE": folder.size,
        }
        listed: list[Value] = []
        for item in items:
            listed += [Atom(item), values[item]]
        self.send(Atom("STATUS"), self.mailbox_name(folder.name), tuple(listed))

    # -- CREATE, DELETE, RENAME, SUBSCRIBE -------------------------------

    async def _change(self, tag: str, done: str, change: Any) -> None:
        try:
            await change
        except NotFound:
            raise Refusal("[NONEXISTENT] No such mailbox") from None
        except AlreadyExists:
            raise Refusal("[ALREADYEXISTS] Mailbox exists already") from None
        except FolderRefused as e:
            raise Refusal(f"[CANNOT] {e}") from None
        except InvalidInput as e:
            raise Refusal(f"[CANNOT] {e}") from None
        except StoreError:
            raise Refusal("[UNAVAILABLE] Temporary server error, try again later")
        self._tagged(tag, "OK", done)

    def do_CREATE(self, command: parser.Command) -> Coroutine[Any, Any, None]:
        assert isinstance(command.args, parser.Mailbox)
        name = command.args.mailbox.rstrip(DELIMITER)
        if name.upper() == INBOX:
            raise Refusal("[ALREADYEXISTS] INBOX exists already")
        return self._change(
            command.tag, "CREATE done", self._account().create_folder(name)
        )

    def do_DELETE(self, command: parser.Command) -> Coroutine[Any, Any, None]:
        assert isinstance(command.args, parser.Mailbox)
        name = command.args.mailbox
        if self.selected is not None and self.selected.folder.name == name:
            raise Refusal("[INUSE] Unselect the mailbox before deleting it")
        return self._change(
            command.tag, "DELETE done", self._account().delete_folder(name)
        )

    def do_RENAME(self, command: parser.Command) -> Coroutine[Any, Any, None]:
        assert isinstance(command.args, parser.Rename)
        old, new = command.args.old, command.args.new
        return self._change(
            command.tag, "RENAME done", self._account().rename_folder(old, new)
        )

    def do_SUBSCRIBE(self, command: parser.Command) -> Coroutine[Any, Any, None]:
        assert isinstance(command.args, parser.Mailbox)
        change = self._account().subscribe_folder(command.args.mailbox, True)
        return self._change(command.tag, "SUBSCRIBE done", change)

    def do_UNSUBSCRIBE(self, command: parser.Command) -> Coroutine[Any, Any, None]:
        assert isinstance(command.args, parser.Mailbox)
        change = self._account().subscribe_folder(command.args.mailbox, False)
        return self._change(command.tag, "UNSUBSCRIBE done", change)

    # -- SELECT, EXAMINE ---------------------------------------------------

    def do_SELECT(self, command: parser.Command) -> Coroutine[Any, Any, None]:
        return self._select(command, read_only=False)

    def do_EXAMINE(self, command: parser.Command) -> Coroutine[Any, Any, None]:
        return self._select(command, read_only=True)

    async def _select(self, command: parser.Command, read_only: bool) -> None:
        args = command.args
        assert isinstance(args, parser.Select)
        if self.selected is not None:
            # RFC 3501 §6.3.1: a SELECT, even one that fails, deselects.
            self.selected = None
            self.send(Atom("OK"), Atom("[CLOSED]"), Atom("Previous mailbox closed"))
        folder = await self._folder(args.mailbox)
        view = await self._account().open_folder(folder.id)
        selected = Selected.open(view, read_only)
        if args.condstore:
            self.enabled.add("CONDSTORE")
        selected.condstore = "CONDSTORE" in self.enabled
        keywords = sorted({k for ks in selected.keywords.values() for k in ks})
        flags = (*SYSTEM_FLAGS, *(Atom(k) for k in keywords))
        self.send(Atom("FLAGS"), flags)
        permanent: tuple[Atom, ...] = () if read_only else (*flags, Atom("\\*"))
        self._ok_code("PERMANENTFLAGS", permanent, "Flags kept")
        self.send(len(selected), Atom("EXISTS"))
        self.send(0, Atom("RECENT"))
        unseen = next(
            (i + 1 for i, bits in enumerate(selected.flags) if not bits & SEEN), None
        )
        if unseen is not None:
            self._ok_code("UNSEEN", unseen, "First unseen")
        self._ok_code("UIDVALIDITY", view.folder.uid_validity, "UIDs valid")
        self._ok_code("UIDNEXT", view.folder.next_uid, "Predicted next UID")
        self._ok_code("HIGHESTMODSEQ", view.folder.highest_modseq, "Highest")
        self.selected = selected
        mode = "READ-ONLY" if read_only else "READ-WRITE"
        self._tagged(command.tag, "OK", f"[{mode}] {command.name} done")

    def _ok_code(self, code: str, value: Value, text: str) -> None:
        """``* OK [CODE value] text``."""
        self.send(
            Atom("OK"), Atom(f"[{code} {encode(value).decode('utf-8')}]"), Atom(text)
        )

    # -- APPEND -----------------------------------------------------------

    def do_APPEND(self, command: parser.Command) -> Coroutine[Any, Any, None]:
        return self._append(command)

    async def _append(self, command: parser.Command) -> None:
        args = command.args
        assert isinstance(args, parser.Append)
        account = self._account()
        body = to_crlf(args.message)
        if len(body) > account.max_size:
            raise Refusal(f"[TOOBIG] Messages are at most {account.max_size} octets")
        bits, keywords = flag_bits(args.flags)
        try:
            appended = await account.append(
                args.mailbox, body, bits, keywords, args.internal_date, subject_of(body)
            )
        except NotFound:
            raise Refusal("[TRYCREATE] No such mailbox") from None
        except InvalidInput as e:
            raise Refusal(f"[LIMIT] {e}") from None
        if (
            self.selected is not None
            and self.selected.folder.name == (await self._folder(args.mailbox)).name
        ):
            await self.catch_up()
        self._tagged(
            command.tag,
            "OK",
            f"[APPENDUID {appended.uid_validity} {appended.uid}] APPEND done",
        )

