"""The configuration, read from an ini file and options: one frozen record
per ini section, composed in one ``Config``.

Every knob an operator may turn lives here, with its default and its parser;
its field name is its ini key. Components are handed the sections they use
and never read files or the environment themselves.
"""

from __future__ import annotations

import configparser
import dataclasses
import datetime
import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from zpop.wire import addresses

#: Listener names, in start-up order, with the default endpoint of each
#: (unprivileged ports, so ``twistd -n zpop`` runs as any user).
LISTENERS: dict[str, str] = {
    "pop3s": "tcp:8995",
    "pop3": "",
    "imaps": "tcp:8993",
    "imap": "tcp:8143",
    "smtps": "tcp:8465",
    "submission": "tcp:8587",
    "mx": "tcp:8025",
    "web": "tcp:8443",
    # Prometheus scrapes, plain HTTP: loopback only unless configured.
    "metrics": "tcp:9180:interface=127.0.0.1",
}

CONFIG_NAME = "zpop.ini"
#: More processes than this would only contend for the database.
MAX_WORKERS = 64


class ConfigError(Exception):
    """A configuration value is missing or malformed; the text names where."""


@dataclass(frozen=True)
class TLSCertificate:
    """A certificate chain and its private key, both PEM files; optionally a
    second chain and key of the other key type (RSA beside ECDSA), served to
    the clients that can use it. The fields are the ``[tls]`` keys."""

    certificate: str
    key: str
    alt_certificate: str | None = None
    alt_key: str | None = None


def knob(default: Any, parse: Callable[[str], Any], *, path: bool = False) -> Any:
    """A section field an operator may set: its ini key is the field's
    name, ``parse`` reads the text (raising ValueError with the reason), and
    a ``path`` is relative to the config file's directory."""
    return field(default=default, metadata={"parse": parse, "path": path})


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "yes", "true", "on"):
        return True
    if lowered in ("0", "no", "false", "off"):
        return False
    raise ValueError("expected yes or no")


def _parse_positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError("must be a positive whole number")
    return value


def _parse_workers(text: str) -> int:
    value = _parse_positive_int(text)
    if value > MAX_WORKERS:
        raise ValueError(f"must be at most {MAX_WORKERS}")
    return value


def _parse_size(text: str) -> int:
    """Bytes, with an optional K, M or G suffix (powers of 1024)."""
    stripped = text.strip().upper()
    factor = 1
    for suffix, mult in (("K", 1024), ("M", 1024**2), ("G", 1024**3)):
        if stripped.endswith(suffix):
            stripped, factor = stripped[:-1], mult
            break
    try:
        return _parse_positive_int(stripped) * factor
    except ValueError:
        raise ValueError(
            "must be a positive number of bytes, optionally followed by K, M or G"
        ) from None


def _parse_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise ValueError("must be a positive number of seconds")
    return value


def _parse_date(text: str) -> datetime.datetime | None:
    """An ISO date (UTC) or empty for "no cut-off"."""
    if not text.strip():
        return None
    try:
        day = datetime.date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            "must be a date like 2024-06-30, or empty for no cut-off"
        ) from None
    return datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC)


def _parse_directory(text: str) -> str:
    if not text.strip():
        raise ValueError("expected a directory")
    return text


def _parse_host(text: str) -> str:
    name = text.strip().lower().rstrip(".")
    if not name or any(c.isspace() for c in name) or "/" in name:
        raise ValueError("expected a host name")
    return name


def _parse_plan(text: str) -> str:
    plan = text.strip().lower()
    if plan not in ("free", "paid"):
        raise ValueError("expected free or paid")
    return plan


def _parse_bcrypt_cost(text: str) -> int:
    try:
        cost = int(text)
    except ValueError:
        cost = 0
    if not 4 <= cost <= 31:
        raise ValueError("bcrypt cost must be between 4 and 31")
    return cost


def _parse_networks(
    text: str,
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma- or space-separated networks (CIDR), e.g. ``10.0.0.0/8, ::1``."""
    networks = []
    for item in text.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not a network like 192.0.2.0/24")
    return tuple(networks)


def _parse_non_negative_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise ValueError("must be a number of seconds, 0 or more")
    return value


def _parse_non_negative_int(text: str) -> int:
    text = text.strip()
    # ASCII digits only, as for ports: int() reads other scripts' digits.
    if not (text.isascii() and text.isdigit() and len(text) <= 9):
        raise ValueError("must be a whole number, 0 or more")
    return int(text)


def _parse_next_hop(text: str) -> tuple[str, int] | None:
    """``host``, ``host:port`` or ``[ipv6]:port`` (port 25 by default);
    empty for none."""
    text = text.strip()
    if not text:
        return None
    host, port = text, "25"
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError("expected host:port, [IPv6]:port or host")
        port = rest[1:] or "25"
    elif text.count(":") == 1:
        host, port = text.split(":")
    # ASCII digits only: int() also reads other scripts' digits, and fails
    # on "²" or thousands of digits with a message about Python internals.
    valid = port.isascii() and port.isdigit() and len(port.lstrip("0")) <= 5
    if not valid or not 0 < int(port) < 65536:
        shown = port if len(port) <= 20 else port[:20] + "..."
        raise ValueError(f"port {shown!r} is not a number from 1 to 65535")
    if not host or any(c.isspace() or c in "/@" for c in host):
        raise ValueError("expected host:port, [IPv6]:port or host")
    return host.lower().rstrip("."), int(port)


class TLSLevel(StrEnum):
    """How the relay uses TLS to a next hop."""

    #: TLS required and the certificate checked (a smart host's default).
    VERIFY = "verify"
    #: TLS required, the certificate not checked.
    ENCRYPT = "encrypt"
    #: STARTTLS when offered, unchecked (RFC 7435; MX hosts' default).
    MAY = "may"
    #: Plaintext: the retry after an opportunistic handshake failed.
    NONE = "none"


def _parse_tls_level(text: str) -> str:
    level = text.strip().lower()
    if level not in (TLSLevel.VERIFY, TLSLevel.ENCRYPT, TLSLevel.MAY):
        raise ValueError("expected verify, encrypt or may")
    return level


def _parse_dns_resolver(text: str) -> tuple[str, int] | None:
    """``host:port`` of a DNS resolver (port 53 by default); empty for the
    system's."""
    hop = _parse_next_hop(text)
    if hop is None or ":" in text.strip().rpartition("]")[2]:
        return hop
    return hop[0], 53


def _parse_http_url(text: str) -> str:
    """An ``http://host:port`` base URL (no path beyond ``/``); empty for none."""
    url = text.strip().rstrip("/")
    if not url:
        return ""
    scheme, sep, rest = url.partition("://")
    if scheme.lower() != "http" or not sep or "/" in rest:
        raise ValueError("expected http://host:port")
    _parse_next_hop(rest)
    return f"http://{rest.lower()}"


def _parse_fail_policy(text: str) -> str:
    policy = text.strip().lower()
    if policy not in ("accept", "tempfail"):
        raise ValueError("expected accept or tempfail")
    return policy


def _routes_section(
    source: str, section: configparser.SectionProxy
) -> dict[str, tuple[str, int]]:
    """``[routes]``: ``domain = host:port`` per line."""
    routes: dict[str, tuple[str, int]] = {}
    for domain, text in section.items():
        try:
            hop = _parse_next_hop(text)
        except ValueError as e:
            raise ConfigError(f"{source}: [routes] {domain}: bad value {text!r}: {e}")
        if hop is None:
            raise ConfigError(f"{source}: [routes] {domain}: missing host:port")
        routes[domain.strip().lower().rstrip(".")] = hop
    return routes


@dataclass(frozen=True)
class ServerConfig:
    """``[server]``: this installation."""

    data: str = knob("zpop-data", _parse_directory, path=True)
    hostname: str = knob("localhost", _parse_host)
    #: Where RCPT TO:<postmaster> (no domain, RFC 5321 4.5.1) delivers;
    #: empty: postmaster@<hostname>.
    postmaster: str = knob("", addresses.parse_configured_address)
    db_threads: int = knob(4, _parse_positive_int)
    #: Processes serving the listeners (zpop.cluster): 1 is the main one
    #: alone; more use more cores.
    workers: int = knob(1, _parse_workers)

    @property
    def postmaster_address(self) -> str:
        """The mailbox behind the domain-less ``postmaster``."""
        return self.postmaster or f"postmaster@{self.hostname}"


@dataclass(frozen=True)
class HostsConfig:
    """``[hosts]``: the names clients are told to use. ``Config`` fills the
    unset ones from the base host name, Zoho-style: pop.<base>,
    poppro.<base>, smtp.<base>."""

    pop_personal: str = knob("", _parse_host)
    pop_organization: str = knob("", _parse_host)
    smtp: str = knob("", _parse_host)
    #: The web settings' host name, in links mailed to users; empty: the
    #: base host name.
    web: str = knob("", _parse_host)

    def pop_for(self, organization: bool) -> str:
        """The POP host name an account of this domain kind is told to use."""
        return self.pop_organization if organization else self.pop_personal

    def derived_from(self, hostname: str) -> HostsConfig:
        """These names, the unset ones derived from ``hostname``."""
        return HostsConfig(
            pop_personal=self.pop_personal or f"pop.{hostname}",
            pop_organization=self.pop_organization or f"poppro.{hostname}",
            smtp=self.smtp or f"smtp.{hostname}",
            web=self.web or hostname,
        )

    def explicit_for(self, hostname: str) -> HostsConfig:
        """These names with the ones derived from ``hostname`` unset again."""
        derived = HostsConfig().derived_from(hostname)
        return HostsConfig(
            *(
                "" if mine == theirs else mine
                for mine, theirs in zip(
                    dataclasses.astuple(self), dataclasses.astuple(derived), strict=True
                )
            )
        )


@dataclass(frozen=True)
class LimitsConfig:
    """``[limits]``: sizes and timeouts of the POP3 and SMTP sessions."""

    message_size: int = knob(36 * 1024 * 1024, _parse_size)
    recipients: int = knob(100, _parse_positive_int)
    pop_idle_timeout: float = knob(600.0, _parse_seconds)
    smtp_timeout: float = knob(300.0, _parse_seconds)
    line_length: int = knob(2048, _parse_positive_int)
    #: Longest an SMTP session may last, however busy, seconds.
    smtp_session: float = knob(3600.0, _parse_seconds)


@dataclass(frozen=True)
class PopConfig:
    """``[pop]``: the POP download log and RFC 2449 LOGIN-DELAY per plan."""

    #: Days the download log (RETRs and applied DELEs) is kept.
    log_days: int = knob(90, _parse_positive_int)
    #: Least seconds between an account's POP logins, per plan; 0 is off.
    login_delay_free: int = knob(0, _parse_non_negative_int)
    login_delay_paid: int = knob(0, _parse_non_negative_int)

    def login_delay(self, plan: str) -> int:
        """The LOGIN-DELAY enforced on an account of ``plan`` (0: none)."""
        return self.login_delay_paid if plan == "paid" else self.login_delay_free


@dataclass(frozen=True)
class AccountsConfig:
    """``[accounts]``: what new accounts get, and the Free-plan POP cut-off."""

    default_plan: str = knob("free", _parse_plan)
    free_pop_cutoff: datetime.datetime | None = knob(None, _parse_date)
    bcrypt_cost: int = knob(12, _parse_bcrypt_cost)


@dataclass(frozen=True)
class AuthConfig:
    """``[auth]``: login security. Failures are answered after a delay that
    doubles with the client's recent failures; past ``ban_threshold`` in the
    window the client address is refused for ``ban_period``."""

    failure_delay: float = knob(2.0, _parse_non_negative_seconds)
    failure_delay_max: float = knob(15.0, _parse_non_negative_seconds)
    failure_window: float = knob(600.0, _parse_seconds)
    ban_threshold: int = knob(10, _parse_positive_int)
    ban_period: float = knob(900.0, _parse_seconds)
    #: Failures against one account (from anywhere) before its failures slow.
    account_failure_threshold: int = knob(5, _parse_positive_int)
    credential_cache: float = knob(300.0, _parse_non_negative_seconds)
    allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = knob(
        (), _parse_networks
    )
    max_connections_per_client: int = knob(20, _parse_positive_int)
    max_connections: int = knob(20000, _parse_positive_int)
    #: IMAP sessions stay open (IDLE): an office of a few hundred users
    #: behind one NAT address needs more than POP's cap...
    imap_connections_per_client: int = knob(1000, _parse_positive_int)
    #: ...and one account's sessions from one address are capped instead,
    #: as Dovecot's mail_max_userip_connections.
    imap_sessions_per_account_client: int = knob(10, _parse_positive_int)
    #: Seconds an unauthenticated session has to log in.
    login_deadline: float = knob(120.0, _parse_seconds)


@dataclass(frozen=True)
class SubmissionConfig:
    """``[submission]``: what happens to mail users send."""

    save_sent_copy: bool = knob(True, _parse_bool)


@dataclass(frozen=True)
class OutboundConfig:
    """``[outbound]`` and ``[routes]``: the relay (zpop.outbound)."""

    #: How long the queue keeps trying a message before bouncing it.
    lifetime: float = knob(5 * 86400.0, _parse_seconds)
    #: Relay everything not in ``routes`` through this (host, port).
    smarthost: tuple[str, int] | None = knob(None, _parse_next_hop)
    smarthost_user: str = knob("", str.strip)
    #: File whose first line is the smart host password (keep it 0600).
    smarthost_password_file: str = knob("", str.strip, path=True)
    #: ``verify`` (TLS, certificate checked), ``encrypt`` (TLS, unchecked),
    #: ``may`` (STARTTLS when offered).
    smarthost_tls: str = knob(TLSLevel.VERIFY.value, _parse_tls_level)
    #: CA certificates (PEM) to verify the smart host with; "" = system's.
    smarthost_ca: str = knob("", str.strip, path=True)
    #: Refuse to deliver to MX and routed hosts without STARTTLS.
    require_tls: bool = knob(False, _parse_bool)
    max_connections: int = knob(20, _parse_positive_int)
    max_connections_per_domain: int = knob(2, _parse_positive_int)
    messages_per_connection: int = knob(100, _parse_positive_int)
    retry_min: float = knob(300.0, _parse_seconds)
    retry_max: float = knob(3600.0, _parse_seconds)
    scan_interval: float = knob(5.0, _parse_seconds)
    lease: float = knob(300.0, _parse_seconds)
    timeout: float = knob(300.0, _parse_seconds)
    #: domain -> (host, port), from ``[routes]``: pinned next hops.
    routes: Mapping[str, tuple[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class DnsConfig:
    """``[dns]``: where mail authentication (SPF, DKIM, DMARC) asks DNS,
    through twisted.names."""

    #: (host, port) of a resolver; None: the system's (/etc/resolv.conf).
    resolver: tuple[str, int] | None = knob(None, _parse_dns_resolver)
    #: Seconds a query may take before its answer counts as a temporary error.
    timeout: float = knob(5.0, _parse_seconds)


@dataclass(frozen=True)
class SpamConfig:
    """``[spam]``: the spam filter, a real rspamd over its HTTP protocol
    (``/checkv2``); without one, an upstream ``X-Spam-Flag: YES`` files
    mail as spam."""

    #: rspamd's normal worker, ``http://127.0.0.1:11333``; "" for none.
    rspamd: str = knob("", _parse_http_url)
    #: File whose first line is rspamd's password (keep it 0600); "" for none.
    password_file: str = knob("", str.strip, path=True)
    #: Seconds rspamd has to answer before ``fail_policy`` decides.
    timeout: float = knob(10.0, _parse_seconds)
    #: ``accept`` (file by the upstream X-Spam-Flag, logged) or ``tempfail``
    #: (``451 4.7.1``) when rspamd is down or slow.
    fail_policy: str = knob("accept", _parse_fail_policy)


@dataclass(frozen=True)
class TLSConfig:
    """``[tls]`` and ``[tls:HOST]``: the certificates served (none given: a
    self-signed one in the data directory)."""

    default: TLSCertificate | None = None
    by_host: Mapping[str, TLSCertificate] = field(default_factory=dict)


#: Ini section -> its record, for the sections of plain ``key = value`` knobs.
SECTIONS: dict[str, type] = {
    "server": ServerConfig,
    "hosts": HostsConfig,
    "limits": LimitsConfig,
    "pop": PopConfig,
    "accounts": AccountsConfig,
    "auth": AuthConfig,
    "submission": SubmissionConfig,
    "outbound": OutboundConfig,
    "dns": DnsConfig,
    "spam": SpamConfig,
}


def endpoint_port(description: str) -> int | None:
    """The port a ``tcp:`` or ``tcp6:`` listener description binds (its
    first positional argument or ``port=``); None for anything else."""
    kind, _, rest = description.partition(":")
    if kind not in ("tcp", "tcp6") or not rest:
        return None
    args = rest.split(":")
    named = [a.partition("=")[2] for a in args if a.startswith("port=")]
    text = named[0] if named else args[0]
    return int(text) if text.isascii() and text.isdigit() else None


@dataclass(frozen=True)
class Config:
    """Everything zpop needs to know at start-up, and nothing it can learn:
    one record per section; each component is handed the sections it uses."""

    server: ServerConfig = field(default_factory=ServerConfig)
    hosts: HostsConfig = field(default_factory=HostsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    pop: PopConfig = field(default_factory=PopConfig)
    accounts: AccountsConfig = field(default_factory=AccountsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    submission: SubmissionConfig = field(default_factory=SubmissionConfig)
    outbound: OutboundConfig = field(default_factory=OutboundConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    spam: SpamConfig = field(default_factory=SpamConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    listeners: Mapping[str, str] = field(default_factory=lambda: dict(LISTENERS))

    def __post_init__(self) -> None:
        hosts = self.hosts.derived_from(self.server.hostname)
        object.__setattr__(self, "hosts", hosts)

    @property
    def host_names(self) -> tuple[str, ...]:
        """Every name clients may use for this server, for the certificate."""
        names = [*dataclasses.astuple(self.hosts), self.server.hostname]
        return tuple(dict.fromkeys(n.lower() for n in names))

    @property
    def web_url(self) -> str:
        """The web settings' address for links (a reset link, a client's
        help page): the ``[hosts] web`` name, with the web listener's port
        unless it is 443. Never taken from a request's Host header, which
        the visitor chooses."""
        # Port 0 (any free port, in tests) names no port a link could use.
        port = endpoint_port(self.listeners.get("web", ""))
        suffix = "" if port in (None, 0, 443) else f":{port}"
        return f"https://{self.hosts.web}{suffix}"

    def replace(self, **sections: Any) -> Config:
        """A copy with some sections replaced; host names that were derived
        are derived again from the (possibly new) host name."""
        if "hosts" not in sections:
            sections["hosts"] = self.hosts.explicit_for(self.server.hostname)
        return dataclasses.replace(self, **sections)


#: (section, key) -> why a key older versions knew is refused now, and
#: what to do: a setting that silently did nothing would mislead.
_RETIRED = {
    ("limits", "pop_lock_lease"): (
        "no longer used: maildrop locks now end with the process that holds"
        " them, so there is no lease; remove the line"
    ),
}


def _read_ini(path: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, default_section="")
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}")
    except configparser.MissingSectionHeaderError as e:
        raise ConfigError(
            f"{path}: line {e.lineno}: not a valid ini file:"
            " text before the first [section]"
        )
    except configparser.ParsingError as e:
        raise ConfigError(
            f"{path}: line {e.errors[0][0]}: not a valid ini file: expected key = value"
        )
    except (configparser.Error, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not a valid ini file: {e}")
    return parser


def _knobs_section(
    source: str, section: configparser.SectionProxy, base: str
) -> dict[str, Any]:
    """The fields a plain section sets, parsed, paths made absolute."""
    knobs = {
        f.name: f
        for f in dataclasses.fields(SECTIONS[section.name])
        if "parse" in f.metadata
    }
    values: dict[str, Any] = {}
    for key, text in section.items():
        where = f"{source}: [{section.name}] {key}"
        retired = _RETIRED.get((section.name, key))
        if retired is not None:
            raise ConfigError(f"{where}: {retired}")
        if key not in knobs:
            raise ConfigError(f"{where}: unknown key")
        try:
            value = knobs[key].metadata["parse"](text)
        except ValueError as e:
            raise ConfigError(f"{where}: bad value {text!r}: {e}")
        if knobs[key].metadata["path"] and value:
            value = os.path.join(base, value)
        values[key] = value
    return values


def _tls_section(
    source: str, section: configparser.SectionProxy, base: str
) -> TLSCertificate:
    values = dict(section)
    unknown = set(values) - {f.name for f in dataclasses.fields(TLSCertificate)}
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"{source}: [{section.name}] {key}: unknown key")
    chain = values.get("certificate", "").strip()
    key = values.get("key", "").strip() or chain
    if not chain:
        raise ConfigError(f"{source}: [{section.name}] certificate: missing")
    alt_chain = values.get("alt_certificate", "").strip()
    alt_key = values.get("alt_key", "").strip() or alt_chain
    if alt_key and not alt_chain:
        raise ConfigError(f"{source}: [{section.name}] alt_certificate: missing")
    return TLSCertificate(
        certificate=os.path.join(base, chain),
        key=os.path.join(base, key),
        alt_certificate=os.path.join(base, alt_chain) if alt_chain else None,
        alt_key=os.path.join(base, alt_key) if alt_chain else None,
    )


def _listeners_section(
    source: str, section: configparser.SectionProxy
) -> dict[str, str]:
    listeners = {}
    for key, value in section.items():
        if key not in LISTENERS:
            raise ConfigError(f"{source}: [listeners] {key}: unknown key")
        listeners[key] = value.strip()
    return listeners


def load(
    path: str | None, overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> Config:
    """Read ``path`` (if given) and apply ``overrides``, keyed like the file:
    section name, then key (``{"listeners": {"pop3s": "tcp:995"}}``); an
    override of None is an option not given.

    Relative paths in the file are relative to the file's directory.
    """
    values: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    listeners = dict(LISTENERS)
    tls = TLSConfig()
    if path is not None:
        parser = _read_ini(path)
        base = os.path.dirname(os.path.abspath(path))
        for name in parser.sections():
            section = parser[name]
            if name == "listeners":
                listeners.update(_listeners_section(path, section))
            elif name == "tls":
                tls = dataclasses.replace(
                    tls, default=_tls_section(path, section, base)
                )
            elif name.startswith("tls:"):
                host = name[4:].strip().lower()
                by_host = {**tls.by_host, host: _tls_section(path, section, base)}
                tls = dataclasses.replace(tls, by_host=by_host)
            elif name == "routes":
                values["outbound"]["routes"] = _routes_section(path, section)
            elif name in SECTIONS:
                values[name].update(_knobs_section(path, section, base))
            else:
                raise ConfigError(f"{path}: [{name}]: unknown section")
    for name, changes in (overrides or {}).items():
        given = {key: value for key, value in changes.items() if value is not None}
        (listeners if name == "listeners" else values[name]).update(given)
    sections = {name: cls(**values[name]) for name, cls in SECTIONS.items()}
    return Config(tls=tls, listeners=listeners, **sections)


def find_config_file(explicit: str | None, data_dir: str | None) -> str | None:
    """The config file to read: the one given, else ``DATA/zpop.ini`` if any."""
    if explicit:
        return explicit
    if data_dir is None:
        return None
    candidate = os.path.join(data_dir, CONFIG_NAME)
    return candidate if os.path.exists(candidate) else None


def default_data_dir() -> str:
    """``$ZPOP_DATA`` or ``./zpop-data``, as DESIGN §3 says."""
    return os.environ.get("ZPOP_DATA") or "zpop-data"


def resolve(
    config_file: str | None,
    data: str | None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[Config, str | None]:
    """DESIGN §3's precedence, for ``twistd zpop`` and the ``zpop`` command
    alike: the file is ``--config``, else ``DATA/zpop.ini`` if it exists;
    the data directory is ``--data``, else the file's ``[server] data``,
    else ``$ZPOP_DATA`` or ``./zpop-data``. Returns the config and the path
    of the file read (None: defaults only). Raises ConfigError."""
    path = find_config_file(config_file, data or default_data_dir())
    config = load(path, overrides)
    if not data and config.server.data == ServerConfig.data:
        # The file did not say (load() makes the paths it reads absolute).
        data = default_data_dir()
    if data:
        config = config.replace(server=dataclasses.replace(config.server, data=data))
    return config, path
