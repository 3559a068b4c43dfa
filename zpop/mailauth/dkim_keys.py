"""DKIM keys of the hosted domains (DESIGN §1 "Mail authentication and spam
filtering", ``zpop domain dkim``): made, rotated, kept and published.

Each hosted domain signs with two keys at a time, an RSA-2048 one
(rsa-sha256, RFC 6376) and an Ed25519 one (ed25519-sha256, RFC 8463), each
named by its own *selector*. The choices:

- A selector is ``z`` + the UTC time it was made (``20261202t074028``) +
  ``r`` or ``e`` for the algorithm: unique across rotations (a second
  rotation within the same second moves the stamp on), readable, and one
  DNS label.
- ``--rotate`` makes two new selectors and *retires* the current ones: a
  retired selector signs nothing more but stays published until every
  message signed with it has left the queue, which is at the latest
  ``retired + [outbound] lifetime``, so mail in the queue still verifies
  where it arrives. After that it is dropped from the records (and its key
  deleted at the next rotation).
- Where keys live is a ``KeyStore``: ``FileKeyStore`` keeps them in the
  data directory (``DATA/dkim/DOMAIN/SELECTOR.pem``, 0600, directories
  0700, and one state file ``DATA/dkim/selectors.json``, written last and
  atomically, so a reader sees the old keys or the new ones whole);
  ``MemoryKeyStore`` serves tests and any store-backed keeping to come.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import fcntl
import json
import os
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, replace
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from zpop.accounts import Clock, service
from zpop.accounts.domains import require_hosted
from zpop.files import write_atomically
from zpop.store import IStore

RSA = "rsa-sha256"
ED25519 = "ed25519-sha256"
#: Each domain signs with one key of each, in this order.
ALGORITHMS = (RSA, ED25519)
#: The letter a selector ends with, per algorithm.
SUFFIX = {RSA: "r", ED25519: "e"}
#: The DNS record's ``k=`` tag, per algorithm.
KEY_TYPE = {RSA: "rsa", ED25519: "ed25519"}
RSA_BITS = 2048

STATE_NAME = "selectors.json"
DKIM_DIR = "dkim"


class DkimKeyError(Exception):
    """Keys that cannot be read or written; ``str()`` says which and why."""


@dataclass(frozen=True)
class Selector:
    """One key of a domain, as the state file records it."""

    name: str
    algorithm: str
    created: float
    #: When a rotation replaced it; None while it signs.
    retired: float | None = None

    def published(self, now: float, lifetime: float) -> bool:
        """Whether its record must still be in DNS: it signs, or mail it
        signed may still be in the queue."""
        return self.retired is None or now < self.retired + lifetime


def selector_name(algorithm: str, now: float, taken: set[str]) -> str:
    """A new selector for ``algorithm`` made at ``now``, not in ``taken``."""
    stamp = int(now)
    while True:
        when = datetime.datetime.fromtimestamp(stamp, datetime.UTC)
        name = f"z{when:%Y%m%dt%H%M%S}{SUFFIX[algorithm]}"
        if name not in taken:
            return name
        stamp += 1


def new_private_key(algorithm: str) -> bytes:
    """A new private key in PEM: RSA as PKCS#1 (what dkimpy reads), Ed25519
    as PKCS#8."""
    if algorithm == RSA:
        key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    if algorithm == ED25519:
        return ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    raise ValueError(f"unknown DKIM algorithm {algorithm!r}")


def signing_key(algorithm: str, pem: bytes) -> bytes:
    """The private key as dkimpy's ``sign`` takes it: the PEM for RSA, the
    base64 of the 32-byte seed for Ed25519."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except ValueError as e:
        raise DkimKeyError(f"unreadable {algorithm} key: {e}") from None
    if algorithm == RSA:
        if not isinstance(key, rsa.RSAPrivateKey):
            raise DkimKeyError("the key file does not hold an RSA key")
        return pem
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise DkimKeyError("the key file does not hold an Ed25519 key")
    raw = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return base64.b64encode(raw)


def txt_value(algorithm: str, pem: bytes) -> str:
    """The TXT record of the key (RFC 6376 §3.6.1, RFC 8463 §4.2): ``p=`` is
    the SubjectPublicKeyInfo for RSA, the raw 32 bytes for Ed25519."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except ValueError as e:
        raise DkimKeyError(f"unreadable {algorithm} key: {e}") from None
    public = key.public_key()
    if algorithm == RSA:
        data = public.public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
    else:
        data = public.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    p = base64.b64encode(data).decode("ascii")
    return f"v=DKIM1; k={KEY_TYPE[algorithm]}; p={p}"


class KeyStore(Protocol):
    """Where the selectors and private keys of every domain are kept."""

    def state(self) -> dict[str, tuple[Selector, ...]]:
        """Every domain's selectors, oldest first."""

    def private_key(self, domain: str, selector: str) -> bytes:
        """The PEM of a selector's key; raises DkimKeyError."""

    def save(
        self,
        domain: str,
        selectors: tuple[Selector, ...],
        new_keys: dict[str, bytes],
        dropped: tuple[str, ...] = (),
    ) -> None:
        """Store ``new_keys`` (selector -> PEM), then make ``selectors``
        the domain's state, then delete the keys of ``dropped``."""

    def version(self) -> Hashable:
        """A cheap token that changes whenever ``save`` changed anything."""

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """Hold off other writers for a read-modify-write."""


class MemoryKeyStore:
    """A KeyStore in memory."""

    def __init__(self) -> None:
        self._state: dict[str, tuple[Selector, ...]] = {}
        self._keys: dict[tuple[str, str], bytes] = {}
        self._version = 0

    def state(self) -> dict[str, tuple[Selector, ...]]:
        return dict(self._state)

    def private_key(self, domain: str, selector: str) -> bytes:
        try:
            return self._keys[(domain, selector)]
        except KeyError:
            raise DkimKeyError(f"no key for selector {selector} of {domain}") from None

    def save(
        self,
        domain: str,
        selectors: tuple[Selector, ...],
        new_keys: dict[str, bytes],
        dropped: tuple[str, ...] = (),
    ) -> None:
        for name, pem in new_keys.items():
            self._keys[(domain, name)] = pem
        self._state[domain] = selectors
        for name in dropped:
            self._keys.pop((domain, name), None)
        self._version += 1

    def version(self) -> Hashable:
        return self._version

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        yield


class FileKeyStore:
    """A KeyStore in the data directory (``DATA/dkim``)."""

    def __init__(self, data_dir: str) -> None:
        self.directory = os.path.join(data_dir, DKIM_DIR)
        self._state_path = os.path.join(self.directory, STATE_NAME)

    def _key_path(self, domain: str, selector: str) -> str:
        return os.path.join(self.directory, domain, f"{selector}.pem")

    def state(self) -> dict[str, tuple[Selector, ...]]:
        try:
            with open(self._state_path, "rb") as f:
                found = json.loads(f.read())
            return {
                domain: tuple(Selector(**s) for s in selectors)
                for domain, selectors in found["domains"].items()
            }
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise DkimKeyError(f"cannot read {self._state_path}: {e.strerror}")
        except (ValueError, KeyError, TypeError) as e:
            raise DkimKeyError(f"{self._state_path} is damaged: {e}") from None

    def private_key(self, domain: str, selector: str) -> bytes:
        path = self._key_path(domain, selector)
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise DkimKeyError(f"cannot read DKIM key {path}: {e.strerror}") from None

    def save(
        self,
        domain: str,
        selectors: tuple[Selector, ...],
        new_keys: dict[str, bytes],
        dropped: tuple[str, ...] = (),
    ) -> None:
        try:
            os.makedirs(os.path.join(self.directory, domain), mode=0o700, exist_ok=True)
            for name, pem in new_keys.items():
                write_atomically(self._key_path(domain, name), pem, 0o600)
            state = self.state()
            state[domain] = selectors
            text = json.dumps(
                {
                    "version": 1,
                    "domains": {
                        d: [s.__dict__ for s in found]
                        for d, found in sorted(state.items())
                    },
                },
                indent=1,
            )
            write_atomically(self._state_path, text.encode() + b"\n", 0o600)
            for name in dropped:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._key_path(domain, name))
        except OSError as e:
            raise DkimKeyError(
                f"cannot write DKIM keys in {self.directory}: {e.strerror}"
            ) from None

    def version(self) -> Hashable:
        try:
            st = os.stat(self._state_path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            fd = os.open(
                os.path.join(self.directory, ".lock"), os.O_CREAT | os.O_RDWR, 0o600
            )
        except OSError as e:
            raise DkimKeyError(f"cannot lock {self.directory}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


@dataclass(frozen=True)
class PublishedKey:
    """One selector whose TXT record belongs in DNS."""

    selector: Selector
    #: ``SELECTOR._domainkey.DOMAIN`` (relative: no trailing dot).
    name: str
    #: The TXT record's text (before any splitting into strings).
    value: str


@dataclass(frozen=True)
class DkimResult:
    """What ``zpop domain dkim`` did, and the records to publish."""

    domain: str
    #: The selectors made now (none when the keys existed already).
    made: tuple[Selector, ...]
    #: The selectors retired now (by ``--rotate``).
    retired: tuple[Selector, ...]
    published: tuple[PublishedKey, ...]


class DkimKeys:
    """The rules over a KeyStore: making, rotating, publishing keys.

    ``lifetime`` is ``[outbound] lifetime``: no message is queued longer,
    so a retired selector is published that long after its retirement.
    """

    def __init__(
        self,
        keys: KeyStore,
        clock: Clock,
        lifetime: float,
        generate: Callable[[str], bytes] = new_private_key,
    ) -> None:
        self.keys = keys
        self._clock = clock
        self._lifetime = lifetime
        #: Makes a private key (PEM) for an algorithm; tests pass made ones.
        self._generate = generate

    def selectors(self, domain: str) -> tuple[Selector, ...]:
        return self.keys.state().get(domain, ())

    def published(self, domain: str) -> tuple[PublishedKey, ...]:
        """The records of the selectors that sign or may still be needed."""
        now = self._clock.seconds()
        return tuple(
            PublishedKey(
                s,
                f"{s.name}._domainkey.{domain}",
                txt_value(s.algorithm, self.keys.private_key(domain, s.name)),
            )
            for s in self.selectors(domain)
            if s.published(now, self._lifetime)
        )

    def make(self, domain: str, rotate: bool = False) -> DkimResult:
        """Give ``domain`` keys if it has none; with ``rotate``, new keys
        in any case, the current ones retired (and keys retired long
        enough ago to be unpublished dropped)."""
        with self.keys.locked():
            now = self._clock.seconds()
            old = self.selectors(domain)
            current = tuple(s for s in old if s.retired is None)
            if current and not rotate:
                return DkimResult(domain, (), (), self.published(domain))
            taken = {s.name for s in old}
            made = tuple(
                Selector(selector_name(a, now, taken), a, now) for a in ALGORITHMS
            )
            retired = tuple(replace(s, retired=now) for s in current)
            kept = tuple(s for s in old if s.retired is not None)
            dropped = tuple(
                s.name for s in kept if not s.published(now, self._lifetime)
            )
            state = (
                *(s for s in kept if s.name not in dropped),
                *retired,
                *made,
            )
            new_keys = {s.name: self._generate(s.algorithm) for s in made}
            self.keys.save(domain, state, new_keys, dropped)
            return DkimResult(domain, made, retired, self.published(domain))


@service
async def domain_dkim(
    store: IStore, keys: DkimKeys, domain: str, rotate: bool = False
) -> DkimResult:
    """``zpop domain dkim DOMAIN [--rotate]``: keys for a hosted domain
    (NotHosted otherwise), and the records to publish."""
    found = await require_hosted(store, domain)
    return keys.make(found.name, rotate)
