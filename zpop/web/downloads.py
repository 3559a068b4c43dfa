"""``/settings/downloads``: which device downloaded what. The account's
newest POP download log entries (time in UTC, device, client address,
message, action), through ``zpop.accounts.pop_log``. Labels and subjects
are the user's and senders' text: the template escapes them."""

from __future__ import annotations

from typing import Any

from twisted.web.template import Tag, tags

from zpop.accounts import pop_log
from zpop.web.pages import when
from zpop.web.visit import Response, Visit

#: Audit-line method prefix of an app-specific password login.
_APP_PASSWORD = "app password "

#: Action -> message id.
_ACTIONS = {"retr": "dl_retr", "dele": "dl_dele"}


def _device(visit: Visit, credential: str) -> str:
    if credential == "primary":
        return visit.t("ac_primary")
    if credential.startswith(_APP_PASSWORD):
        return visit.t("ac_app_password", label=credential[len(_APP_PASSWORD) :])
    return credential


def _message(entry: Any) -> Tag:
    if entry.subject:
        return tags.td(entry.subject, " ", tags.small(f"({entry.uidl})"))
    return tags.td(entry.uidl)


def _row(visit: Visit, entry: Any) -> Tag:
    action = _ACTIONS.get(entry.action)
    return tags.tr(
        tags.td(when(entry.at)),
        tags.td(_device(visit, entry.credential)),
        tags.td(entry.client),
        _message(entry),
        tags.td(visit.t(action) if action else entry.action),
    )


async def page(visit: Visit) -> Response:
    """``GET /settings/downloads``."""
    t = visit.t
    found = await pop_log.list_downloads(visit.web.store, visit.address)
    head = tags.tr(
        tags.th(t("ac_time")),
        tags.th(t("dl_device")),
        tags.th(t("ac_client")),
        tags.th(t("dl_message")),
        tags.th(t("dl_action")),
    )
    days = visit.web.config.pop.log_days
    body: list[Tag | str] = [
        tags.p(t("dl_intro", shown=str(pop_log.SHOWN), days=str(days)))
    ]
    if not found:
        body.append(tags.p(t("dl_none")))
    body.append(
        tags.table(
            tags.thead(head),
            tags.tbody(*[_row(visit, e) for e in found]),
            id="downloads",
        )
    )
    return Response(title=t("nav_downloads"), body=body)
