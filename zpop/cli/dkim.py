"""``zpop domain dkim DOMAIN [--rotate]``: the domain's DKIM keys, made or
rotated, and the TXT records to publish, through ``zpop.mailauth.dkim_keys``
(``zpop domain dns`` prints the same records among the others).

The keys live in the data directory, where the running server finds them
within seconds (``zpop.mailauth.dkim``): the command needs no restart.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from zpop.accounts import dns_records
from zpop.cli.context import CommandError, Context, result_of
from zpop.cli.render import iso
from zpop.mailauth.dkim_keys import DkimKeyError, DkimKeys, FileKeyStore, domain_dkim


def dkim_keys(ctx: Context) -> DkimKeys:
    """The domains' keys in the data directory; a retired selector stays
    published for ``[outbound] lifetime``, the longest a message is queued."""
    return DkimKeys(FileKeyStore(ctx.data_dir), ctx, ctx.config.outbound.lifetime)


def cmd_domain_dkim(ctx: Context, args: argparse.Namespace) -> None:
    try:
        found = result_of(
            domain_dkim(ctx.store, dkim_keys(ctx), args.domain, args.rotate)
        )
    except DkimKeyError as e:
        raise CommandError(str(e)) from None
    if found.made:
        names = ", ".join(f"{s.name} ({s.algorithm})" for s in found.made)
        ctx.out(f"made DKIM keys for {found.domain}: {names}")
    else:
        ctx.out(
            f"{found.domain} has DKIM keys already; new ones replace them with"
            f" 'zpop domain dkim {found.domain} --rotate'"
        )
    lifetime = ctx.config.outbound.lifetime
    for s in found.retired:
        until = iso((s.retired or 0.0) + lifetime)
        ctx.out(
            f"retired {s.name}: it signs no more, and stays published until"
            f" {until}, while mail it signed may be queued"
        )
    ctx.out(f"; publish in the zone of {found.domain}:")
    records = dns_records.dkim_records(found.published)
    ctx.out(*(record.zone_line() for record in records))


COMMANDS: dict[
    tuple[str, str | None], Callable[[Context, argparse.Namespace], None]
] = {
    ("domain", "dkim"): cmd_domain_dkim,
}
