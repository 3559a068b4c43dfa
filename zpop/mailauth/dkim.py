"""DKIM signing of the mail that leaves (DESIGN §1 "Mail authentication and
spam filtering"): two DKIM-Signature fields, rsa-sha256 and ed25519-sha256
(RFC 6376, RFC 8463), on every message from a hosted domain, made with
dkimpy over the exact bytes that are queued.

Every path that queues mail (submission, the server's own mail, DSNs) calls
one ``Signer``, once, just before the message goes into the queue; the
signatures are prepended above everything else, so what leaves is what was
signed. The signing domain is the ``From:`` domain or, failing that, the
nearest parent domain with keys (a DSN from ``MAILER-DAEMON@mail.example.com``
is signed ``d=example.com``, which DMARC's relaxed alignment accepts).

Keys come from a ``zpop.mailauth.dkim_keys.KeyStore``, loaded once and
again whenever its version changes (``zpop domain dkim`` run while the
server runs), looked at at most every ``RELOAD_INTERVAL`` seconds. Signing
and loading run on a thread pool, off the reactor thread; the RSA
arithmetic is OpenSSL's (see ``openssl_rsa_sign``).
"""

from __future__ import annotations

import email.errors
import email.header
import email.utils
import functools
import re
import threading
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Protocol

import dkim
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from zpop.mailauth.dkim_keys import DkimKeyError, KeyStore, Selector, signing_key
from zpop.threads import Runner

log = Logger()

#: Seconds between looks at the key store's version.
RELOAD_INTERVAL = 2.0

#: The fields signed when present (RFC 6376 §5.4.1's list, trimmed to what
#: mail carries): each as many times as it occurs; From once more, so a
#: second From: added on the way breaks the signature.
SIGNED_FIELDS = (
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
)
OVERSIGNED = ("from",)

_FIELD_NAME = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]*:", re.M)
_FROM = re.compile(rb"(?:^|\r\n)from[ \t]*:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", re.I)


@functools.lru_cache(maxsize=1024)
def _openssl_key(numbers: tuple[int, ...]) -> rsa.RSAPrivateKey:
    p, q, d, dmp1, dmq1, iqmp, e, n = numbers
    public = rsa.RSAPublicNumbers(e, n)
    private = rsa.RSAPrivateNumbers(p, q, d, dmp1, dmq1, iqmp, public)
    return private.private_key(unsafe_skip_rsa_key_validation=True)


def openssl_rsa_sign(hashed: Any, key: dict[str, int]) -> bytes:
    """dkimpy's ``RSASSA_PKCS1_v1_5_sign`` done by OpenSSL (cryptography):
    the same PKCS#1 v1.5 bytes (the scheme is deterministic)."""
    if hashed.name.lower() != "sha256":
        return bytes(_pure_python_rsa_sign(hashed, key))
    private = _openssl_key(
        (
            key["prime1"],
            key["prime2"],
            key["privateExponent"],
            key["exponent1"],
            key["exponent2"],
            key["coefficient"],
            key["publicExponent"],
            key["modulus"],
        )
    )
    digest = hashed.digest()
    return private.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))


# dkimpy computes the RSA signature with its own pure-Python pow: 6.6 ms of
# 2048-bit arithmetic holding the GIL (so the reactor thread too), which
# halved submission throughput. OpenSSL makes the same bytes in 0.3 ms.
# dkimpy offers no hook, so its module-level function is replaced; a test
# checks that both give identical signatures.
_pure_python_rsa_sign = dkim.RSASSA_PKCS1_v1_5_sign
dkim.RSASSA_PKCS1_v1_5_sign = openssl_rsa_sign


class Signer(Protocol):
    """What the queueing paths ask of DKIM."""

    def sign(self, body: bytes) -> Deferred[bytes]:
        """Fires with ``body`` as it is to be queued: signed when its
        ``From:`` domain has keys, else as it was. Never fails."""


@dataclass(frozen=True)
class _Key:
    selector: bytes
    algorithm: bytes
    #: What dkimpy's ``sign`` takes as ``privkey``.
    private: bytes


def _header(body: bytes) -> bytes:
    end = body.find(b"\r\n\r\n")
    return body if end < 0 else body[: end + 2]


def from_domain(body: bytes) -> str | None:
    """The domain of the first ``From:`` address, lower case; None if none."""
    match = _FROM.search(_header(body))
    if match is None:
        return None
    text = re.sub(rb"\r\n(?=[ \t])", b"", match.group(1)).decode("utf-8", "replace")
    try:
        text = str(email.header.make_header(email.header.decode_header(text)))
    except (email.errors.HeaderParseError, LookupError, UnicodeDecodeError):
        pass
    for _, address in email.utils.getaddresses([text]):
        if "@" in address:
            return address.rpartition("@")[2].strip().rstrip(".").lower() or None
    return None


def signed_fields(body: bytes) -> list[bytes]:
    """The ``h=`` list for ``body``: SIGNED_FIELDS that occur, as often as
    they occur, then OVERSIGNED again."""
    names = [m.group(1).lower() for m in _FIELD_NAME.finditer(_header(body))]
    found = [
        n for n in (f.encode() for f in SIGNED_FIELDS) for _ in range(names.count(n))
    ]
    return found + [n.encode() for n in OVERSIGNED if n.encode() in found]


class DkimSigner:
    """The Signer of the server: keys from a KeyStore, work on ``runner``.

    A message that cannot be signed (a damaged key file, a message dkimpy
    cannot parse) is logged and queued unsigned rather than refused: SPF
    still passes for mail leaving this server (the published ``mx -all``),
    so DMARC still aligns, and a temporary refusal would stop every user of
    the domain from sending until an operator fixed the keys.
    """

    def __init__(
        self,
        keys: KeyStore,
        runner: Runner,
        clock: IReactorTime,
        reload_interval: float = RELOAD_INTERVAL,
    ) -> None:
        self._keys = keys
        self._runner = runner
        self._clock = clock
        self._interval = reload_interval
        self._lock = threading.Lock()
        self._loaded: dict[str, tuple[_Key, ...]] = {}
        self._version: Hashable = object()
        self._checked: float | None = None

    def sign(self, body: bytes) -> Deferred[bytes]:
        d = self._runner(self.sign_now, body)

        def unsigned(failure: Failure) -> bytes:
            log.failure("DKIM: signing failed, the message is queued unsigned", failure)
            return body

        d.addErrback(unsigned)
        return d

    def sign_now(self, body: bytes) -> bytes:
        """``body`` with its signatures prepended (synchronously; raises)."""
        domain = from_domain(body)
        if domain is None:
            return body
        found = self._keys_for(domain)
        if found is None:
            return body
        signing_domain, keys = found
        signer = dkim.DKIM(body, linesep=b"\r\n")
        fields = signed_fields(body)
        signatures = [
            signer.sign(
                key.selector,
                signing_domain.encode("ascii"),
                key.private,
                signature_algorithm=key.algorithm,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=fields,
            )
            for key in keys
        ]
        return b"".join(signatures) + body

    def _keys_for(self, domain: str) -> tuple[str, tuple[_Key, ...]] | None:
        """The signing domain and its keys: ``domain`` or its nearest
        parent with keys."""
        loaded = self._refresh()
        labels = domain.split(".")
        for i in range(len(labels) - 1):
            candidate = ".".join(labels[i:])
            keys = loaded.get(candidate)
            if keys:
                return candidate, keys
        return None

    def _refresh(self) -> dict[str, tuple[_Key, ...]]:
        """The keys, reloaded if the store changed since they were loaded."""
        now = self._clock.seconds()
        with self._lock:
            if self._checked is not None and now - self._checked < self._interval:
                return self._loaded
            self._checked = now
            version = self._keys.version()
            if version == self._version:
                return self._loaded
            try:
                state = self._keys.state()
            except DkimKeyError as e:
                log.error("DKIM: keys not reloaded: {error}", error=e)
                return self._loaded
            loaded: dict[str, tuple[_Key, ...]] = {}
            complete = True
            for domain, selectors in state.items():
                try:
                    loaded[domain] = self._load(domain, selectors)
                except DkimKeyError as e:
                    # Only this domain keeps what it had; look again later.
                    log.error(
                        "DKIM: keys of {domain} not loaded: {error}",
                        domain=domain,
                        error=e,
                    )
                    loaded[domain] = self._loaded.get(domain, ())
                    complete = False
            self._loaded = loaded
            if complete:
                self._version = version
            log.info("DKIM: keys loaded for {count} domains", count=len(loaded))
            return loaded

    def _load(self, domain: str, selectors: tuple[Selector, ...]) -> tuple[_Key, ...]:
        return tuple(
            _Key(
                s.name.encode(),
                s.algorithm.encode(),
                signing_key(s.algorithm, self._keys.private_key(domain, s.name)),
            )
            for s in selectors
            if s.retired is None
        )


class NoSigner:
    """A Signer that signs nothing: DKIM off (tests, tools)."""

    def sign(self, body: bytes) -> Deferred[bytes]:
        return defer.succeed(body)
