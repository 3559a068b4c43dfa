"""The ``zpop`` commands: each parses nothing more, calls one service and
prints its result; a service's domain error reaches :func:`zpop.cli.main`,
which prints it (``zpop.cli.render.error_text``)."""

from __future__ import annotations

import argparse
import configparser
import os
from collections.abc import Callable

from zpop import config as configmod
from zpop import delivery, maildir
from zpop.accounts import (
    accounts,
    aliases,
    app_passwords,
    client_settings,
    dns_records,
    domains,
    password_resets,
    passwords,
    settings,
)
from zpop.accounts.two_factor import TwoFactorState, set_two_factor, state_of
from zpop.cli.api_tokens import COMMANDS as API_TOKEN_COMMANDS
from zpop.cli.context import CommandError, Context, read_password, result_of
from zpop.cli.dkim import COMMANDS as DKIM_COMMANDS
from zpop.cli.dkim import dkim_keys
from zpop.cli.pop_log import COMMANDS as POP_LOG_COMMANDS
from zpop.cli.render import (
    imap_text,
    iso,
    password_state,
    pop_lines,
    printable,
    table,
    two_factor_text,
)
from zpop.files import write_atomically
from zpop.mailauth.dkim_keys import DkimKeyError
from zpop.outbound import queue
from zpop.store import DATABASE_NAME, FOLDERS, Account, schema
from zpop.threads import run_synchronously

#: The batch bounds ``zpop import`` passes to the import service (whose
#: defaults they are), named here so one command can be run with others.
IMPORT_BATCH_MESSAGES = delivery.IMPORT_BATCH_MESSAGES
IMPORT_BATCH_BYTES = delivery.IMPORT_BATCH_BYTES

# Ports given to people for their mail client (DESIGN §1: implicit TLS 995,
# submission 465 and 587), whatever port the listener binds behind them.
POP3S_PORT = client_settings.POP3S_PORT
SMTPS_PORT = client_settings.SMTPS_PORT
SUBMISSION_PORT = client_settings.SUBMISSION_PORT


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
    upgraded = schema.upgrade(ctx.database, check_references=True)
    _say_upgraded(ctx, ctx.database, upgraded)


def cmd_init(ctx: Context, args: argparse.Namespace) -> None:
    """Idempotent set-up: directory (0700), database, server key, zpop.ini."""
    data_dir = os.path.abspath(ctx.data_dir)
    ini = os.path.join(data_dir, configmod.CONFIG_NAME)
    if args.hostname and os.path.exists(ini):
        existing = configmod.load(ini)
        if not _ini_sets_hostname(ini) or existing.server.hostname != args.hostname:
            current = existing.server.hostname if _ini_sets_hostname(ini) else "none"
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
    text = (
        "# Written by 'zpop init'. See etc/zpop.ini for every setting.\n"
        f"[server]\nhostname = {hostname}\n"
    )
    write_atomically(path, text.encode("utf-8"), 0o644)


def cmd_domain_add(ctx: Context, args: argparse.Namespace) -> None:
    domain = result_of(
        domains.add_domain(ctx.store, ctx, args.domain, args.organization)
    )
    host = ctx.config.hosts.pop_for(domain.organization)
    ctx.out(
        f"added {domains.kind(domain.organization)} domain {domain.name} "
        f"(POP host {host})"
    )


def cmd_domain_list(ctx: Context, args: argparse.Namespace) -> None:
    found = result_of(domains.list_domains(ctx.store))
    if not found:
        ctx.out("no hosted domains: add one with 'zpop domain add DOMAIN'")
        return
    rows = [
        (
            s.domain.name,
            domains.kind(s.domain.organization),
            ctx.config.hosts.pop_for(s.domain.organization),
            str(s.accounts),
            iso(s.domain.created),
        )
        for s in found
    ]
    ctx.out(*table(("DOMAIN", "KIND", "POP HOST", "ACCOUNTS", "CREATED"), rows))


def cmd_domain_dns(ctx: Context, args: argparse.Namespace) -> None:
    """The domain's records as zone-file lines, the operator's notes as
    comments (DESIGN §1 "Client autoconfiguration")."""
    try:
        found = result_of(
            dns_records.domain_records(
                ctx.store, ctx.config, args.domain, dkim_keys(ctx)
            )
        )
    except DkimKeyError as e:
        raise CommandError(str(e)) from None
    ctx.out(
        f"; DNS records for {found.domain} ({domains.kind(found.organization)} domain)",
        *(record.zone_line() for record in found.records),
    )
    if found.report_authorization is not None:
        ctx.out(
            f"; in the zone of {found.report_zone}: lets it receive this"
            " domain's DMARC reports",
            found.report_authorization.zone_line(),
        )
    ctx.out(*(f"; {note}" for note in found.notes))


def cmd_account_add(ctx: Context, args: argparse.Namespace) -> None:
    address = args.address
    account = result_of(
        accounts.add_account(
            ctx.store,
            ctx.config.accounts,
            run_synchronously,
            ctx,
            address,
            args.plan,
            args.federated,
            (lambda: read_password(ctx.stdin)) if args.password_stdin else None,
        )
    )
    ctx.out(
        f"created account {account.address} ({account.plan} plan, "
        f"{domains.kind(account.organization)} domain)"
    )
    if account.federated:
        ctx.out(
            "federated: no primary password; mail clients need an app-specific "
            f"password ('zpop app-password create {address} --label TEXT') or "
            f"a password set with 'zpop account passwd {address} --password-stdin'"
        )
    elif account.password_hash is None:
        ctx.out(
            "no primary password: mail clients need an app-specific password "
            f"('zpop app-password create {address} --label TEXT') until one is "
            f"set with 'zpop account passwd {address} --password-stdin'"
        )
    ctx.out(
        f"POP access is off: enable it with 'zpop pop enable {address} --mode all|new'"
    )


def cmd_account_passwd(ctx: Context, args: argparse.Namespace) -> None:
    account = result_of(
        accounts.set_password(
            ctx.store,
            ctx.config.accounts,
            run_synchronously,
            args.address,
            lambda: read_password(ctx.stdin),
        )
    )
    ctx.out(f"password set for {account.address}")
    if account.two_factor:
        ctx.out(
            f"two-factor authentication is {state_of(account)}: mail clients"
            " still need an app-specific password"
        )


def cmd_account_show(ctx: Context, args: argparse.Namespace) -> None:
    details = result_of(accounts.show_account(ctx.store, args.address))
    recovery = result_of(password_resets.get_recovery_address(ctx.store, args.address))
    account = details.account
    address = account.address
    ctx.out(
        f"Account {address}",
        f"  Domain:            {account.domain} ({domains.kind(account.organization)})",
        f"  Plan:              {account.plan}",
        f"  Created:           {iso(account.created)}",
        f"  Primary password:  {password_state(account)}",
        f"  Two-factor:        {two_factor_text(account)}",
        *pop_lines(account, ctx.config.accounts),
        f"  IMAP access:       {imap_text(account)}",
        "  Aliases:           "
        f"{', '.join(details.aliases) if details.aliases else 'none'}",
        f"  App passwords:     {len(details.app_passwords)}",
        f"  Recovery address:  {recovery or 'none'}",
        "",
        "Mail client settings",
        "  Incoming mail (POP3)",
        f"    Server:          {ctx.config.hosts.pop_for(account.organization)}",
        f"    Port:            {POP3S_PORT}",
        "    Security:        SSL/TLS (required)",
        f"    Username:        {address}",
        "  Outgoing mail (SMTP)",
        f"    Server:          {ctx.config.hosts.smtp}",
        f"    Port:            {SMTPS_PORT} with SSL/TLS, or {SUBMISSION_PORT} "
        "with STARTTLS",
        "    Authentication:  required (normal password)",
        f"    Username:        {address}",
    )
    if account.two_factor:
        ctx.out(
            "  Password:          an app-specific password is required "
            f"(two-factor authentication is {state_of(account)})"
        )
    elif account.password_hash is None:
        ctx.out(
            "  Password:          an app-specific password is required "
            "(the account has no primary password)"
        )
    else:
        ctx.out("  Password:          the account password")
    if (
        not account.pop.enabled
        and settings.blocked_since(account, ctx.config.accounts) is None
    ):
        ctx.out(
            f"  Note: POP access is disabled: 'zpop pop enable {address} "
            "--mode all|new'"
        )


def cmd_account_list(ctx: Context, args: argparse.Namespace) -> None:
    found = result_of(accounts.list_accounts(ctx.store))
    if not found:
        ctx.out("no accounts: add one with 'zpop account add ADDRESS'")
        return
    rows = []
    for a in found:
        pop = f"{a.pop.mode}" if a.pop.enabled else "off"
        rows.append(
            (
                a.address,
                a.plan,
                domains.kind(a.organization),
                password_state(a).split(" ")[0]
                if not a.federated or a.password_hash
                else "federated",
                str(state_of(a)),
                pop,
                iso(a.created),
            )
        )
    ctx.out(
        *table(("ADDRESS", "PLAN", "KIND", "PASSWORD", "2FA", "POP", "CREATED"), rows)
    )


def cmd_account_reset_link(ctx: Context, args: argparse.Namespace) -> None:
    key = passwords.load_or_create_key(ctx.data_dir)
    ctx.out(
        result_of(
            password_resets.make_reset_link(
                ctx.store, key, ctx, args.address, ctx.config.web_url
            )
        )
    )


def cmd_account_recovery(ctx: Context, args: argparse.Namespace) -> None:
    recovery = result_of(
        password_resets.set_recovery_address(ctx.store, args.address, args.email)
    )
    ctx.out(f"reset links for {args.address} go to {recovery}")


def cmd_account_delete(ctx: Context, args: argparse.Namespace) -> None:
    account = result_of(accounts.delete_account(ctx.store, args.address))
    ctx.out(
        f"deleted account {account.address} with its messages, aliases and "
        "app-specific passwords"
    )


def _show_pop(ctx: Context, account: Account) -> None:
    ctx.out(
        f"POP settings of {account.address}", *pop_lines(account, ctx.config.accounts)
    )


def cmd_pop_enable(ctx: Context, args: argparse.Namespace) -> None:
    _show_pop(
        ctx,
        result_of(
            settings.enable_pop(
                ctx.store, ctx.config.accounts, ctx, args.address, args.mode
            )
        ),
    )


def cmd_pop_disable(ctx: Context, args: argparse.Namespace) -> None:
    _show_pop(ctx, result_of(settings.disable_pop(ctx.store, args.address)))


def cmd_pop_spam(ctx: Context, args: argparse.Namespace) -> None:
    _show_pop(
        ctx, result_of(settings.set_pop_spam(ctx.store, args.address, args.policy))
    )


def cmd_pop_deletion(ctx: Context, args: argparse.Namespace) -> None:
    _show_pop(
        ctx,
        result_of(settings.set_pop_deletion(ctx.store, args.address, args.policy)),
    )


def cmd_pop_queue(ctx: Context, args: argparse.Namespace) -> None:
    _show_pop(
        ctx, result_of(settings.set_pop_queue(ctx.store, args.address, args.queue))
    )


def cmd_twofactor(ctx: Context, args: argparse.Namespace) -> None:
    enable = args.state == "enable"
    change = result_of(set_two_factor(ctx.store, args.address, enable))
    address = change.account.address
    if not enable and change.before is TwoFactorState.ON:
        ctx.out(
            f"two-factor authentication is reset for {address}: its authenticator"
            " secret and recovery codes are deleted, and two-factor is off"
        )
        return
    if not enable:
        ctx.out(f"two-factor authentication is off for {address}")
        return
    if change.before is TwoFactorState.ON:
        ctx.out(
            f"two-factor authentication is on for {address} (TOTP) and now "
            "required: mail clients need app-specific passwords"
        )
    else:
        ctx.out(
            f"two-factor authentication is required for {address}: the account"
            " enrols at its next web sign-in, and mail clients need"
            " app-specific passwords"
        )
    if change.needs_app_password:
        ctx.out(
            "it has none yet: create one with "
            f"'zpop app-password create {address} --label TEXT'"
        )


def cmd_imap(ctx: Context, args: argparse.Namespace) -> None:
    change = settings.enable_imap if args.state == "enable" else settings.disable_imap
    account = result_of(change(ctx.store, args.address))
    ctx.out(
        f"IMAP access is {imap_text(account)} for {account.address}: this takes"
        " effect at the next IMAP login (zpop does not serve IMAP yet; the"
        " setting is kept for when it does)"
    )


def cmd_app_password_create(ctx: Context, args: argparse.Namespace) -> None:
    account = result_of(accounts.require_account(ctx.store, args.address))
    try:
        key = passwords.load_or_create_key(ctx.data_dir)
    except ValueError as e:
        raise CommandError(str(e))
    _, password = result_of(
        app_passwords.create(
            ctx.store, ctx, key, account.address, args.label, args.pop_start
        )
    )
    ctx.out(password)


def cmd_app_password_list(ctx: Context, args: argparse.Namespace) -> None:
    found = result_of(app_passwords.list_app_passwords(ctx.store, args.address))
    if not found:
        ctx.out(f"no app-specific passwords for {args.address}")
        return
    rows = [
        (str(p.id), iso(p.created), iso(p.last_used), printable(p.label)) for p in found
    ]
    ctx.out(*table(("ID", "CREATED", "LAST USED", "LABEL"), rows))


def cmd_app_password_revoke(ctx: Context, args: argparse.Namespace) -> None:
    label = result_of(app_passwords.revoke(ctx.store, args.address, args.id))
    ctx.out(
        f"revoked app-specific password {args.id} "
        f"({printable(label)}) of {args.address}"
    )


def cmd_alias_add(ctx: Context, args: argparse.Namespace) -> None:
    account = result_of(aliases.add_alias(ctx.store, args.address, args.alias))
    ctx.out(
        f"added alias {args.alias} to {account.address}: mail to it is delivered "
        f"to {account.address}, who may send as it"
    )


def cmd_deliver(ctx: Context, args: argparse.Namespace) -> None:
    limit = ctx.config.limits.message_size
    try:
        delivered = result_of(
            delivery.deliver_local(
                ctx.store, ctx, args.address, ctx.stdin, args.folder, limit
            )
        )
    except delivery.DeliveryRefused as e:
        raise CommandError(str(e)) from None
    stored = delivered.message
    ctx.out(
        f"delivered message {stored.id} (uid {stored.uid}, {stored.size} bytes) "
        f"to {delivered.account.address} {stored.folder}"
    )


def cmd_import(ctx: Context, args: argparse.Namespace) -> None:
    """Bulk-load a Maildir in arrival order (``delivery.import_messages``).

    Each file left out gets a warning; an unreadable one then makes the
    command exit 1 after importing the rest, because the operator can fix
    it (a malformed one never imports as it is).
    """
    account = result_of(accounts.require_account(ctx.store, args.address))
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
    limit = ctx.config.limits.message_size
    tally = result_of(
        delivery.import_messages(
            ctx.store,
            account,
            found,
            limit,
            on_skip=lambda s: ctx.warn(_skipped_text(s)),
            batch_messages=IMPORT_BATCH_MESSAGES,
            batch_bytes=IMPORT_BATCH_BYTES,
        )
    )
    total = tally.imported
    ctx.out(f"imported {total} messages into {account.address}")
    ctx.out(*(f"  {f:<6} {n}" for f, n in tally.per_folder.items()))
    if tally.malformed:
        ctx.out(f"skipped {tally.malformed} malformed files (see warnings)")
    if tally.unreadable:
        raise CommandError(
            f"{tally.unreadable} files could not be read (see warnings); the "
            f"other {total} messages were imported"
        )


def _skipped_text(skipped: delivery.Skipped) -> str:
    path = skipped.entry.path
    if skipped.reason is delivery.SkipReason.UNREADABLE:
        return f"cannot read {path}: {skipped.detail}"
    return f"skipped {path}: malformed message: {skipped.detail}"


def cmd_messages(ctx: Context, args: argparse.Namespace) -> None:
    account = result_of(accounts.require_account(ctx.store, args.address))
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
            settings.pop_state(account, m),
            printable(m.subject),
        )
        for m in found
    ]
    ctx.out(*table(("ID", "FOLDER", "RECEIVED", "SIZE", "POP", "SUBJECT"), rows))


def cmd_queue_list(ctx: Context, args: argparse.Namespace) -> None:
    found = result_of(queue.list_queue(ctx.store))
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
        count, released = result_of(queue.retry(ctx.store, args.id, ctx.clock()))
    except queue.UnknownQueuedMessage as e:
        raise CommandError(f"{e}: see 'zpop queue list'") from None
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
        count = result_of(queue.delete(ctx.store, args.id))
    except queue.UnknownQueuedMessage as e:
        raise CommandError(f"{e}: see 'zpop queue list'") from None
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
    ("domain", "dns"): cmd_domain_dns,
    ("account", "add"): cmd_account_add,
    ("account", "passwd"): cmd_account_passwd,
    ("account", "show"): cmd_account_show,
    ("account", "list"): cmd_account_list,
    ("account", "delete"): cmd_account_delete,
    ("account", "reset-link"): cmd_account_reset_link,
    ("account", "recovery"): cmd_account_recovery,
    ("pop", "enable"): cmd_pop_enable,
    ("pop", "disable"): cmd_pop_disable,
    ("pop", "spam"): cmd_pop_spam,
    ("pop", "deletion"): cmd_pop_deletion,
    ("pop", "queue"): cmd_pop_queue,
    ("twofactor", None): cmd_twofactor,
    ("imap", None): cmd_imap,
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
    **API_TOKEN_COMMANDS,
    **DKIM_COMMANDS,
    **POP_LOG_COMMANDS,
}
