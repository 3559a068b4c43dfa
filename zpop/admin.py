"""The ``zpop`` command: administration through the same Store API as the server.

It runs the store with ``run_synchronously``, so every Deferred has fired by
the time a store method returns and no reactor is needed; SQLite (WAL, busy
timeout) lets it run while the server does. Streams and the clock are
parameters of :func:`main` so tests drive it in-process.

Exit status: 0 on success, 1 on an operational error (one line
``zpop: error: ...`` on stderr), 2 on misuse (usage, then ``zpop: error:``).
"""

from __future__ import annotations

import argparse
import configparser
import datetime
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from typing import IO, Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from zpop import config as configmod
from zpop import delivery, maildir, maildrop, owners, passwords
from zpop.config import Config, ConfigError
from zpop.realm import free_plan_blocked
from zpop.store import (
    DATABASE_NAME,
    FOLDERS,
    Account,
    NewMessage,
    NotFound,
    SQLiteStore,
    StoreError,
    schema,
)
from zpop.threads import run_synchronously

T = TypeVar("T")

#: Passwords shorter than this are refused: people choose these.
MIN_PASSWORD_LENGTH = 8
#: Longer than any sane password; bounds the read from stdin.
MAX_PASSWORD_BYTES = 1024
#: ``zpop import`` commits after this many messages or bytes, whichever first.
IMPORT_BATCH_MESSAGES = 1000
IMPORT_BATCH_BYTES = 32 * 1024 * 1024

# Ports given to people for their mail client (DESIGN §1: implicit TLS 995,
# submission 465 and 587), whatever port the listener binds behind them.
POP3S_PORT = 995
SMTPS_PORT = 465
SUBMISSION_PORT = 587

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# RFC 5322 dot-atom; quoted local parts are legal but no operator needs them,
# and "%" and "!" are refused as the relay tricks SMTP refuses them as (such
# an account could never receive mail).
_ATOM = r"[A-Za-z0-9#$&'*+/=?^_`{|}~-]+"
_LOCAL_PART = re.compile(rf"^{_ATOM}(?:\.{_ATOM})*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class CommandError(Exception):
    """An operational failure; the text is the one line the operator sees."""


class _ParserExitError(Exception):
    """argparse finished: help printed (status 0) or misuse (status 2)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


# -- argument types -----------------------------------------------------------


def parse_domain(text: str) -> str:
    """A domain name, lower-cased; raises ValueError saying what is wrong."""
    name = text.strip().lower()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise ValueError("empty domain")
    if not name.isascii():
        raise ValueError(
            f"{text!r}: write an internationalised domain in its xn-- form"
        )
    if len(name) > 253:
        raise ValueError(f"{text!r}: a domain has at most 253 characters")
    labels = name.split(".")
    if len(labels) < 2:
        raise ValueError(f"{text!r} is not a domain: it has no dot")
    for label in labels:
        if not _LABEL.match(label):
            raise ValueError(
                f"{text!r} is not a valid domain: {label!r} must be 1-63 "
                "letters, digits or hyphens, not starting or ending with a hyphen"
            )
    return name


def parse_address(text: str) -> str:
    """A full mail address, lower-cased; a bare local part is refused."""
    if _CONTROL.search(text) or any(c.isspace() for c in text):
        raise ValueError(f"{text!r}: an address has no spaces or control characters")
    if "@" not in text:
        raise ValueError(
            f"{text!r} is not a full address: use user@domain (the login name "
            "is always the full address)"
        )
    local, _, domain = text.rpartition("@")
    if "@" in local:
        raise ValueError(f"{text!r}: an address has exactly one @")
    if not local:
        raise ValueError(f"{text!r}: the part before the @ is empty")
    if len(local) > 64 or not _LOCAL_PART.match(local):
        raise ValueError(f"{text!r}: {local!r} is not a valid local part")
    return f"{local.lower()}@{parse_domain(domain)}"


def _argtype(parse: Callable[[str], T], name: str) -> Callable[[str], T]:
    """Wrap a parser so argparse reports its message as a usage error."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e))

    convert.__name__ = name
    return convert


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise ValueError(f"{text!r} is not a positive whole number")
    return int(text)


def _label(text: str) -> str:
    label = " ".join(text.split())
    if not label:
        raise ValueError("the label is empty")
    if _CONTROL.search(label):
        raise ValueError("the label contains control characters")
    if len(label) > 100:
        raise ValueError("the label is longer than 100 characters")
    return label


def _folder_choice(allowed: Sequence[str]) -> Callable[[str], str]:
    """Folder names case-insensitively, given back in their canonical case."""

    def convert(text: str) -> str:
        for folder in allowed:
            if folder.lower() == text.lower():
                return folder
        raise ValueError(f"unknown folder {text!r} (choose from {', '.join(allowed)})")

    return convert


ADDRESS = _argtype(parse_address, "address")
DOMAIN = _argtype(parse_domain, "domain")
HOST = _argtype(parse_domain, "host name")
POSITIVE_INT = _argtype(_positive_int, "ID")
LABEL = _argtype(_label, "label")


# -- parser ---------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse with one error format for every subcommand: ``zpop: error:``."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"zpop: error: {message}\n")
        raise _ParserExitError(2)

    def exit(self, status: int = 0, message: str | None = None) -> Any:  # type: ignore[override]
        if message:
            sys.stderr.write(message)
        raise _ParserExitError(status)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line of DESIGN §3."""
    parser = _Parser(
        prog="zpop",
        description="Administer a zpop mail service (works while it runs).",
    )
    parser.add_argument("--config", metavar="FILE", help="configuration file")
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="data directory (default: $ZPOP_DATA or ./zpop-data)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = commands.add_parser("init", help="create the data directory and database")
    p.add_argument(
        "--hostname", type=HOST, help="write DATA/zpop.ini with this host name"
    )

    commands.add_parser(
        "upgrade",
        help="migrate the database to this zpop's schema (a backup is made first)",
    )

    domain = commands.add_parser("domain", help="hosted domains").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    p = domain.add_parser("add", help="host a domain")
    p.add_argument("domain", type=DOMAIN, metavar="DOMAIN")
    p.add_argument(
        "--organization",
        action="store_true",
        help="a customer's own domain (default: the provider's personal domain)",
    )
    domain.add_parser("list", help="list hosted domains")

    account = commands.add_parser("account", help="accounts").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    p = account.add_parser("add", help="create an account")
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS")
    p.add_argument("--plan", choices=("free", "paid"))
    # Federated means "no primary password" (set one later with
    # 'zpop account passwd'), so the two options exclude each other.
    exclusive = p.add_mutually_exclusive_group()
    exclusive.add_argument(
        "--federated",
        action="store_true",
        help="signs in through another identity provider: no primary password",
    )
    exclusive.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the primary password from the first line of standard input",
    )
    p = account.add_parser("passwd", help="set the primary password")
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS")
    p.add_argument("--password-stdin", action="store_true", required=True)
    p = account.add_parser("show", help="settings and mail client settings")
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS")
    account.add_parser("list", help="list accounts")
    p = account.add_parser("delete", help="delete an account and all its mail")
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS")

    pop = commands.add_parser("pop", help="POP access settings").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    p = pop.add_parser("enable", help="enable POP access")
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS")
    p.add_argument(
        "--mode",
        choices=("all", "new"),
        required=True,
        help="all: every message, also earlier mail; new: mail received from now on",
    )
    p = pop.add_parser("disable", help="disable POP access")
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS")
    p = pop.add_parser("spam", help="which folders POP offers")
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS")
    p.add_argument("policy", choices=("exclude", "include", "only"))
    p = pop.add_parser("deletion", help="what a POP client's delete does")
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS")
    p.add_argument("policy", choices=("keep", "delete"))

    p = commands.add_parser("twofactor", help="two-factor authentication")
    p.add_argument("state", choices=("enable", "disable"))
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS")

    app = commands.add_parser(
        "app-password", help="app-specific passwords"
    ).add_subparsers(dest="action", metavar="ACTION", required=True)
    p = app.add_parser("create", help="create one; prints only the password")
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS")
    p.add_argument("--label", type=LABEL, required=True, metavar="TEXT")
    p = app.add_parser("list", help="list an account's app-specific passwords")
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS")
    p = app.add_parser("revoke", help="revoke one")
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS")
    p.add_argument("id", type=POSITIVE_INT, metavar="ID")

    alias = commands.add_parser("alias", help="send-as aliases").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    p = alias.add_parser("add", help="let ADDRESS send as and receive for ALIAS")
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS")
    p.add_argument("alias", type=ADDRESS, metavar="ALIAS")

    p = commands.add_parser("deliver", help="store a message from standard input")
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS")
    p.add_argument(
        "--folder",
        type=_argtype(_folder_choice(("Inbox", "Spam")), "folder"),
        default="Inbox",
        metavar="Inbox|Spam",
    )

    p = commands.add_parser("import", help="bulk-load a Maildir")
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS")
    p.add_argument("maildir", metavar="MAILDIR")

    p = commands.add_parser("messages", help="list an account's messages")
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS")
    p.add_argument(
        "--folder",
        type=_argtype(_folder_choice(FOLDERS), "folder"),
        metavar="NAME",
        help=f"one of {', '.join(FOLDERS)}",
    )

    queue = commands.add_parser(
        "queue", help="the outbound queue (mail for other domains)"
    ).add_subparsers(dest="action", metavar="ACTION", required=True)
    queue.add_parser("list", help="queued messages, one line per recipient")
    p = queue.add_parser("retry", help="try now instead of at the next attempt")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=POSITIVE_INT, metavar="ID")
    which.add_argument("--all", action="store_true", help="every queued message")
    p = queue.add_parser("delete", help="remove a message without a bounce")
    p.add_argument("id", type=POSITIVE_INT, metavar="ID")
    return parser


# -- plumbing -----------------------------------------------------------------


def result_of(d: Deferred) -> Any:
    """The result of an already-fired Deferred, or raise its failure.

    The CLI's store runs synchronously, so nothing is ever pending; if
    something is, that is a programming error and says so.
    """
    outcome: list[Any] = []
    d.addBoth(outcome.append)
    if not outcome:
        raise RuntimeError("the store answered asynchronously in the zpop command")
    result = outcome[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result


def iso(timestamp: float | None) -> str:
    """A POSIX time as ISO 8601 UTC to the second, for every listing."""
    if timestamp is None:
        return "never"
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def printable(text: str) -> str:
    """Text from mail (subjects) or operators with control characters made
    harmless, so a listing cannot reprogram the operator's terminal."""
    return _CONTROL.sub("?", text)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in (headers, *rows):
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return lines


@dataclass
class Context:
    """What every command gets: configuration, streams, clock, and the store."""

    config: Config
    stdin: IO[bytes]
    stdout: IO[str]
    stderr: IO[str]
    clock: Callable[[], float]
    _store: SQLiteStore | None = None

    @property
    def data_dir(self) -> str:
        return self.config.data_dir

    @property
    def database(self) -> str:
        return os.path.join(self.config.data_dir, DATABASE_NAME)

    def out(self, *lines: str) -> None:
        for line in lines:
            self.stdout.write(line + "\n")

    def warn(self, line: str) -> None:
        self.stderr.write(f"zpop: warning: {line}\n")

    @property
    def store(self) -> SQLiteStore:
        """The store, opened (and migrated) on first use."""
        if self._store is None:
            if not os.path.exists(self.database):
                raise CommandError(
                    f"no zpop database in {self.data_dir}: run 'zpop init' first"
                )
            # Only init and upgrade migrate: a newer zpop must not upgrade
            # the database under an older running server.
            schema.check(self.database)
            self._store = SQLiteStore(self.database, run_synchronously)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def account(self, address: str) -> Account:
        """The account at ``address``, or a CommandError naming the fix."""
        account = result_of(self.store.get_account(address))
        if account is None:
            owner = result_of(self.store.get_account_for_recipient(address))
            if owner is not None:
                raise CommandError(
                    f"{address} is an alias of {owner.address}, not an account"
                )
            raise CommandError(
                f"no account {address}: create it with 'zpop account add {address}'"
            )
        return account

    def require_hosted(self, domain: str) -> None:
        try:
            result_of(self.store.get_domain(domain))
        except NotFound:
            raise CommandError(
                f"{domain} is not a hosted domain: add it with "
                f"'zpop domain add {domain}'"
            )


def _config_sets_data(path: str) -> bool:
    """Whether the ini file names a data directory itself."""
    parser = configparser.ConfigParser(interpolation=None, default_section="")
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except (OSError, configparser.Error, UnicodeDecodeError):
        return False  # load() has reported it already
    return parser.has_option("server", "data")


def load_config(config_file: str | None, data: str | None) -> Config:
    """DESIGN §3's precedence: --data, the config's ``data``, $ZPOP_DATA.

    The config file is --config, else DATA/zpop.ini when it exists.
    """
    if config_file is None:
        data_dir = data or configmod.default_data_dir()
        path = configmod.find_config_file(None, data_dir)
        return configmod.load(path).replace(data_dir=data_dir)
    config = configmod.load(config_file)
    if data:
        return config.replace(data_dir=data)
    if _config_sets_data(config_file):
        return config
    return config.replace(data_dir=configmod.default_data_dir())


# -- passwords --------------------------------------------------------------


def read_password(stdin: IO[bytes]) -> str:
    """The first line of stdin (trailing CR/LF removed), checked for sanity."""
    line = stdin.readline(MAX_PASSWORD_BYTES + 1)
    if len(line) > MAX_PASSWORD_BYTES:
        raise CommandError(f"the password is longer than {MAX_PASSWORD_BYTES} bytes")
    line = line.rstrip(b"\r\n")
    if not line:
        raise CommandError("no password on standard input")
    try:
        password = line.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError("the password on standard input is not UTF-8")
    if _CONTROL.search(password):
        raise CommandError(
            "the password contains a control character: mail clients cannot send it"
        )
    if len(password) < MIN_PASSWORD_LENGTH:
        raise CommandError(
            f"the password is too short: use at least {MIN_PASSWORD_LENGTH} characters"
        )
    return password


# -- commands ---------------------------------------------------------------


def _say_upgraded(ctx: Context, database: str, upgraded: schema.Upgraded) -> None:
    if upgraded.backup is None:
        ctx.out(f"database {database} is up to date (schema version {upgraded.after})")
    else:
        ctx.out(
            f"upgraded database {database} from schema version {upgraded.before}"
            f" to {upgraded.after}; the version {upgraded.before} database was"
            f" copied to {upgraded.backup}"
        )


def cmd_upgrade(ctx: Context, args: argparse.Namespace) -> None:
    """Migrate the database to this zpop's schema, after a backup."""
    if not os.path.exists(ctx.database):
        raise CommandError(f"no zpop database in {ctx.data_dir}: run 'zpop init' first")
    _say_upgraded(ctx, ctx.database, schema.upgrade(ctx.database))


def cmd_init(ctx: Context, args: argparse.Namespace) -> None:
    """Idempotent set-up: directory (0700), database, server key, zpop.ini."""
    data_dir = os.path.abspath(ctx.data_dir)
    ini = os.path.join(data_dir, configmod.CONFIG_NAME)
    if args.hostname and os.path.exists(ini):
        existing = configmod.load(ini)
        if not _ini_sets_hostname(ini) or existing.hostname != args.hostname:
            current = existing.hostname if _ini_sets_hostname(ini) else "none"
            raise CommandError(
                f"{ini} exists with hostname {current}, not {args.hostname}: "
                "edit its [server] hostname instead"
            )
    if os.path.isdir(data_dir):
        ctx.out(f"data directory {data_dir} exists")
    else:
        try:
            os.makedirs(data_dir, mode=0o700)
            os.chmod(data_dir, 0o700)
        except OSError as e:
            raise CommandError(f"cannot create {data_dir}: {e.strerror}")
        ctx.out(f"created data directory {data_dir}")
    database = os.path.join(data_dir, DATABASE_NAME)
    existed = os.path.exists(database)
    upgraded = schema.upgrade(database)
    if not existed:
        ctx.out(f"created database {database} (schema version {upgraded.after})")
    else:
        _say_upgraded(ctx, database, upgraded)
    key = os.path.join(data_dir, passwords.KEY_NAME)
    existed = os.path.exists(key)
    try:
        passwords.load_or_create_key(data_dir)
    except ValueError as e:
        raise CommandError(str(e))
    ctx.out(f"server key {key} exists" if existed else f"created server key {key}")
    if args.hostname:
        if os.path.exists(ini):
            ctx.out(f"{ini} has hostname {args.hostname}")
        else:
            _write_ini(ini, args.hostname)
            ctx.out(f"wrote {ini} (hostname {args.hostname})")


def _ini_sets_hostname(path: str) -> bool:
    parser = configparser.ConfigParser(interpolation=None, default_section="")
    with open(path, encoding="utf-8") as f:
        parser.read_file(f)
    return parser.has_option("server", "hostname")


def _write_ini(path: str, hostname: str) -> None:
    """Write zpop.ini atomically: a crash leaves no half-written config."""
    tmp = f"{path}.new-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(
            "# Written by 'zpop init'. See etc/zpop.ini for every setting.\n"
            f"[server]\nhostname = {hostname}\n"
        )
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _kind(organization: bool) -> str:
    return "organization" if organization else "personal"


def cmd_domain_add(ctx: Context, args: argparse.Namespace) -> None:
    domain = result_of(
        ctx.store.add_domain(args.domain, args.organization, ctx.clock())
    )
    host = ctx.config.pop_host_for(domain.organization)
    ctx.out(
        f"added {_kind(domain.organization)} domain {domain.name} (POP host {host})"
    )


def cmd_domain_list(ctx: Context, args: argparse.Namespace) -> None:
    domains = result_of(ctx.store.list_domains())
    if not domains:
        ctx.out("no hosted domains: add one with 'zpop domain add DOMAIN'")
        return
    counts: dict[str, int] = {}
    for account in result_of(ctx.store.list_accounts()):
        counts[account.domain] = counts.get(account.domain, 0) + 1
    rows = [
        (
            d.name,
            _kind(d.organization),
            ctx.config.pop_host_for(d.organization),
            str(counts.get(d.name, 0)),
            iso(d.created),
        )
        for d in domains
    ]
    ctx.out(*table(("DOMAIN", "KIND", "POP HOST", "ACCOUNTS", "CREATED"), rows))


def _require_free(ctx: Context, address: str, taken: str) -> None:
    """Refuse an address outside the hosted domains or already in use,
    naming what holds it (the store would only say "taken")."""
    ctx.require_hosted(address.rpartition("@")[2])
    owner = result_of(ctx.store.get_account_for_recipient(address))
    if owner is not None:
        what = (
            "an account" if owner.address == address else f"an alias of {owner.address}"
        )
        raise CommandError(f"{address} {taken} as {what}")


def cmd_account_add(ctx: Context, args: argparse.Namespace) -> None:
    address = args.address
    _require_free(ctx, address, "exists already")
    password_hash = None
    if args.password_stdin:
        password = read_password(ctx.stdin)
        password_hash = passwords.hash_password(password, ctx.config.bcrypt_cost)
    plan = args.plan or ctx.config.default_plan
    account = result_of(
        ctx.store.add_account(address, plan, args.federated, password_hash, ctx.clock())
    )
    ctx.out(
        f"created account {account.address} ({account.plan} plan, "
        f"{_kind(account.organization)} domain)"
    )
    if account.federated:
        ctx.out(
            "federated: no primary password; mail clients need an app-specific "
            f"password ('zpop app-password create {address} --label TEXT') or "
            f"a password set with 'zpop account passwd {address} --password-stdin'"
        )
    elif password_hash is None:
        ctx.out(
            "no primary password: mail clients need an app-specific password "
            f"('zpop app-password create {address} --label TEXT') until one is "
            f"set with 'zpop account passwd {address} --password-stdin'"
        )
    ctx.out(
        f"POP access is off: enable it with 'zpop pop enable {address} --mode all|new'"
    )


def cmd_account_passwd(ctx: Context, args: argparse.Namespace) -> None:
    account = ctx.account(args.address)
    password = read_password(ctx.stdin)
    password_hash = passwords.hash_password(password, ctx.config.bcrypt_cost)
    account = result_of(ctx.store.set_password(account.address, password_hash))
    ctx.out(f"password set for {account.address}")
    if account.two_factor:
        ctx.out(
            "two-factor authentication is on: mail clients still need an "
            "app-specific password"
        )


def _pop_lines(ctx: Context, account: Account) -> list[str]:
    """The POP settings block shared by ``account show`` and ``pop ...``."""
    pop = account.pop
    if not pop.enabled:
        state = "disabled"
    elif pop.mode == "new":
        state = f"enabled, mode new (mail received from {iso(pop.enabled_at)} on)"
    else:
        state = f"enabled, mode all (since {iso(pop.enabled_at)})"
    spam = {
        "exclude": "exclude (POP offers the Inbox)",
        "include": "include (POP offers the Inbox and Spam)",
        "only": "only (POP offers Spam only)",
    }[pop.spam]
    deletion = {
        "keep": "keep (a message deleted by a POP client stays in its folder)",
        "delete": "delete (a message deleted by a POP client moves to Trash)",
    }[pop.deletion]
    lines = [
        f"  POP access:        {state}",
        f"  POP spam:          {spam}",
        f"  POP deletion:      {deletion}",
    ]
    if free_plan_blocked(account, ctx.config):
        lines.append(
            "  POP availability:  not on the Free plan for accounts created on "
            f"or after {_cutoff(ctx.config)}"
        )
    return lines


def _cutoff(config: Config) -> str:
    assert config.free_pop_cutoff is not None
    return config.free_pop_cutoff.date().isoformat()


def _password_state(account: Account) -> str:
    if account.password_hash is not None:
        return "set"
    return "none (federated)" if account.federated else "none"


def cmd_account_show(ctx: Context, args: argparse.Namespace) -> None:
    account = ctx.account(args.address)
    aliases = result_of(ctx.store.list_aliases(account.address))
    app_passwords = result_of(ctx.store.list_app_passwords(account.address))
    address = account.address
    ctx.out(
        f"Account {address}",
        f"  Domain:            {account.domain} ({_kind(account.organization)})",
        f"  Plan:              {account.plan}",
        f"  Created:           {iso(account.created)}",
        f"  Primary password:  {_password_state(account)}",
        f"  Two-factor:        {'on' if account.two_factor else 'off'}",
        *_pop_lines(ctx, account),
        f"  Aliases:           {', '.join(aliases) if aliases else 'none'}",
        f"  App passwords:     {len(app_passwords)}",
        "",
        "Mail client settings",
        "  Incoming mail (POP3)",
        f"    Server:          {ctx.config.pop_host_for(account.organization)}",
        f"    Port:            {POP3S_PORT}",
        "    Security:        SSL/TLS (required)",
        f"    Username:        {address}",
        "  Outgoing mail (SMTP)",
        f"    Server:          {ctx.config.smtp_host}",
        f"    Port:            {SMTPS_PORT} with SSL/TLS, or {SUBMISSION_PORT} "
        "with STARTTLS",
        "    Authentication:  required (normal password)",
        f"    Username:        {address}",
    )
    if account.two_factor:
        ctx.out(
            "  Password:          an app-specific password is required "
            "(two-factor authentication is on)"
        )
    elif account.password_hash is None:
        ctx.out(
            "  Password:          an app-specific password is required "
            "(the account has no primary password)"
        )
    else:
        ctx.out("  Password:          the account password")
    if not account.pop.enabled and not free_plan_blocked(account, ctx.config):
        ctx.out(
            f"  Note: POP access is disabled: 'zpop pop enable {address} "
            "--mode all|new'"
        )


def cmd_account_list(ctx: Context, args: argparse.Namespace) -> None:
    accounts = result_of(ctx.store.list_accounts())
    if not accounts:
        ctx.out("no accounts: add one with 'zpop account add ADDRESS'")
        return
    rows = []
    for a in accounts:
        pop = f"{a.pop.mode}" if a.pop.enabled else "off"
        rows.append(
            (
                a.address,
                a.plan,
                _kind(a.organization),
                _password_state(a).split(" ")[0]
                if not a.federated or a.password_hash
                else "federated",
                "on" if a.two_factor else "off",
                pop,
                iso(a.created),
            )
        )
    ctx.out(
        *table(("ADDRESS", "PLAN", "KIND", "PASSWORD", "2FA", "POP", "CREATED"), rows)
    )


def cmd_account_delete(ctx: Context, args: argparse.Namespace) -> None:
    account = ctx.account(args.address)
    result_of(ctx.store.delete_account(account.address))
    ctx.out(
        f"deleted account {account.address} with its messages, aliases and "
        "app-specific passwords"
    )


def _show_pop(ctx: Context, account: Account) -> None:
    ctx.out(f"POP settings of {account.address}", *_pop_lines(ctx, account))


def cmd_pop_enable(ctx: Context, args: argparse.Namespace) -> None:
    account = ctx.account(args.address)
    if free_plan_blocked(account, ctx.config):
        raise CommandError(
            "POP access is not available on the Free plan for accounts created "
            f"on or after {_cutoff(ctx.config)}"
        )
    account = result_of(ctx.store.enable_pop(account.address, args.mode, ctx.clock()))
    _show_pop(ctx, account)


def cmd_pop_disable(ctx: Context, args: argparse.Namespace) -> None:
    account = ctx.account(args.address)
    account = result_of(ctx.store.disable_pop(account.address))
    _show_pop(ctx, account)


def cmd_pop_spam(ctx: Context, args: argparse.Namespace) -> None:
    account = ctx.account(args.address)
    account = result_of(ctx.store.set_pop_spam(account.address, args.policy))
    _show_pop(ctx, account)


def cmd_pop_deletion(ctx: Context, args: argparse.Namespace) -> None:
    account = ctx.account(args.address)
    account = result_of(ctx.store.set_pop_deletion(account.address, args.policy))
    _show_pop(ctx, account)


def cmd_twofactor(ctx: Context, args: argparse.Namespace) -> None:
    account = ctx.account(args.address)
    enable = args.state == "enable"
    account = result_of(ctx.store.set_two_factor(account.address, enable))
    if not enable:
        ctx.out(f"two-factor authentication is off for {account.address}")
        return
    ctx.out(
        f"two-factor authentication is on for {account.address}: mail clients "
        "need app-specific passwords"
    )
    if not result_of(ctx.store.list_app_passwords(account.address)):
        ctx.out(
            "it has none yet: create one with "
            f"'zpop app-password create {account.address} --label TEXT'"
        )


def cmd_app_password_create(ctx: Context, args: argparse.Namespace) -> None:
    account = ctx.account(args.address)
    try:
        key = passwords.load_or_create_key(ctx.data_dir)
    except ValueError as e:
        raise CommandError(str(e))
    password = passwords.generate_app_password()
    digest = passwords.app_password_digest(key, account.id, password)
    assert digest is not None
    result_of(
        ctx.store.add_app_password(account.address, args.label, digest, ctx.clock())
    )
    ctx.out(password)


def cmd_app_password_list(ctx: Context, args: argparse.Namespace) -> None:
    account = ctx.account(args.address)
    found = result_of(ctx.store.list_app_passwords(account.address))
    if not found:
        ctx.out(f"no app-specific passwords for {account.address}")
        return
    rows = [
        (str(p.id), iso(p.created), iso(p.last_used), printable(p.label)) for p in found
    ]
    ctx.out(*table(("ID", "CREATED", "LAST USED", "LABEL"), rows))


def cmd_app_password_revoke(ctx: Context, args: argparse.Namespace) -> None:
    account = ctx.account(args.address)
    labels = {
        p.id: p.label for p in result_of(ctx.store.list_app_passwords(account.address))
    }
    if args.id not in labels:
        raise CommandError(
            f"{account.address} has no app-specific password {args.id}: "
            f"see 'zpop app-password list {account.address}'"
        )
    result_of(ctx.store.revoke_app_password(account.address, args.id))
    ctx.out(
        f"revoked app-specific password {args.id} "
        f"({printable(labels[args.id])}) of {account.address}"
    )


def cmd_alias_add(ctx: Context, args: argparse.Namespace) -> None:
    account = ctx.account(args.address)
    alias = args.alias
    _require_free(ctx, alias, "is in use already")
    result_of(ctx.store.add_alias(account.address, alias))
    ctx.out(
        f"added alias {alias} to {account.address}: mail to it is delivered to "
        f"{account.address}, who may send as it"
    )


def cmd_deliver(ctx: Context, args: argparse.Namespace) -> None:
    owner = result_of(ctx.store.get_account_for_recipient(args.address))
    if owner is None:
        raise CommandError(f"no account or alias {args.address}")
    limit = ctx.config.message_size_limit
    raw = ctx.stdin.read(limit + 1)
    if len(raw) > limit:
        raise CommandError(
            f"the message is over the size limit of {limit} bytes: nothing stored"
        )
    try:
        message = delivery.prepare(raw, args.folder, ctx.clock(), size_limit=limit)
    except delivery.MalformedMessage as e:
        raise CommandError(f"malformed message: {e}: nothing stored")
    stored = result_of(delivery.deliver(ctx.store, args.address, message))
    ctx.out(
        f"delivered message {stored.id} (uid {stored.uid}, {stored.size} bytes) "
        f"to {owner.address} {stored.folder}"
    )


@dataclass
class _ImportTally:
    per_folder: dict[str, int]
    malformed: int = 0
    unreadable: int = 0


def cmd_import(ctx: Context, args: argparse.Namespace) -> None:
    """Bulk-load a Maildir in arrival order, one transaction per batch.

    A malformed file is skipped with a warning (it can never be imported as
    it is); an unreadable file is skipped with a warning too, and then the
    command exits 1 after importing the rest, because the operator can fix
    it. Importing the same Maildir twice stores its messages twice.
    """
    account = ctx.account(args.address)
    try:
        found, skipped = maildir.arrival_order(args.maildir)
    except maildir.NotAMaildirError as e:
        raise CommandError(str(e))
    except OSError as e:
        raise CommandError(f"cannot read {args.maildir}: {e.strerror}")
    for folder in skipped:
        ctx.warn(
            f"skipped Maildir folder {folder.name}: zpop has no folder for it "
            f"(only Inbox, {', '.join(FOLDERS[1:])})"
        )
    limit = ctx.config.message_size_limit
    tally = _ImportTally(per_folder=dict.fromkeys(FOLDERS, 0))
    for batch in _batches(ctx, found, limit, tally):
        for stored in result_of(ctx.store.store_messages(account.id, batch)):
            tally.per_folder[stored.folder] += 1
    total = sum(tally.per_folder.values())
    ctx.out(f"imported {total} messages into {account.address}")
    ctx.out(*(f"  {f:<6} {n}" for f, n in tally.per_folder.items()))
    if tally.malformed:
        ctx.out(f"skipped {tally.malformed} malformed files (see warnings)")
    if tally.unreadable:
        raise CommandError(
            f"{tally.unreadable} files could not be read (see warnings); the "
            f"other {total} messages were imported"
        )


def _batches(
    ctx: Context, found: list[maildir.Entry], limit: int, tally: _ImportTally
) -> Iterator[list[NewMessage]]:
    """Prepared messages in batches bounded by count and bytes."""
    batch: list[NewMessage] = []
    size = 0
    for entry in found:
        try:
            with open(entry.path, "rb") as f:
                raw = f.read(limit + 1)
        except OSError as e:
            ctx.warn(f"cannot read {entry.path}: {e.strerror}")
            tally.unreadable += 1
            continue
        try:
            if len(raw) > limit:
                raise delivery.MalformedMessage(f"over the size limit of {limit} bytes")
            message = delivery.prepare(
                raw, entry.folder, entry.received, entry.seen, limit
            )
        except delivery.MalformedMessage as e:
            ctx.warn(f"skipped {entry.path}: malformed message: {e}")
            tally.malformed += 1
            continue
        batch.append(message)
        size += len(message.body)
        if len(batch) >= IMPORT_BATCH_MESSAGES or size >= IMPORT_BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def pop_state(account: Account, message: Any) -> str:
    """Whether the next POP session would offer ``message``, and if not why.

    Mirrors DESIGN §1: the spam policy picks the folders, ``new`` mode
    offers uids from the enabling moment on, and a client's DELE removes a
    message from the queue for good (until POP is re-enabled in ``all``).
    """
    pop = account.pop
    if message.pop_removed:
        return "removed"
    if not pop.enabled:
        return "POP disabled"
    if message.folder not in maildrop.pop_folders(account):
        return "not offered (folder)"
    if pop.mode == "new" and message.uid < pop.start_uid:
        return "not offered (before enable)"
    return "queued"


def cmd_messages(ctx: Context, args: argparse.Namespace) -> None:
    account = ctx.account(args.address)
    found = result_of(ctx.store.list_messages(account.id, args.folder))
    if not found:
        where = f" in {args.folder}" if args.folder else ""
        ctx.out(f"no messages{where} for {account.address}")
        return
    rows = [
        (
            str(m.id),
            m.folder,
            iso(m.received),
            str(m.size),
            pop_state(account, m),
            printable(m.subject),
        )
        for m in found
    ]
    ctx.out(*table(("ID", "FOLDER", "RECEIVED", "SIZE", "POP", "SUBJECT"), rows))


def cmd_queue_list(ctx: Context, args: argparse.Namespace) -> None:
    found = result_of(ctx.store.list_outbound())
    if not found:
        ctx.out("the outbound queue is empty")
        return
    rows = [
        (
            str(m.id),
            printable(m.sender or "<>"),
            printable(r.recipient),
            r.state,
            str(r.attempts),
            iso(r.next_attempt) if r.state == "queued" else "-",
            printable(r.last_error or "-"),
        )
        for m in found
        for r in m.recipients
    ]
    ctx.out(
        *table(
            (
                "ID",
                "SENDER",
                "RECIPIENT",
                "STATE",
                "ATTEMPTS",
                "NEXT ATTEMPT",
                "LAST ERROR",
            ),
            rows,
        )
    )


def cmd_queue_retry(ctx: Context, args: argparse.Namespace) -> None:
    try:
        count = result_of(ctx.store.retry_outbound(args.id, ctx.clock()))
    except NotFound:
        raise CommandError(
            f"no queued message {args.id}: see 'zpop queue list'"
        ) from None
    # "Due now" must hold for deliveries a crashed server was making too.
    released = result_of(owners.release_dead_leases(ctx.store))
    which = "in the queue" if args.id is None else f"of message {args.id}"
    ctx.out(
        f"{count} recipient{'s' if count != 1 else ''} {which} due now; "
        "the server tries them at its next scan"
    )
    if released:
        ctx.out(
            f"{released} interrupted deliver{'ies' if released != 1 else 'y'}"
            " of a process that is gone released"
        )


def cmd_queue_delete(ctx: Context, args: argparse.Namespace) -> None:
    try:
        count = result_of(ctx.store.delete_outbound(args.id))
    except NotFound:
        raise CommandError(
            f"no queued message {args.id}: see 'zpop queue list'"
        ) from None
    ctx.out(
        f"deleted message {args.id} ({count} recipient{'s' if count != 1 else ''})"
        " from the outbound queue without a bounce"
    )


COMMANDS: dict[
    tuple[str, str | None], Callable[[Context, argparse.Namespace], None]
] = {
    ("init", None): cmd_init,
    ("upgrade", None): cmd_upgrade,
    ("domain", "add"): cmd_domain_add,
    ("domain", "list"): cmd_domain_list,
    ("account", "add"): cmd_account_add,
    ("account", "passwd"): cmd_account_passwd,
    ("account", "show"): cmd_account_show,
    ("account", "list"): cmd_account_list,
    ("account", "delete"): cmd_account_delete,
    ("pop", "enable"): cmd_pop_enable,
    ("pop", "disable"): cmd_pop_disable,
    ("pop", "spam"): cmd_pop_spam,
    ("pop", "deletion"): cmd_pop_deletion,
    ("twofactor", None): cmd_twofactor,
    ("app-password", "create"): cmd_app_password_create,
    ("app-password", "list"): cmd_app_password_list,
    ("app-password", "revoke"): cmd_app_password_revoke,
    ("alias", "add"): cmd_alias_add,
    ("deliver", None): cmd_deliver,
    ("import", None): cmd_import,
    ("messages", None): cmd_messages,
    ("queue", "list"): cmd_queue_list,
    ("queue", "retry"): cmd_queue_retry,
    ("queue", "delete"): cmd_queue_delete,
}


def main(
    argv: Sequence[str] | None = None,
    stdin: IO[bytes] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    clock: Callable[[], float] = time.time,
) -> int:
    """Run one ``zpop`` command; returns the exit status (the console script
    passes it to ``sys.exit``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    stdin = sys.stdin.buffer if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    try:
        with redirect_stdout(stdout), redirect_stderr(stderr):
            parser = build_parser()
            args = parser.parse_args(argv)
    except _ParserExitError as e:
        return e.status
    ctx: Context | None = None
    try:
        config = load_config(args.config, args.data)
        ctx = Context(config, stdin, stdout, stderr, clock)
        COMMANDS[(args.command, getattr(args, "action", None))](ctx, args)
        stdout.flush()
    except (CommandError, ConfigError, StoreError) as e:
        stderr.write(f"zpop: error: {e}\n")
        return 1
    except BrokenPipeError:
        # stdout went away (``zpop messages ... | head``): not an error.
        _silence(stdout)
        return 0
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        stderr.write(f"zpop: error:{where} {e.strerror or e}\n")
        return 1
    except KeyboardInterrupt:
        stderr.write("zpop: error: interrupted\n")
        return 130
    except Exception as e:
        # Never a traceback at an operator; the type name helps a bug report.
        stderr.write(f"zpop: error: internal error ({type(e).__name__}): {e}\n")
        return 1
    finally:
        if ctx is not None:
            ctx.close()
    return 0


def _silence(stdout: IO[str]) -> None:
    """Point stdout at /dev/null so the interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
