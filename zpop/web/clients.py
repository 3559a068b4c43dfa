"""``/settings/clients``: the seed's settings table for this account, what
to type into a mail client: the POP host of the account's domain kind
(personal or organization) on 995 with SSL, SMTP on 465 with SSL or 587
with STARTTLS, the full address as user name, and which password."""

from __future__ import annotations

from typing import Any

from twisted.web.template import Tag, tags

from zpop.accounts.accounts import require_account
from zpop.accounts.client_settings import POP3S_PORT, SMTPS_PORT, SUBMISSION_PORT
from zpop.web.i18n import Catalog
from zpop.web.visit import Response, Visit


def _rows(*rows: tuple[str, str, str]) -> Tag:
    return tags.table(
        *[
            tags.tr(tags.th(name), tags.td(value, id=ident))
            for name, value, ident in rows
        ]
    )


def password_hint(t: Catalog, account: Any) -> str:
    """Which password a mail client of ``account`` needs (the page and the
    Apple profile say it alike)."""
    if account.two_factor:
        return t("cl_pw_two_factor")
    if account.password_hash is None:
        return t("cl_pw_none")
    return t("cl_pw_primary")


async def page(visit: Visit) -> Response:
    """``GET /settings/clients``."""
    t = visit.t
    account = await require_account(visit.web.store, visit.address)
    hosts = visit.web.config.hosts
    password = password_hint(t, account)
    body: list[Tag | str] = [tags.p(t("cl_intro"))]
    body.append(tags.h2(t("cl_incoming")))
    body.append(
        _rows(
            (t("cl_server"), hosts.pop_for(account.organization), "pop-host"),
            (t("cl_port"), str(POP3S_PORT), "pop-port"),
            (t("cl_security"), t("cl_ssl"), "pop-security"),
            (t("cl_username"), account.address, "pop-user"),
            (t("cl_password"), password, "pop-password"),
        )
    )
    if not account.pop.enabled:
        body.append(tags.p(t("cl_pop_off"), tags.a(t("nav_pop"), href="/settings/pop")))
    body.append(tags.h2(t("cl_outgoing")))
    body.append(
        _rows(
            (t("cl_server"), hosts.smtp, "smtp-host"),
            (
                t("cl_port"),
                t("cl_smtp_port", smtps=SMTPS_PORT, submission=SUBMISSION_PORT),
                "smtp-port",
            ),
            (t("cl_auth"), t("cl_auth_required"), "smtp-auth"),
            (t("cl_username"), account.address, "smtp-user"),
            (t("cl_password"), password, "smtp-password"),
        )
    )
    profile = tags.a(
        t("cl_apple_profile"), href="/settings/apple-profile", id="apple-profile"
    )
    body.append(tags.p(profile))
    return Response(title=t("nav_clients"), body=body)
