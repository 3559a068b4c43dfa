"""``/settings/sessions``: the account's signed-in browsers (started, last
seen, client address, browser) and signing one of them out (``id``),
through ``zpop.accounts.web_sessions``. Ending the visitor's own session
is signing out."""

from __future__ import annotations

from typing import Any

from twisted.web.template import Tag, tags

from zpop.accounts import web_sessions
from zpop.web import security
from zpop.web.pages import errors, form, when
from zpop.web.visit import Response, Visit, redirect


def _row(visit: Visit, session: Any) -> Tag:
    t = visit.t
    current = session.id == visit.session.id
    action: Tag | str = (
        tags.strong(t("ws_this"))
        if current
        else form(
            visit,
            "/settings/sessions",
            tags.input(type="hidden", name="id", value=str(session.id)),
            tags.button(t("ws_sign_out"), type="submit"),
            class_="inline",
        )
    )
    return tags.tr(
        tags.td(when(session.created)),
        tags.td(when(session.last_seen)),
        tags.td(session.client),
        tags.td(session.user_agent or "-"),
        tags.td(action),
    )


async def _page(
    visit: Visit, status: int = 200, problems: list[str] | None = None
) -> Response:
    t = visit.t
    web = visit.web
    found = await web_sessions.list_sessions(web.store, web.clock, visit.address)
    head = tags.tr(
        tags.th(t("ws_started")),
        tags.th(t("ws_last_seen")),
        tags.th(t("ws_client")),
        tags.th(t("ws_browser")),
        tags.th(""),
    )
    body: list[Tag | str] = [tags.p(t("ws_intro")), *errors(problems or [])]
    body.append(
        tags.table(
            tags.thead(head),
            tags.tbody(*[_row(visit, s) for s in found]),
            id="sessions",
        )
    )
    return Response(status=status, title=t("nav_sessions"), body=body)


async def page(visit: Visit) -> Response:
    """``GET /settings/sessions``."""
    return await _page(visit)


async def change(visit: Visit) -> Response:
    """``POST /settings/sessions`` (``id``): sign that session out."""
    web = visit.web
    ident = visit.field("id") or ""
    if not (ident.isascii() and ident.isdigit() and len(ident) <= 18):
        return await _page(visit, 400, [visit.t("ws_unknown")])
    try:
        await web_sessions.revoke(web.store, visit.address, int(ident))
    except web_sessions.UnknownWebSession:
        return await _page(visit, 400, [visit.t("ws_unknown")])
    if int(ident) == visit.session.id:
        answer = redirect("/login")
        answer.cookies.append(security.clear_cookie(security.SESSION_COOKIE))
        return answer
    return redirect("/settings/sessions")
