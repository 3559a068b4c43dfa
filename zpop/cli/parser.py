"""The ``zpop`` command line (DESIGN §3): argument types and the parser.

Argument types check their text with the account grammar
(:mod:`zpop.wire.addresses`), so a malformed address is a usage error
(exit 2) before any store is opened.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from zpop.accounts import pop_log
from zpop.accounts.app_passwords import parse_label
from zpop.store import (
    API_SCOPES,
    DELETION_POLICIES,
    FOLDERS,
    PLANS,
    POP_MODES,
    POP_QUEUES,
    POP_STARTS,
    SPAM_POLICIES,
)
from zpop.wire.addresses import parse_address, parse_domain

T = TypeVar("T")


class ParserExitError(Exception):
    """argparse finished: help printed (status 0) or misuse (status 2)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


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
LABEL = _argtype(parse_label, "label")


class _Parser(argparse.ArgumentParser):
    """argparse with one error format for every subcommand: ``zpop: error:``."""

    def error(self, message: str) -> Any:
        self.print_usage(sys.stderr)
        sys.stderr.write(f"zpop: error: {message}\n")
        raise ParserExitError(2)

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        if message:
            sys.stderr.write(message)
        raise ParserExitError(status)


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
    p = domain.add_parser(
        "dns",
        help="print the DNS records a domain needs, as zone-file lines (MX, SPF,"
        " DMARC, SRV, autoconfig, MTA-STS, TLS-RPT)",
    )
    p.add_argument("domain", type=DOMAIN, metavar="DOMAIN")
    p = domain.add_parser(
        "dkim",
        help="make the domain's DKIM keys (RSA and Ed25519) and print their"
        " TXT records",
    )
    p.add_argument("domain", type=DOMAIN, metavar="DOMAIN")
    p.add_argument(
        "--rotate",
        action="store_true",
        help="new keys; the old ones stay published while mail they signed"
        " may be queued",
    )

    account = commands.add_parser("account", help="accounts").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    p = account.add_parser("add", help="create an account")
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS")
    p.add_argument("--plan", choices=PLANS)
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
    p = account.add_parser(
        "reset-link", help='print a one-time "set your password" link (1 h)'
    )
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS")
    p = account.add_parser("recovery", help="the address reset links are sent to")
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS")
    p.add_argument("email", metavar="EMAIL")

    pop = commands.add_parser("pop", help="POP access settings").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    p = pop.add_parser("enable", help="enable POP access")
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS")
    p.add_argument(
        "--mode",
        choices=POP_MODES,
        required=True,
        help="all: every message, also earlier mail; new: mail received from now on",
    )
    p = pop.add_parser("disable", help="disable POP access")
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS")
    p = pop.add_parser("spam", help="which folders POP offers")
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS")
    p.add_argument("policy", choices=SPAM_POLICIES)
    p = pop.add_parser("deletion", help="what a POP client's delete does")
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS")
    p.add_argument("policy", choices=DELETION_POLICIES)
    p = pop.add_parser(
        "queue",
        help="one POP queue for every device, or one per device (each app-specific"
        " password and the primary password)",
    )
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS")
    p.add_argument("queue", choices=POP_QUEUES)
    p = pop.add_parser("log", help="which device downloaded what, newest first")
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS")
    p.add_argument(
        "--limit",
        type=POSITIVE_INT,
        default=pop_log.LISTED,
        metavar="N",
        help=f"at most N events (default {pop_log.LISTED})",
    )

    p = commands.add_parser("twofactor", help="two-factor authentication")
    p.add_argument("state", choices=("enable", "disable"))
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS")

    p = commands.add_parser("imap", help="IMAP access (stored; IMAP is not served yet)")
    p.add_argument("state", choices=("enable", "disable"))
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS")

    app = commands.add_parser(
        "app-password", help="app-specific passwords"
    ).add_subparsers(dest="action", metavar="ACTION", required=True)
    p = app.add_parser("create", help="create one; prints only the password")
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS")
    p.add_argument("--label", type=LABEL, required=True, metavar="TEXT")
    p.add_argument(
        "--pop-start",
        choices=POP_STARTS,
        default="setting",
        help="with a per-device POP queue, where this device's queue starts: as"
        " the account's all/new setting says (setting, the default), or with"
        " the mail that arrives after its first POP login (first-login)",
    )
    p = app.add_parser("list", help="list an account's app-specific passwords")
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS")
    p = app.add_parser("revoke", help="revoke one")
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS")
    p.add_argument("id", type=POSITIVE_INT, metavar="ID")

    token = commands.add_parser(
        "api-token", help="settings API tokens"
    ).add_subparsers(dest="action", metavar="ACTION", required=True)
    p = token.add_parser(
        "create",
        help="create one for ADDRESS, or an admin token; prints only the token",
    )
    owner = p.add_mutually_exclusive_group(required=True)
    owner.add_argument("address", type=ADDRESS, metavar="ADDRESS", nargs="?")
    owner.add_argument("--admin", action="store_true", help="an operator's token")
    p.add_argument("--scope", choices=API_SCOPES, default="read")
    p.add_argument("--label", type=LABEL, required=True, metavar="TEXT")
    p = token.add_parser("list", help="list the tokens (of ADDRESS, or all)")
    p.add_argument("address", type=ADDRESS, metavar="ADDRESS", nargs="?")
    p = token.add_parser("revoke", help="revoke one")
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
