"""The configuration: defaults, the ini file, overrides, and error texts that
name the file, section and key an operator must fix."""

from __future__ import annotations

import dataclasses
import datetime
import os

from twisted.trial.unittest import SynchronousTestCase

from zpop.config import (
    CONFIG_NAME,
    LISTENERS,
    AccountsConfig,
    Config,
    ConfigError,
    HostsConfig,
    LimitsConfig,
    ServerConfig,
    SubmissionConfig,
    TLSCertificate,
    TLSConfig,
    default_data_dir,
    find_config_file,
    load,
)

FULL_INI = """\
[server]
data = state
hostname = Mail.Example.NET.
db_threads = 8
workers = 3

[hosts]
pop_personal = Pop.Example.com
pop_organization = poppro.example.com
smtp = smtp.example.com

[listeners]
pop3s = tcp:995
pop3 = tcp:110
smtps = tcp:port=465:interface=\\:\\:
submission = tcp:587
mx =

[limits]
message_size = 20M
recipients = 50
pop_idle_timeout = 300
smtp_timeout = 120.5
line_length = 4096

[accounts]
default_plan = Paid
free_pop_cutoff = 2024-06-01
bcrypt_cost = 10

[submission]
save_sent_copy = no

[tls]
certificate = certs/chain.pem
key = certs/key.pem

[tls:POP.Example.com]
certificate = /etc/ssl/pop.pem
"""


class ConfigTestCase(SynchronousTestCase):
    def write(self, text: str | bytes, name: str = CONFIG_NAME) -> str:
        """Write a config file in a fresh directory; return its path."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, name)
        data = text.encode("utf-8") if isinstance(text, str) else text
        with open(path, "wb") as f:
            f.write(data)
        return path

    def error(self, text: str | bytes) -> tuple[str, str]:
        """Load a file that must be refused; return (path, error text)."""
        path = self.write(text)
        error = self.assertRaises(ConfigError, load, path)
        return path, str(error)


class DefaultsTests(ConfigTestCase):
    def test_defaults(self) -> None:
        """With no file and no overrides every knob has its documented default."""
        config = load(None)
        self.assertEqual(
            (
                config.server,
                config.hosts,
                dict(config.listeners),
                config.tls,
                config.limits,
                config.accounts,
                config.submission,
            ),
            (
                ServerConfig(
                    data="zpop-data", hostname="localhost", db_threads=4, workers=1
                ),
                HostsConfig(
                    pop_personal="pop.localhost",
                    pop_organization="poppro.localhost",
                    smtp="smtp.localhost",
                    web="localhost",
                ),
                {
                    "pop3s": "tcp:8995",
                    "pop3": "",
                    "imaps": "tcp:8993",
                    "imap": "tcp:8143",
                    "smtps": "tcp:8465",
                    "submission": "tcp:8587",
                    "mx": "tcp:8025",
                    "web": "tcp:8443",
                    "metrics": "tcp:9180:interface=127.0.0.1",
                },
                TLSConfig(default=None, by_host={}),
                LimitsConfig(
                    message_size=36 * 1024 * 1024,
                    recipients=100,
                    pop_idle_timeout=600.0,
                    smtp_timeout=300.0,
                    line_length=2048,
                    smtp_session=3600.0,
                ),
                AccountsConfig(
                    default_plan="free", free_pop_cutoff=None, bcrypt_cost=12
                ),
                SubmissionConfig(save_sent_copy=True),
            ),
        )

    def test_default_listeners(self) -> None:
        """Default listeners are the unprivileged ports, IMAP over implicit TLS
        and with STARTTLS among them; POP3 with STLS is off."""
        self.assertEqual(
            dict(Config().listeners),
            {
                "pop3s": "tcp:8995",
                "pop3": "",
                "imaps": "tcp:8993",
                "imap": "tcp:8143",
                "smtps": "tcp:8465",
                "submission": "tcp:8587",
                "mx": "tcp:8025",
                "web": "tcp:8443",
                "metrics": "tcp:9180:interface=127.0.0.1",
            },
        )

    def test_listeners_not_shared(self) -> None:
        """Each Config gets its own listeners mapping, not the module's."""
        config = load(None, {"listeners": {"pop3": "tcp:110"}})
        self.assertEqual(LISTENERS["pop3"], "")
        self.assertEqual(Config().listeners["pop3"], "")
        self.assertEqual(config.listeners["pop3"], "tcp:110")

    def test_host_names_derived(self) -> None:
        """Unset host names derive pop., poppro. and smtp. from the hostname."""
        config = Config(server=ServerConfig(hostname="example.com"))
        self.assertEqual(
            (
                config.hosts.pop_personal,
                config.hosts.pop_organization,
                config.hosts.smtp,
                config.host_names,
            ),
            (
                "pop.example.com",
                "poppro.example.com",
                "smtp.example.com",
                (
                    "pop.example.com",
                    "poppro.example.com",
                    "smtp.example.com",
                    "example.com",
                ),
            ),
        )

    def test_host_names_explicit(self) -> None:
        """Explicit host names win over derivation; host_names has no duplicates."""
        config = Config(
            server=ServerConfig(hostname="mail.example.com"),
            hosts=HostsConfig(
                pop_personal="mail.example.com", pop_organization="Pro.Example.com"
            ),
        )
        self.assertEqual(
            config.host_names,
            ("mail.example.com", "pro.example.com", "smtp.mail.example.com"),
        )

    def test_web_url(self) -> None:
        """Links name ``[hosts] web`` (default: the hostname) and the web
        listener's port, none for 443 or a listener zpop cannot read a port
        from."""
        base = Config(server=ServerConfig(hostname="example.com"))
        cases = {
            "tcp:8443": "https://example.com:8443",
            "tcp:443": "https://example.com",
            "tcp:0": "https://example.com",
            "tcp:port=9443:interface=127.0.0.1": "https://example.com:9443",
            "tcp6:8443:interface=\\:\\:1": "https://example.com:8443",
            "unix:/run/zpop/web.sock": "https://example.com",
            "": "https://example.com",
        }
        for listener, url in cases.items():
            config = dataclasses.replace(base, listeners={"web": listener})
            self.assertEqual(config.web_url, url, listener)
        named = base.replace(hosts=HostsConfig(web="mail.example.com"))
        self.assertEqual(named.web_url, "https://mail.example.com:8443")
        self.assertIn("mail.example.com", named.host_names)

    def test_pop_host_for(self) -> None:
        """Organization accounts are told the organization POP host, others not."""
        config = Config(server=ServerConfig(hostname="example.com"))
        self.assertEqual(
            (config.hosts.pop_for(True), config.hosts.pop_for(False)),
            ("poppro.example.com", "pop.example.com"),
        )

    def test_replace(self) -> None:
        """replace changes the given sections and keeps the others."""
        config = Config(
            server=ServerConfig(hostname="example.com"),
            hosts=HostsConfig(smtp="out.example.com"),
        )
        changed = config.replace(
            limits=LimitsConfig(recipients=5), hosts=HostsConfig(smtp="mx.example.com")
        )
        self.assertEqual(
            (changed.limits.recipients, changed.hosts.smtp, changed.hosts.pop_personal),
            (5, "mx.example.com", "pop.example.com"),
        )
        self.assertEqual(config.limits.recipients, 100)

    def test_replace_hostname_rederives(self) -> None:
        """A new [server] hostname re-derives the host names that were derived."""
        config = Config(
            server=ServerConfig(hostname="example.com"),
            hosts=HostsConfig(smtp="out.example.com"),
        )
        changed = config.replace(server=ServerConfig(hostname="example.net"))
        self.assertEqual(
            (
                changed.hosts.pop_personal,
                changed.hosts.pop_organization,
                changed.hosts.smtp,
            ),
            ("pop.example.net", "poppro.example.net", "out.example.com"),
        )

    def test_frozen(self) -> None:
        """A Config cannot be changed in place."""
        config = Config()
        self.assertRaises(AttributeError, setattr, config, "server", ServerConfig())
        self.assertRaises(AttributeError, setattr, config.server, "hostname", "x")
        self.assertEqual(config.server.hostname, "localhost")


class FileTests(ConfigTestCase):
    def test_every_key(self) -> None:
        """Every section and key of the file is parsed into the Config."""
        path = self.write(FULL_INI)
        base = os.path.dirname(path)
        self.assertEqual(
            load(path),
            Config(
                server=ServerConfig(
                    data=os.path.join(base, "state"),
                    hostname="mail.example.net",
                    db_threads=8,
                    workers=3,
                ),
                hosts=HostsConfig(
                    pop_personal="pop.example.com",
                    pop_organization="poppro.example.com",
                    smtp="smtp.example.com",
                ),
                listeners={
                    "pop3s": "tcp:995",
                    "pop3": "tcp:110",
                    "imaps": "tcp:8993",
                    "imap": "tcp:8143",
                    "smtps": "tcp:port=465:interface=\\:\\:",
                    "submission": "tcp:587",
                    "mx": "",
                    "web": "tcp:8443",
                    "metrics": "tcp:9180:interface=127.0.0.1",
                },
                tls=TLSConfig(
                    default=TLSCertificate(
                        certificate=os.path.join(base, "certs/chain.pem"),
                        key=os.path.join(base, "certs/key.pem"),
                    ),
                    by_host={
                        "pop.example.com": TLSCertificate(
                            certificate="/etc/ssl/pop.pem", key="/etc/ssl/pop.pem"
                        )
                    },
                ),
                limits=LimitsConfig(
                    message_size=20 * 1024 * 1024,
                    recipients=50,
                    pop_idle_timeout=300.0,
                    smtp_timeout=120.5,
                    line_length=4096,
                ),
                accounts=AccountsConfig(
                    default_plan="paid",
                    free_pop_cutoff=datetime.datetime(2024, 6, 1, tzinfo=datetime.UTC),
                    bcrypt_cost=10,
                ),
                submission=SubmissionConfig(save_sent_copy=False),
            ),
        )

    def test_empty_file(self) -> None:
        """An empty file gives the defaults."""
        self.assertEqual(load(self.write("")), Config())

    def test_host_names_derived_from_file_hostname(self) -> None:
        """A hostname from the file derives the host names it does not set."""
        config = load(self.write("[server]\nhostname = example.org\n[hosts]\n"))
        self.assertEqual(
            (
                config.hosts.pop_personal,
                config.hosts.pop_organization,
                config.hosts.smtp,
            ),
            ("pop.example.org", "poppro.example.org", "smtp.example.org"),
        )

    def test_partial_listeners(self) -> None:
        """Listeners the file does not name keep their defaults."""
        config = load(self.write("[listeners]\npop3 = tcp:110\nmx =\n"))
        self.assertEqual(
            dict(config.listeners),
            {
                "pop3s": "tcp:8995",
                "pop3": "tcp:110",
                "imaps": "tcp:8993",
                "imap": "tcp:8143",
                "smtps": "tcp:8465",
                "submission": "tcp:8587",
                "mx": "",
                "web": "tcp:8443",
                "metrics": "tcp:9180:interface=127.0.0.1",
            },
        )

    def test_relative_data_dir(self) -> None:
        """A relative data directory is relative to the file's directory."""
        path = self.write("[server]\ndata = ../var/zpop\n")
        self.assertEqual(
            load(path).server.data,
            os.path.join(os.path.dirname(path), "../var/zpop"),
        )

    def test_absolute_data_dir(self) -> None:
        """An absolute data directory is kept as it is."""
        path = self.write("[server]\ndata = /var/lib/zpop\n")
        self.assertEqual(load(path).server.data, "/var/lib/zpop")

    def test_relative_file_name_resolved(self) -> None:
        """A config file named relative to the cwd still resolves paths from it."""
        path = self.write("[server]\ndata = state\n[tls]\ncertificate = c.pem\n")
        directory = os.path.dirname(path)
        cwd = os.getcwd()
        self.addCleanup(os.chdir, cwd)
        os.chdir(directory)
        config = load(CONFIG_NAME)
        self.assertEqual(
            (config.server.data, config.tls.default),
            (
                os.path.join(directory, "state"),
                TLSCertificate(
                    certificate=os.path.join(directory, "c.pem"),
                    key=os.path.join(directory, "c.pem"),
                ),
            ),
        )

    def test_tls_key_defaults_to_certificate(self) -> None:
        """Without a key the certificate file holds the key too."""
        path = self.write("[tls]\ncertificate = both.pem\n")
        both = os.path.join(os.path.dirname(path), "both.pem")
        self.assertEqual(
            load(path).tls.default, TLSCertificate(certificate=both, key=both)
        )

    def test_tls_alt_certificate(self) -> None:
        """alt_certificate/alt_key name a second chain (key defaults to the
        chain file), in [tls] and in [tls:HOST]."""
        path = self.write(
            "[tls]\ncertificate = rsa.pem\nkey = rsa.key\n"
            "alt_certificate = ec.pem\nalt_key = /keys/ec.key\n"
            "[tls:pop.example.com]\ncertificate = pop.pem\n"
            "alt_certificate = pop-ec.pem\n"
        )
        base = os.path.dirname(path)
        config = load(path)
        self.assertEqual(
            (config.tls.default, dict(config.tls.by_host)),
            (
                TLSCertificate(
                    certificate=os.path.join(base, "rsa.pem"),
                    key=os.path.join(base, "rsa.key"),
                    alt_certificate=os.path.join(base, "ec.pem"),
                    alt_key="/keys/ec.key",
                ),
                {
                    "pop.example.com": TLSCertificate(
                        certificate=os.path.join(base, "pop.pem"),
                        key=os.path.join(base, "pop.pem"),
                        alt_certificate=os.path.join(base, "pop-ec.pem"),
                        alt_key=os.path.join(base, "pop-ec.pem"),
                    )
                },
            ),
        )

    def test_tls_alt_key_without_certificate(self) -> None:
        """alt_key alone says alt_certificate is missing."""
        path, text = self.error("[tls]\ncertificate = c.pem\nalt_key = k.pem\n")
        self.assertEqual(text, f"{path}: [tls] alt_certificate: missing")

    def test_tls_per_host(self) -> None:
        """[tls:HOST] sections give certificates per SNI host name, lower-cased."""
        path = self.write(
            "[tls:POP.example.com]\ncertificate = pop.pem\nkey = pop.key\n"
            "[tls:smtp.example.com]\ncertificate = /etc/smtp.pem\n"
        )
        base = os.path.dirname(path)
        config = load(path)
        self.assertEqual(
            (config.tls.default, dict(config.tls.by_host)),
            (
                None,
                {
                    "pop.example.com": TLSCertificate(
                        certificate=os.path.join(base, "pop.pem"),
                        key=os.path.join(base, "pop.key"),
                    ),
                    "smtp.example.com": TLSCertificate(
                        certificate="/etc/smtp.pem", key="/etc/smtp.pem"
                    ),
                },
            ),
        )

    def test_sizes(self) -> None:
        """Sizes take an optional K, M or G suffix in either case."""
        for text, size in (
            ("1000", 1000),
            ("64k", 64 * 1024),
            ("64K", 64 * 1024),
            ("20m", 20 * 1024**2),
            ("2G", 2 * 1024**3),
        ):
            path = self.write(f"[limits]\nmessage_size = {text}\n")
            self.assertEqual(load(path).limits.message_size, size, text)

    def test_booleans(self) -> None:
        """Booleans accept yes/no, true/false, on/off and 1/0."""
        for text, value in (
            ("yes", True),
            ("True", True),
            ("on", True),
            ("1", True),
            ("NO", False),
            ("false", False),
            ("off", False),
            ("0", False),
        ):
            path = self.write(f"[submission]\nsave_sent_copy = {text}\n")
            self.assertEqual(load(path).submission.save_sent_copy, value, text)

    def test_empty_cutoff(self) -> None:
        """An empty free_pop_cutoff means no cut-off."""
        path = self.write("[accounts]\nfree_pop_cutoff =\n")
        self.assertIsNone(load(path).accounts.free_pop_cutoff)

    def test_bcrypt_cost_bounds(self) -> None:
        """bcrypt costs 4 and 31 are accepted."""
        for cost in (4, 31):
            path = self.write(f"[accounts]\nbcrypt_cost = {cost}\n")
            self.assertEqual(load(path).accounts.bcrypt_cost, cost)

    def test_no_interpolation(self) -> None:
        """Percent signs are taken literally (no ini interpolation)."""
        path = self.write("[server]\ndata = /srv/100%zpop\n")
        self.assertEqual(load(path).server.data, "/srv/100%zpop")


class OverrideTests(ConfigTestCase):
    def test_overrides_beat_file(self) -> None:
        """Options override the file, listeners included."""
        path = self.write(
            "[server]\nhostname = file.example\n[limits]\nrecipients = 7\n"
            "[listeners]\npop3s = tcp:995\nmx = tcp:25\n"
        )
        config = load(
            path,
            {
                "server": {"hostname": "option.example"},
                "limits": {"recipients": 9},
                "listeners": {"pop3s": "tcp:1995", "mx": ""},
            },
        )
        self.assertEqual(
            (
                config.server.hostname,
                config.hosts.pop_personal,
                config.limits.recipients,
                config.listeners["pop3s"],
                config.listeners["mx"],
            ),
            ("option.example", "pop.option.example", 9, "tcp:1995", ""),
        )

    def test_none_overrides_ignored(self) -> None:
        """An override of None (an option not given) leaves the file's value."""
        path = self.write(
            "[server]\ndata = state\nhostname = file.example\n"
            "[listeners]\nmx = tcp:25\n"
        )
        config = load(
            path,
            {"server": {"data": None, "hostname": None}, "listeners": {"mx": None}},
        )
        self.assertEqual(
            (config.server.data, config.server.hostname, config.listeners["mx"]),
            (os.path.join(os.path.dirname(path), "state"), "file.example", "tcp:25"),
        )

    def test_overrides_without_file(self) -> None:
        """Overrides apply on top of the defaults when there is no file."""
        config = load(
            None,
            {"server": {"data": "/srv/zpop"}, "listeners": {"smtps": "", "pop3": None}},
        )
        self.assertEqual(
            (config.server.data, config.listeners["smtps"], config.listeners["pop3"]),
            ("/srv/zpop", "", ""),
        )


class ErrorTests(ConfigTestCase):
    def test_unknown_section(self) -> None:
        """An unknown section is named with the file."""
        path, text = self.error("[server]\nhostname = a.example\n[imap]\nport = 1\n")
        self.assertEqual(text, f"{path}: [imap]: unknown section")

    def test_unknown_key(self) -> None:
        """An unknown key is named with the file and section."""
        path, text = self.error("[limits]\nrecipients = 5\nmax_size = 10\n")
        self.assertEqual(text, f"{path}: [limits] max_size: unknown key")

    def test_retired_pop_lock_lease(self) -> None:
        """pop_lock_lease, which older versions knew, is refused with why it
        went and what to do, not as an unknown key."""
        path, text = self.error("[limits]\nrecipients = 5\npop_lock_lease = 120\n")
        self.assertEqual(
            text,
            f"{path}: [limits] pop_lock_lease: no longer used: maildrop locks now"
            " end with the process that holds them, so there is no lease;"
            " remove the line",
        )

    def test_unknown_listener(self) -> None:
        """An unknown listener is an unknown key of [listeners]."""
        path, text = self.error("[listeners]\njmap = tcp:8080\n")
        self.assertEqual(text, f"{path}: [listeners] jmap: unknown key")

    def test_unknown_tls_key(self) -> None:
        """An unknown key in a TLS section is named with its section."""
        path, text = self.error(
            "[tls:pop.example.com]\ncertificate = c.pem\npassword = x\n"
        )
        self.assertEqual(text, f"{path}: [tls:pop.example.com] password: unknown key")

    def test_tls_without_certificate(self) -> None:
        """A TLS section without a certificate says it is missing."""
        path, text = self.error("[tls]\nkey = k.pem\n")
        self.assertEqual(text, f"{path}: [tls] certificate: missing")

    def test_bad_int(self) -> None:
        """A malformed whole number names file, section, key and value."""
        path, text = self.error("[limits]\nrecipients = many\n")
        self.assertEqual(
            text,
            f"{path}: [limits] recipients: bad value 'many':"
            " must be a positive whole number",
        )

    def test_int_not_positive(self) -> None:
        """A whole number that must be positive refuses zero."""
        path, text = self.error("[server]\ndb_threads = 0\n")
        self.assertEqual(
            text,
            f"{path}: [server] db_threads: bad value '0':"
            " must be a positive whole number",
        )

    def test_workers_limit(self) -> None:
        """More worker processes than MAX_WORKERS are refused."""
        path, text = self.error("[server]\nworkers = 65\n")
        self.assertEqual(
            text, f"{path}: [server] workers: bad value '65': must be at most 64"
        )

    def test_bad_size(self) -> None:
        """A malformed size names file, section, key and value."""
        path, text = self.error("[limits]\nmessage_size = 12X\n")
        self.assertEqual(
            text,
            f"{path}: [limits] message_size: bad value '12X':"
            " must be a positive number of bytes, optionally followed by K, M or G",
        )

    def test_bad_seconds(self) -> None:
        """A malformed duration names file, section, key and value."""
        for value in ("soon", "-1", "0", "inf"):
            path, text = self.error(f"[limits]\npop_idle_timeout = {value}\n")
            self.assertEqual(
                text,
                f"{path}: [limits] pop_idle_timeout: bad value {value!r}:"
                " must be a positive number of seconds",
            )

    def test_bad_date(self) -> None:
        """A malformed cut-off date names file, section, key and value."""
        for value in ("2024-13-01", "yesterday"):
            path, text = self.error(f"[accounts]\nfree_pop_cutoff = {value}\n")
            self.assertEqual(
                text,
                f"{path}: [accounts] free_pop_cutoff: bad value {value!r}:"
                " must be a date like 2024-06-30, or empty for no cut-off",
            )

    def test_bad_plan(self) -> None:
        """An unknown plan names file, section, key and value."""
        path, text = self.error("[accounts]\ndefault_plan = gold\n")
        self.assertEqual(
            text,
            f"{path}: [accounts] default_plan: bad value 'gold': expected free or paid",
        )

    def test_bad_bcrypt_cost(self) -> None:
        """A bcrypt cost out of range or not a number names its bounds."""
        for value in ("3", "32", "high"):
            path, text = self.error(f"[accounts]\nbcrypt_cost = {value}\n")
            self.assertEqual(
                text,
                f"{path}: [accounts] bcrypt_cost: bad value {value!r}:"
                " bcrypt cost must be between 4 and 31",
            )

    def test_bad_bool(self) -> None:
        """A malformed yes/no names file, section, key and value."""
        path, text = self.error("[submission]\nsave_sent_copy = maybe\n")
        self.assertEqual(
            text,
            f"{path}: [submission] save_sent_copy: bad value 'maybe':"
            " expected yes or no",
        )

    def test_bad_host(self) -> None:
        """A host name with spaces names file, section, key and value."""
        path, text = self.error("[hosts]\nsmtp = smtp example\n")
        self.assertEqual(
            text,
            f"{path}: [hosts] smtp: bad value 'smtp example': expected a host name",
        )

    def test_missing_file(self) -> None:
        """A config file that does not exist is named with the reason."""
        path = os.path.join(os.path.abspath(self.mktemp()), "zpop.ini")
        error = self.assertRaises(ConfigError, load, path)
        self.assertEqual(
            str(error), f"cannot read config file {path}: No such file or directory"
        )

    def test_unreadable_file(self) -> None:
        """A config path that cannot be read is named with the reason."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        error = self.assertRaises(ConfigError, load, directory)
        self.assertEqual(
            str(error), f"cannot read config file {directory}: Is a directory"
        )

    def test_no_section_header(self) -> None:
        """Text before any section is refused in one line naming file and line."""
        path, text = self.error("# zpop\nhostname = example.com\n")
        self.assertEqual(
            text,
            f"{path}: line 2: not a valid ini file: text before the first [section]",
        )

    def test_line_without_value(self) -> None:
        """A line that is not key = value is refused in one line naming it."""
        path, text = self.error("[server]\nhostname = a.example\njunk\n")
        self.assertEqual(
            text, f"{path}: line 3: not a valid ini file: expected key = value"
        )

    def test_duplicate_section(self) -> None:
        """A section given twice is refused, naming file and line."""
        path, text = self.error("[server]\ndb_threads = 2\n[server]\n")
        self.assertEqual(
            text,
            f"{path}: not a valid ini file: While reading from {path!r}"
            " [line  3]: section 'server' already exists",
        )

    def test_duplicate_key(self) -> None:
        """A key given twice in a section is refused, naming file and line."""
        path, text = self.error("[server]\ndb_threads = 2\nDB_threads = 3\n")
        self.assertEqual(
            text,
            f"{path}: not a valid ini file: While reading from {path!r}"
            " [line  3]: option 'db_threads' in section 'server' already exists",
        )

    def test_not_utf8(self) -> None:
        """A file that is not UTF-8 is refused, naming the file."""
        path, text = self.error(b"[server]\nhostname = caf\xe9.example\n")
        self.assertEqual(
            text,
            f"{path}: not a valid ini file: 'utf-8' codec can't decode byte 0xe9"
            " in position 23: invalid continuation byte",
        )


class FindConfigFileTests(ConfigTestCase):
    def test_explicit(self) -> None:
        """An explicitly given file is used, even if it does not exist."""
        self.assertEqual(find_config_file("/etc/zpop.ini", "/srv"), "/etc/zpop.ini")

    def test_in_data_dir(self) -> None:
        """Without an explicit file, DATA/zpop.ini is used if it exists."""
        path = self.write("")
        self.assertEqual(find_config_file(None, os.path.dirname(path)), path)

    def test_none(self) -> None:
        """No explicit file and no DATA/zpop.ini means no file."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        self.assertEqual(
            (find_config_file(None, directory), find_config_file(None, None)),
            (None, None),
        )

    def test_default_data_dir(self) -> None:
        """The default data directory is $ZPOP_DATA, else ./zpop-data."""
        self.patch(os, "environ", {"ZPOP_DATA": "/srv/zpop"})
        self.assertEqual(default_data_dir(), "/srv/zpop")
        self.patch(os, "environ", {"ZPOP_DATA": ""})
        self.assertEqual(default_data_dir(), "zpop-data")
        self.patch(os, "environ", {})
        self.assertEqual(default_data_dir(), "zpop-data")


class AuthSectionTests(ConfigTestCase):
    """The [auth] section: login throttling, bans, cache, connection limits."""

    def test_auth_keys(self) -> None:
        """Every [auth] key is parsed; networks accept commas or spaces."""
        path = self.write(
            "[auth]\n"
            "failure_delay = 1.5\nfailure_delay_max = 20\nfailure_window = 300\n"
            "ban_threshold = 7\nban_period = 60\naccount_failure_threshold = 4\n"
            "credential_cache = 0\nallow_networks = 10.0.0.0/8, 2001:db8::/32 ::1\n"
            "max_connections_per_client = 9\nmax_connections = 99\n"
            "imap_connections_per_client = 500\n"
            "imap_sessions_per_account_client = 3\n"
            "login_deadline = 45\n"
        )
        config = load(path)
        self.assertEqual(
            (
                config.auth.failure_delay,
                config.auth.failure_delay_max,
                config.auth.failure_window,
                config.auth.ban_threshold,
                config.auth.ban_period,
                config.auth.account_failure_threshold,
                config.auth.credential_cache,
                [str(n) for n in config.auth.allow_networks],
                config.auth.max_connections_per_client,
                config.auth.max_connections,
                config.auth.imap_connections_per_client,
                config.auth.imap_sessions_per_account_client,
                config.auth.login_deadline,
            ),
            (
                1.5,
                20.0,
                300.0,
                7,
                60.0,
                4,
                0.0,
                ["10.0.0.0/8", "2001:db8::/32", "::1/128"],
                9,
                99,
                500,
                3,
                45.0,
            ),
        )

    def test_bad_network(self) -> None:
        """A malformed network names file, section and key."""
        path = self.write("[auth]\nallow_networks = 10.0.0.0/8 nonsense\n")
        with self.assertRaises(ConfigError) as caught:
            load(path)
        self.assertEqual(
            str(caught.exception),
            f"{path}: [auth] allow_networks: bad value '10.0.0.0/8 nonsense':"
            " 'nonsense' is not a network like 192.0.2.0/24",
        )

    def test_negative_delay(self) -> None:
        """A negative delay is refused."""
        path = self.write("[auth]\nfailure_delay = -1\n")
        with self.assertRaises(ConfigError) as caught:
            load(path)
        self.assertEqual(
            str(caught.exception),
            f"{path}: [auth] failure_delay: bad value '-1':"
            " must be a number of seconds, 0 or more",
        )


class OutboundSectionTests(ConfigTestCase):
    """The [outbound] and [routes] sections: the relay's next hops and limits."""

    def test_defaults(self) -> None:
        """Without a file the relay uses MX, opportunistic TLS and Postfix-like
        back-off (5 minutes to an hour, 5 days)."""
        config = load(None)
        self.assertEqual(
            (
                config.outbound.smarthost,
                config.outbound.smarthost_tls,
                config.outbound.require_tls,
                dict(config.outbound.routes),
                config.outbound.max_connections,
                config.outbound.max_connections_per_domain,
                config.outbound.retry_min,
                config.outbound.retry_max,
                config.outbound.lifetime,
            ),
            (None, "verify", False, {}, 20, 2, 300.0, 3600.0, 432000.0),
        )

    def test_outbound_keys_and_routes(self) -> None:
        """Every [outbound] key is parsed; files are relative to the config;
        [routes] maps domains (any case) to host:port, port 25 by default."""
        path = self.write(
            "[outbound]\n"
            "smarthost = Relay.Example.net:587\nsmarthost_user = zpop\n"
            "smarthost_password_file = relay.secret\nsmarthost_tls = encrypt\n"
            "smarthost_ca = ca.pem\nrequire_tls = yes\nmax_connections = 7\n"
            "max_connections_per_domain = 3\nmessages_per_connection = 9\n"
            "retry_min = 60\nretry_max = 600\nscan_interval = 2\nlease = 30\n"
            "timeout = 20\nlifetime = 3600\n"
            "[routes]\n"
            "Example.ORG = 127.0.0.1:2525\nv6.example = [::1]:26\n"
            "plain.example = mx.plain.example\n"
        )
        base = os.path.dirname(os.path.abspath(path))
        config = load(path)
        self.assertEqual(
            (
                config.outbound.smarthost,
                config.outbound.smarthost_user,
                config.outbound.smarthost_password_file,
                config.outbound.smarthost_tls,
                config.outbound.smarthost_ca,
                config.outbound.require_tls,
                config.outbound.max_connections,
                config.outbound.max_connections_per_domain,
                config.outbound.messages_per_connection,
                config.outbound.retry_min,
                config.outbound.retry_max,
                config.outbound.scan_interval,
                config.outbound.lease,
                config.outbound.timeout,
                config.outbound.lifetime,
                dict(config.outbound.routes),
            ),
            (
                ("relay.example.net", 587),
                "zpop",
                os.path.join(base, "relay.secret"),
                "encrypt",
                os.path.join(base, "ca.pem"),
                True,
                7,
                3,
                9,
                60.0,
                600.0,
                2.0,
                30.0,
                20.0,
                3600.0,
                {
                    "example.org": ("127.0.0.1", 2525),
                    "v6.example": ("::1", 26),
                    "plain.example": ("mx.plain.example", 25),
                },
            ),
        )

    def test_bad_smarthost(self) -> None:
        """A smart host with a bad port names file, section and key."""
        path = self.write("[outbound]\nsmarthost = relay.example:99999\n")
        with self.assertRaises(ConfigError) as caught:
            load(path)
        self.assertEqual(
            str(caught.exception),
            f"{path}: [outbound] smarthost: bad value 'relay.example:99999':"
            " port '99999' is not a number from 1 to 65535",
        )

    def test_bad_tls_level(self) -> None:
        """smarthost_tls accepts only verify, encrypt or may."""
        path = self.write("[outbound]\nsmarthost_tls = maybe\n")
        with self.assertRaises(ConfigError) as caught:
            load(path)
        self.assertEqual(
            str(caught.exception),
            f"{path}: [outbound] smarthost_tls: bad value 'maybe':"
            " expected verify, encrypt or may",
        )

    def test_bad_route(self) -> None:
        """A route without a host names the domain key."""
        path = self.write("[routes]\nexample.org =\n")
        with self.assertRaises(ConfigError) as caught:
            load(path)
        self.assertEqual(
            str(caught.exception),
            f"{path}: [routes] example.org: missing host:port",
        )


class SMTPKeysTests(ConfigTestCase):
    def test_smtp_session_and_queue_lifetime(self) -> None:
        """[limits] smtp_session and [outbound] lifetime are read, with
        defaults of one hour and five days."""
        path = self.write("[limits]\nsmtp_session = 90\n[outbound]\nlifetime = 3600\n")
        cfg = load(path)
        self.assertEqual(
            (
                cfg.limits.smtp_session,
                cfg.outbound.lifetime,
                Config().limits.smtp_session,
                Config().outbound.lifetime,
            ),
            (90.0, 3600.0, 3600.0, 432000.0),
        )
