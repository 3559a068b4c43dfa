"""The web's security plumbing (DESIGN §1 "Security"): the cookies, the
CSRF tokens, the same-origin check and the headers every response carries.

CSRF tokens are not stored: each is an HMAC under the server key of the
secret its cookie holds (the session id, or before sign-in the
pre-session value), so a token is good only beside its own cookie, changes
when the session is rotated, and costs no store look-up.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from http.cookies import CookieError, SimpleCookie
from typing import Any

#: The session cookie. ``__Host-``: the browser takes it only with Secure,
#: Path=/ and no Domain, so no other host (a sibling subdomain) can plant one.
SESSION_COOKIE = "__Host-zpop"
#: Before sign-in: binds the sign-in form's CSRF token to this browser.
PRE_COOKIE = "__Host-zpop-pre"
#: The visitor's language switch.
LANGUAGE_COOKIE = "__Host-zpop-lang"

#: No script at all: the pages work without JavaScript.
CSP = (
    "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self' data:;"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
#: On every response, errors included.
HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"Content-Security-Policy", CSP.encode("ascii")),
    (b"Strict-Transport-Security", b"max-age=31536000; includeSubDomains"),
    (b"Referrer-Policy", b"no-referrer"),
    (b"X-Content-Type-Options", b"nosniff"),
    (b"X-Frame-Options", b"DENY"),
    (b"Cross-Origin-Opener-Policy", b"same-origin"),
    (b"Cross-Origin-Resource-Policy", b"same-origin"),
    (b"Permissions-Policy", b"camera=(), microphone=(), geolocation=()"),
)


def set_cookie(name: str, value: str, max_age: int | None = None) -> bytes:
    """A Set-Cookie value with the flags DESIGN §1 asks of every zpop
    cookie: Secure, HttpOnly, SameSite=Strict, Path=/ (and no Domain)."""
    text = f"{name}={value}; Secure; HttpOnly; SameSite=Strict; Path=/"
    if max_age is not None:
        text += f"; Max-Age={max_age}"
    return text.encode("ascii")


def clear_cookie(name: str) -> bytes:
    """A Set-Cookie value that makes the browser drop the cookie."""
    return set_cookie(name, "", max_age=0)


def read_cookies(headers: list[bytes] | None) -> Mapping[str, str]:
    """The cookies of the request's Cookie headers; a malformed header is
    ignored rather than failing the request."""
    found: dict[str, str] = {}
    for raw in headers or []:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(raw.decode("latin-1"))
        except CookieError:
            continue
        for name, morsel in jar.items():
            found.setdefault(name, morsel.value)
    return found


def new_pre_session() -> str:
    """A pre-session cookie value: 128 random bits."""
    return secrets.token_urlsafe(16)


def csrf_token(key: bytes, purpose: str, secret: str) -> str:
    """The CSRF token of a form rendered beside the cookie holding
    ``secret`` (``purpose``: ``session`` or ``pre``)."""
    message = f"csrf\0{purpose}\0{secret}".encode("utf-8", "surrogatepass")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def token_matches(expected: str, given: str | None) -> bool:
    """Whether a posted token is the expected one, in constant time."""
    if given is None:
        return False
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def foreign(request: Any) -> bool:
    """Whether a state-changing request comes from another site.

    The browser's Sec-Fetch-Site decides when it is sent: anything but
    same-origin (or none: typed by the user) is foreign, a sibling
    subdomain included. Without it, an Origin that is not this host over
    https is foreign. ``Origin: null`` is not: with ``Referrer-Policy:
    no-referrer`` Chromium sends it on this site's own form posts, so it
    says nothing, and the CSRF token (always required) decides. Requests
    with neither header (non-browser clients) need the token too."""
    headers = request.requestHeaders
    site = headers.getRawHeaders(b"sec-fetch-site")
    if site:
        return site[0].strip().lower() not in (b"same-origin", b"none")
    origin = headers.getRawHeaders(b"origin")
    if not origin or origin[0].strip().lower() == b"null":
        return False
    host = headers.getRawHeaders(b"host")
    if not host:
        return True
    theirs = bytes(origin[0]).strip().lower()
    return theirs != b"https://" + bytes(host[0]).strip().lower()
