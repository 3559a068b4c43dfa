"""Where the outbound relay sends a domain's mail: the next hop.

A ``[routes]`` entry for the domain wins, else the smart host
(``[outbound] smarthost``, with its credentials), else the domain's MX
records (RFC 5321 section 5.1: the A/AAAA record when there is no MX; a
null MX, RFC 7505, fails at once). Each ``Hop`` also says how to talk to
the server (its TLS policy, see ``zpop.outbound.tls``, and AUTH).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred

from zpop.config import OutboundConfig, TLSLevel
from zpop.outbound.client import DeliveryError

#: Most MX hosts tried per attempt (Postfix: smtp_mx_address_limit = 5).
MAX_HOPS = 5


@dataclass(frozen=True)
class Hop:
    """One server to try for a domain, and how to talk to it."""

    host: str
    port: int
    #: ``may`` (STARTTLS if offered), ``encrypt`` (required, unchecked),
    #: ``verify`` (required, certificate checked against ``host``), ``none``
    #: (plaintext: the retry after a failed opportunistic handshake).
    tls: str = TLSLevel.MAY
    #: (user, password) for AUTH, only ever sent over TLS.
    auth: tuple[str, str] | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class Router:
    """Where mail for a domain goes: [routes], the smart host, or MX."""

    mx_port = 25

    def __init__(self, config: OutboundConfig, resolver: Any = None) -> None:
        self._config = config
        self._resolver = resolver
        self._auth: tuple[str, str] | None = None
        if config.smarthost and config.smarthost_user:
            password = ""
            if config.smarthost_password_file:
                with open(config.smarthost_password_file, "rb") as f:
                    password = f.readline().rstrip(b"\r\n").decode("utf-8")
            self._auth = (config.smarthost_user, password)

    @property
    def _mx_tls(self) -> str:
        return TLSLevel.ENCRYPT if self._config.require_tls else TLSLevel.MAY

    def route(self, domain: str) -> Deferred:
        """Fires with the Hops to try, in order; fails DeliveryError."""
        pinned = self._config.routes.get(domain)
        if pinned is not None:
            return defer.succeed([Hop(pinned[0], pinned[1], self._mx_tls)])
        smarthost = self._config.smarthost
        if smarthost is not None:
            return defer.succeed(
                [
                    Hop(
                        smarthost[0],
                        smarthost[1],
                        self._config.smarthost_tls,
                        self._auth,
                    )
                ]
            )
        return Deferred.fromCoroutine(self._mx(domain))

    async def _mx(self, domain: str) -> list[Hop]:
        from twisted.names import dns, error

        if self._resolver is None:
            from twisted.names import client

            self._resolver = client.createResolver()
        try:
            answers, _, _ = await self._resolver.lookupMailExchange(domain)
        except error.DNSNameError:
            raise DeliveryError(
                f"domain {domain} does not exist (DNS)", True, "5.1.2"
            ) from None
        except Exception as e:  # DNS server failures and timeouts
            raise DeliveryError(
                f"DNS lookup of MX for {domain} failed: {e.__class__.__name__}",
                status="4.4.3",
            ) from None
        records = [
            (a.payload.preference, str(a.payload.name).rstrip(".").lower())
            for a in answers
            if a.type == dns.MX
        ]
        if not records:
            # RFC 5321 5.1: no MX, the domain itself is the host (A/AAAA).
            return [Hop(domain, self.mx_port, self._mx_tls)]
        if any(name == "" for _, name in records):
            # RFC 7505 null MX: the domain accepts no mail.
            raise DeliveryError(
                f"domain {domain} accepts no mail (null MX)", True, "5.1.10"
            )
        random.shuffle(records)  # RFC 5321 5.1: spread equal preferences
        records.sort(key=lambda r: r[0])
        hosts = list(dict.fromkeys(name for _, name in records))[:MAX_HOPS]
        return [Hop(name, self.mx_port, self._mx_tls) for name in hosts]
