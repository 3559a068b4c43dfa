"""``zpop pop log ADDRESS``: the account's POP download log, one line per
event, newest first, through ``zpop.accounts.pop_log`` as the web page and
the API do."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from zpop.accounts import pop_log
from zpop.cli.context import Context, result_of
from zpop.cli.render import iso, printable, table


def cmd_log(ctx: Context, args: argparse.Namespace) -> None:
    found = result_of(pop_log.list_downloads(ctx.store, args.address, args.limit))
    if not found:
        ctx.out(f"no POP downloads logged for {args.address}")
        return
    rows = [
        (
            iso(e.at),
            printable(e.credential),
            e.client,
            e.uidl,
            e.action,
            printable(e.subject),
        )
        for e in found
    ]
    ctx.out(*table(("TIME", "DEVICE", "CLIENT", "MESSAGE", "ACTION", "SUBJECT"), rows))


COMMANDS: dict[
    tuple[str, str | None], Callable[[Context, argparse.Namespace], None]
] = {
    ("pop", "log"): cmd_log,
}
