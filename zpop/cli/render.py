"""How the ``zpop`` command prints: times, tables, the POP settings block,
and a service's domain error as the one line an operator reads, with the
``zpop`` command that fixes it."""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from zpop.accounts import settings
from zpop.accounts.errors import (
    AccountError,
    NotHosted,
    UnknownAccount,
    UnknownAppPassword,
)
from zpop.accounts.two_factor import TwoFactorState, state_of
from zpop.config import AccountsConfig
from zpop.store import Account
from zpop.wire.addresses import CONTROL


def iso(timestamp: float | None) -> str:
    """A POSIX time as ISO 8601 UTC to the second, for every listing."""
    if timestamp is None:
        return "never"
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def printable(text: str) -> str:
    """Text from mail (subjects) or operators with control characters made
    harmless, so a listing cannot reprogram the operator's terminal."""
    return CONTROL.sub("?", text)


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


def pop_lines(account: Account, config: AccountsConfig) -> list[str]:
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
    queue = {
        "shared": "shared (one POP queue for every device)",
        "per-device": "per-device (each app-specific password and the primary"
        " password has its own POP queue)",
    }[pop.queue]
    lines = [
        f"  POP access:        {state}",
        f"  POP spam:          {spam}",
        f"  POP deletion:      {deletion}",
        f"  POP queue:         {queue}",
    ]
    cutoff = settings.blocked_since(account, config)
    if cutoff is not None:
        lines.append(
            "  POP availability:  not on the Free plan for accounts created on "
            f"or after {cutoff.isoformat()}"
        )
    return lines


def two_factor_text(account: Account) -> str:
    """``account show``'s two-factor state (DESIGN §1)."""
    return {
        TwoFactorState.OFF: "off",
        TwoFactorState.REQUIRED: "required (not enrolled)",
        TwoFactorState.ON: "on (TOTP)",
    }[state_of(account)]


def imap_text(account: Account) -> str:
    """``account show``'s IMAP access state."""
    return "on" if account.imap_enabled else "off"


def password_state(account: Account) -> str:
    if account.password_hash is not None:
        return "set"
    return "none (federated)" if account.federated else "none"


def error_text(error: AccountError) -> str:
    """A domain error with the way out the CLI offers."""
    if isinstance(error, UnknownAccount) and error.alias_of is None:
        return f"{error}: create it with 'zpop account add {error.address}'"
    if isinstance(error, NotHosted):
        return f"{error}: add it with 'zpop domain add {error.domain}'"
    if isinstance(error, UnknownAppPassword):
        return f"{error}: see 'zpop app-password list {error.address}'"
    return str(error)
