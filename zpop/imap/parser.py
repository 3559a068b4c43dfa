"""IMAP commands as typed values: ``parse_command`` turns the segments of
one command (``framer.Complete.segments``) into a ``Command`` or raises
ParseError, whose message the server sends as ``tag BAD message``.

The grammar is RFC 3501's, strictly (one space between arguments, no
extra arguments), with the extensions zpop offers: LITERAL+, SASL-IR,
ID, ENABLE, IDLE, NAMESPACE, UNSELECT, UIDPLUS, MOVE, CONDSTORE,
LIST-EXTENDED with SPECIAL-USE and LIST-STATUS, ESEARCH, UTF8=ACCEPT.
Which commands a state allows is the server's to check, with the sets
below.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from zpop.imap import mutf7
from zpop.imap.fetch_items import Fetch as Fetch
from zpop.imap.fetch_items import parse_fetch
from zpop.imap.search_keys import Search as Search
from zpop.imap.search_keys import UnsupportedCharset as UnsupportedCharset
from zpop.imap.search_keys import parse_search
from zpop.imap.sequences import SequenceSet
from zpop.imap.tokens import (
    DQUOTE,
    LPAREN,
    MAX_NUMBER64,
    RPAREN,
    Reader,
    shown,
)
from zpop.imap.tokens import ParseError as ParseError
from zpop.imap.values import Atom

#: Valid in every state.
ANY = frozenset({"CAPABILITY", "NOOP", "LOGOUT", "ID"})
#: Valid only before authentication.
NOT_AUTHENTICATED = frozenset({"STARTTLS", "LOGIN", "AUTHENTICATE"})
#: Valid once authenticated, in the selected state too. ENABLE is here,
#: not in ANY: RFC 5161 section 3.1 allows it only after authentication.
AUTHENTICATED = frozenset(
    "SELECT EXAMINE CREATE DELETE RENAME SUBSCRIBE UNSUBSCRIBE LIST LSUB"
    " STATUS APPEND IDLE NAMESPACE ENABLE".split()
)
#: Valid only with a mailbox selected.
SELECTED = frozenset(
    "CHECK CLOSE UNSELECT EXPUNGE SEARCH FETCH STORE COPY MOVE".split()
) | frozenset(f"UID {name}" for name in "SEARCH FETCH STORE COPY MOVE EXPUNGE".split())

#: The hierarchy delimiter: ``inbox/x`` is ``INBOX/x``.
DELIMITER = "/"

#: RFC 2971 section 3.3.
ID_MAX_PAIRS = 30
ID_MAX_FIELD = 30
ID_MAX_VALUE = 1024

#: Status items: RFC 3501, CONDSTORE's HIGHESTMODSEQ, RFC 9051's SIZE.
STATUS_ITEMS = frozenset(
    {"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ", "SIZE"}
)
#: LIST selection options (RFC 5258 section 3.1, RFC 6154 section 5.1).
LIST_SELECT_OPTIONS = frozenset(
    {"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"}
)
#: LIST return options (RFC 5258 section 3.2, RFC 6154, RFC 5819's STATUS).
LIST_RETURN_OPTIONS = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"})


@dataclass(frozen=True)
class Id:
    """RFC 2971: the client's (field, value) pairs, or None for NIL."""

    params: tuple[tuple[str, str | None], ...] | None


@dataclass(frozen=True)
class Enable:
    """RFC 5161: capability names, upper-case, each once."""

    capabilities: tuple[str, ...]


@dataclass(frozen=True)
class Login:
    """User name and password as sent: the authentication layer decides
    what octets it accepts."""

    user: bytes
    password: bytes


@dataclass(frozen=True)
class Authenticate:
    """The mechanism (upper-case) and the RFC 4959 initial response still
    in base64 (``=`` for an empty one), None if the client sent none."""

    mechanism: str
    initial_response: bytes | None = None


@dataclass(frozen=True)
class Select:
    """SELECT and EXAMINE; ``condstore`` for the (CONDSTORE) parameter."""

    mailbox: str
    condstore: bool = False


@dataclass(frozen=True)
class Mailbox:
    """CREATE, DELETE, SUBSCRIBE and UNSUBSCRIBE."""

    mailbox: str


@dataclass(frozen=True)
class Rename:
    old: str
    new: str


@dataclass(frozen=True)
class ListMailboxes:
    """LIST and LSUB. ``patterns`` are decoded but not INBOX-normalised
    (matching INBOX case-insensitively is the matcher's part).
    ``extended`` says the client used RFC 5258 syntax (options or a
    pattern list), which the response form depends on; ``status_items``
    is the RETURN (STATUS (...)) list, None if not asked."""

    reference: str
    patterns: tuple[str, ...]
    select_options: frozenset[str] = frozenset()
    return_options: frozenset[str] = frozenset()
    status_items: tuple[str, ...] | None = None
    extended: bool = False


@dataclass(frozen=True)
class Status:
    mailbox: str
    items: tuple[str, ...]


@dataclass(frozen=True)
class Append:
    """``internal_date`` is the client's date-time as a POSIX time."""

    mailbox: str
    flags: tuple[Atom, ...]
    internal_date: float | None
    message: bytes


@dataclass(frozen=True)
class Store:
    """STORE and UID STORE: replace (FLAGS), add (+FLAGS) or remove
    (-FLAGS) ``flags``; ``silent`` for .SILENT; ``unchanged_since`` is
    CONDSTORE's UNCHANGEDSINCE."""

    messages: SequenceSet
    mode: Literal["replace", "add", "remove"]
    flags: tuple[Atom, ...]
    silent: bool = False
    unchanged_since: int | None = None


@dataclass(frozen=True)
class Copy:
    """COPY, MOVE and their UID forms."""

    messages: SequenceSet
    mailbox: str


@dataclass(frozen=True)
class Expunge:
    """UID EXPUNGE (RFC 4315): only these UIDs."""

    messages: SequenceSet


Arguments = (
    Id
    | Enable
    | Login
    | Authenticate
    | Select
    | Mailbox
    | Rename
    | ListMailboxes
    | Status
    | Append
    | Search
    | Fetch
    | Store
    | Copy
    | Expunge
    | None
)


@dataclass(frozen=True)
class Command:
    """One command: ``name`` upper-case (``UID FETCH`` for the UID forms),
    ``args`` the command's own record, None for commands without
    arguments."""

    tag: str
    name: str
    args: Arguments = None

    @property
    def uid(self) -> bool:
        return self.name.startswith("UID ")


def parse_command(segments: Sequence[bytes], *, utf8: bool = False) -> Command:
    """The command ``segments`` hold (text, literal, text, ..., text, each
    text but the last ending in its literal's marker), or ParseError.

    ``utf8`` is whether the client has enabled UTF8=ACCEPT (RFC 6855):
    its mailbox names are UTF-8, not modified UTF-7.
    """
    reader = Reader(segments, utf8=utf8)
    reader.tag = tag = reader.tag_token()
    reader.sp("command name")
    name = reader.word("command name")
    if name == "UID":
        reader.sp("UID command")
        name = "UID " + reader.word("UID command")
    parse = _COMMANDS.get(name)
    if parse is None:
        raise reader.fail(f"unknown command {shown(name)}")
    reader.command = name
    args = parse(reader)
    reader.end()
    return Command(tag, name, args)


def normalise_inbox(name: str) -> str:
    """``INBOX`` in any case (only ASCII: no dotless i) is INBOX, and so
    is the first level of a name under it (RFC 3501 section 5.1)."""
    head, delimiter, rest = name.partition(DELIMITER)
    if head.isascii() and head.upper() == "INBOX":
        return "INBOX" + delimiter + rest
    return name


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _name(reader: Reader, raw: bytes) -> str:
    try:
        name = raw.decode("utf-8") if reader.utf8 else mutf7.decode(raw)
    except (UnicodeDecodeError, mutf7.DecodeError):
        raise reader.fail("bad mailbox name encoding") from None
    if _CONTROL.search(name):
        raise reader.fail("control character in mailbox name")
    return name


def _mailbox(reader: Reader, what: str = "mailbox name") -> str:
    reader.sp(what)
    return normalise_inbox(_name(reader, reader.astring(what)))


def _no_arguments(reader: Reader) -> None:
    return None


def _id(reader: Reader) -> Id:
    """``SP ("(" [string SP nstring *(SP string SP nstring)] ")" / NIL)``."""
    reader.sp("ID parameters")
    if reader.peek_word() == "NIL":
        reader.atom("ID parameters")
        return Id(None)
    reader.expect(LPAREN, "ID parameters")
    params: list[tuple[str, str | None]] = []
    while not reader.take(RPAREN):
        if params:
            reader.sp("ID field")
        if len(params) == ID_MAX_PAIRS:
            raise reader.fail("too many ID fields")
        field = reader.string("ID field")
        reader.sp("ID value")
        value = reader.nstring("ID value")
        if len(field) > ID_MAX_FIELD or len(value or b"") > ID_MAX_VALUE:
            raise reader.fail("ID field or value too long")
        try:
            text = None if value is None else value.decode("utf-8")
            params.append((field.decode("utf-8"), text))
        except UnicodeDecodeError:
            raise reader.fail("ID field or value is not UTF-8") from None
    return Id(tuple(params))


def _enable(reader: Reader) -> Enable:
    """``1*(SP capability)``."""
    capabilities = []
    while True:
        reader.sp("capability")
        capabilities.append(reader.word("capability"))
        if reader.at_end():
            return Enable(tuple(dict.fromkeys(capabilities)))


def _login(reader: Reader) -> Login:
    reader.sp("user name")
    user = reader.astring("user name")
    reader.sp("password")
    return Login(user, reader.astring("password"))


_BASE64 = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def _authenticate(reader: Reader) -> Authenticate:
    """``SP auth-type [SP (base64 / "=")]`` (RFC 4959)."""
    reader.sp("mechanism name")
    mechanism = reader.word("mechanism name")
    if reader.at_end():
        return Authenticate(mechanism)
    reader.sp("initial response")
    response = reader.atom("initial response")
    if response != b"=" and not _BASE64.fullmatch(response):
        raise reader.fail("initial response is not base64")
    return Authenticate(mechanism, response)


def _select(reader: Reader) -> Select:
    """``SP mailbox [SP "(" select-param *(SP select-param) ")"]``."""
    mailbox = _mailbox(reader)
    condstore = False
    if not reader.at_end():
        reader.sp(f"{reader.command} parameters")
        reader.expect(LPAREN, f"{reader.command} parameters")
        while True:
            parameter = reader.word(f"{reader.command} parameter")
            if parameter != "CONDSTORE":
                raise reader.fail(
                    f"unknown {reader.command} parameter {shown(parameter)}"
                )
            condstore = True
            if reader.take(RPAREN):
                break
            reader.sp(f"{reader.command} parameter")
    return Select(mailbox, condstore)


def _mailbox_only(reader: Reader) -> Mailbox:
    return Mailbox(_mailbox(reader))


def _rename(reader: Reader) -> Rename:
    old = _mailbox(reader)
    return Rename(old, _mailbox(reader, "new mailbox name"))


def _pattern(reader: Reader) -> str:
    return _name(reader, reader.list_mailbox("mailbox pattern"))


def _words(reader: Reader, what: str, allowed: frozenset[str]) -> list[str]:
    """``"(" [word *(SP word)] ")"`` of ``allowed`` words, upper-case."""
    reader.expect(LPAREN, f"{what}s")
    words: list[str] = []
    while not reader.take(RPAREN):
        if words:
            reader.sp(what)
        word = reader.word(what)
        if word not in allowed:
            raise reader.fail(f"unknown {what} {shown(word)}")
        words.append(word)
    return words


def _list(reader: Reader) -> ListMailboxes:
    """``[SP list-select-opts] SP mailbox SP mbox-or-pat [SP
    list-return-opts]`` (RFC 5258 section 6)."""
    extended = False
    select: frozenset[str] = frozenset()
    reader.sp("reference")
    if reader.peek() == LPAREN:
        extended = True
        select = frozenset(_words(reader, "LIST option", LIST_SELECT_OPTIONS))
        # RFC 5258 section 3.1: RECURSIVEMATCH needs an option to modify.
        if "RECURSIVEMATCH" in select and not select - {"RECURSIVEMATCH", "REMOTE"}:
            raise reader.fail("RECURSIVEMATCH needs another selection option")
        reader.sp("reference")
    reference = normalise_inbox(_name(reader, reader.astring("reference")))
    reader.sp("mailbox pattern")
    if reader.take(LPAREN):
        extended = True
        patterns = [_pattern(reader)]
        while not reader.take(RPAREN):
            reader.sp("mailbox pattern")
            patterns.append(_pattern(reader))
    else:
        patterns = [_pattern(reader)]
    returns: frozenset[str] = frozenset()
    status = None
    if not reader.at_end():
        extended = True
        reader.sp("RETURN")
        if reader.word("RETURN") != "RETURN":
            raise reader.fail("bad LIST RETURN options")
        reader.sp("LIST RETURN options")
        returns, status = _list_returns(reader)
    return ListMailboxes(
        reference, tuple(dict.fromkeys(patterns)), select, returns, status, extended
    )


def _list_returns(reader: Reader) -> tuple[frozenset[str], tuple[str, ...] | None]:
    reader.expect(LPAREN, "LIST RETURN options")
    options: set[str] = set()
    status = None
    while not reader.take(RPAREN):
        if options:
            reader.sp("LIST RETURN option")
        option = reader.word("LIST RETURN option")
        if option not in LIST_RETURN_OPTIONS:
            raise reader.fail(f"unknown LIST RETURN option {shown(option)}")
        if option == "STATUS":
            reader.sp("status items")
            status = _status_items(reader)
        options.add(option)
    return frozenset(options), status


def _status_items(reader: Reader) -> tuple[str, ...]:
    """``"(" status-att *(SP status-att) ")"``, each item once."""
    items = _words(reader, "status item", STATUS_ITEMS)
    if not items:
        raise reader.fail("missing status item")
    return tuple(dict.fromkeys(items))


def _lsub(reader: Reader) -> ListMailboxes:
    reader.sp("reference")
    reference = normalise_inbox(_name(reader, reader.astring("reference")))
    reader.sp("mailbox pattern")
    return ListMailboxes(reference, (_pattern(reader),))


def _status(reader: Reader) -> Status:
    mailbox = _mailbox(reader)
    reader.sp("status items")
    return Status(mailbox, _status_items(reader))


def _append(reader: Reader) -> Append:
    """``SP mailbox [SP flag-list] [SP date-time] SP literal``."""
    mailbox = _mailbox(reader)
    reader.sp("message literal")
    flags: tuple[Atom, ...] = ()
    if reader.peek() == LPAREN:
        flags = reader.flag_list()
        reader.sp("message literal")
    internal_date = None
    if reader.peek() == DQUOTE:
        internal_date = reader.date_time()
        reader.sp("message literal")
    if not reader.is_literal():
        raise reader.fail("APPEND message must be a literal")
    return Append(mailbox, flags, internal_date, reader.literal("message"))


_STORE_ACTION = re.compile(r"([+-]?)FLAGS(\.SILENT)?")
_STORE_MODES: dict[str, Literal["replace", "add", "remove"]] = {
    "": "replace",
    "+": "add",
    "-": "remove",
}


def _store(reader: Reader) -> Store:
    """``SP sequence-set [SP "(" "UNCHANGEDSINCE" SP mod-sequence-valzer
    ")"] SP store-att-flags`` (RFC 3501, RFC 7162 section 3.1.3)."""
    reader.sp("sequence set")
    messages = reader.sequence_set()
    reader.sp("STORE action")
    unchanged_since = None
    if reader.take(LPAREN):
        modifier = reader.word("STORE modifier")
        if modifier != "UNCHANGEDSINCE":
            raise reader.fail(f"unknown STORE modifier {shown(modifier)}")
        reader.sp("mod-sequence")
        unchanged_since = reader.number("mod-sequence", MAX_NUMBER64)
        reader.expect(RPAREN, "end of STORE modifiers")
        reader.sp("STORE action")
    action = _STORE_ACTION.fullmatch(reader.word("STORE action"))
    if action is None:
        raise reader.fail("bad STORE action")
    reader.sp("flags")
    if reader.peek() == LPAREN:
        flags = reader.flag_list()
    else:
        found = [reader.flag()]
        while not reader.at_end():
            reader.sp("flag")
            found.append(reader.flag())
        flags = tuple(dict.fromkeys(found))
    mode = _STORE_MODES[action.group(1)]
    return Store(messages, mode, flags, bool(action.group(2)), unchanged_since)


def _copy(reader: Reader) -> Copy:
    reader.sp("sequence set")
    messages = reader.sequence_set()
    return Copy(messages, _mailbox(reader))


def _uid_expunge(reader: Reader) -> Expunge:
    reader.sp("sequence set")
    return Expunge(reader.sequence_set())


def _search(reader: Reader) -> Search:
    return parse_search(reader)


def _fetch(reader: Reader) -> Fetch:
    return parse_fetch(reader, uid=reader.command == "UID FETCH")


_COMMANDS: dict[str, Callable[[Reader], Arguments]] = {
    "CAPABILITY": _no_arguments,
    "NOOP": _no_arguments,
    "LOGOUT": _no_arguments,
    "ID": _id,
    "ENABLE": _enable,
    "STARTTLS": _no_arguments,
    "LOGIN": _login,
    "AUTHENTICATE": _authenticate,
    "SELECT": _select,
    "EXAMINE": _select,
    "CREATE": _mailbox_only,
    "DELETE": _mailbox_only,
    "RENAME": _rename,
    "SUBSCRIBE": _mailbox_only,
    "UNSUBSCRIBE": _mailbox_only,
    "LIST": _list,
    "LSUB": _lsub,
    "STATUS": _status,
    "APPEND": _append,
    "IDLE": _no_arguments,
    "NAMESPACE": _no_arguments,
    "UNSELECT": _no_arguments,
    "CLOSE": _no_arguments,
    "CHECK": _no_arguments,
    "EXPUNGE": _no_arguments,
    "SEARCH": _search,
    "FETCH": _fetch,
    "STORE": _store,
    "COPY": _copy,
    "MOVE": _copy,
    "UID SEARCH": _search,
    "UID FETCH": _fetch,
    "UID STORE": _store,
    "UID COPY": _copy,
    "UID MOVE": _copy,
    "UID EXPUNGE": _uid_expunge,
}

#: Every command name parse_command knows.
COMMANDS = frozenset(_COMMANDS)
