"""TLS for the outbound relay's client side (RFC 3207, RFC 7435).

To MX hosts and routes zpop is opportunistic by default (STARTTLS when
offered, certificate not checked: an unauthenticated but encrypted channel
beats plaintext, and MX certificates cannot be checked without DANE or
MTA-STS); ``require_tls`` makes STARTTLS mandatory. A smart host is one
known server, so its certificate is verified by default (``smarthost_tls =
verify``). Always TLS 1.2 or newer.

Which of these a hop gets is the router's decision (``Hop.tls``); when a
failed opportunistic handshake is retried in plaintext is the client's
(``zpop.outbound.client``). This module makes the TLS connection creators.
"""

from __future__ import annotations

import re
import socket
from typing import Any

from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import (
    Certificate,
    TLSVersion,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from zope.interface import implementer

from zpop.config import TLSLevel


def client_tls(host: str, mode: str, ca: str | None) -> Any:
    """The connection creator for STARTTLS to ``host``: with ``mode``
    ``verify`` its certificate is checked against the CA file ``ca`` (else
    the platform's trust), with any other mode it is not checked."""
    if mode != TLSLevel.VERIFY:
        return OpportunisticTLS(host)
    trust = load_trust(ca) if ca else platformTrust()
    return optionsForClientTLS(
        host,
        trustRoot=trust,
        extraCertificateOptions={"raiseMinimumTo": TLSVersion.TLSv1_2},
    )


@implementer(IOpenSSLClientConnectionCreator)
class OpportunisticTLS:
    """Client TLS without certificate checks (RFC 7435), TLS 1.2+, with SNI."""

    def __init__(self, hostname: str) -> None:
        self._hostname = hostname
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION)
        ctx.set_verify(SSL.VERIFY_NONE, lambda *args: True)
        self._context = ctx

    def getContext(self) -> SSL.Context:  # noqa: N802 - IOpenSSLContextFactory
        return self._context

    def clientConnectionForTLS(self, tls_protocol: Any) -> SSL.Connection:  # noqa: N802
        connection = SSL.Connection(self._context, None)
        if not _is_ip(self._hostname):
            connection.set_tlsext_host_name(self._hostname.encode("idna"))
        connection.set_connect_state()
        return connection


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


def load_trust(path: str) -> Any:
    """The CA certificates in PEM file ``path`` as a Twisted trust root."""
    with open(path, encoding="ascii") as f:
        text = f.read()
    blocks = re.findall(
        r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", text, re.S
    )
    if not blocks:
        raise ValueError(f"no PEM certificate in {path}")
    return trustRootFromCertificates([Certificate.loadPEM(b) for b in blocks])
