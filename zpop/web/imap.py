"""``/settings/imap``: IMAP access on or off (DESIGN §1), through the
services ``zpop imap enable|disable`` uses (``zpop.accounts.settings``).

The switch exists before zpop serves IMAP: it is stored and shown, and
takes effect at the next IMAP login once there is one.
"""

from __future__ import annotations

from typing import Any

from twisted.web.template import Tag, tags

from zpop.accounts import settings
from zpop.accounts.accounts import require_account
from zpop.web.pages import errors, form
from zpop.web.visit import Response, Visit, redirect

#: The posted values (the CLI's enable/disable as on/off) and their labels.
CHOICES = (("on", "imap_on"), ("off", "imap_off"))


def _page(
    visit: Visit,
    account: Any,
    status: int = 200,
    problems: list[str] | None = None,
    notice: str | None = None,
) -> Response:
    t = visit.t
    state = "on" if account.imap_enabled else "off"
    body: list[Tag | str] = [tags.p(t("imap_intro")), *errors(problems or [])]
    if notice:
        body.append(tags.p(notice, class_="notice", role="status"))
    body.append(
        tags.p(
            tags.strong(t("imap_status"), ": "),
            tags.span(t(f"imap_state_{state}"), id="imap-state"),
        )
    )
    options = []
    for value, key in CHOICES:
        attributes = {"type": "radio", "name": "imap", "value": value}
        if value == state:
            attributes["checked"] = "checked"
        options.append(tags.label(tags.input(**attributes), " ", t(key)))
    body.append(
        form(
            visit,
            "/settings/imap",
            tags.fieldset(tags.legend(t("imap_status")), *options),
            tags.button(t("save"), type="submit"),
            id="imap-settings",
        )
    )
    return Response(status=status, title=t("nav_imap"), body=body)


async def page(visit: Visit) -> Response:
    """``GET /settings/imap``."""
    account = await require_account(visit.web.store, visit.address)
    saved = visit.request.args.get(b"saved") == [b"1"]
    return _page(visit, account, notice=visit.t("imap_saved") if saved else None)


async def change(visit: Visit) -> Response:
    """``POST /settings/imap`` (``imap`` = ``on|off``), then See Other."""
    t = visit.t
    store = visit.web.store
    account = await require_account(store, visit.address)
    value = (visit.field("imap") or "").strip()
    field = t("imap_status")
    if not value:
        return _page(visit, account, 400, [t("missing_field", field=field)])
    if value not in {v for v, _ in CHOICES}:
        return _page(visit, account, 400, [t("invalid_choice", field=field)])
    wanted = value == "on"
    if wanted != account.imap_enabled:
        switch = settings.enable_imap if wanted else settings.disable_imap
        await switch(store, account.address)
    return redirect("/settings/imap?saved=1")
