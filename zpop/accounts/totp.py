"""TOTP (RFC 6238) as every authenticator app reads it, and the sealing of
its secret (DESIGN §1 "Two-factor authentication").

A 160-bit secret, HMAC-SHA-1, 6 digits, 30-second steps: the defaults of
Google's Key Uri Format, so no app has to honour a parameter to get them
right. Codes are accepted one step either side of now (clock drift, typing
time), and only for a step after the last one accepted, so each code signs
in once. The secret is stored sealed with AES-256-GCM under a key derived
from the server key (HKDF-SHA256) and bound to the account's address, so a
copy of the database alone yields no second factor and a sealed secret
moved onto another account does not open.

Pure functions, no I/O: cheap enough (microseconds) for the reactor thread.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import secrets
import struct
import urllib.parse

import segno
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

#: RFC 4226's recommended length; what every app reads.
SECRET_BYTES = 20
DIGITS = 6
#: Seconds per time step (RFC 6238's X).
STEP = 30
#: Codes this many steps either side of now are accepted.
WINDOW = 1

#: The sealed format: a version byte, the GCM nonce, then the ciphertext
#: with its tag. The version is also in the associated data, so a future
#: format can never be mistaken for this one.
_SEALED_VERSION = 1
_NONCE_BYTES = 12
_TAG_BYTES = 16
_HKDF_INFO = b"zpop totp secret sealing v1"
_COUNTER = struct.Struct(">Q")
_TRUNCATED = struct.Struct(">I")


class SealError(ValueError):
    """A sealed secret that does not open: sealed under another server key,
    for another account, damaged, or of an unknown format."""


def new_secret() -> bytes:
    """A new random TOTP secret."""
    return secrets.token_bytes(SECRET_BYTES)


def secret_text(secret: bytes) -> str:
    """The secret as an app's "enter a setup key" screen wants it: base32,
    without padding, in groups of four for reading aloud or typing."""
    text = base64.b32encode(secret).decode("ascii").rstrip("=")
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


def parse_secret_text(text: str) -> bytes:
    """The secret back from ``secret_text`` (spaces, case and padding do
    not matter); raises ValueError if it is not base32 of a secret."""
    cleaned = "".join(text.split()).upper().rstrip("=")
    padded = cleaned + "=" * (-len(cleaned) % 8)
    try:
        secret = base64.b32decode(padded)
    except (binascii.Error, ValueError):
        raise ValueError("the setup key is not base32 text") from None
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"the setup key is not a {SECRET_BYTES * 8}-bit secret")
    return secret


def provisioning_uri(secret: bytes, address: str, issuer: str) -> str:
    """The ``otpauth://`` URI a QR code carries (Google's Key Uri Format):
    the label ``issuer:address`` and the ``issuer`` parameter both, as
    apps differ in which they show; spaces as %20, never ``+``."""
    if ":" in issuer or not issuer.strip():
        raise ValueError("the issuer must be a non-empty name without ':'")
    label = urllib.parse.quote(f"{issuer}:{address}", safe="@:")
    query = urllib.parse.urlencode(
        {
            "secret": secret_text(secret).replace(" ", ""),
            "issuer": issuer,
            "algorithm": "SHA1",
            "digits": DIGITS,
            "period": STEP,
        },
        quote_via=urllib.parse.quote,
    )
    return f"otpauth://totp/{label}?{query}"


def qr_svg(uri: str) -> str:
    """The URI as a QR code in SVG for inlining in a page: no XML
    declaration, no script, a white background and a quiet zone, so it
    scans on a dark page too; the size follows the SVG's own width."""
    code = segno.make(uri, error="m", micro=False)
    out = io.BytesIO()
    code.save(
        out,
        kind="svg",
        xmldecl=False,
        svgns=True,
        nl=False,
        scale=4,
        border=4,
        dark="#000",
        light="#fff",
        svgclass="totp-qr",
    )
    return out.getvalue().decode("utf-8")


def step_at(now: float) -> int:
    """The time step (RFC 6238's T) of a POSIX time."""
    return int(now // STEP)


def code_at(secret: bytes, step: int) -> str:
    """HOTP (RFC 4226) of a time step: HMAC-SHA-1 of the 8-byte counter,
    dynamic truncation, the last ``DIGITS`` digits."""
    digest = hmac.new(secret, _COUNTER.pack(step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = _TRUNCATED.unpack_from(digest, offset)[0] & 0x7FFFFFFF
    return str(number % 10**DIGITS).zfill(DIGITS)


def normalize_code(code: str) -> str | None:
    """A typed code as 6 ASCII digits (spaces ignored: apps show "123 456"),
    or None if it cannot be one."""
    cleaned = "".join(code.split())
    if len(cleaned) != DIGITS or not cleaned.isascii() or not cleaned.isdigit():
        return None
    return cleaned


def accepted_step(
    secret: bytes, code: str, now: float, last_step: int | None
) -> int | None:
    """The time step ``code`` is valid for, within WINDOW steps of ``now``
    and after ``last_step`` (None: no code accepted yet), or None.

    Every step of the window is compared, in constant time, so the answer
    takes as long whichever step matches. The latest matching step is the
    one returned, the one the caller records as used.
    """
    typed = normalize_code(code)
    if typed is None:
        return None
    current = step_at(now)
    earliest = max(current - WINDOW, 0 if last_step is None else last_step + 1)
    found = None
    for step in range(current - WINDOW, current + WINDOW + 1):
        if step < 0:
            continue  # before 1970: no counter, and no app shows one
        matches = hmac.compare_digest(code_at(secret, step), typed)
        if matches and step >= earliest:
            found = step
    return found


def _box(server_key: bytes) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        server_key
    )
    return AESGCM(key)


def _associated(address: str) -> bytes:
    return b"zpop totp v%d\0%s" % (_SEALED_VERSION, address.lower().encode("utf-8"))


def seal(server_key: bytes, secret: bytes, address: str) -> bytes:
    """The secret encrypted under the server key and bound to ``address``
    (any case), with a fresh random nonce, for the store."""
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"a TOTP secret has {SECRET_BYTES} bytes, not {len(secret)}")
    nonce = secrets.token_bytes(_NONCE_BYTES)
    sealed = _box(server_key).encrypt(nonce, secret, _associated(address))
    return bytes([_SEALED_VERSION]) + nonce + sealed


def unseal(server_key: bytes, sealed: bytes, address: str) -> bytes:
    """The secret back; raises SealError if it was sealed under another key
    or for another address, or is damaged."""
    if len(sealed) < 1 + _NONCE_BYTES + _TAG_BYTES or sealed[0] != _SEALED_VERSION:
        raise SealError("the sealed TOTP secret is damaged or of an unknown format")
    nonce, body = sealed[1 : 1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES :]
    try:
        return _box(server_key).decrypt(nonce, body, _associated(address))
    except InvalidTag:
        raise SealError(
            "the sealed TOTP secret does not open with this server key for this account"
        ) from None
