"""Signing in and out: ``GET /`` and ``/settings`` send the visitor on,
``/login`` takes the address and primary password through the shared
Authenticator (``protocol=web``: its throttle, bans and audit line), with
two-factor on ``/login/code`` takes the code, ``POST /logout`` ends the
session. An account the operator requires two-factor of and that has not
enrolled yet has no secret to ask a code of: its password opens a session
the Router confines to ``/settings/two-factor`` until it enrols.

Every step up starts a new session (new id, the previous one ended), so
an id planted in a browser never becomes signed in. An unknown address
and a wrong password get the same page (same text, same status, and the
checker spends one bcrypt on either).
"""

from __future__ import annotations

from twisted.cred.error import UnauthorizedLogin
from twisted.web.template import Tag, tags

from zpop.accounts import two_factor, web_sessions
from zpop.accounts.credentials import FullAddressRequired, LoginRefused
from zpop.accounts.errors import SecondFactorUnreadable
from zpop.accounts.realm import IWebAccount
from zpop.web import security
from zpop.web.pages import errors, form
from zpop.web.visit import Response, Visit, redirect


async def root(visit: Visit) -> Response:
    """``GET /``: the settings when signed in, else the sign-in form."""
    return redirect("/settings" if visit.signed_in else "/login", 302)


async def settings_index(visit: Visit) -> Response:
    """``GET /settings``: the first settings page."""
    return redirect("/settings/pop", 302)


#: Seconds after sign-in within which creating an app password needs no
#: password again (DESIGN §1 "verify it's you").
REVERIFY_AFTER = 10 * 60.0


def needs_reverify(visit: Visit) -> bool:
    """Whether the visitor signed in long enough ago to be asked for the
    password again before a sensitive change."""
    started = float(visit.session.created)
    return bool(visit.web.clock.seconds() - started > REVERIFY_AFTER)


def reverify_fields(visit: Visit) -> list[Tag | str]:
    """The password field a form for a sensitive change carries when
    ``needs_reverify`` (nothing otherwise)."""
    if not needs_reverify(visit):
        return []
    field = tags.input(
        type="password",
        name="password",
        autocomplete="current-password",
        required="required",
    )
    return [tags.label(visit.t("reverify"), field)]


async def reverify(visit: Visit, password: str | None) -> tuple[int, str] | None:
    """Check the signed-in account's primary password again, through the
    Authenticator like a sign-in (throttle, bans, audit line); None when it
    is right, else the status and message to answer with."""
    t = visit.t
    if not password:
        return 400, t("reverify_missing")
    try:
        await visit.web.authenticator.login(
            "web",
            visit.client,
            visit.address.encode("utf-8"),
            password.encode("utf-8"),
            None,
            IWebAccount,
            primary_only=True,
        )
    except LoginRefused:
        return 429, t("login_banned")
    except UnauthorizedLogin:
        return 403, t("reverify_wrong")
    return None


def _login_form(
    visit: Visit,
    status: int = 200,
    problems: list[str] | None = None,
    address: str = "",
    notice: str | None = None,
) -> Response:
    t = visit.t
    body: list[Tag | str] = [
        *errors(problems or []),
        form(
            visit,
            "/login",
            tags.label(
                t("address"),
                tags.input(
                    type="email",
                    name="address",
                    value=address,
                    autocomplete="username",
                    required="required",
                ),
            ),
            tags.label(
                t("password"),
                tags.input(
                    type="password",
                    name="password",
                    autocomplete="current-password",
                    required="required",
                ),
            ),
            tags.button(t("login_button"), type="submit"),
            id="login",
        ),
        tags.p(t("login_note")),
        tags.p(tags.a(t("forgot_link"), href="/login/forgot", id="forgot-link")),
    ]
    if notice:
        body.insert(0, tags.p(notice, class_="notice", role="status", id="notice"))
    return Response(status=status, title=t("login_title"), body=body)


async def login_page(visit: Visit) -> Response:
    """``GET /login``: the form, or on to the settings if signed in."""
    if visit.signed_in:
        return redirect("/settings", 302)
    done = visit.request.args.get(b"reset") == [b"1"]
    return _login_form(visit, notice=visit.t("reset_done") if done else None)


async def _rotate(visit: Visit, address: str, stage: str) -> bytes:
    """End the visitor's current session, if any, start one at ``stage``;
    the Set-Cookie for the new id."""
    web = visit.web
    if visit.session_id is not None:
        await web_sessions.end(web.store, web.key, visit.session_id)
    session_id, _ = await web_sessions.start(
        web.store,
        web.key,
        web.clock,
        address,
        stage,
        visit.client,
        visit.header(b"user-agent") or "",
    )
    return security.set_cookie(
        security.SESSION_COOKIE, session_id, max_age=int(web_sessions.LIFETIME)
    )


async def login(visit: Visit) -> Response:
    """``POST /login`` (``address``, ``password``)."""
    t = visit.t
    address = (visit.field("address") or "").strip()
    password = visit.field("password") or ""
    if not address or not password:
        return _login_form(visit, 400, [t("login_missing")], address)
    try:
        _, avatar, _ = await visit.web.authenticator.login(
            "web",
            visit.client,
            address.encode("utf-8"),
            password.encode("utf-8"),
            None,
            IWebAccount,
            primary_only=True,
        )
    except FullAddressRequired:
        return _login_form(visit, 400, [t("login_full_address")], address)
    except LoginRefused:
        # The client is banned for too many failures (the only refusal a
        # primary-password sign-in gets before its secret is checked).
        return _login_form(visit, 429, [t("login_banned")], address)
    except UnauthorizedLogin:
        return _login_form(visit, 403, [t("login_failed")], address)
    account = avatar.account
    state = two_factor.state_of(account)
    # Required but not enrolled: there is no secret to ask a code of yet,
    # so the password opens a session the Router confines to enrolment
    # (/settings/two-factor) until it is confirmed.
    stage = (
        web_sessions.CODE
        if state is two_factor.TwoFactorState.ON
        else web_sessions.FULL
    )
    cookie = await _rotate(visit, account.address, stage)
    if stage == web_sessions.CODE:
        target = "/login/code"
    elif state is two_factor.TwoFactorState.REQUIRED:
        target = "/settings/two-factor"
    else:
        target = "/settings"
    answer = redirect(target)
    answer.cookies.append(cookie)
    return answer


def _code_form(
    visit: Visit, status: int = 200, problems: list[str] | None = None
) -> Response:
    t = visit.t
    body: list[Tag | str] = [
        *errors(problems or []),
        form(
            visit,
            "/login/code",
            tags.label(
                t("code"),
                tags.input(
                    type="text",
                    name="code",
                    inputmode="numeric",
                    autocomplete="one-time-code",
                    required="required",
                ),
            ),
            tags.button(t("code_button"), type="submit"),
            id="code",
        ),
    ]
    return Response(status=status, title=t("code_title"), body=body)


async def code_page(visit: Visit) -> Response:
    """``GET /login/code``: the second step, once the password was right."""
    return _code_form(visit)


async def code(visit: Visit) -> Response:
    """``POST /login/code`` (``code``, a TOTP or recovery code): signed in
    if ``zpop.accounts.two_factor`` takes it (each code once)."""
    t = visit.t
    typed = (visit.field("code") or "").strip()
    if not typed:
        return _code_form(visit, 400, [t("code_missing")])
    web = visit.web
    address = visit.session.address
    try:
        good = await two_factor.verify_second_factor(
            web.store, web.key, web.clock, address, typed
        )
    except SecondFactorUnreadable:
        return Response(503, t("code_title"), [tags.p(t("code_unreadable"))])
    await web.authenticator.second_factor("web", visit.client, address, typed, good)
    if not good:
        # One guess per password sign-in, and each wrong one counted as a
        # failed login: the next try goes through the Authenticator again
        # (its throttle and bans), so six digits cannot be walked through.
        await web_sessions.end(web.store, web.key, visit.session_id or "")
        visit.session = visit.session_id = None
        answer = _login_form(visit, 403, [t("code_wrong")])
        answer.cookies.append(security.clear_cookie(security.SESSION_COOKIE))
        return answer
    answer = redirect("/settings")
    answer.cookies.append(await _rotate(visit, address, web_sessions.FULL))
    return answer


async def logout(visit: Visit) -> Response:
    """``POST /logout``: the session ends in the store, the cookie goes."""
    assert visit.session_id is not None
    await web_sessions.end(visit.web.store, visit.web.key, visit.session_id)
    answer = redirect("/login")
    answer.cookies.append(security.clear_cookie(security.SESSION_COOKIE))
    return answer
