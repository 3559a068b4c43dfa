"""``/settings/two-factor``: the state (off, required, on with the recovery
codes left), enrolment (QR code as inline SVG, the setup key as text in
``id="totp-secret"``, a form posting ``code``), turning it off (password
and a current code) and new recovery codes, through the services of
``zpop.accounts.two_factor``, which hold every rule.

The pending secret is not stored: it travels in the enrolment form's
hidden ``pending`` field sealed by ``totp.seal`` (AES-GCM under the server
key) and bound to the account *and* this session. So the browser can
neither read it from the field nor swap in another (a forged or another
account's or another session's blob fails to open), every worker process
and node can confirm it without a store round trip, an abandoned page
leaves nothing behind, and the pending secret dies with the session.

Enrolling, turning it off and renewing the recovery codes ask for the
password again when the sign-in is more than ten minutes old ("verify it's
you"); turning off always needs the password, checked through the
Authenticator first (throttle, bans, audit line) so a stolen session is
no password oracle.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from twisted.web.template import Tag, XMLString, tags

from zpop.accounts import totp, two_factor
from zpop.accounts.errors import (
    AlreadyEnrolled,
    InvalidCode,
    InvalidInput,
    NotAllowed,
    NotEnrolled,
    WrongPassword,
)
from zpop.web.login import needs_reverify, reverify
from zpop.web.pages import errors, form, when
from zpop.web.visit import Response, Visit

PATH = "/settings/two-factor"


def _binding(visit: Visit) -> str:
    """What a pending secret is sealed to: the account and this session,
    so a sealed field is good on this page of this session only."""
    return f"{visit.address}\0enrol\0{visit.session_id}"


def seal_pending(visit: Visit, secret: bytes) -> str:
    """The hidden ``pending`` field's value for ``secret``."""
    sealed = totp.seal(visit.web.key, secret, _binding(visit))
    return base64.urlsafe_b64encode(sealed).decode("ascii")


def open_pending(visit: Visit, text: str | None) -> bytes | None:
    """The secret a ``pending`` field holds, or None when it is missing,
    damaged, forged, or sealed for another account or session."""
    if not text or len(text) > 200:
        return None
    try:
        sealed = base64.urlsafe_b64decode(text.encode("ascii"))
        return totp.unseal(visit.web.key, sealed, _binding(visit))
    except (binascii.Error, ValueError, UnicodeEncodeError, totp.SealError):
        return None


def _password_field(visit: Visit, label: str) -> Tag:
    return tags.label(
        label,
        tags.input(
            type="password",
            name="password",
            autocomplete="current-password",
            required="required",
        ),
    )


def _code_field(visit: Visit) -> Tag:
    return tags.label(
        visit.t("tf_code"),
        tags.input(
            type="text",
            name="code",
            inputmode="numeric",
            autocomplete="one-time-code",
            required="required",
        ),
    )


def _state_text(visit: Visit, status: Any) -> str:
    t = visit.t
    if status.state is two_factor.TwoFactorState.ON:
        return t("tf_state_on", left=status.recovery_codes_left)
    if status.state is two_factor.TwoFactorState.REQUIRED:
        return t("tf_state_required")
    return t("tf_state_off")


def _enrolment(visit: Visit, secret: bytes | None) -> list[Tag | str]:
    """The enrolment block: a new secret, or again the pending one after a
    wrong code (so the user need not scan again)."""
    t = visit.t
    issuer = visit.web.config.server.hostname
    if secret is None:
        enrolment = two_factor.start_enrolment(visit.address, issuer)
        secret = enrolment.secret
        text, svg = enrolment.text, enrolment.svg
    else:
        uri = totp.provisioning_uri(secret, visit.address.lower(), issuer)
        text, svg = totp.secret_text(secret), totp.qr_svg(uri)
    confirm: list[Tag | str] = []
    if needs_reverify(visit):
        confirm.append(_password_field(visit, t("reverify")))
    return [
        tags.h2(t("tf_enrol_title")),
        tags.p(t("tf_enrol_scan")),
        tags.div(*XMLString(svg).load(), class_="qr", id="totp-qr"),
        tags.p(t("tf_enrol_key")),
        tags.p(tags.code(text, id="totp-secret", class_="secret")),
        form(
            visit,
            PATH,
            tags.input(type="hidden", name="action", value="enrol"),
            tags.input(
                type="hidden", name="pending", value=seal_pending(visit, secret)
            ),
            *confirm,
            _code_field(visit),
            tags.button(t("tf_enrol_button"), type="submit"),
            id="enrol",
        ),
    ]


def _enrolled(visit: Visit, status: Any) -> list[Tag | str]:
    """The forms of an enrolled account: turn off, new recovery codes."""
    t = visit.t
    body: list[Tag | str] = []
    if status.enrolled is not None:
        body.append(tags.p(t("tf_enrolled_at", time=when(status.enrolled))))
    if status.required:
        body.append(tags.p(t("tf_off_required")))
    else:
        body.append(
            form(
                visit,
                PATH,
                tags.input(type="hidden", name="action", value="off"),
                tags.h2(t("tf_off_title")),
                _password_field(visit, t("password")),
                _code_field(visit),
                tags.button(t("tf_off_button"), type="submit"),
                id="turn-off",
            )
        )
    confirm: list[Tag | str] = []
    if needs_reverify(visit):
        confirm.append(_password_field(visit, t("reverify")))
    body.append(
        form(
            visit,
            PATH,
            tags.input(type="hidden", name="action", value="recovery"),
            tags.h2(t("tf_recovery_title")),
            tags.p(t("tf_recovery_note")),
            *confirm,
            tags.button(t("tf_recovery_button"), type="submit"),
            id="new-recovery-codes",
        )
    )
    return body


async def _page(
    visit: Visit,
    status: int = 200,
    problems: list[str] | None = None,
    notice: str | None = None,
    pending: bytes | None = None,
) -> Response:
    t = visit.t
    state = await two_factor.two_factor_status(visit.web.store, visit.address)
    body: list[Tag | str] = [tags.p(t("tf_intro"))]
    if state.state is two_factor.TwoFactorState.REQUIRED:
        body.append(tags.p(t("tf_required_note"), class_="notice", id="tf-required"))
    body += errors(problems or [])
    if notice:
        body.append(tags.p(notice, class_="notice", role="status"))
    body.append(
        tags.p(
            tags.strong(t("tf_state"), ": "),
            tags.span(_state_text(visit, state), id="two-factor-state"),
        )
    )
    if state.state is two_factor.TwoFactorState.ON:
        body += _enrolled(visit, state)
    else:
        body += _enrolment(visit, pending)
    return Response(status=status, title=t("nav_two_factor"), body=body)


def _codes_page(visit: Visit, codes: list[str], intro: str) -> Response:
    """The only time recovery codes are seen (sent ``no-store``)."""
    t = visit.t
    body: list[Tag | str] = [
        tags.p(intro, class_="notice", role="status"),
        tags.p(t("tf_codes_once")),
        tags.ul(*[tags.li(tags.code(c)) for c in codes], id="recovery-codes"),
        tags.p(tags.a(t("tf_continue"), href=PATH)),
    ]
    return Response(title=t("nav_two_factor"), body=body)


async def page(visit: Visit) -> Response:
    """``GET /settings/two-factor``."""
    return await _page(visit)


async def _reverified(visit: Visit) -> tuple[int, str] | None:
    if not needs_reverify(visit):
        return None
    return await reverify(visit, visit.field("password"))


async def _enrol(visit: Visit) -> Response:
    t = visit.t
    web = visit.web
    secret = open_pending(visit, visit.field("pending"))
    if secret is None:
        return await _page(visit, 400, [t("tf_pending_bad")])
    refused = await _reverified(visit)
    if refused is not None:
        return await _page(visit, refused[0], [refused[1]], pending=secret)
    typed = (visit.field("code") or "").strip()
    if not typed:
        return await _page(visit, 400, [t("tf_code_missing")], pending=secret)
    try:
        codes = await two_factor.confirm_enrolment(
            web.store, web.key, web.clock, visit.address, secret, typed
        )
    except InvalidCode:
        return await _page(visit, 400, [t("tf_code_invalid")], pending=secret)
    except AlreadyEnrolled:
        return await _page(visit, 400, [t("tf_already_on")])
    except InvalidInput:
        return await _page(visit, 400, [t("tf_pending_bad")])
    visit.confined = False
    return _codes_page(visit, codes, t("tf_enrolled"))


async def _turn_off(visit: Visit) -> Response:
    t = visit.t
    web = visit.web
    password = visit.field("password") or ""
    typed = (visit.field("code") or "").strip()
    if not password or not typed:
        return await _page(visit, 400, [t("tf_off_missing")])
    refused = await reverify(visit, password)
    if refused is not None:
        return await _page(visit, refused[0], [refused[1]])
    try:
        await two_factor.turn_off(
            web.store,
            web.key,
            web.clock,
            visit.web.hashing,
            visit.address,
            password,
            typed,
        )
    except NotAllowed:
        return await _page(visit, 403, [t("tf_off_required")])
    except NotEnrolled:
        return await _page(visit, 400, [t("tf_not_on")])
    except WrongPassword:
        return await _page(visit, 403, [t("reverify_wrong")])
    except InvalidCode:
        return await _page(visit, 400, [t("tf_current_code_invalid")])
    return await _page(visit, notice=t("tf_turned_off"))


async def _renew(visit: Visit) -> Response:
    t = visit.t
    web = visit.web
    refused = await _reverified(visit)
    if refused is not None:
        return await _page(visit, refused[0], [refused[1]])
    try:
        codes = await two_factor.regenerate_recovery_codes(
            web.store, web.key, web.clock, visit.address
        )
    except NotEnrolled:
        return await _page(visit, 400, [t("tf_not_on")])
    return _codes_page(visit, codes, t("tf_renewed"))


async def change(visit: Visit) -> Response:
    """``POST /settings/two-factor``: ``action`` ``enrol`` (``pending``,
    ``code``; the default, so a form posting ``code`` confirms), ``off``
    (``password``, ``code``) or ``recovery``."""
    action = visit.field("action") or "enrol"
    if action == "enrol":
        return await _enrol(visit)
    if action == "off":
        return await _turn_off(visit)
    if action == "recovery":
        return await _renew(visit)
    return await _page(visit, 400, [visit.t("tf_unknown_action")])
