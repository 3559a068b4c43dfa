"""Forgot password: ``/login/forgot`` takes an address and answers the same
whatever it is (a link goes to the account's recovery address when there is
one), ``/reset?token=`` shows the set-password form for a live link and one
generic page otherwise, ``POST /reset`` sets it and sends the visitor to
sign in.

Each request of the form counts with the Authenticator like a failed
sign-in of the client (its throttle, bans and audit line), so the form can
neither flood a mailbox nor be walked through addresses. Tokens never reach
the log: the access log holds the path without its query string.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from twisted.logger import Logger
from twisted.web.template import Tag, tags

from zpop.accounts import password_resets, password_rules
from zpop.accounts.credentials import LoginRefused
from zpop.accounts.password_resets import InvalidResetLink
from zpop.accounts.password_rules import WeakPassword
from zpop.web.pages import errors, form, message_page
from zpop.web.password import REASONS
from zpop.web.visit import Response, Visit, redirect

log = Logger()

#: The set-password form's fields.
TOKEN, NEW, CONFIRM = "token", "new_password", "confirm_password"




def _forgot_form(
    visit: Visit, status: int = 200, problems: list[str] | None = None
) -> Response:
    t = visit.t
    body: list[Tag | str] = [
        *errors(problems or []),
        tags.p(t("forgot_intro")),
        form(
            visit,
            "/login/forgot",
            tags.label(
                t("address"),
                tags.input(
                    type="email",
                    name="address",
                    autocomplete="username",
                    required="required",
                ),
            ),
            tags.button(t("forgot_button"), type="submit"),
            id="forgot",
        ),
        tags.p(tags.a(t("login_title"), href="/login")),
    ]
    return Response(status=status, title=t("forgot_title"), body=body)


async def forgot_page(visit: Visit) -> Response:
    """``GET /login/forgot``."""
    return _forgot_form(visit)


async def forgot(visit: Visit) -> Response:
    """``POST /login/forgot`` (``address``): the same page for any address."""
    t = visit.t
    web = visit.web
    address = (visit.field("address") or "").strip()
    if not address:
        return _forgot_form(visit, 400, [t("forgot_missing")])
    try:
        await web.authenticator.note_attempt("web", visit.client, address)
    except LoginRefused:
        return _forgot_form(visit, 429, [t("login_banned")])
    # Not awaited: whether a mail goes out (the address exists and has a
    # recovery address) must not show in the answer's time either.
    sending = password_resets.request_reset(
        web.store,
        web.key,
        web.clock,
        web.config.server.hostname,
        web.config.outbound.lifetime,
        address,
        visit.web.config.web_url,
        web.signer,
    )
    sending.addErrback(lambda f: log.failure("web: sending a reset link", f))
    body: list[Tag | str] = [
        tags.p(t("forgot_sent"), class_="notice", role="status", id="forgot-sent"),
        tags.p(tags.a(t("login_title"), href="/login")),
    ]
    return Response(status=200, title=t("forgot_title"), body=body)


def _invalid(visit: Visit) -> Response:
    t = visit.t
    answer = message_page(visit, 400, t("reset_invalid_title"), t("reset_invalid"))
    answer.body.append(tags.p(tags.a(t("forgot_link"), href="/login/forgot")))
    return answer


def _password_field(visit: Visit, label: str, name: str) -> Tag:
    return tags.label(
        visit.t(label),
        tags.input(
            type="password",
            name=name,
            autocomplete="new-password",
            required="required",
        ),
    )


def _reset_form(
    visit: Visit, token: str, status: int = 200, problems: list[str] | None = None
) -> Response:
    t = visit.t
    body: list[Tag | str] = [
        *errors(problems or []),
        tags.p(t("reset_intro")),
        form(
            visit,
            "/reset",
            tags.input(type="hidden", name=TOKEN, value=token),
            _password_field(visit, "pw_new", NEW),
            _password_field(visit, "pw_confirm", CONFIRM),
            tags.button(t("reset_button"), type="submit"),
            id="reset",
        ),
    ]
    return Response(status=status, title=t("reset_title"), body=body)


async def reset_page(visit: Visit) -> Response:
    """``GET /reset?token=``: the form for a live link, else the one
    "invalid or expired" page."""
    web = visit.web
    token = (visit.field(TOKEN) or "").strip()
    try:
        await password_resets.check_reset(web.store, web.key, web.clock, token)
    except InvalidResetLink:
        return _invalid(visit)
    return _reset_form(visit, token)


async def reset(visit: Visit) -> Response:
    """``POST /reset`` (``token``, ``new_password``, ``confirm_password``)."""
    t = visit.t
    web = visit.web
    token = (visit.field(TOKEN) or "").strip()
    new = visit.field(NEW)
    confirm = visit.field(CONFIRM)
    if not new or not confirm:
        return _reset_form(visit, token, 400, [t("reset_missing")])
    if new != confirm:
        return _reset_form(visit, token, 400, [t("pw_mismatch")])
    try:
        await password_resets.use_reset(
            web.store,
            web.key,
            web.clock,
            web.hashing,
            web.config.accounts,
            token,
            new,
        )
    except InvalidResetLink:
        return _invalid(visit)
    except WeakPassword as e:
        text = t(REASONS[e.reason], min=password_rules.MIN_PASSWORD_LENGTH)
        return _reset_form(visit, token, 400, [text])
    return redirect("/login?reset=1")


#: The routes' handlers (``zpop.web.site``), by method.
Handlers = dict[bytes, Callable[[Visit], Awaitable[Response]]]
FORGOT: Handlers = {b"GET": forgot_page, b"POST": forgot}
RESET: Handlers = {b"GET": reset_page, b"POST": reset}
