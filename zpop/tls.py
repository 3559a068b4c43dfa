"""One TLS policy for every zpop listener.

``ServerTLS`` turns the ``[tls]`` sections of the config into pyOpenSSL
contexts: TLS 1.2 minimum, Mozilla's "intermediate" cipher suites, no
compression or renegotiation, per-host certificates chosen by SNI, and a
self-signed certificate in the data directory when no certificate is
configured. The same object works for implicit TLS::

    TLSMemoryBIOFactory(server_tls, False, factory)      # or server_tls.wrap()

and for STARTTLS/STLS::

    transport.startTLS(server_tls)

``server_name`` and ``tls_version`` tell a protocol what the client asked
for and got, on either kind of connection.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from twisted.internet.interfaces import (
    IOpenSSLContextFactory,
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IReactorTime,
)
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from zpop.config import TLSCertificate, TLSConfig
from zpop.files import write_atomically

log = Logger()

#: Mozilla "intermediate" TLS 1.2 suites (server-side config generator,
#: version 5.7), minus the optional DHE ones: zpop ships no DH parameters.
#: Every suite is ECDHE (forward secret) with an AEAD cipher: no static RSA
#: key exchange, no CBC, no SHA-1 MAC, no 3DES or RC4. TLS 1.3 suites are
#: OpenSSL's defaults, which are exactly Mozilla's.
CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
)

TLS_DIR = "tls"
SELF_SIGNED_NAME = "selfsigned.pem"

#: Self-signed certificates live 825 days, the longest Apple's clients accept
#: for a TLS server certificate, and are renewed 30 days before they expire.
SELF_SIGNED_LIFETIME = datetime.timedelta(days=825)
SELF_SIGNED_RENEW_BEFORE = datetime.timedelta(days=30)


class TLSConfigError(Exception):
    """A certificate or key cannot be used; the text names the file."""


def _check_readable(path: str, what: str) -> None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        raise TLSConfigError(f"cannot read TLS {what} {path}: {e.strerror}")


def _make_context(cert: TLSCertificate) -> SSL.Context:
    """A server context with zpop's policy, holding ``cert``'s chain and, if
    configured, its alternative chain of the other key type.

    OpenSSL keeps one certificate per key type in a context and, per
    handshake, serves the one the client's signature algorithms allow, so
    an ECDSA chain beside an RSA one speeds up modern clients (an ECDSA
    signature costs the server about half an RSA-2048 one) without
    dropping the clients that only verify RSA.
    """
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    # No OP_CIPHER_SERVER_PREFERENCE: the intermediate profile lets the client
    # pick among suites that are all strong (phones prefer ChaCha20).
    ctx.set_options(
        SSL.OP_NO_SSLv2
        | SSL.OP_NO_SSLv3
        | SSL.OP_NO_COMPRESSION
        | SSL.OP_NO_RENEGOTIATION
    )
    ctx.set_cipher_list(CIPHERS.encode("ascii"))
    ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
    # Session resumption (IDs and tickets) needs a session id context.
    ctx.set_session_id(b"zpop")
    kind = _use_pair(ctx, cert.certificate, cert.key)
    if cert.alt_certificate is not None:
        alt_kind = _use_pair(
            ctx, cert.alt_certificate, cert.alt_key or cert.alt_certificate
        )
        if alt_kind == kind:
            raise TLSConfigError(
                f"TLS certificates {cert.certificate} and {cert.alt_certificate}"
                f" both hold {kind} keys: the alternative certificate must be of"
                " the other key type (RSA beside ECDSA)"
            )
    return ctx


def _key_kind(private_key: Any) -> str:
    if isinstance(private_key, rsa.RSAPrivateKey):
        return "RSA"
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return "ECDSA"
    return type(private_key).__name__


def _use_pair(ctx: SSL.Context, chain: str, key: str) -> str:
    """Load one certificate chain and its key into ``ctx``; the key's kind."""
    _check_readable(chain, "certificate")
    _check_readable(key, "key")
    try:
        ctx.use_certificate_chain_file(chain)
    except SSL.Error as e:
        raise TLSConfigError(
            f"TLS certificate {chain} holds no usable PEM certificate: {e}"
        )
    try:
        with open(key, "rb") as f:
            private_key: Any = serialization.load_pem_private_key(
                f.read(), password=None
            )
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise TLSConfigError(
            f"TLS key {key} holds no usable unencrypted PEM private key: {e}"
        )
    try:
        ctx.use_privatekey(private_key)  # pyOpenSSL >= 24.3
        ctx.check_privatekey()
    except SSL.Error:
        raise TLSConfigError(f"TLS key {key} does not match the certificate in {chain}")
    return _key_kind(private_key)


def _source(cert: TLSCertificate) -> str:
    if cert.alt_certificate is None:
        return f"certificate from {cert.certificate}"
    return f"certificates from {cert.certificate} and {cert.alt_certificate}"


def _san_names(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    """The DNS names (lower-case) and IP addresses a certificate names."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return set(), set()
    dns = {n.lower() for n in san.value.get_values_for_type(x509.DNSName)}
    ips = {str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)}
    return dns, ips


def self_signed_names(host_names: Iterable[str]) -> tuple[list[str], list[str]]:
    """The DNS names and IP addresses the self-signed certificate must name."""
    dns = list(dict.fromkeys([*host_names, "localhost"]))
    return dns, ["127.0.0.1", "::1"]


def generate_self_signed(
    dns_names: Iterable[str],
    ip_addresses: Iterable[str],
    now: datetime.datetime | None = None,
    key_type: str = "rsa",
) -> bytes:
    """A PEM certificate followed by its PEM private key.

    ``key_type`` is ``"rsa"`` (2048 bits) or ``"ecdsa"`` (P-256). zpop's own
    self-signed certificate is RSA: every TLS 1.2 client can use an RSA
    certificate (ECDHE-RSA suites), while some still deployed mail
    clients and libraries (older Windows Schannel builds behind Outlook, old
    Java and embedded fetchmail/OpenSSL builds) cannot verify ECDSA ones, and
    a self-signed certificate is a development and first-start convenience
    where reaching every client matters more than handshake speed.
    """
    dns = list(dns_names)
    now = now or datetime.datetime.now(datetime.UTC)
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if key_type == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif key_type == "ecdsa":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        raise ValueError(f"key_type must be rsa or ecdsa, not {key_type!r}")
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, dns[0]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "zpop self-signed"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    alt: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
    alt += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + SELF_SIGNED_LIFETIME)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                # RSA key exchange (TLS 1.2 clients may check it); EC keys
                # cannot encipher.
                key_encipherment=key_type == "rsa",
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _self_signed_problem(
    path: str, dns: list[str], ips: list[str], now: datetime.datetime
) -> str | None:
    """Why the existing self-signed file cannot be reused, or None."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        cert = x509.load_pem_x509_certificate(data)
        serialization.load_pem_private_key(data, password=None)
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError, TypeError) as e:
        return f"unreadable ({e})"
    have_dns, have_ips = _san_names(cert)
    missing = [n for n in dns if n not in have_dns]
    missing += [a for a in ips if a not in have_ips]
    if missing:
        return "does not cover " + ", ".join(missing)
    if cert.not_valid_after_utc - SELF_SIGNED_RENEW_BEFORE < now:
        return f"expires {cert.not_valid_after_utc:%Y-%m-%d}"
    return None


def ensure_self_signed(
    host_names: Iterable[str], data_dir: str, now: datetime.datetime | None = None
) -> tuple[str, bool]:
    """The path of DATA/tls/selfsigned.pem, made if needed; and whether made.

    The file (certificate, then key; mode 0600) is reused while it names
    every configured host name, ``localhost``, 127.0.0.1 and ::1, and has
    more than 30 days to live; otherwise it is regenerated and the log says
    why.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    directory = os.path.join(data_dir, TLS_DIR)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, SELF_SIGNED_NAME)
    dns, ips = self_signed_names(host_names)
    problem = _self_signed_problem(path, dns, ips, now)
    if problem is None:
        return path, False
    if problem != "missing":
        log.info(
            "regenerating self-signed certificate {path}: {problem}",
            path=path,
            problem=problem,
        )
    write_atomically(path, generate_self_signed(dns, ips, now))
    return path, True


@implementer(IOpenSSLServerConnectionCreator, IOpenSSLContextFactory)
class ServerTLS:
    """zpop's TLS policy, ready to wrap listeners or start TLS on a stream.

    Pass the object itself to ``TLSMemoryBIOFactory(server_tls, False, f)``
    (implicit TLS) or to ``transport.startTLS(server_tls)`` (STLS/STARTTLS).

    ``source`` says where the default certificate came from, for the log;
    ``host_sources`` the same for each SNI host.
    """

    def __init__(
        self,
        default: SSL.Context,
        by_host: Mapping[str, SSL.Context],
        source: str,
        host_sources: Mapping[str, str] | None = None,
    ) -> None:
        self.source = source
        self.host_sources = dict(host_sources or {})
        self._by_host = {h.lower(): c for h, c in by_host.items()}
        self._default = default
        default.set_tlsext_servername_callback(self._servername)

    @classmethod
    def from_config(
        cls, config: TLSConfig, host_names: Iterable[str], data_dir: str
    ) -> ServerTLS:
        """Build from ``config``; raises ``TLSConfigError`` naming a bad file.

        Without a ``[tls]`` certificate, a self-signed one for ``host_names``
        in DATA/tls is made or reused.
        """
        by_host = {host: _make_context(c) for host, c in config.by_host.items()}
        host_sources = {host: _source(c) for host, c in config.by_host.items()}
        if config.default is not None:
            default = _make_context(config.default)
            source = _source(config.default)
        else:
            path, made = ensure_self_signed(host_names, data_dir)
            default = _make_context(TLSCertificate(path, path))
            verb = "generated in" if made else "reused from"
            source = f"self-signed certificate {verb} {path}"
        return cls(default, by_host, source, host_sources)

    @classmethod
    def from_files(
        cls, default: TLSCertificate, by_host: Mapping[str, TLSCertificate]
    ) -> ServerTLS:
        """Build from certificate files only (tests, tools)."""
        return cls(
            _make_context(default),
            {h: _make_context(c) for h, c in by_host.items()},
            _source(default),
            {h: _source(c) for h, c in by_host.items()},
        )

    def _servername(self, connection: SSL.Connection) -> None:
        name = connection.get_servername()
        if not name:
            return
        ctx = self._by_host.get(name.decode("ascii", "replace").lower())
        if ctx is not None:
            connection.set_context(ctx)

    # IOpenSSLContextFactory
    def getContext(self) -> SSL.Context:
        return self._default

    # IOpenSSLServerConnectionCreator
    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:  # noqa: N802, N803
        return SSL.Connection(self._default, None)

    def wrap(
        self, factory: IProtocolFactory, clock: IReactorTime | None = None
    ) -> TLSMemoryBIOFactory:
        """``factory`` behind implicit TLS (POP3S, SMTPS)."""
        return TLSMemoryBIOFactory(self, False, factory, clock)


def _connection(transport: Any) -> SSL.Connection | None:
    """The pyOpenSSL connection under ``transport``, if it speaks TLS.

    Both an implicit-TLS transport (``TLSMemoryBIOProtocol``) and a TCP
    transport after ``startTLS`` return it from ``getHandle()``; a plain TCP
    transport returns its socket there.
    """
    get_handle = getattr(transport, "getHandle", None)
    if get_handle is None:
        return None
    handle = get_handle()
    return handle if isinstance(handle, SSL.Connection) else None


def server_name(transport: Any) -> str | None:
    """The SNI host name the client sent (lower-case), or None.

    Known once the client's hello has been read, so at any command.
    """
    conn = _connection(transport)
    if conn is None:
        return None
    name = conn.get_servername()
    if not name:
        return None
    return name.decode("ascii", "replace").lower()


def tls_version(transport: Any) -> str | None:
    """``"TLSv1.3"``, ``"TLSv1.2"``...; None without TLS or before the handshake."""
    conn = _connection(transport)
    if conn is None or conn.get_cipher_name() is None:
        return None
    return conn.get_protocol_version_name()
