"""``/settings/api-tokens``: a user's personal settings API tokens, through
``zpop.accounts.api_tokens`` as ``zpop api-token`` does: create (``label``
and ``scope``; the token is shown once, in ``id="new-secret"``), list
(scope, created, last used) and revoke (``id``). Creating one needs the
password again ten minutes after sign-in, as an app password does: a
token changes settings."""

from __future__ import annotations

from typing import Any

from twisted.web.template import Tag, tags

from zpop.accounts import api_tokens
from zpop.accounts.api_tokens import API_SCOPES, InvalidScope, UnknownApiToken
from zpop.accounts.app_passwords import MAX_LABEL, InvalidLabel
from zpop.web.app_passwords import LABEL_REASONS
from zpop.web.login import needs_reverify, reverify, reverify_fields
from zpop.web.pages import form, label_field, revoke_button, secret_page_top, when
from zpop.web.visit import Response, Visit

PATH = "/settings/api-tokens"


def _table(visit: Visit, found: list[Any]) -> Tag:
    t = visit.t
    if not found:
        return tags.p(t("at_none"))
    rows = [
        tags.tr(
            tags.td(token.label),
            tags.td(t(f"at_scope_{token.scope}")),
            tags.td(when(token.created)),
            tags.td(when(token.last_used) if token.last_used else t("ap_never")),
            tags.td(revoke_button(visit, PATH, token.id)),
        )
        for token in found
    ]
    head = tags.tr(
        tags.th(t("ap_label")),
        tags.th(t("at_scope")),
        tags.th(t("ap_created")),
        tags.th(t("ap_last_used")),
        tags.th(),
    )
    return tags.table(tags.thead(head), tags.tbody(*rows), id="api-tokens")


async def _page(
    visit: Visit,
    status: int = 200,
    problems: list[str] | None = None,
    new: tuple[str, str] | None = None,
    notice: str | None = None,
    label: str = "",
) -> Response:
    t = visit.t
    found = await api_tokens.list_tokens(visit.web.store, visit.address)
    shown = None if new is None else (t("at_new", label=new[0]), new[1])
    body = secret_page_top(visit, t("at_intro"), problems, notice, shown)
    body.append(_table(visit, found))
    confirm = reverify_fields(visit)
    scopes = [
        tags.label(
            tags.input(
                type="radio",
                name="scope",
                value=scope,
                **({"checked": "checked"} if scope == "read" else {}),
            ),
            " ",
            t(f"at_scope_{scope}"),
        )
        for scope in API_SCOPES
    ]
    body.append(
        form(
            visit,
            PATH,
            *confirm,
            label_field(visit, label, MAX_LABEL),
            tags.fieldset(tags.legend(t("at_scope")), *scopes),
            tags.button(t("ap_create"), type="submit"),
            id="create-api-token",
        )
    )
    return Response(status=status, title=t("nav_api_tokens"), body=body)


async def page(visit: Visit) -> Response:
    """``GET /settings/api-tokens``."""
    return await _page(visit)


async def change(visit: Visit) -> Response:
    """``POST /settings/api-tokens``: ``label`` (and ``scope``) creates,
    ``id`` revokes."""
    t = visit.t
    web = visit.web
    label = visit.field("label")
    ident = visit.field("id")
    if (label is None) == (ident is None):
        return await _page(visit, 400, [t("ap_one_action")])
    if label is not None:
        if needs_reverify(visit):
            refused = await reverify(visit, visit.field("password"))
            if refused is not None:
                status, problem = refused
                return await _page(visit, status, [problem], label=label)
        try:
            created, secret = await api_tokens.create(
                web.store,
                web.clock,
                web.key,
                visit.address,
                visit.field("scope") or "read",
                label,
            )
        except InvalidLabel as e:
            problem = t(LABEL_REASONS[e.reason], max=MAX_LABEL)
            return await _page(visit, 400, [problem], label=label)
        except InvalidScope:
            return await _page(visit, 400, [t("at_bad_scope")], label=label)
        return await _page(visit, new=(created.label, secret))
    assert ident is not None
    if not (ident.isascii() and ident.isdigit() and len(ident) <= 18):
        return await _page(visit, 400, [t("at_unknown")])
    try:
        revoked = await api_tokens.revoke(web.store, int(ident), visit.address)
    except UnknownApiToken:
        return await _page(visit, 400, [t("at_unknown")])
    return await _page(visit, notice=t("at_revoked", label=revoked.label))
