"""The one frozen configuration object, read from an ini file and options.

Every knob an operator may turn lives here, with its default, so the rest of
zpop takes a ``Config`` and never reads files or the environment itself.
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
    "smtps": "tcp:8465",
    "submission": "tcp:8587",
    "mx": "tcp:8025",
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
    the clients that can use it."""

    chain: str
    key: str
    alt_chain: str | None = None
    alt_key: str | None = None


@dataclass(frozen=True)
class Config:
    """Everything zpop needs to know at start-up, and nothing it can learn."""

    data_dir: str = "zpop-data"
    hostname: str = "localhost"
    pop_personal_host: str = ""
    pop_organization_host: str = ""
    smtp_host: str = ""
    listeners: Mapping[str, str] = field(default_factory=lambda: dict(LISTENERS))
    tls_default: TLSCertificate | None = None
    tls_by_host: Mapping[str, TLSCertificate] = field(default_factory=dict)
    message_size_limit: int = 36 * 1024 * 1024
    max_recipients: int = 100
    pop_idle_timeout: float = 600.0
    smtp_timeout: float = 300.0
    max_line_length: int = 2048
    default_plan: str = "free"
    free_pop_cutoff: datetime.datetime | None = None
    bcrypt_cost: int = 12
    #: Where RCPT TO:<postmaster> (no domain, RFC 5321 4.5.1) delivers;
    #: empty: postmaster@<hostname>.
    postmaster: str = ""
    db_threads: int = 4
    #: Processes serving the listeners (zpop.cluster): 1 is the main one
    #: alone; more use more cores.
    workers: int = 1
    save_sent_copy: bool = True
    #: Longest an SMTP session may last, however busy, seconds.
    smtp_session_deadline: float = 3600.0
    #: How long the outbound queue keeps trying a message before bouncing it.
    queue_lifetime: float = 5 * 86400.0
    # Outbound relay (zpop.outbound): smart host or MX, routes, limits.
    #: Relay everything not in ``outbound_routes`` through this (host, port).
    outbound_smarthost: tuple[str, int] | None = None
    outbound_smarthost_user: str = ""
    #: File whose first line is the smart host password (keep it 0600).
    outbound_smarthost_password_file: str = ""
    #: ``verify`` (TLS, certificate checked), ``encrypt`` (TLS, unchecked),
    #: ``may`` (STARTTLS when offered).
    outbound_smarthost_tls: str = "verify"  # a TLSLevel
    #: CA certificates (PEM) to verify the smart host with; "" = system's.
    outbound_smarthost_ca: str = ""
    #: Refuse to deliver to MX and routed hosts without STARTTLS.
    outbound_require_tls: bool = False
    #: domain -> (host, port), from ``[routes]``: pinned next hops.
    outbound_routes: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    outbound_max_connections: int = 20
    outbound_max_per_domain: int = 2
    outbound_messages_per_connection: int = 100
    outbound_retry_min: float = 300.0
    outbound_retry_max: float = 3600.0
    outbound_scan_interval: float = 5.0
    outbound_lease: float = 300.0
    outbound_timeout: float = 300.0
    # Login security (issue 6): failures are answered after a delay that
    # doubles with the client's recent failures; past ban_threshold in the
    # window the client address is refused for ban_period.
    failure_delay: float = 2.0
    failure_delay_max: float = 15.0
    failure_window: float = 600.0
    ban_threshold: int = 10
    ban_period: float = 900.0
    #: Failures against one account (from anywhere) before its failures slow.
    account_failure_threshold: int = 5
    credential_cache: float = 300.0
    allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    max_connections_per_client: int = 20
    max_connections: int = 20000
    #: Seconds an unauthenticated session has to log in.
    login_deadline: float = 120.0

    def __post_init__(self) -> None:
        # Host names default from the base host name, Zoho-style:
        # pop.<base>, poppro.<base>, smtp.<base>.
        for attr, prefix in (
            ("pop_personal_host", "pop"),
            ("pop_organization_host", "poppro"),
            ("smtp_host", "smtp"),
        ):
            if not getattr(self, attr):
                object.__setattr__(self, attr, f"{prefix}.{self.hostname}")

    @property
    def postmaster_address(self) -> str:
        """The mailbox behind the domain-less ``postmaster``."""
        return self.postmaster or f"postmaster@{self.hostname}"

    @property
    def host_names(self) -> tuple[str, ...]:
        """Every name clients may use for this server, for the certificate."""
        names = [self.pop_personal_host, self.pop_organization_host, self.smtp_host]
        names.append(self.hostname)
        return tuple(dict.fromkeys(n.lower() for n in names))

    def pop_host_for(self, organization: bool) -> str:
        """The POP host name an account of this domain kind is told to use."""
        return self.pop_organization_host if organization else self.pop_personal_host

    def replace(self, **changes: Any) -> Config:
        """A copy with some fields changed (host names re-derived if unset)."""
        for attr, prefix in (
            ("pop_personal_host", "pop"),
            ("pop_organization_host", "poppro"),
            ("smtp_host", "smtp"),
        ):
            derived = f"{prefix}.{self.hostname}"
            if attr not in changes and getattr(self, attr) == derived:
                changes[attr] = ""
        return dataclasses.replace(self, **changes)


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


# section -> key -> (Config field, parser)
_SCHEMA: dict[str, dict[str, tuple[str, Callable[[str], Any]]]] = {
    "server": {
        "data": ("data_dir", str),
        "hostname": ("hostname", _parse_host),
        "postmaster": ("postmaster", addresses.parse_configured_address),
        "db_threads": ("db_threads", _parse_positive_int),
        "workers": ("workers", _parse_workers),
    },
    "hosts": {
        "pop_personal": ("pop_personal_host", _parse_host),
        "pop_organization": ("pop_organization_host", _parse_host),
        "smtp": ("smtp_host", _parse_host),
    },
    "limits": {
        "message_size": ("message_size_limit", _parse_size),
        "recipients": ("max_recipients", _parse_positive_int),
        "pop_idle_timeout": ("pop_idle_timeout", _parse_seconds),
        "smtp_timeout": ("smtp_timeout", _parse_seconds),
        "line_length": ("max_line_length", _parse_positive_int),
        "smtp_session": ("smtp_session_deadline", _parse_seconds),
    },
    "accounts": {
        "default_plan": ("default_plan", _parse_plan),
        "free_pop_cutoff": ("free_pop_cutoff", _parse_date),
        "bcrypt_cost": ("bcrypt_cost", _parse_bcrypt_cost),
    },
    "auth": {
        "failure_delay": ("failure_delay", _parse_non_negative_seconds),
        "failure_delay_max": ("failure_delay_max", _parse_non_negative_seconds),
        "failure_window": ("failure_window", _parse_seconds),
        "ban_threshold": ("ban_threshold", _parse_positive_int),
        "ban_period": ("ban_period", _parse_seconds),
        "account_failure_threshold": (
            "account_failure_threshold",
            _parse_positive_int,
        ),
        "credential_cache": ("credential_cache", _parse_non_negative_seconds),
        "allow_networks": ("allow_networks", _parse_networks),
        "max_connections_per_client": (
            "max_connections_per_client",
            _parse_positive_int,
        ),
        "max_connections": ("max_connections", _parse_positive_int),
        "login_deadline": ("login_deadline", _parse_seconds),
    },
    "submission": {
        "save_sent_copy": ("save_sent_copy", _parse_bool),
    },
    "outbound": {
        "lifetime": ("queue_lifetime", _parse_seconds),
        "smarthost": ("outbound_smarthost", _parse_next_hop),
        "smarthost_user": ("outbound_smarthost_user", str.strip),
        "smarthost_password_file": ("outbound_smarthost_password_file", str.strip),
        "smarthost_tls": ("outbound_smarthost_tls", _parse_tls_level),
        "smarthost_ca": ("outbound_smarthost_ca", str.strip),
        "require_tls": ("outbound_require_tls", _parse_bool),
        "max_connections": ("outbound_max_connections", _parse_positive_int),
        "max_connections_per_domain": ("outbound_max_per_domain", _parse_positive_int),
        "messages_per_connection": (
            "outbound_messages_per_connection",
            _parse_positive_int,
        ),
        "retry_min": ("outbound_retry_min", _parse_seconds),
        "retry_max": ("outbound_retry_max", _parse_seconds),
        "scan_interval": ("outbound_scan_interval", _parse_seconds),
        "lease": ("outbound_lease", _parse_seconds),
        "timeout": ("outbound_timeout", _parse_seconds),
    },
}


#: (section, key) -> why a key older versions knew is refused now, and
#: what to do: a setting that silently did nothing would mislead.
_RETIRED = {
    ("limits", "pop_lock_lease"): (
        "no longer used: maildrop locks now end with the process that holds"
        " them, so there is no lease; remove the line"
    ),
}

#: Config fields holding file names: relative to the config file.
_PATHS = ("outbound_smarthost_password_file", "outbound_smarthost_ca")


def _tls_section(
    source: str, section: configparser.SectionProxy, base: str
) -> TLSCertificate:
    values = dict(section)
    unknown = set(values) - {"certificate", "key", "alt_certificate", "alt_key"}
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
        chain=os.path.join(base, chain),
        key=os.path.join(base, key),
        alt_chain=os.path.join(base, alt_chain) if alt_chain else None,
        alt_key=os.path.join(base, alt_key) if alt_chain else None,
    )


def load(path: str | None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read ``path`` (if given) and apply ``overrides`` (Config field names).

    Relative paths in the file are relative to the file's directory.
    """
    values: dict[str, Any] = {}
    listeners = dict(LISTENERS)
    tls_default: TLSCertificate | None = None
    tls_by_host: dict[str, TLSCertificate] = {}
    if path is not None:
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
                f"{path}: line {e.errors[0][0]}: not a valid ini file:"
                " expected key = value"
            )
        except (configparser.Error, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not a valid ini file: {e}")
        base = os.path.dirname(os.path.abspath(path))
        for name in parser.sections():
            section = parser[name]
            if name == "listeners":
                for key, value in section.items():
                    if key not in LISTENERS:
                        raise ConfigError(f"{path}: [listeners] {key}: unknown key")
                    listeners[key] = value.strip()
                continue
            if name == "tls":
                tls_default = _tls_section(path, section, base)
                continue
            if name == "routes":
                values["outbound_routes"] = _routes_section(path, section)
                continue
            if name.startswith("tls:"):
                host = name[4:].strip().lower()
                tls_by_host[host] = _tls_section(path, section, base)
                continue
            schema = _SCHEMA.get(name)
            if schema is None:
                raise ConfigError(f"{path}: [{name}]: unknown section")
            for key, text in section.items():
                retired = _RETIRED.get((name, key))
                if retired is not None:
                    raise ConfigError(f"{path}: [{name}] {key}: {retired}")
                if key not in schema:
                    raise ConfigError(f"{path}: [{name}] {key}: unknown key")
                attr, parse = schema[key]
                try:
                    values[attr] = parse(text)
                except ValueError as e:
                    raise ConfigError(
                        f"{path}: [{name}] {key}: bad value {text!r}: {e}"
                    )
                if attr == "data_dir":
                    values[attr] = os.path.join(base, values[attr])
                if attr in _PATHS and values[attr]:
                    values[attr] = os.path.join(base, values[attr])
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key in LISTENERS:
            listeners[key] = value
        else:
            values[key] = value
    return Config(
        listeners=listeners,
        tls_default=tls_default,
        tls_by_host=tls_by_host,
        **values,
    )


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
    overrides: dict[str, Any] | None = None,
) -> tuple[Config, str | None]:
    """DESIGN §3's precedence, for ``twistd zpop`` and the ``zpop`` command
    alike: the file is ``--config``, else ``DATA/zpop.ini`` if it exists;
    the data directory is ``--data``, else the file's ``[server] data``,
    else ``$ZPOP_DATA`` or ``./zpop-data``. Returns the config and the path
    of the file read (None: defaults only). Raises ConfigError."""
    path = find_config_file(config_file, data or default_data_dir())
    config = load(path, overrides)
    if data:
        return config.replace(data_dir=data), path
    if config.data_dir == Config.data_dir:
        # The file did not say (load() makes the paths it reads absolute).
        return config.replace(data_dir=default_data_dir()), path
    return config, path
