"""The frame every page is drawn in, and the small pieces forms are made
of, as ``twisted.web.template`` tags: every text and attribute is escaped
when flattened, so nothing a user typed can become markup or script.

The frame carries ``<html lang>``, the language switch (plain links, no
script) and, when signed in, the navigation and a ``POST /logout`` form.
"""

from __future__ import annotations

import datetime

from twisted.internet.defer import Deferred
from twisted.web.template import Tag, flattenString, tags

from zpop.web.i18n import LANGUAGE_NAMES, LANGUAGES
from zpop.web.visit import Response, Visit

#: The settings pages in the navigation: (path, message id).
NAVIGATION = (
    ("/settings/pop", "nav_pop"),
    ("/settings/imap", "nav_imap"),
    ("/settings/app-passwords", "nav_app_passwords"),
    ("/settings/api-tokens", "nav_api_tokens"),
    ("/settings/two-factor", "nav_two_factor"),
    ("/settings/password", "nav_password"),
    ("/settings/clients", "nav_clients"),
    ("/settings/sessions", "nav_sessions"),
    ("/settings/activity", "nav_activity"),
    ("/settings/downloads", "nav_downloads"),
)

#: The one style sheet (CSP allows no inline style).
STYLESHEET = b"""\
body{font-family:system-ui,sans-serif;margin:0;color:#1b1b1b;background:#f6f7f9}
header{background:#14325c;color:#fff;padding:.6em 1.2em;display:flex;
flex-wrap:wrap;gap:1em;align-items:center;justify-content:space-between}
header a{color:#fff}nav a{margin-right:1em}
main{max-width:46em;margin:1.5em auto;background:#fff;padding:1.2em 1.6em;
border-radius:6px;box-shadow:0 1px 3px #0002}
label{display:block;margin:.5em 0}input[type=text],input[type=email],
input[type=password]{width:100%;max-width:24em;padding:.35em;font-size:1em}
fieldset{margin:1em 0;border:1px solid #ccd}button{padding:.4em 1em;font-size:1em}
.error{color:#a00;font-weight:bold}.notice{color:#064}.hint{color:#555}
.secret{font-family:monospace;font-size:1.4em;letter-spacing:.05em;
background:#eef;padding:.3em .6em;display:inline-block}
table{border-collapse:collapse}td,th{padding:.3em .8em;text-align:left;
border-bottom:1px solid #dde}form.inline{display:inline;margin:0}
.qr svg{display:block;margin:.5em 0}#recovery-codes code{font-size:1.2em}
"""


def when(timestamp: float | None) -> str:
    """A time as people read it, in UTC (the pages name the zone)."""
    if timestamp is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def csrf_field(visit: Visit) -> Tag:
    """The hidden ``csrf`` field every form carries."""
    return tags.input(type="hidden", name="csrf", value=visit.csrf())


def form(visit: Visit, action: str, *content: Tag | str, **attributes: str) -> Tag:
    """A POST form to ``action`` with its CSRF field."""
    return tags.form(method="post", action=action, **attributes)(
        csrf_field(visit), *content
    )


def errors(messages: list[str]) -> list[Tag]:
    """Error paragraphs (``role=alert`` so screen readers announce them)."""
    return [tags.p(m, class_="error", role="alert") for m in messages]


def _language_switch(visit: Visit) -> Tag:
    links: list[Tag | str] = []
    for language in LANGUAGES:
        name = LANGUAGE_NAMES[language]
        if language == visit.language:
            links.append(tags.strong(name, lang=language))
        else:
            links.append(
                tags.a(name, href=f"?lang={language}", lang=language, hreflang=language)
            )
        links.append(" ")
    return tags.div(visit.t("language"), ": ", *links, class_="languages")


def frame(visit: Visit, response: Response) -> Tag:
    """The whole page for ``response``."""
    t = visit.t
    top: list[Tag | str] = [tags.strong(t("app"))]
    if visit.signed_in and not visit.confined:
        top.append(
            tags.nav(
                *[tags.a(t(key), href=path) for path, key in NAVIGATION],
                **{"aria-label": t("nav")},
            )
        )
    top.append(_language_switch(visit))
    if visit.signed_in:
        top.append(
            tags.div(
                t("signed_in_as", address=visit.address),
                " ",
                form(
                    visit,
                    "/logout",
                    tags.button(t("sign_out"), type="submit"),
                    class_="inline",
                    id="logout",
                ),
            )
        )
    return tags.html(lang=visit.language)(
        tags.head(
            tags.meta(charset="utf-8"),
            tags.meta(name="viewport", content="width=device-width, initial-scale=1"),
            tags.title(f"{response.title} - {t('app')}"),
            tags.link(rel="stylesheet", href="/static/zpop.css"),
        ),
        tags.body(
            tags.header(*top),
            # No tags.main in twisted.web.template's list of tag names.
            Tag("main")(tags.h1(response.title), *response.body),
        ),
    )


def render(visit: Visit, response: Response) -> Deferred[bytes]:
    """The page's bytes (UTF-8 HTML5)."""
    d: Deferred[bytes] = flattenString(None, frame(visit, response))
    return d.addCallback(lambda html: b"<!DOCTYPE html>\n" + html)


def message_page(visit: Visit, status: int, title: str, text: str) -> Response:
    """A page with one message (the errors: 403, 404, 405, 400, 503)."""
    body: list[Tag | str] = [tags.p(text)]
    if visit.signed_in:
        body.append(tags.p(tags.a(visit.t("back"), href="/settings")))
    return Response(status=status, title=title, body=body)


def revoke_button(visit: Visit, path: str, ident: int) -> Tag:
    """A table row's one-button form posting ``id`` to ``path``."""
    return form(
        visit,
        path,
        tags.input(type="hidden", name="id", value=str(ident)),
        tags.button(visit.t("ap_revoke"), type="submit"),
        class_="inline",
    )


def secret_page_top(
    visit: Visit,
    intro: str,
    problems: list[str] | None,
    notice: str | None,
    shown: tuple[str, str] | None,
) -> list[Tag | str]:
    """The top of a page that makes secrets shown once (app passwords, API
    tokens): its intro, what was wrong, a notice, and the new secret
    (``shown``: its sentence and the secret, in ``id="new-secret"``)."""
    body: list[Tag | str] = [tags.p(intro), *errors(problems or [])]
    if notice:
        body.append(tags.p(notice, class_="notice", role="status"))
    if shown is not None:
        sentence, secret = shown
        body.append(tags.p(sentence))
        body.append(tags.p(tags.code(secret, id="new-secret", class_="secret")))
    return body


def label_field(visit: Visit, label: str, longest: int) -> Tag:
    """The ``label`` input of such a page's create form."""
    return tags.label(
        visit.t("ap_label"),
        tags.input(
            type="text",
            name="label",
            value=label,
            maxlength=str(longest),
            required="required",
        ),
    )
