"""The DNS records a hosted domain publishes (DESIGN §1 "Client
autoconfiguration", ``zpop domain dns``), and the MTA-STS policy the web
listener serves beside them: one service, so the CLI and the API print
the same records.

The choices, each for a reason an operator can check:

- MX names ``[hosts] smtp``: the SMTP listeners (the MX among them) greet
  with that name and the certificate covers it, which MTA-STS requires.
- SPF ``v=spf1 mx -all``: every message of a hosted domain is submitted
  with authentication and leaves from this server, the host the MX names;
  ``-all`` because nothing else sends for the domain. With a smart host
  the mail leaves from it instead, so a note says to add its mechanism.
- DMARC ``p=none`` while the domain has no DKIM key: SPF alone breaks on
  every forward, and ``quarantine`` would send forwarded mail to Spam.
  Once keys exist (``zpop domain dkim``) ``p=quarantine``.
- DKIM: one TXT record per selector that signs or was retired so recently
  that queued mail may still carry it (``zpop.mailauth.dkim_keys``); a
  record longer than 255 characters (RSA-2048) is split into strings.
  Reports go to the postmaster mailbox (``[server] postmaster``); when it
  is in another domain, RFC 7489 §7.1 asks that domain to authorise it.
- SRV (RFC 6186) with priorities across the services of one direction
  (RFC 6186 §3.4, RFC 8314 §5.1): the preferred server first, as the
  autoconfiguration documents list it.
- ``autoconfig``, ``autodiscover`` and ``mta-sts`` are CNAMEs of the web
  host (they serve over HTTPS, so its certificate must name them too);
  ``_autodiscover._tcp`` SRV lets Outlook reach the web host without one.
- MTA-STS starts in ``testing`` mode: TLS-RPT reports show whether senders
  reach the MX over TLS before ``enforce`` could make them bounce. Its
  ``id`` is derived from the policy text, so it changes exactly when the
  policy does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from zpop.accounts import service
from zpop.accounts.client_settings import ClientSettings, settings_for
from zpop.accounts.domains import require_hosted
from zpop.config import Config, endpoint_port
from zpop.mailauth.dkim_keys import DkimKeys, PublishedKey
from zpop.store import IStore
from zpop.wire.addresses import domain_of

#: Seconds resolvers may cache the records.
TTL = 3600
#: RFC 8461 policy: ``testing`` (report, never refuse) until ``enforce``
#: is chosen on purpose.
MTA_STS_MODE = "testing"
#: One week, as RFC 8461 §3.2 suggests for a policy that rarely changes.
MTA_STS_MAX_AGE = 604800
#: Public port of the web listener when its endpoint names none.
HTTPS_PORT = 443

_SRV_NAMES = {
    ("pop3", "implicit"): "_pop3s._tcp",
    ("imap", "implicit"): "_imaps._tcp",
    ("smtp", "implicit"): "_submissions._tcp",
    ("smtp", "starttls"): "_submission._tcp",
}


@dataclass(frozen=True)
class Record:
    """One resource record, in zone-file presentation form."""

    #: Absolute, with the trailing dot.
    name: str
    type: str
    data: str
    ttl: int = TTL

    def zone_line(self) -> str:
        """``name TTL IN TYPE data``, as a zone file has it."""
        return f"{self.name} {self.ttl} IN {self.type} {self.data}"


@dataclass(frozen=True)
class DomainRecords:
    """A domain's records, and what an operator must know beside them."""

    domain: str
    organization: bool
    records: tuple[Record, ...]
    #: The zone the DMARC reports go to (the postmaster's domain).
    report_zone: str
    #: The record that zone publishes to accept them (RFC 7489 §7.1), when
    #: it is not the domain's own.
    report_authorization: Record | None
    #: Lines for the operator (zone-file comments without the ``;``).
    notes: tuple[str, ...]


def _absolute(name: str) -> str:
    return name if name.endswith(".") else name + "."


def _txt_strings(text: str) -> str:
    """A long TXT value as several quoted strings of at most 255
    characters, which DNS joins (RFC 7208 §3.3, RFC 6376 §3.6.2.2)."""
    assert '"' not in text and "\\" not in text
    return " ".join(f'"{text[i : i + 255]}"' for i in range(0, len(text), 255))


def dkim_records(published: tuple[PublishedKey, ...]) -> list[Record]:
    """The TXT records of a domain's published DKIM keys."""
    return [
        Record(_absolute(key.name), "TXT", _txt_strings(key.value))
        for key in published
    ]


def _txt(text: str) -> str:
    """A TXT value: one quoted string (ours are short and hold no quote)."""
    assert len(text) <= 255 and '"' not in text and "\\" not in text
    return f'"{text}"'


def mta_sts_policy(config: Config) -> str:
    """The RFC 8461 policy text served at ``/.well-known/mta-sts.txt``
    (CRLF-separated, as §3.2 has it). The same for every hosted domain:
    they share the MX."""
    lines = (
        "version: STSv1",
        f"mode: {MTA_STS_MODE}",
        f"mx: {config.hosts.smtp}",
        f"max_age: {MTA_STS_MAX_AGE}",
    )
    return "".join(f"{line}\r\n" for line in lines)


def mta_sts_id(policy: str) -> str:
    """The ``id`` of the ``_mta-sts`` TXT record: 20 hex digits of the
    policy's SHA-256 (RFC 8461 allows 1 to 32 letters and digits)."""
    return hashlib.sha256(policy.encode("utf-8")).hexdigest()[:20]


def web_port(config: Config) -> int:
    """The web listener's public port, as ``Config.web_url`` gives it."""
    return endpoint_port(config.listeners.get("web", "")) or HTTPS_PORT


def records_for(
    config: Config,
    clients: ClientSettings,
    dkim_keys: bool = False,
    dkim: tuple[PublishedKey, ...] = (),
) -> DomainRecords:
    """Every record the domain of ``clients`` needs, in the order a zone
    file is read: mail routing and authentication, then discovery.
    ``dkim`` are the published DKIM keys (which imply ``dkim_keys``)."""
    dkim_keys = dkim_keys or bool(dkim)
    domain = clients.domain
    apex = _absolute(domain)
    hosts = config.hosts
    mx = _absolute(hosts.smtp)
    web = _absolute(hosts.web)
    postmaster = config.server.postmaster_address
    records = [
        Record(apex, "MX", f"10 {mx}"),
        Record(apex, "TXT", _txt("v=spf1 mx -all")),
    ]
    records += dkim_records(dkim)
    policy = "quarantine" if dkim_keys else "none"
    records.append(
        Record(
            f"_dmarc.{apex}",
            "TXT",
            _txt(f"v=DMARC1; p={policy}; rua=mailto:{postmaster}"),
        )
    )
    report_zone = domain_of(postmaster)
    authorization = None
    if report_zone != domain:
        authorization = Record(
            f"{domain}._report._dmarc.{_absolute(report_zone)}",
            "TXT",
            _txt("v=DMARC1"),
        )
    for direction in (clients.incoming, clients.outgoing):
        for priority, server in enumerate(direction):
            name = _SRV_NAMES[(server.protocol, server.tls)]
            target = _absolute(server.host)
            data = f"{priority * 10} 1 {server.port} {target}"
            records.append(Record(f"{name}.{apex}", "SRV", data))
    records += [
        Record(f"autoconfig.{apex}", "CNAME", web),
        Record(f"autodiscover.{apex}", "CNAME", web),
        Record(f"_autodiscover._tcp.{apex}", "SRV", f"0 1 {web_port(config)} {web}"),
        Record(f"mta-sts.{apex}", "CNAME", web),
        Record(
            f"_mta-sts.{apex}",
            "TXT",
            _txt(f"v=STSv1; id={mta_sts_id(mta_sts_policy(config))}"),
        ),
        Record(
            f"_smtp._tls.{apex}", "TXT", _txt(f"v=TLSRPTv1; rua=mailto:{postmaster}")
        ),
    ]
    notes = []
    if not dkim_keys:
        notes.append(f"DKIM: no keys yet (zpop domain dkim {domain})")
    retired = [k.selector.name for k in dkim if k.selector.retired is not None]
    if retired:
        notes.append(
            f"DKIM: {', '.join(retired)} retired (mail they signed may still be"
            " queued): keep their records while they are listed here"
        )
    smarthost = config.outbound.smarthost
    if smarthost is not None:
        notes.append(
            f"SPF: mail leaves through the smart host {smarthost[0]}: add its"
            " SPF mechanism (its provider's include: or a:/ip4:) before -all"
        )
    served = sorted({s.host for s in (*clients.incoming, *clients.outgoing)})
    names = ", ".join(dict.fromkeys([*served, hosts.web]))
    notes.append(
        f"{names} need A/AAAA records of this server and names in its"
        f" certificate, as do autoconfig.{domain}, autodiscover.{domain} and"
        f" mta-sts.{domain} for HTTPS"
    )
    return DomainRecords(
        domain,
        clients.organization,
        tuple(records),
        report_zone,
        authorization,
        tuple(notes),
    )


@service
async def domain_records(
    store: IStore, config: Config, domain: str, dkim: DkimKeys | None = None
) -> DomainRecords:
    """The records of the hosted domain ``domain``, or NotHosted; with
    ``dkim``, the domain's published DKIM keys among them."""
    found = await require_hosted(store, domain)
    clients = settings_for(config, found.name, found.organization)
    published = dkim.published(found.name) if dkim is not None else ()
    return records_for(config, clients, dkim=published)
