"""What an API operation is and gets: its table entry (``Operation``), one
request as it sees it (``Call``), its answer (``Reply``) and its refusals
(``ApiError``), plus the shared helpers for bodies, pagination and ETags.

The table is the one truth: the resource dispatches from it and the
OpenAPI document is built from it, so a route and its documentation cannot
drift apart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from zpop.web.visit import WebContext

#: Largest and default page size of a list.
MAX_LIMIT = 500
DEFAULT_LIMIT = 100

_PARAM = re.compile(r"^\{([a-z_]+)\}$")


class ApiError(Exception):
    """A refusal: the HTTP status and the error body's code and message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = list(headers)


def invalid(message: str, code: str = "invalid") -> ApiError:
    return ApiError(422, code, message)


@dataclass
class Reply:
    """A JSON answer (``body`` None: no content)."""

    body: Any = None
    status: int = 200
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass
class Call:
    """One API request as an operation sees it."""

    web: WebContext
    request: Any
    client: str
    #: The token's record (an ApiToken), None for a public operation.
    token: Any
    params: dict[str, str]
    body: Any = None

    @property
    def address(self) -> str:
        """The personal token's account."""
        assert self.token is not None and self.token.address is not None
        return str(self.token.address)

    def query(self, name: str) -> str | None:
        values = self.request.args.get(name.encode("ascii"))
        if not values:
            return None
        if len(values) > 1:
            raise invalid(f"the query parameter {name} is given more than once")
        try:
            return str(values[0].decode("utf-8"))
        except UnicodeDecodeError:
            raise invalid(f"the query parameter {name} is not UTF-8") from None

    def header(self, name: bytes) -> str | None:
        values = self.request.requestHeaders.getRawHeaders(name)
        return values[0].decode("latin-1") if values else None


Handler = Callable[[Call], Awaitable[Reply]]


@dataclass(frozen=True)
class Operation:
    """One method on one path, what it needs and what it answers."""

    method: str
    path: str
    handler: Handler
    summary: str
    #: ``user`` (a personal token), ``admin`` (an admin token) or
    #: ``public`` (no token).
    audience: str
    #: Changes something: needs a ``write`` token, and is audited.
    writes: bool = False
    #: JSON Schema of the request body, or None for none.
    request: dict[str, Any] | None = None
    #: Success status and the JSON Schema of its body (None: no content).
    status: int = 200
    response: dict[str, Any] | None = None
    #: JSON Schemas of the path parameters, by name.
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: A list with ``limit`` and ``cursor``.
    paginated: bool = False
    #: GET sends an ETag; PATCH takes If-Match.
    etag: bool = False
    #: Refusals it may give besides the common ones (status -> meaning).
    errors: dict[int, str] = field(default_factory=dict)
    #: OpenAPI links of the success answer: name -> (operationId, the
    #: parameters it fills from this answer), for clients and fuzzers that
    #: follow a created resource to the operations on it.
    links: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)

    def match(self, segments: list[str]) -> dict[str, str] | None:
        """The path parameters if ``segments`` is this path, else None."""
        mine = self.path.strip("/").split("/")
        if len(mine) != len(segments):
            return None
        params = {}
        for pattern, segment in zip(mine, segments, strict=True):
            param = _PARAM.match(pattern)
            if param:
                if not segment:
                    return None
                params[param.group(1)] = segment
            elif pattern != segment:
                return None
        return params


def numeric_id(call: Call, what: str) -> int:
    """The ``{id}`` path parameter: an id this API could have given, else
    404, as for an id that is not there (``what`` names the kind)."""
    text = call.params["id"]
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise ApiError(404, "not_found", f"no {what} {text[:40]}")
    return int(text)


def fields(
    body: Any, allowed: dict[str, tuple[type, ...]], read_only: Sequence[str] = ()
) -> dict[str, Any]:
    """The fields of a JSON object body, each of an allowed type; 422 for
    anything else, naming the field."""
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    for name in body:
        if name in read_only:
            raise invalid(f"{name} is read-only", "read_only")
        if name not in allowed:
            raise invalid(f"unknown field {name}", "unknown_field")
    for name, value in body.items():
        types = allowed[name]
        # bool is an int in Python; JSON keeps them apart.
        if isinstance(value, bool) and bool not in types:
            raise invalid(f"{name} has the wrong type")
        if not isinstance(value, types):
            raise invalid(f"{name} has the wrong type")
    return dict(body)


def etag_of(document: Any) -> str:
    """A strong ETag of a JSON document: its content, not a version, so an
    unrelated change to the account does not make it stale."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'


def check_if_match(call: Call, current: Any) -> None:
    """412 if the request's If-Match names another version than
    ``current``'s; no If-Match (or ``*``) goes ahead."""
    given = call.header(b"if-match")
    if given is None:
        return
    tags = [t.strip() for t in given.split(",")]
    if "*" in tags or etag_of(current) in tags:
        return
    raise ApiError(
        412,
        "precondition_failed",
        "the resource changed since it was read: GET it again",
    )


def page(call: Call, items: Sequence[Any]) -> Reply:
    """One page of ``items`` (already in their order): ``limit`` (1 to
    MAX_LIMIT) and ``cursor``, an opaque position from a previous page's
    ``next_cursor``."""
    limit_text = call.query("limit")
    limit = DEFAULT_LIMIT
    if limit_text is not None:
        if not (limit_text.isascii() and limit_text.isdigit()):
            raise invalid(f"limit must be a whole number from 1 to {MAX_LIMIT}")
        limit = int(limit_text)
        if not 1 <= limit <= MAX_LIMIT:
            raise invalid(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    start = 0
    cursor = call.query("cursor")
    if cursor is not None:
        start = _read_cursor(cursor)
    chosen = list(items[start : start + limit])
    more = start + limit < len(items)
    return Reply(
        {
            "items": chosen,
            "next_cursor": _cursor(start + limit) if more else None,
        }
    )


def _cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"p{position}".encode()).decode().rstrip("=")


def _read_cursor(text: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    if not (raw.startswith("p") and raw[1:].isdigit() and len(raw) < 12):
        raise invalid("the cursor is not one this API gave", "invalid_cursor")
    return int(raw[1:])
