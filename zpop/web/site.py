"""The ``web`` listener's site: a ``twisted.web`` Site whose one resource
routes every path, applies the security rules in one place and sends each
answer with the security headers.

Per request, in order: the language (switch, cookie, Accept-Language), the
pre-session cookie, the session (from the store); then unknown path → 404,
unknown method → 405 (with Allow); for a POST a foreign Origin or
Sec-Fetch-Site → 403; a page that needs a session → 302/303 to /login;
for a POST a missing or wrong ``csrf`` field → 403; an account that must
still enrol in two-factor → /settings/two-factor; then the handler, whose
store changes have committed before its answer is sent. Anything else that
fails is logged and answered with a generic 503 page, never a traceback.

Requests are bounded: bodies over MAX_BODY get 413 and the connection is
closed; idle connections end after TIMEOUT. The access log names method,
path (never the query string), status, size and client: no cookie, token
or form field reaches it.
"""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web import server
from twisted.web.resource import Resource

from zpop.accounts import two_factor as two_factor_service
from zpop.accounts import web_sessions
from zpop.accounts.accounts import require_account
from zpop.accounts.errors import UnknownAccount
from zpop.web import (
    activity,
    api_tokens,
    app_passwords,
    autoconfig,
    clients,
    downloads,
    imap,
    login,
    pop,
    reset,
    security,
    sessions,
    two_factor,
)
from zpop.web import password as pw
from zpop.web.api.resource import PREFIX as API_PREFIX
from zpop.web.api.resource import Api, make_api
from zpop.web.i18n import LANGUAGES, Catalog, choose
from zpop.web.pages import STYLESHEET, message_page, render
from zpop.web.visit import BadForm, Response, Visit, WebContext, redirect

__all__ = ["WebContext", "make_site"]

log = Logger()

#: Largest request body accepted (the forms are a few hundred bytes).
MAX_BODY = 16 * 1024
#: Seconds an idle connection is kept open.
TIMEOUT = 60.0

Handler = Callable[[Visit], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    """A path's handlers by method, what it needs, and which cookie its
    forms' CSRF tokens are bound to."""

    methods: dict[bytes, Handler]
    #: ``none``, ``session`` (any stage), ``code`` (second factor due) or
    #: ``full`` (signed in).
    needs: str = "none"
    #: ``pre`` (the sign-in form), ``session``, or ``none`` for the
    #: machine-read documents that hold nothing of an account's (mail
    #: clients' autoconfiguration posts no form and sends no cookie).
    csrf: str = "session"
    cache: bytes = b"no-store"
    #: Reachable by an account that must enrol in two-factor first (DESIGN
    #: §1: "enrol at its next web sign-in before it can do anything else").
    enrolment: bool = False

    def __post_init__(self) -> None:
        if self.csrf == "none" and self.needs != "none":
            raise ValueError("a route without CSRF tokens cannot need a session")


async def _stylesheet(visit: Visit) -> Response:
    return Response(
        raw=STYLESHEET, headers=[(b"content-type", b"text/css; charset=utf-8")]
    )


ROUTES: dict[str, Route] = {
    "/": Route({b"GET": login.root}),
    "/login": Route({b"GET": login.login_page, b"POST": login.login}, csrf="pre"),
    "/login/code": Route({b"GET": login.code_page, b"POST": login.code}, "code"),
    "/login/forgot": Route(reset.FORGOT, csrf="pre"),
    "/reset": Route(reset.RESET, csrf="pre"),
    "/logout": Route({b"POST": login.logout}, "session"),
    "/settings": Route({b"GET": login.settings_index}, "full"),
    "/settings/pop": Route({b"GET": pop.page, b"POST": pop.change}, "full"),
    "/settings/imap": Route({b"GET": imap.page, b"POST": imap.change}, "full"),
    "/settings/password": Route({b"GET": pw.page, b"POST": pw.change}, "full"),
    "/settings/app-passwords": Route(
        {b"GET": app_passwords.page, b"POST": app_passwords.change}, "full"
    ),
    "/settings/api-tokens": Route(
        {b"GET": api_tokens.page, b"POST": api_tokens.change}, "full"
    ),
    "/settings/two-factor": Route(
        {b"GET": two_factor.page, b"POST": two_factor.change}, "full", enrolment=True
    ),
    "/settings/clients": Route({b"GET": clients.page}, "full"),
    "/settings/apple-profile": Route({b"GET": autoconfig.apple_profile}, "full"),
    "/settings/sessions": Route(
        {b"GET": sessions.page, b"POST": sessions.change}, "full"
    ),
    "/settings/activity": Route({b"GET": activity.page}, "full"),
    "/settings/downloads": Route({b"GET": downloads.page}, "full"),
    "/static/zpop.css": Route({b"GET": _stylesheet}, cache=b"max-age=3600"),
    # Mail clients' autoconfiguration and the MTA-STS policy (zpop.web.autoconfig).
    "/.well-known/autoconfig/mail/config-v1.1.xml": Route(
        {b"GET": autoconfig.thunderbird}, csrf="none"
    ),
    "/mail/config-v1.1.xml": Route({b"GET": autoconfig.thunderbird}, csrf="none"),
    "/autodiscover/autodiscover.xml": Route({b"POST": autoconfig.outlook}, csrf="none"),
    "/Autodiscover/Autodiscover.xml": Route({b"POST": autoconfig.outlook}, csrf="none"),
    "/.well-known/mta-sts.txt": Route({b"GET": autoconfig.mta_sts}, csrf="none"),
}


def _allowed(route: Route) -> bytes:
    methods = sorted(route.methods)
    if b"GET" in route.methods:
        methods.append(b"HEAD")
    return b", ".join(methods)


class Router(Resource):
    """The site's only resource: every path goes through ``_serve``."""

    isLeaf = True  # noqa: N815 - twisted.web API

    def __init__(
        self,
        web: WebContext,
        routes: dict[str, Route] = ROUTES,
        api: Api | None = None,
    ) -> None:
        super().__init__()
        self._web = web
        self._routes = routes
        self._api = make_api(web) if api is None else api

    def render(self, request: Any) -> Any:
        path = _path(request)
        if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
            # The API answers itself: JSON, a token, no cookie or CSRF.
            d = Deferred.fromCoroutine(self._api.render(request, path))
            d.addErrback(lambda f: log.failure("api: answering a request", f))
            return server.NOT_DONE_YET
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        d = Deferred.fromCoroutine(self._serve(request, gone))
        d.addErrback(lambda f: log.failure("web: answering a request", f))
        return server.NOT_DONE_YET

    async def _visit(self, request: Any, cookies: list[bytes]) -> Visit:
        """The request's language, pre-session and session."""
        jar = security.read_cookies(request.requestHeaders.getRawHeaders(b"cookie"))
        switch = None
        wanted = request.args.get(b"lang") if request.method == b"GET" else None
        if wanted and wanted[0].decode("latin-1") in LANGUAGES:
            switch = wanted[0].decode("latin-1")
            cookies.append(security.set_cookie(security.LANGUAGE_COOKIE, switch))
        accept = request.requestHeaders.getRawHeaders(b"accept-language")
        language = choose(
            switch or jar.get(security.LANGUAGE_COOKIE),
            accept[0].decode("latin-1") if accept else None,
        )
        visit = Visit(self._web, request, Catalog(language), switched=bool(switch))
        pre = jar.get(security.PRE_COOKIE, "")
        if not (16 <= len(pre) <= 64 and pre.isascii()):
            pre = security.new_pre_session()
            cookies.append(security.set_cookie(security.PRE_COOKIE, pre))
        visit.pre = pre
        session_id = jar.get(security.SESSION_COOKIE)
        if session_id:
            web = self._web
            session = await web_sessions.resume(
                web.store, web.key, web.clock, session_id
            )
            if session is None:
                cookies.append(security.clear_cookie(security.SESSION_COOKIE))
            else:
                visit.session, visit.session_id = session, session_id
        return visit

    async def _answer(self, visit: Visit, route: Route | None) -> Response:
        t = visit.t
        request = visit.request
        if route is None:
            return message_page(visit, 404, t("not_found_title"), t("not_found"))
        method = b"GET" if request.method == b"HEAD" else request.method
        handler = route.methods.get(method)
        if handler is None:
            answer = message_page(visit, 405, t("method_title"), t("method"))
            answer.headers.append((b"allow", _allowed(route)))
            return answer
        post = method == b"POST"
        if post and security.foreign(request):
            return message_page(visit, 403, t("forbidden_title"), t("foreign_origin"))
        session = visit.session
        stage = None if session is None else session.stage
        if (
            (route.needs == "full" and stage != web_sessions.FULL)
            or (route.needs == "code" and stage != web_sessions.CODE)
            or (route.needs == "session" and stage is None)
        ):
            return redirect("/login", 303 if post else 302)
        if post and route.csrf != "none":
            expected = (
                visit.csrf()
                if route.csrf == "session"
                else security.csrf_token(self._web.key, "pre", visit.pre)
            )
            try:
                given = visit.field("csrf")
            except BadForm:
                given = None
            if not security.token_matches(expected, given):
                return message_page(visit, 403, t("forbidden_title"), t("csrf"))
        try:
            if route.needs == "full" and await self._confined(visit):
                visit.confined = True
                if not route.enrolment:
                    return redirect("/settings/two-factor", 303 if post else 302)
            return await handler(visit)
        except BadForm:
            return message_page(visit, 400, t("bad_request_title"), t("bad_form"))
        except UnknownAccount:
            # The account was deleted while signed in: the session goes too.
            if visit.session_id is not None:
                await web_sessions.end(self._web.store, self._web.key, visit.session_id)
            answer = redirect("/login", 303 if post else 302)
            answer.cookies.append(security.clear_cookie(security.SESSION_COOKIE))
            return answer

    async def _confined(self, visit: Visit) -> bool:
        """Whether the signed-in account must enrol in two-factor before
        anything else. Read from the account on every signed-in page, not
        kept in the session: the operator's ``zpop twofactor enable`` holds
        at once, and enrolling frees every session of the account."""
        account = await require_account(self._web.store, visit.address)
        state = two_factor_service.state_of(account)
        return state is two_factor_service.TwoFactorState.REQUIRED

    async def _serve(self, request: Any, gone: list[bool]) -> None:
        cookies: list[bytes] = []
        visit: Visit | None = None
        route = self._routes.get(_path(request))
        try:
            visit = await self._visit(request, cookies)
            answer = await self._answer(visit, route)
            body = await self._body(visit, answer)
        except Exception:
            log.failure(
                "web: {method} {path}", method=request.method, path=_path(request)
            )
            if visit is None:
                visit = Visit(self._web, request, Catalog(LANGUAGES[0]))
            t = visit.t
            answer = message_page(visit, 503, t("error_title"), t("error"))
            visit.session = None
            body = await render(visit, answer)
        if gone:
            return
        request.setResponseCode(answer.status)
        for name, value in security.HEADERS:
            request.setHeader(name, value)
        ok = answer.status < 400 and route is not None
        request.setHeader(
            b"cache-control", route.cache if ok and route else b"no-store"
        )
        for cookie in cookies + answer.cookies:
            request.responseHeaders.addRawHeader(b"set-cookie", cookie)
        for name, value in answer.headers:
            request.setHeader(name, value)
        if answer.location is not None:
            request.setHeader(b"location", answer.location.encode("ascii"))
        request.setHeader(b"content-length", str(len(body)).encode("ascii"))
        request.write(body)
        request.finish()

    @staticmethod
    async def _body(visit: Visit, answer: Response) -> bytes:
        if answer.location is not None:
            return b""
        if answer.raw is not None:
            return answer.raw
        answer.headers.insert(0, (b"content-type", b"text/html; charset=utf-8"))
        return await render(visit, answer)


def _path(request: Any) -> str:
    parts = [*request.prepath, *request.postpath]
    return "/" + "/".join(p.decode("utf-8", "replace") for p in parts)


class LimitedRequest(server.Request):
    """A request whose body may not exceed MAX_BODY: upstream buffers any
    size. A declared larger length is refused at once with 413 (before the
    body is read); a chunked body is refused once it grows past the limit.
    """

    max_body = MAX_BODY
    _refused = False
    _received = 0

    def gotLength(self, length: int | None) -> None:  # noqa: N802 - Twisted API
        if length is not None and length > self.max_body:
            # Not upstream's, which would open a temporary file for it.
            self.content = io.BytesIO()
            self._refuse()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 - Twisted API
        if self._refused:
            return
        self._received += len(data)
        if self._received > self.max_body:
            self._refuse()
            return
        super().handleContentChunk(data)

    def requestReceived(  # noqa: N802 - Twisted API
        self, command: bytes, path: bytes, version: bytes
    ) -> None:
        if not self._refused:
            super().requestReceived(command, path, version)

    def _refuse(self) -> None:
        self._refused = True
        text = b"Request body too large.\n"
        headers = b"".join(b"%s: %s\r\n" % pair for pair in security.HEADERS)
        transport: Any = self.channel.transport
        transport.write(
            b"HTTP/1.1 413 Content Too Large\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n%s\r\n%s"
            % (len(text), headers, text)
        )
        log.info(
            "web refused body over {limit} bytes client={client}",
            limit=self.max_body,
            client=getattr(self.getClientAddress(), "host", "-"),
        )
        transport.loseConnection()


class ZpopSite(server.Site):
    """The Site: LimitedRequest, a short idle timeout, no per-connection
    noise, and an access log line that holds no secret."""

    noisy = False
    requestFactory = LimitedRequest  # noqa: N815 - twisted.web API

    def log(self, request: Any) -> None:
        log.info(
            "web {method} {path} {status} {size} client={client}",
            method=request.method.decode("latin-1", "replace"),
            path=request.path.decode("latin-1", "replace")[:200],
            status=request.code,
            size=request.sentLength,
            client=getattr(request.getClientAddress(), "host", "-"),
        )


def make_site(web: WebContext) -> ZpopSite:
    """The ``web`` listener's protocol factory (TLS is added by zpop.tap).
    The server key keys session digests and CSRF tokens: without one every
    token would be guessable, so none is refused."""
    if len(web.key) < 32:
        raise ValueError("the web settings need the server key (32 bytes or more)")
    site = ZpopSite(Router(web), timeout=TIMEOUT, reactor=web.clock)
    site.displayTracebacks = False
    return site
