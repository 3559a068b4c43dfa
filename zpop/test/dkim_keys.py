"""DKIM keys for tests and the bench that sign as a sending domain would:
each private key in the form dkimpy's ``sign`` takes, with the TXT record
that publishes it (RFC 6376 §3.6.1, RFC 8463 §4.2)."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa


def rsa_key(bits: int = 2048) -> tuple[bytes, str]:
    """An RSA private key (PEM) and its ``k=rsa`` record."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}"


def ed25519_key() -> tuple[bytes, str]:
    """An Ed25519 private key (base64 of its 32 raw bytes, as dkimpy wants)
    and its ``k=ed25519`` record."""
    key = ed25519.Ed25519PrivateKey.generate()
    raw = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    record = f"v=DKIM1; k=ed25519; p={base64.b64encode(public).decode()}"
    return base64.b64encode(raw), record
