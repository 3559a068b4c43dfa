"""The user's operations (DESIGN §1 "Settings API", user resources): a
personal token's own account, through the services the POP page, the
app-password page and ``zpop`` use."""

from __future__ import annotations

from zpop.accounts import activity, app_passwords, pop_log, settings
from zpop.accounts.accounts import require_account
from zpop.accounts.errors import UnknownAppPassword
from zpop.web.api import documents
from zpop.web.api.framework import (
    ApiError,
    Call,
    Operation,
    Reply,
    check_if_match,
    etag_of,
    fields,
    invalid,
    numeric_id,
    page,
)
from zpop.web.api.schemas import page_of, ref

_UNSET = object()


def with_etag(document: documents.Document, status: int = 200) -> Reply:
    return Reply(document, status, [(b"etag", etag_of(document).encode("ascii"))])


async def read_pop(call: Call, address: str) -> Reply:
    account = await require_account(call.web.store, address)
    return with_etag(documents.pop_settings(account))


async def change_pop(call: Call, address: str) -> Reply:
    """PATCH of the POP settings, for the user and the operator alike:
    only the fields given; ``mode`` null or ``enabled`` false disables,
    a mode enables (``enabled`` true needs one unless POP is on already)."""
    body = fields(
        call.body,
        {
            "enabled": (bool,),
            "mode": (str, type(None)),
            "spam": (str,),
            "deletion": (str,),
            "queue": (str,),
        },
        read_only=("since",),
    )
    web = call.web
    account = await require_account(web.store, address)
    check_if_match(call, documents.pop_settings(account))
    enabled = body.get("enabled")
    given = body.get("mode", _UNSET)
    mode: str | None = settings.UNCHANGED
    if enabled is False:
        if given not in (_UNSET, None):
            raise invalid("mode must be null (or left out) when enabled is false")
        mode = None
    elif given is None:
        if enabled is True:
            raise invalid("enabling POP needs a mode: all or new")
        mode = None
    elif isinstance(given, str):
        mode = given
    elif enabled is True and not account.pop.enabled:
        raise invalid("enabling POP needs a mode: all or new")
    changed = await settings.change_pop(
        web.store,
        web.config.accounts,
        web.clock,
        account.address,
        mode,
        body.get("spam", settings.UNCHANGED),
        body.get("deletion", settings.UNCHANGED),
        body.get("queue", settings.UNCHANGED),
    )
    return with_etag(documents.pop_settings(changed))


async def read_imap(call: Call, address: str) -> Reply:
    account = await require_account(call.web.store, address)
    return with_etag(documents.imap_settings(account))


async def change_imap(call: Call, address: str) -> Reply:
    body = fields(call.body, {"enabled": (bool,)})
    store = call.web.store
    account = await require_account(store, address)
    check_if_match(call, documents.imap_settings(account))
    wanted = body.get("enabled")
    if wanted is True and not account.imap_enabled:
        account = await settings.enable_imap(store, account.address)
    elif wanted is False and account.imap_enabled:
        account = await settings.disable_imap(store, account.address)
    return with_etag(documents.imap_settings(account))


async def _me(call: Call) -> Reply:
    return Reply(documents.me(await require_account(call.web.store, call.address)))


async def _get_pop(call: Call) -> Reply:
    return await read_pop(call, call.address)


async def _patch_pop(call: Call) -> Reply:
    return await change_pop(call, call.address)


async def _get_imap(call: Call) -> Reply:
    return await read_imap(call, call.address)


async def _patch_imap(call: Call) -> Reply:
    return await change_imap(call, call.address)


async def _list_app_passwords(call: Call) -> Reply:
    found = await app_passwords.list_app_passwords(call.web.store, call.address)
    return page(call, [documents.app_password(p) for p in found])


async def _create_app_password(call: Call) -> Reply:
    body = fields(call.body, {"label": (str,), "pop_start": (str,)})
    if "label" not in body:
        raise invalid("label is required")
    web = call.web
    created, secret = await app_passwords.create(
        web.store,
        web.clock,
        web.key,
        call.address,
        body["label"],
        body.get("pop_start", "setting"),
    )
    document = documents.app_password(created)
    return Reply(
        {
            "id": document["id"],
            "label": document["label"],
            "created": document["created"],
            "pop_start": document["pop_start"],
            "password": secret,
        },
        201,
    )


async def _revoke_app_password(call: Call) -> Reply:
    ident = numeric_id(call, "app-specific password")
    try:
        await app_passwords.revoke(call.web.store, call.address, ident)
    except UnknownAppPassword as e:
        raise ApiError(404, "not_found", str(e)) from None
    return Reply(status=204)


async def _activity(call: Call) -> Reply:
    found = await activity.list_activity(call.web.store, call.address)
    return page(call, [documents.login_event(e) for e in found])


async def _pop_downloads(call: Call) -> Reply:
    found = await pop_log.list_downloads(
        call.web.store, call.address, pop_log.LISTED
    )
    return page(call, [documents.pop_download(e) for e in found])


async def _two_factor(call: Call) -> Reply:
    account = await require_account(call.web.store, call.address)
    return Reply(documents.two_factor_state(account))


_ID = {"type": "integer", "minimum": 1}

OPERATIONS = [
    Operation("GET", "/me", _me, "The token's account", "user", response=ref("Me")),
    Operation(
        "GET",
        "/settings/pop",
        _get_pop,
        "POP access settings",
        "user",
        response=ref("PopSettings"),
        etag=True,
    ),
    Operation(
        "PATCH",
        "/settings/pop",
        _patch_pop,
        "Change POP access settings (only the fields given)",
        "user",
        writes=True,
        request=ref("PopChange"),
        response=ref("PopSettings"),
        etag=True,
        errors={403: "The Free plan keeps this account from POP"},
    ),
    Operation(
        "GET",
        "/settings/imap",
        _get_imap,
        "IMAP access",
        "user",
        response=ref("ImapSettings"),
        etag=True,
    ),
    Operation(
        "PATCH",
        "/settings/imap",
        _patch_imap,
        "Turn IMAP access on or off",
        "user",
        writes=True,
        request={**ref("ImapSettings")},
        response=ref("ImapSettings"),
        etag=True,
    ),
    Operation(
        "GET",
        "/app-passwords",
        _list_app_passwords,
        "App-specific passwords",
        "user",
        response=page_of("AppPassword"),
        paginated=True,
    ),
    Operation(
        "POST",
        "/app-passwords",
        _create_app_password,
        "Create an app-specific password (returned this once)",
        "user",
        writes=True,
        request=ref("AppPasswordRequest"),
        status=201,
        response=ref("NewAppPassword"),
        links={
            "revoke": (
                "delete_app_passwords_by_id",
                {"id": "$response.body#/id"},
            )
        },
    ),
    Operation(
        "DELETE",
        "/app-passwords/{id}",
        _revoke_app_password,
        "Revoke an app-specific password",
        "user",
        writes=True,
        status=204,
        params={"id": _ID},
    ),
    Operation(
        "GET",
        "/activity",
        _activity,
        "Recent sign-ins over every protocol, newest first",
        "user",
        response=page_of("LoginEvent"),
        paginated=True,
    ),
    Operation(
        "GET",
        "/pop/downloads",
        _pop_downloads,
        "The POP download log: which device downloaded or deleted what,"
        " newest first",
        "user",
        response=page_of("PopDownload"),
        paginated=True,
    ),
    Operation(
        "GET",
        "/two-factor",
        _two_factor,
        "Two-factor state",
        "user",
        response=ref("TwoFactor"),
    ),
]
