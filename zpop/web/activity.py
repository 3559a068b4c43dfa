"""``/settings/activity``: the account's last 100 logins over every protocol
(time in UTC, protocol, client address, credential label, result), through
``zpop.accounts.activity``. Labels are the user's own text: the template
escapes them like everything else."""

from __future__ import annotations

from typing import Any

from twisted.web.template import Tag, tags

from zpop.accounts import activity
from zpop.accounts.credentials import SECOND_FACTOR, WRONG_CODE
from zpop.web.pages import when
from zpop.web.visit import Response, Visit

#: Audit-line method prefix of an app-specific password login.
_APP_PASSWORD = "app password "

#: Result -> message id.
_RESULTS = {
    "succeeded": "ac_succeeded",
    "failed": "ac_failed",
    "refused": "ac_refused",
}

#: Protocol -> how it is shown.
_PROTOCOLS = {"pop3": "POP3", "smtp": "SMTP", "imap": "IMAP", "web": "Web"}


def _credential(visit: Visit, method: str) -> str:
    if method == "primary":
        return visit.t("ac_primary")
    if method == SECOND_FACTOR:
        return visit.t("ac_second_factor")
    if method.startswith(_APP_PASSWORD):
        return visit.t("ac_app_password", label=method[len(_APP_PASSWORD) :])
    return "-"


def _result(visit: Visit, result: str, reason: str) -> str:
    shown = visit.t(_RESULTS[result]) if result in _RESULTS else result
    if result == "failed":
        wrong = "ac_wrong_code" if reason == WRONG_CODE else "ac_wrong_password"
        return f"{shown}: {visit.t(wrong)}"
    if result == "refused" and reason not in ("", "-"):
        return f"{shown}: {reason}"
    return shown


def _row(visit: Visit, event: Any) -> Tag:
    return tags.tr(
        tags.td(when(event.at)),
        tags.td(_PROTOCOLS.get(event.protocol, event.protocol)),
        tags.td(event.client),
        tags.td(_credential(visit, event.credential)),
        tags.td(_result(visit, event.result, event.reason)),
    )


async def page(visit: Visit) -> Response:
    """``GET /settings/activity``."""
    t = visit.t
    found = await activity.list_activity(visit.web.store, visit.address)
    head = tags.tr(
        tags.th(t("ac_time")),
        tags.th(t("ac_protocol")),
        tags.th(t("ac_client")),
        tags.th(t("ac_credential")),
        tags.th(t("ac_result")),
    )
    body: list[Tag | str] = [tags.p(t("ac_intro"))]
    if not found:
        body.append(tags.p(t("ac_none")))
    body.append(
        tags.table(
            tags.thead(head),
            tags.tbody(*[_row(visit, e) for e in found]),
            id="activity",
        )
    )
    return Response(title=t("nav_activity"), body=body)
