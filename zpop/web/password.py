"""``/settings/password``: change the primary password (DESIGN §1).

The current password is checked through the shared Authenticator, like a
sign-in (throttle, bans, audit line with ``protocol=web``); the new one,
typed twice, must pass the rule ``zpop account passwd`` applies
(``zpop.accounts.password_rules``) and is hashed with bcrypt off the
reactor (``WebContext.hashing``). A change signs out every other web
session of the account; this browser stays signed in.
"""

from __future__ import annotations

from twisted.web.template import Tag, tags

from zpop.accounts import accounts, password_rules, web_sessions
from zpop.accounts.password_rules import WeakPassword
from zpop.web.login import reverify
from zpop.web.pages import errors, form
from zpop.web.visit import Response, Visit, redirect

#: The form's fields: the current password, the new one and its repeat.
CURRENT, NEW, CONFIRM = "current_password", "new_password", "confirm_password"
#: A rule broken (WeakPassword.reason) -> its message id.
REASONS = {
    "control": "pw_control",
    "short": "pw_short",
    "address": "pw_address",
    "common": "pw_common",
}


def _field(visit: Visit, label: str, name: str, autocomplete: str) -> Tag:
    return tags.label(
        visit.t(label),
        tags.input(
            type="password",
            name=name,
            autocomplete=autocomplete,
            required="required",
        ),
    )


def _page(
    visit: Visit,
    status: int = 200,
    problems: list[str] | None = None,
    notice: str | None = None,
) -> Response:
    t = visit.t
    body: list[Tag | str] = [
        tags.p(t("pw_intro", min=password_rules.MIN_PASSWORD_LENGTH)),
        *errors(problems or []),
    ]
    if notice:
        body.append(tags.p(notice, class_="notice", role="status", id="pw-changed"))
    body.append(
        form(
            visit,
            "/settings/password",
            _field(visit, "pw_current", CURRENT, "current-password"),
            _field(visit, "pw_new", NEW, "new-password"),
            _field(visit, "pw_confirm", CONFIRM, "new-password"),
            tags.button(t("pw_change"), type="submit"),
            id="change-password",
        )
    )
    return Response(status=status, title=t("nav_password"), body=body)


async def page(visit: Visit) -> Response:
    """``GET /settings/password``."""
    changed = visit.request.args.get(b"changed") == [b"1"]
    return _page(visit, notice=visit.t("pw_changed") if changed else None)


async def change(visit: Visit) -> Response:
    """``POST /settings/password`` (``current_password``, ``new_password``,
    ``confirm_password``): the form's own checks first (nothing is asked
    of the Authenticator for a form that cannot succeed), then the current
    password, then the change and the other sessions signed out."""
    t = visit.t
    web = visit.web
    current = visit.field(CURRENT)
    new = visit.field(NEW)
    confirm = visit.field(CONFIRM)
    if not current or not new or not confirm:
        return _page(visit, 400, [t("pw_missing")])
    if new != confirm:
        return _page(visit, 400, [t("pw_mismatch")])
    try:
        password_rules.check_new_password(new, visit.address)
    except WeakPassword as e:
        text = t(REASONS[e.reason], min=password_rules.MIN_PASSWORD_LENGTH)
        return _page(visit, 400, [text])
    refused = await reverify(visit, current)
    if refused is not None:
        status, problem = refused
        if status == 403:
            problem = t("pw_wrong_current")
        return _page(visit, status, [problem])
    await accounts.set_password(
        web.store, web.config.accounts, web.hashing, visit.address, lambda: new
    )
    await web_sessions.revoke_others(
        web.store, web.clock, visit.address, visit.session.id
    )
    return redirect("/settings/password?changed=1")
