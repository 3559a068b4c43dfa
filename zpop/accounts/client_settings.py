"""What a mail client is told to use for a hosted domain: servers, public
ports and TLS, the same answer for ``zpop account show``, the client
settings page, the autoconfiguration documents and the DNS SRV records
(DESIGN §1 "Client autoconfiguration"), so no front end writes it twice.

The ports are the public ones (DESIGN §1: implicit TLS 995 and 993,
submission 465 and 587), whatever port a listener binds behind them.
"""

from __future__ import annotations

from dataclasses import dataclass

from zpop.accounts import service
from zpop.accounts.domains import require_hosted
from zpop.config import Config, HostsConfig
from zpop.store import IStore

POP3S_PORT = 995
IMAPS_PORT = 993
SMTPS_PORT = 465
SUBMISSION_PORT = 587

#: How a client reaches a port: TLS from the first byte, or STARTTLS.
IMPLICIT = "implicit"
STARTTLS = "starttls"


@dataclass(frozen=True)
class MailServer:
    """One server a client may be configured with."""

    #: ``pop3``, ``imap`` or ``smtp``.
    protocol: str
    host: str
    port: int
    #: IMPLICIT or STARTTLS.
    tls: str


@dataclass(frozen=True)
class ClientSettings:
    """A domain's servers, the preferred first in each list. The user name
    is always the full address (DESIGN §1), so it is not repeated here."""

    domain: str
    organization: bool
    incoming: tuple[MailServer, ...]
    outgoing: tuple[MailServer, ...]

    def server(self, protocol: str) -> MailServer | None:
        """The first server of ``protocol``, or None when it is not served."""
        for found in (*self.incoming, *self.outgoing):
            if found.protocol == protocol:
                return found
        return None


def imap_served(config: Config) -> bool:
    """Whether an ``imaps`` listener is configured. It may not be a known
    listener name yet, and an empty value disables it."""
    return bool(config.listeners.get("imaps"))


def imap_host(hosts: HostsConfig, organization: bool) -> str:
    """The IMAP host name of a domain kind: the POP host of that kind, the
    name the certificate and SNI already cover, until ``[hosts]`` has an
    IMAP name of its own."""
    return hosts.pop_for(organization)


def settings_for(config: Config, domain: str, organization: bool) -> ClientSettings:
    """The servers of a domain of this kind.

    IMAP comes first when it is served: it is on by default for every
    account, while POP is off until the user enables it (DESIGN §1), so a
    client set up from the first entry works at once; POP stays offered.
    """
    hosts = config.hosts
    pop = MailServer("pop3", hosts.pop_for(organization), POP3S_PORT, IMPLICIT)
    incoming: tuple[MailServer, ...] = (pop,)
    if imap_served(config):
        imap = MailServer("imap", imap_host(hosts, organization), IMAPS_PORT, IMPLICIT)
        incoming = (imap, pop)
    outgoing = (
        MailServer("smtp", hosts.smtp, SMTPS_PORT, IMPLICIT),
        MailServer("smtp", hosts.smtp, SUBMISSION_PORT, STARTTLS),
    )
    return ClientSettings(domain, organization, incoming, outgoing)


@service
async def domain_settings(store: IStore, config: Config, domain: str) -> ClientSettings:
    """The client settings of the hosted domain ``domain``, or NotHosted.
    They depend on the domain alone, never on an account, so an
    unauthenticated answer built from them tells nothing of who exists."""
    found = await require_hosted(store, domain)
    return settings_for(config, found.name, found.organization)
