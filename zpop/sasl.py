"""SASL PLAIN (RFC 4616) and LOGIN responses, one set of rules for every
protocol. Each protocol turns a SASLError into a reply of its own words."""

from __future__ import annotations

import binascii
from collections.abc import Callable
from typing import Any

CANCELLED = "cancelled"
BAD_BASE64 = "bad base64"
MALFORMED = "malformed"
OTHER_IDENTITY = "other identity"


class SASLError(ValueError):
    """Why a client's SASL response is refused; ``kind`` picks the reply."""

    def __init__(self, kind: str, mechanism: str = "") -> None:
        super().__init__(kind)
        self.kind = kind
        self.mechanism = mechanism


def decode(line: bytes) -> bytes:
    """A base64 response line: ``*`` cancels, ``=`` is empty (RFC 4954/5034)."""
    if line.strip() == b"*":
        raise SASLError(CANCELLED)
    if line == b"=":
        return b""
    try:
        return binascii.a2b_base64(line, strict_mode=True)
    except binascii.Error:
        raise SASLError(BAD_BASE64) from None


def plain(line: bytes) -> tuple[bytes, bytes]:
    """(login, password) of a PLAIN response; an authorization identity
    other than the login is refused (no logging in as someone else)."""
    parts = decode(line).split(b"\0")
    if len(parts) != 3 or not parts[1]:
        raise SASLError(MALFORMED, "PLAIN")
    authzid, authcid, password = parts
    if authzid and authzid.strip().lower() != authcid.strip().lower():
        raise SASLError(OTHER_IDENTITY, "PLAIN")
    return authcid, password


def login_user(line: bytes) -> bytes:
    """The user name of a LOGIN exchange (its first response)."""
    user = decode(line)
    if not user:
        raise SASLError(MALFORMED, "LOGIN")
    return user


class Exchanges:
    """The PLAIN and LOGIN exchange steps, for a protocol that supplies
    ``_sasl_parse`` (a parser's SASLError turned into its refusal),
    ``_challenge`` (send a challenge, route the next line to a step) and
    ``_login``."""

    _sasl_parse: Callable[..., Any]
    _challenge: Callable[[bytes, Callable[[bytes], Any]], None]
    _login: Callable[[bytes, bytes], Any]

    def _sasl_plain(self, line: bytes) -> Any:
        return self._login(*self._sasl_parse(plain, line))

    def _sasl_login_user(self, line: bytes) -> None:
        user = self._sasl_parse(login_user, line)
        self._challenge(
            b"Password:", lambda reply: self._sasl_login_password(user, reply)
        )

    def _sasl_login_password(self, user: bytes, line: bytes) -> Any:
        return self._login(user, self._sasl_parse(decode, line))
