"""``/settings/pop``: the seed's "Settings > Mail Accounts > POP Access".

Shows the account's POP state (disabled, all mail or mail from now on with
the time, spam and deletion policy, one shared POP queue or one per device;
on the Free plan, why POP is not available) and changes it through the same
services as ``zpop pop ...`` (``zpop.accounts.settings``): the Free-plan
gate and every other rule live there, and the change takes effect at the
next POP login.
"""

from __future__ import annotations

from typing import Any

from twisted.web.template import Tag, tags

from zpop.accounts import settings
from zpop.accounts.accounts import require_account
from zpop.accounts.errors import NotAllowed
from zpop.web.pages import errors, form, when
from zpop.web.visit import Response, Visit, redirect

#: Field -> its choices and the message id of each, in the order shown.
#: The values are the CLI's words (``zpop pop enable --mode all|new``...).
CHOICES: dict[str, tuple[tuple[str, str], ...]] = {
    "pop": (("disabled", "pop_disabled"), ("all", "pop_all"), ("new", "pop_new")),
    "spam": (
        ("exclude", "spam_exclude"),
        ("include", "spam_include"),
        ("only", "spam_only"),
    ),
    "deletion": (("keep", "deletion_keep"), ("delete", "deletion_delete")),
    "queue": (("shared", "queue_shared"), ("per-device", "queue_per_device")),
}
#: Field -> the message id naming it (legend, error texts).
FIELD_NAMES = {
    "pop": "pop_status",
    "spam": "spam",
    "deletion": "deletion",
    "queue": "queue",
}
#: Field -> the message id of the hint under its choices.
HINTS = {"queue": "queue_hint"}
#: Fields a post may leave out (the setting stays as it is): ``queue`` came
#: later than the others, and forms or scripts made before it still save.
OPTIONAL = frozenset({"queue"})


def _current(account: Any) -> dict[str, str]:
    pop = account.pop
    return {
        "pop": (pop.mode or "all") if pop.enabled else "disabled",
        "spam": pop.spam,
        "deletion": pop.deletion,
        "queue": pop.queue,
    }


def _state(visit: Visit, account: Any) -> str:
    t = visit.t
    pop = account.pop
    if not pop.enabled:
        return t("pop_state_disabled")
    if settings.blocked_since(account, visit.web.config.accounts) is not None:
        # Switched on before the Free-plan cut-off applied: logins refuse.
        return t("pop_state_blocked")
    if pop.mode == "new":
        since = t("pop_from", time=when(pop.enabled_at))
        return f"{t('pop_state_new')} ({since})"
    return f"{t('pop_state_all')} ({t('pop_since', time=when(pop.enabled_at))})"


def _page(
    visit: Visit,
    account: Any,
    status: int = 200,
    problems: list[str] | None = None,
    notice: str | None = None,
) -> Response:
    t = visit.t
    blocked = settings.blocked_since(account, visit.web.config.accounts)
    chosen = _current(account)
    body: list[Tag | str] = [tags.p(t("pop_intro"))]
    body += errors(problems or [])
    if notice:
        body.append(tags.p(notice, class_="notice", role="status"))
    body.append(
        tags.p(tags.strong(t("pop_status"), ": "), tags.span(_state(visit, account)))
    )
    if blocked is not None:
        body.append(
            tags.p(t("pop_blocked", date=blocked.isoformat()), id="pop-blocked")
        )
    fieldsets = []
    for name, choices in CHOICES.items():
        options = []
        for value, key in choices:
            attributes = {"type": "radio", "name": name, "value": value}
            if chosen[name] == value:
                attributes["checked"] = "checked"
            # The current choice stays, so the other settings can be saved.
            if (
                blocked is not None
                and name == "pop"
                and value not in ("disabled", chosen[name])
            ):
                attributes["disabled"] = "disabled"
            options.append(tags.label(tags.input(**attributes), " ", t(key)))
        if name in HINTS:
            options.append(tags.p(t(HINTS[name]), class_="hint"))
        fieldsets.append(tags.fieldset(tags.legend(t(FIELD_NAMES[name])), *options))
    body.append(
        form(
            visit,
            "/settings/pop",
            *fieldsets,
            tags.button(t("save"), type="submit"),
            id="pop-settings",
        )
    )
    return Response(status=status, title=t("nav_pop"), body=body)


async def page(visit: Visit) -> Response:
    """``GET /settings/pop``."""
    account = await require_account(visit.web.store, visit.address)
    saved = visit.request.args.get(b"saved") == [b"1"]
    return _page(visit, account, notice=visit.t("pop_saved") if saved else None)


def _read(visit: Visit) -> tuple[dict[str, str], list[str]]:
    """The posted choices, and what is wrong with them (field by field)."""
    t = visit.t
    values: dict[str, str] = {}
    problems: list[str] = []
    for name, choices in CHOICES.items():
        value = visit.field(name)
        field = t(FIELD_NAMES[name])
        if value is None and name in OPTIONAL:
            continue
        if value is None or not value.strip():
            problems.append(t("missing_field", field=field))
        elif value.strip() not in {v for v, _ in choices}:
            problems.append(t("invalid_choice", field=field))
        else:
            values[name] = value.strip()
    return values, problems


async def change(visit: Visit) -> Response:
    """``POST /settings/pop`` (``pop``, ``spam``, ``deletion``, ``queue``),
    through ``settings.change_pop`` as the API's PATCH; then See Other."""
    web = visit.web
    store = web.store
    account = await require_account(store, visit.address)
    values, problems = _read(visit)
    if problems:
        return _page(visit, account, 400, problems)
    wanted = values["pop"]
    try:
        await settings.change_pop(
            store,
            web.config.accounts,
            web.clock,
            account.address,
            None if wanted == "disabled" else wanted,
            values["spam"],
            values["deletion"],
            values.get("queue", settings.UNCHANGED),
        )
    except NotAllowed:
        # The Free-plan rule: enabling (or changing the mode) is refused.
        account = await require_account(store, account.address)
        blocked = settings.blocked_since(account, web.config.accounts)
        date = blocked.isoformat() if blocked else "-"
        return _page(visit, account, 400, [visit.t("pop_blocked", date=date)])
    return redirect("/settings/pop?saved=1")
