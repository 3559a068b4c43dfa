"""Password material: bcrypt for people's passwords, keyed hashes for
server-generated app-specific passwords, and the server key behind them.

Kept apart from the checker (``zpop.accounts.credentials``) because the ``zpop`` command
needs the same functions to set passwords and create app passwords.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets as _random

import bcrypt

from zpop.files import write_atomically

KEY_NAME = "server.key"

#: No 0/O, 1/l/I: an app password is read off a screen and typed on a phone.
APP_PASSWORD_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
#: 16 characters of 32 symbols: 80 bits.
APP_PASSWORD_LENGTH = 16

# bcrypt looks at the first 72 bytes only; longer secrets are pre-hashed so
# two passwords sharing a 72-byte prefix are not equal.
_BCRYPT_MAX = 72


def load_or_create_key(data_dir: str) -> bytes:
    """The server's HMAC key, made once (mode 0600) in the data directory."""
    path = os.path.join(data_dir, KEY_NAME)
    try:
        with open(path, "rb") as f:
            key = f.read()
    except FileNotFoundError:
        key = _random.token_bytes(32)
        if not write_atomically(path, key, 0o600, replace=False):
            # Another process made it first: use theirs.
            return load_or_create_key(data_dir)
        return key
    if len(key) < 32:
        raise ValueError(f"{path} is damaged (too short): restore it from backup")
    return key


def _bcrypt_input(password: str) -> bytes:
    raw = password.encode("utf-8")
    if len(raw) > _BCRYPT_MAX:
        raw = hashlib.sha256(raw).hexdigest().encode("ascii")
    return raw


def hash_password(password: str, cost: int) -> bytes:
    """A bcrypt hash of a primary password; blocking (run it in a thread)."""
    return bcrypt.hashpw(_bcrypt_input(password), bcrypt.gensalt(rounds=cost))


def check_password(password: str, hashed: bytes) -> bool:
    """Whether ``password`` matches a bcrypt hash; blocking."""
    try:
        return bcrypt.checkpw(_bcrypt_input(password), hashed)
    except ValueError:
        return False


def generate_secret(length: int) -> str:
    """``length`` random characters of the unambiguous alphabet, grouped in
    fours for reading: every secret the server makes and shows once (app
    passwords, recovery codes; CONVENTIONS 19)."""
    chars = "".join(_random.choice(APP_PASSWORD_ALPHABET) for _ in range(length))
    return " ".join(chars[i : i + 4] for i in range(0, length, 4))


def normalize_secret(text: str, length: int) -> str | None:
    """The canonical form of a typed ``generate_secret`` secret, or None if
    it can't be one. Spaces and dashes are ignored and case folded, as
    people type them."""
    cleaned = "".join(c for c in text.lower() if c not in " -")
    if len(cleaned) != length:
        return None
    if any(c not in APP_PASSWORD_ALPHABET for c in cleaned):
        return None
    return cleaned


def keyed_digest(key: bytes, kind: str, account_id: int, canonical: str) -> bytes:
    """The keyed hash (HMAC-SHA256 under the server key) a secret of the
    account is stored as. ``kind`` keeps one kind of secret from passing
    for another; app passwords, whose digests predate kinds, have ""."""
    prefix = f"{kind}:" if kind else ""
    message = f"{prefix}{account_id}:{canonical}".encode()
    return hmac.new(key, message, hashlib.sha256).digest()


def generate_app_password() -> str:
    """A new app-specific password, grouped in fours for reading."""
    return generate_secret(APP_PASSWORD_LENGTH)


def normalize_app_password(text: str) -> str | None:
    """The canonical form of a typed app password, or None if it can't be one.

    Spaces and dashes are ignored and case folded, as people type them.
    """
    return normalize_secret(text, APP_PASSWORD_LENGTH)


def app_password_digest(key: bytes, account_id: int, password: str) -> bytes | None:
    """The keyed hash an app password is stored as, or None if malformed."""
    canonical = normalize_app_password(password)
    if canonical is None:
        return None
    return keyed_digest(key, "", account_id, canonical)
