"""``zpop api-token``: the operator's side of the settings API tokens,
through ``zpop.accounts.api_tokens`` as the web page does."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from zpop.accounts import api_tokens, passwords
from zpop.cli.context import CommandError, Context, result_of
from zpop.cli.render import iso, printable, table
from zpop.store import ApiToken


def _owner(token: ApiToken) -> str:
    return "admin" if token.address is None else token.address


def cmd_create(ctx: Context, args: argparse.Namespace) -> None:
    try:
        key = passwords.load_or_create_key(ctx.data_dir)
    except ValueError as e:
        raise CommandError(str(e))
    address = None if args.admin else args.address
    _, token = result_of(
        api_tokens.create(ctx.store, ctx, key, address, args.scope, args.label)
    )
    ctx.out(token)


def cmd_list(ctx: Context, args: argparse.Namespace) -> None:
    found = result_of(api_tokens.list_tokens(ctx.store, args.address))
    if not found:
        ctx.out(
            f"no API tokens for {args.address}" if args.address else "no API tokens"
        )
        return
    rows = [
        (
            str(t.id),
            _owner(t),
            t.scope,
            iso(t.created),
            iso(t.last_used),
            printable(t.label),
        )
        for t in found
    ]
    ctx.out(*table(("ID", "OWNER", "SCOPE", "CREATED", "LAST USED", "LABEL"), rows))


def cmd_revoke(ctx: Context, args: argparse.Namespace) -> None:
    token = result_of(api_tokens.revoke(ctx.store, args.id))
    ctx.out(
        f"revoked API token {token.id} ({printable(token.label)}) of {_owner(token)}"
    )


COMMANDS: dict[
    tuple[str, str | None], Callable[[Context, argparse.Namespace], None]
] = {
    ("api-token", "create"): cmd_create,
    ("api-token", "list"): cmd_list,
    ("api-token", "revoke"): cmd_revoke,
}
