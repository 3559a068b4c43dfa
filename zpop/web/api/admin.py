"""The operator's operations (DESIGN §1 "Settings API", admin resources):
what ``zpop domain``, ``account``, ``pop``, ``imap``, ``twofactor``,
``alias`` and ``queue`` do, through the same services."""

from __future__ import annotations

from typing import Any

from zpop.accounts import (
    accounts,
    aliases,
    dns_records,
    domains,
    password_resets,
    two_factor,
)
from zpop.accounts.accounts import require_account
from zpop.accounts.errors import NotHosted
from zpop.mailauth.dkim_keys import DkimKeyError
from zpop.outbound import queue
from zpop.web.api import documents
from zpop.web.api.framework import (
    ApiError,
    Call,
    Handler,
    Operation,
    Reply,
    fields,
    invalid,
    numeric_id,
    page,
)
from zpop.web.api.schemas import ADDRESS, page_of, ref
from zpop.web.api.user import change_imap, change_pop, read_imap, read_pop
from zpop.wire import addresses


def _address(call: Call) -> str:
    """The ``{address}`` path parameter, checked as the CLI checks it."""
    text = call.params["address"]
    try:
        return addresses.parse_address(text)
    except ValueError:
        raise ApiError(404, "not_found", f"no account {text[:254]}") from None


async def _details(call: Call, address: str) -> Reply:
    store = call.web.store
    details = await accounts.show_account(store, address)
    recovery = await password_resets.get_recovery_address(store, address)
    return Reply(documents.account_details(details, recovery))


async def _list_domains(call: Call) -> Reply:
    found = await domains.list_domains(call.web.store)
    return page(call, [documents.domain(d) for d in found])


async def _add_domain(call: Call) -> Reply:
    body = fields(call.body, {"name": (str,), "organization": (bool,)})
    if "name" not in body:
        raise invalid("name is required")
    try:
        name = addresses.parse_domain(body["name"])
    except ValueError as e:
        raise invalid(str(e)) from None
    web = call.web
    added = await domains.add_domain(
        web.store, web.clock, name, body.get("organization", False)
    )
    return Reply(documents.domain(domains.DomainSummary(added, 0)), 201)


async def _domain_dns(call: Call) -> Reply:
    """``zpop domain dns``: the records the domain publishes."""
    try:
        name = addresses.parse_domain(call.params["name"])
    except ValueError:
        raise ApiError(404, "not_found", "no such hosted domain") from None
    try:
        found = await dns_records.domain_records(
            call.web.store, call.web.config, name, call.web.dkim
        )
    except NotHosted as e:
        raise ApiError(404, "not_found", str(e)) from None
    except DkimKeyError as e:
        raise ApiError(503, "dkim_keys_unreadable", str(e)) from None
    records = list(found.records)
    if found.report_authorization is not None:
        records.append(found.report_authorization)
    return Reply(
        {
            "domain": found.domain,
            "records": [
                {"name": r.name, "ttl": r.ttl, "type": r.type, "data": r.data}
                for r in records
            ],
            "notes": list(found.notes),
        }
    )


async def _list_accounts(call: Call) -> Reply:
    found = await accounts.list_accounts(call.web.store)
    return page(call, [documents.me(a) for a in found])


async def _add_account(call: Call) -> Reply:
    body = fields(
        call.body,
        {"address": (str,), "plan": (str,), "federated": (bool,), "password": (str,)},
    )
    if "address" not in body:
        raise invalid("address is required")
    try:
        address = addresses.parse_address(body["address"])
    except ValueError as e:
        raise invalid(str(e)) from None
    plan = body.get("plan")
    if plan is not None:
        plan = accounts.parse_plan(plan)
    password = body.get("password")
    federated = body.get("federated", False)
    if federated and password is not None:
        raise invalid("a federated account has no primary password")
    web = call.web
    added = await accounts.add_account(
        web.store,
        web.config.accounts,
        web.hashing,
        web.clock,
        address,
        plan,
        federated,
        None if password is None else (lambda: password),
    )
    reply = await _details(call, added.address)
    reply.status = 201
    return reply


async def _get_account(call: Call) -> Reply:
    return await _details(call, _address(call))


async def _patch_account(call: Call) -> Reply:
    """``zpop account passwd`` and ``account recovery``, and the plan: each
    field given, checked by its service's rule."""
    body = fields(
        call.body, {"plan": (str,), "password": (str,), "recovery_address": (str,)}
    )
    web = call.web
    address = (await require_account(web.store, _address(call))).address
    if "plan" in body:
        accounts.parse_plan(body["plan"])
    if "password" in body:
        password = body["password"]
        await accounts.set_password(
            web.store, web.config.accounts, web.hashing, address, lambda: password
        )
    if "recovery_address" in body:
        await password_resets.set_recovery_address(
            web.store, address, body["recovery_address"]
        )
    if "plan" in body:
        await accounts.set_plan(web.store, address, body["plan"])
    return await _details(call, address)


async def _delete_account(call: Call) -> Reply:
    await accounts.delete_account(call.web.store, _address(call))
    return Reply(status=204)


async def _reset_link(call: Call) -> Reply:
    fields(call.body if call.body is not None else {}, {})
    web = call.web
    link = await password_resets.make_reset_link(
        web.store, web.key, web.clock, _address(call), web.config.web_url
    )
    expires = web.clock.seconds() + password_resets.LIFETIME
    return Reply({"link": link, "expires": documents.iso(expires)}, 201)


async def _get_two_factor(call: Call) -> Reply:
    account = await require_account(call.web.store, _address(call))
    return Reply(documents.two_factor_state(account))


async def _patch_two_factor(call: Call) -> Reply:
    body = fields(call.body, {"state": (str,)})
    wanted = body.get("state")
    if wanted not in ("required", "off"):
        raise invalid("state must be required (zpop twofactor enable) or off (reset)")
    change = await two_factor.set_two_factor(
        call.web.store, _address(call), wanted == "required"
    )
    return Reply(documents.two_factor_state(change.account))


async def _add_alias(call: Call) -> Reply:
    body = fields(call.body, {"alias": (str,)})
    if "alias" not in body:
        raise invalid("alias is required")
    try:
        alias = addresses.parse_address(body["alias"])
    except ValueError as e:
        raise invalid(str(e)) from None
    account = await aliases.add_alias(call.web.store, _address(call), alias)
    reply = await _details(call, account.address)
    reply.status = 201
    return reply


async def _account_pop(call: Call) -> Reply:
    return await read_pop(call, _address(call))


async def _account_pop_change(call: Call) -> Reply:
    return await change_pop(call, _address(call))


async def _account_imap(call: Call) -> Reply:
    return await read_imap(call, _address(call))


async def _account_imap_change(call: Call) -> Reply:
    return await change_imap(call, _address(call))


async def _list_queue(call: Call) -> Reply:
    store = call.web.store
    found = await queue.list_queue(store)
    owners = {a.id: a.address for a in await accounts.list_accounts(store)}
    return page(call, [documents.queued(m, owners) for m in found])


async def _retry(call: Call, message_id: int | None) -> Reply:
    fields(call.body if call.body is not None else {}, {})
    retried = await queue.retry(call.web.store, message_id, call.web.clock.seconds())
    return Reply({"due": retried.due, "released": retried.released})


async def _retry_all(call: Call) -> Reply:
    return await _retry(call, None)


async def _retry_one(call: Call) -> Reply:
    return await _retry(call, numeric_id(call, "queued message"))


async def _delete_queued(call: Call) -> Reply:
    count = await queue.delete(call.web.store, numeric_id(call, "queued message"))
    return Reply({"recipients": count})


_ACCOUNT = {"address": ADDRESS}
_QUEUED = {"id": {"type": "integer", "minimum": 1}}
_DOMAIN = {"name": {"type": "string", "maxLength": 253}}
#: What a created account leads to: every operation on it.
_ACCOUNT_LINKS = {
    name: (target, {"address": "$response.body#/address"})
    for name, target in (
        ("get", "get_admin_accounts_by_address"),
        ("change", "patch_admin_accounts_by_address"),
        ("pop", "patch_admin_accounts_by_address_settings_pop"),
        ("imap", "patch_admin_accounts_by_address_settings_imap"),
        ("twoFactor", "patch_admin_accounts_by_address_two_factor"),
        ("resetLink", "post_admin_accounts_by_address_reset_link"),
        ("alias", "post_admin_accounts_by_address_aliases"),
        ("delete", "delete_admin_accounts_by_address"),
    )
}
_EMPTY = {"type": "object", "additionalProperties": False}
_ACCOUNT_ERRORS = {409: "The address is taken", 403: "A plan rule refuses it"}


def _op(
    method: str, path: str, handler: Handler, summary: str, **details: Any
) -> Operation:
    """An admin operation; its path parameters' schemas follow its path."""
    params = (
        _ACCOUNT
        if "{address}" in path
        else _QUEUED
        if "{id}" in path
        else _DOMAIN
        if "{name}" in path
        else {}
    )
    return Operation(method, path, handler, summary, "admin", params=params, **details)


OPERATIONS = [
    _op(
        "GET",
        "/admin/domains",
        _list_domains,
        "Hosted domains",
        response=page_of("Domain"),
        paginated=True,
    ),
    _op(
        "POST",
        "/admin/domains",
        _add_domain,
        "Host a domain",
        writes=True,
        request=ref("NewDomain"),
        status=201,
        response=ref("Domain"),
        errors={409: "The domain is hosted already"},
    ),
    _op(
        "GET",
        "/admin/domains/{name}/dns",
        _domain_dns,
        "The DNS records a hosted domain publishes (zpop domain dns)",
        response=ref("DnsRecords"),
    ),
    _op(
        "GET",
        "/admin/accounts",
        _list_accounts,
        "Accounts",
        response=page_of("Me"),
        paginated=True,
    ),
    _op(
        "POST",
        "/admin/accounts",
        _add_account,
        "Create an account",
        writes=True,
        request=ref("NewAccount"),
        status=201,
        response=ref("Account"),
        errors=_ACCOUNT_ERRORS,
        links=_ACCOUNT_LINKS,
    ),
    _op(
        "GET",
        "/admin/accounts/{address}",
        _get_account,
        "An account and its settings",
        response=ref("Account"),
    ),
    _op(
        "PATCH",
        "/admin/accounts/{address}",
        _patch_account,
        "Change an account's plan, primary password or recovery address",
        writes=True,
        request=ref("AccountChange"),
        response=ref("Account"),
    ),
    _op(
        "DELETE",
        "/admin/accounts/{address}",
        _delete_account,
        "Delete an account with its mail",
        writes=True,
        status=204,
    ),
    _op(
        "POST",
        "/admin/accounts/{address}/reset-link",
        _reset_link,
        "A one-time set-password link (1 hour)",
        writes=True,
        request=_EMPTY,
        status=201,
        response=ref("ResetLink"),
    ),
    _op(
        "GET",
        "/admin/accounts/{address}/two-factor",
        _get_two_factor,
        "Two-factor state",
        response=ref("TwoFactor"),
    ),
    _op(
        "PATCH",
        "/admin/accounts/{address}/two-factor",
        _patch_two_factor,
        "Require two-factor, or reset it",
        writes=True,
        request=ref("TwoFactorChange"),
        response=ref("TwoFactor"),
    ),
    _op(
        "POST",
        "/admin/accounts/{address}/aliases",
        _add_alias,
        "Add a send-as alias",
        writes=True,
        request=ref("Alias"),
        status=201,
        response=ref("Account"),
        errors={409: "The alias is taken"},
    ),
    _op(
        "GET",
        "/admin/accounts/{address}/settings/pop",
        _account_pop,
        "An account's POP access settings",
        response=ref("PopSettings"),
        etag=True,
    ),
    _op(
        "PATCH",
        "/admin/accounts/{address}/settings/pop",
        _account_pop_change,
        "Change an account's POP access settings",
        writes=True,
        request=ref("PopChange"),
        response=ref("PopSettings"),
        etag=True,
        errors={403: "The Free plan keeps this account from POP"},
    ),
    _op(
        "GET",
        "/admin/accounts/{address}/settings/imap",
        _account_imap,
        "An account's IMAP access",
        response=ref("ImapSettings"),
        etag=True,
    ),
    _op(
        "PATCH",
        "/admin/accounts/{address}/settings/imap",
        _account_imap_change,
        "Turn an account's IMAP access on or off",
        writes=True,
        request=ref("ImapSettings"),
        response=ref("ImapSettings"),
        etag=True,
    ),
    _op(
        "GET",
        "/admin/queue",
        _list_queue,
        "The outbound queue, oldest first",
        response=page_of("QueuedMessage"),
        paginated=True,
    ),
    _op(
        "POST",
        "/admin/queue/retry",
        _retry_all,
        "Make every queued message due now",
        writes=True,
        request=_EMPTY,
        response=ref("Retried"),
    ),
    _op(
        "POST",
        "/admin/queue/{id}/retry",
        _retry_one,
        "Make one queued message due now",
        writes=True,
        request=_EMPTY,
        response=ref("Retried"),
    ),
    _op(
        "DELETE",
        "/admin/queue/{id}",
        _delete_queued,
        "Delete a queued message without a bounce",
        writes=True,
        response=ref("Deleted"),
    ),
]
