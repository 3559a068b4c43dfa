"""``/settings/app-passwords``: create (``label``, and ``pop_start``:
where the device's own POP queue starts when the account's queue is
per-device; the password is shown once, in ``id="new-secret"``, in groups
of four), list (created, last used and from which client address, POP
start) and revoke (``id``), through the services ``zpop app-password ...``
uses (``zpop.accounts.app_passwords``), which hold the label and POP start
rules."""

from __future__ import annotations

from typing import Any

from twisted.web.template import Tag, tags

from zpop.accounts import app_passwords
from zpop.accounts.app_passwords import POP_STARTS, InvalidLabel
from zpop.accounts.errors import InvalidInput, UnknownAppPassword
from zpop.web.login import needs_reverify, reverify, reverify_fields
from zpop.web.pages import form, label_field, revoke_button, secret_page_top, when
from zpop.web.visit import Response, Visit

#: A label rule broken (InvalidLabel.reason) -> its message id.
LABEL_REASONS = {
    "empty": "ap_label_empty",
    "control": "ap_label_control",
    "long": "ap_label_long",
}


def _pop_start_key(value: str) -> str:
    """The message id of a POP start (``first-login`` ->
    ``ap_pop_start_first_login``)."""
    return "ap_pop_start_" + value.replace("-", "_")


def _table(visit: Visit, found: list[Any]) -> Tag | str:
    t = visit.t
    if not found:
        return tags.p(t("ap_none"))
    rows = [
        tags.tr(
            tags.td(p.label),
            tags.td(when(p.created)),
            tags.td(when(p.last_used) if p.last_used is not None else t("ap_never")),
            tags.td(p.last_used_from or "", class_="used-from"),
            tags.td(t(_pop_start_key(p.pop_start) + "_short"), class_="pop-start"),
            tags.td(revoke_button(visit, "/settings/app-passwords", p.id)),
        )
        for p in found
    ]
    head = tags.tr(
        tags.th(t("ap_label")),
        tags.th(t("ap_created")),
        tags.th(t("ap_last_used")),
        tags.th(t("ap_used_from")),
        tags.th(t("ap_pop_start_column")),
        tags.th(),
    )
    return tags.table(tags.thead(head), tags.tbody(*rows), id="app-passwords")


async def _page(
    visit: Visit,
    status: int = 200,
    problems: list[str] | None = None,
    new: tuple[str, str] | None = None,
    notice: str | None = None,
    label: str = "",
    pop_start: str = "setting",
) -> Response:
    t = visit.t
    found = await app_passwords.list_app_passwords(visit.web.store, visit.address)
    shown = None if new is None else (t("ap_new", label=new[0]), new[1])
    body = secret_page_top(visit, t("ap_intro"), problems, notice, shown)
    body.append(_table(visit, found))
    confirm = reverify_fields(visit)
    if pop_start not in POP_STARTS:
        pop_start = "setting"
    starts: list[Tag | str] = [
        tags.label(
            tags.input(
                type="radio",
                name="pop_start",
                value=value,
                **({"checked": "checked"} if value == pop_start else {}),
            ),
            " ",
            t(_pop_start_key(value)),
        )
        for value in POP_STARTS
    ]
    starts.append(tags.p(t("ap_pop_start_hint"), class_="hint"))
    body.append(
        form(
            visit,
            "/settings/app-passwords",
            *confirm,
            label_field(visit, label, app_passwords.MAX_LABEL),
            tags.fieldset(tags.legend(t("ap_pop_start")), *starts),
            tags.button(t("ap_create"), type="submit"),
            id="create-app-password",
        )
    )
    return Response(status=status, title=t("nav_app_passwords"), body=body)


async def page(visit: Visit) -> Response:
    """``GET /settings/app-passwords``."""
    return await _page(visit)


async def change(visit: Visit) -> Response:
    """``POST /settings/app-passwords``: ``label`` (and ``pop_start``,
    ``setting`` when left out) creates, ``id`` revokes.

    The page answering a creation holds the only copy of the password;
    like every account page it is sent with ``Cache-Control: no-store``.
    More than ten minutes after sign-in, creating one needs the account's
    password again (a stolen unlocked session cannot mint mail access)."""
    t = visit.t
    web = visit.web
    label = visit.field("label")
    ident = visit.field("id")
    if (label is None) == (ident is None):
        return await _page(visit, 400, [t("ap_one_action")])
    if label is not None:
        pop_start = visit.field("pop_start") or "setting"
        if needs_reverify(visit):
            refused = await reverify(visit, visit.field("password"))
            if refused is not None:
                status, problem = refused
                return await _page(
                    visit, status, [problem], label=label, pop_start=pop_start
                )
        try:
            _, secret = await app_passwords.create(
                web.store, web.clock, web.key, visit.address, label, pop_start
            )
        except InvalidLabel as e:
            problem = t(LABEL_REASONS[e.reason], max=app_passwords.MAX_LABEL)
            return await _page(visit, 400, [problem], label=label, pop_start=pop_start)
        except InvalidInput:
            # The service's only other refusal here: a POP start not offered.
            problem = t("ap_bad_pop_start")
            return await _page(visit, 400, [problem], label=label)
        return await _page(visit, new=(" ".join(label.split()), secret))
    assert ident is not None
    if not (ident.isascii() and ident.isdigit() and len(ident) <= 18):
        return await _page(visit, 400, [t("ap_unknown")])
    try:
        revoked = await app_passwords.revoke(web.store, visit.address, int(ident))
    except UnknownAppPassword:
        return await _page(visit, 400, [t("ap_unknown")])
    return await _page(visit, notice=t("ap_revoked", label=revoked))
