"""The API's resource: everything under ``/api/v1`` on the ``web``
listener, answered from the operation table (``user``, ``admin``, and the
OpenAPI document itself).

Per request, in order: the operation (404 for an unknown path, 405 with
Allow for an unknown method, both with the error body); the token
(``Authorization: Bearer``, through the Authenticator's throttle and bans:
401 unknown, 429 banned); its audience and scope (403); the JSON body
(415 without application/json, 400 if it does not parse, 422 if it breaks
the schema); then the operation, whose store changes have committed before
the answer is sent, and for a change one audit line naming the token.
Service refusals become 4xx with the CLI's words; anything unexpected is
logged and answered 503, never with a traceback. Cookies play no part, so
there is nothing for CSRF to ride on.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.cred.error import UnauthorizedLogin
from twisted.logger import Logger

from zpop.accounts import api_tokens
from zpop.accounts.credentials import LoginRefused
from zpop.accounts.errors import (
    AccountError,
    AddressTaken,
    DomainHosted,
    InvalidInput,
    NotAllowed,
    NotHosted,
    UnknownAccount,
    UnknownAppPassword,
    WrongPassword,
)
from zpop.outbound.queue import UnknownQueuedMessage
from zpop.web import security
from zpop.web.api import admin, user
from zpop.web.api.framework import ApiError, Call, Operation, Reply
from zpop.web.api.schemas import required_fields
from zpop.web.visit import WebContext

log = Logger()

PREFIX = "/api/v1"
#: Methods the API knows at all; others are 405 wherever they go.
METHODS = ("GET", "HEAD", "POST", "PATCH", "DELETE")


def _refusal(error: Exception) -> ApiError | None:
    """The API's answer to a service's refusal, in the CLI's words."""
    text = str(error)
    if isinstance(error, (UnknownAccount, UnknownAppPassword, UnknownQueuedMessage)):
        return ApiError(404, "not_found", text)
    if isinstance(error, api_tokens.UnknownApiToken):
        return ApiError(404, "not_found", text)
    if isinstance(error, NotHosted):
        return ApiError(422, "not_hosted", text)
    if isinstance(error, (AddressTaken, DomainHosted)):
        return ApiError(409, "conflict", text)
    if isinstance(error, NotAllowed):
        return ApiError(403, "not_allowed", text)
    if isinstance(error, WrongPassword):
        return ApiError(403, "forbidden", text)
    if isinstance(error, (InvalidInput, AccountError)):
        return ApiError(422, "invalid", text)
    return None


class Api:
    """Dispatches API requests; the site's Router hands it every request
    whose path is under PREFIX."""

    def __init__(self, web: WebContext, operations: list[Operation]) -> None:
        self._web = web
        self._operations = operations

    def _find(self, method: str, path: str) -> tuple[Operation, dict[str, str]]:
        segments = path[len(PREFIX) :].strip("/").split("/")
        matched = [(op, op.match(segments)) for op in self._operations]
        found = [(op, params) for op, params in matched if params is not None]
        if not found:
            raise ApiError(404, "not_found", "no such API resource")
        wanted = "GET" if method == "HEAD" else method
        for op, params in found:
            if op.method == wanted:
                assert params is not None
                return op, params
        allowed = sorted({op.method for op, _ in found})
        if "GET" in allowed:
            allowed.append("HEAD")
        raise ApiError(
            405,
            "method_not_allowed",
            f"{method[:10]} is not allowed here; allowed: {', '.join(allowed)}",
            [(b"allow", ", ".join(allowed).encode("ascii"))],
        )

    async def _token(self, op: Operation, request: Any, client: str) -> Any:
        if op.audience == "public":
            return None
        given = request.requestHeaders.getRawHeaders(b"authorization") or []
        scheme, _, token = (given[0] if given else b"").decode("latin-1").partition(" ")
        challenge = [(b"www-authenticate", b'Bearer realm="zpop"')]
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "an API token is required", challenge)
        web = self._web
        try:
            found = await web.authenticator.bearer(
                "api",
                client,
                token.strip(),
                lambda t: api_tokens.authenticate(web.store, web.clock, web.key, t),
            )
        except LoginRefused as e:
            raise ApiError(429, "too_many_requests", e.text) from None
        except UnauthorizedLogin:
            raise ApiError(401, "unauthorized", "the API token is not valid", challenge)
        if op.audience == "admin" and not found.admin:
            raise ApiError(403, "forbidden", "this needs an admin token")
        if op.audience == "user" and found.admin:
            raise ApiError(
                403, "forbidden", "an admin token has no account: use /admin"
            )
        if op.writes and found.scope != "write":
            raise ApiError(
                403, "insufficient_scope", "this needs a token with scope write"
            )
        return found

    @staticmethod
    def _body(op: Operation, request: Any) -> Any:
        raw = request.content.read() if request.content is not None else b""
        if op.request is None:
            return None
        if not raw and op.method == "POST" and not required_fields(op.request):
            return None
        kind = (request.requestHeaders.getRawHeaders(b"content-type") or [b""])[0]
        if kind.split(b";")[0].strip().lower() != b"application/json":
            raise ApiError(415, "unsupported_media_type", "send application/json")
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise ApiError(400, "bad_json", "the body is not valid JSON") from None

    async def answer(self, request: Any, path: str) -> Reply:
        """The reply to one request; never raises."""
        method = request.method.decode("latin-1", "replace")
        client = str(getattr(request.getClientAddress(), "host", "-"))
        op: Operation | None = None
        token: Any = None
        try:
            if method not in METHODS:
                raise ApiError(405, "method_not_allowed", "unknown method")
            op, params = self._find(method, path)
            token = await self._token(op, request, client)
            body = self._body(op, request)
            call = Call(self._web, request, client, token, params, body)
            try:
                reply = await op.handler(call)
            except ApiError:
                raise
            except Exception as e:
                refused = _refusal(e)
                if refused is None:
                    raise
                raise refused from None
        except ApiError as e:
            reply = Reply({"error": {"code": e.code, "message": e.message}}, e.status)
            reply.headers += e.headers
        except Exception:
            log.failure("api: {method} {path}", method=method, path=path[:200])
            reply = Reply(
                {"error": {"code": "unavailable", "message": "try again later"}}, 503
            )
        if op is not None and op.writes and token is not None:
            log.info(
                "api change {method} {path} status={status} token={label}"
                " owner={owner} client={client}",
                method=method,
                path=path[:200],
                status=reply.status,
                label=token.label,
                owner=token.address or "admin",
                client=client,
            )
        return reply

    async def render(self, request: Any, path: str) -> None:
        """Answer and send ``request`` (with the site's security headers),
        unless the client has gone meanwhile."""
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        reply = await self.answer(request, path)
        if gone:
            return
        data = b""
        if reply.body is not None and reply.status != 204:
            data = json.dumps(reply.body, ensure_ascii=False).encode("utf-8")
        request.setResponseCode(reply.status)
        for name, value in security.HEADERS:
            request.setHeader(name, value)
        request.setHeader(b"cache-control", b"no-store")
        if data:
            request.setHeader(b"content-type", b"application/json")
        for name, value in reply.headers:
            request.setHeader(name, value)
        request.setHeader(b"content-length", str(len(data)).encode("ascii"))
        if request.method != b"HEAD":
            request.write(data)
        request.finish()


def make_api(web: WebContext) -> Api:
    """The API with every operation and its own OpenAPI document."""
    from zpop.web.api import openapi

    operations = [*user.OPERATIONS, *admin.OPERATIONS]
    operations.append(openapi.operation(operations))
    return Api(web, operations)
