"""``twistd zpop``: option parsing, the service tree, and the real thing
started as a subprocess (integration)."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import signal
import socket
import ssl
import subprocess
import time
from typing import Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import CannotListenError
from twisted.internet.testing import (
    MemoryReactorClock,
    RaisingMemoryReactor,
)
from twisted.logger import capturedLogs
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python import usage
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from zpop.config import LISTENERS
from zpop.limits import ConnectionLimiter
from zpop.store import DATABASE_NAME
from zpop.store.sqlite import latest_version
from zpop.tap import (
    ListenError,
    Options,
    StartupError,
    StopInOrder,
    StoreService,
    makeService,
    protocol_factory,
)
from zpop.test.harness import (
    LISTENER_LINE,
    ZpopServer,
    admin_available,
    start_server,
    twistd_command,
)
from zpop.test.tools import require_tool

ALL_LOCAL = {name: "tcp:0:interface=127.0.0.1" for name in LISTENERS}


class EnvironmentMixin:
    """Run with no $ZPOP_DATA, in a fresh working directory."""

    def isolate(self) -> str:
        saved = os.environ.pop("ZPOP_DATA", None)
        if saved is not None:
            self.addCleanup(os.environ.__setitem__, "ZPOP_DATA", saved)
        cwd = os.getcwd()
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        os.chdir(work)
        self.addCleanup(os.chdir, cwd)
        return work

    def write(self, name: str, text: str) -> str:
        path = os.path.abspath(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


class OptionsTests(EnvironmentMixin, SynchronousTestCase):
    """Options only convert and validate strings into one Config."""

    def setUp(self) -> None:
        self.work = self.isolate()

    def test_defaults(self) -> None:
        """No options: ./zpop-data and the unprivileged default listeners."""
        cfg = parse().config
        self.assertEqual(
            (
                cfg.server.data,
                dict(cfg.listeners),
                cfg.tls.default,
                cfg.server.hostname,
            ),
            (os.path.join(self.work, "zpop-data"), LISTENERS, None, "localhost"),
        )

    def test_zpop_data_environment(self) -> None:
        """$ZPOP_DATA is the default data directory, as for the CLI."""
        os.environ["ZPOP_DATA"] = "elsewhere"
        self.addCleanup(os.environ.pop, "ZPOP_DATA", None)
        self.assertEqual(
            parse().config.server.data, os.path.join(self.work, "elsewhere")
        )

    def test_overrides(self) -> None:
        """Each listener option replaces that endpoint; "" disables it."""
        cfg = parse(
            "--pop3s",
            "tcp:port=995:interface=\\:\\:",
            "--pop3=tcp:110",
            "--smtps=",
            "--submission",
            "unix:/tmp/zpop-submission.sock",
            "--mx",
            "  ",
            "--data",
            "d",
        ).config
        self.assertEqual(
            (cfg.server.data, dict(cfg.listeners)),
            (
                os.path.join(self.work, "d"),
                {
                    "pop3s": "tcp:port=995:interface=\\:\\:",
                    "pop3": "tcp:110",
                    "imaps": "tcp:8993",
                    "imap": "tcp:8143",
                    "smtps": "",
                    "submission": "unix:/tmp/zpop-submission.sock",
                    "mx": "",
                    "web": "tcp:8443",
                    "metrics": "tcp:9180:interface=127.0.0.1",
                },
            ),
        )

    def test_config_file(self) -> None:
        """--config is read; its data path is relative to the file; options
        override its listeners; --data overrides its data."""
        path = self.write(
            "etc/zpop.ini",
            "[server]\ndata = ../var\nhostname = example.test\n"
            "[listeners]\npop3s = tcp:995\nmx =\n",
        )
        cfg = parse("--config", path, "--pop3s", "tcp:1995").config
        self.assertEqual(
            (cfg.server.data, cfg.server.hostname, dict(cfg.listeners)),
            (
                os.path.join(self.work, "var"),
                "example.test",
                {**LISTENERS, "pop3s": "tcp:1995", "mx": ""},
            ),
        )
        self.assertEqual(
            parse("--config", path, "--data", "x").config.server.data,
            os.path.join(self.work, "x"),
        )

    def test_config_in_data_dir(self) -> None:
        """Without --config, DATA/zpop.ini is read if present."""
        self.write("mail/zpop.ini", "[server]\nhostname = example.test\n")
        self.assertEqual(parse("--data", "mail").config.server.hostname, "example.test")

    def test_malformed_endpoints(self) -> None:
        """A bad endpoint is a UsageError naming the option and the problem."""
        errors = [
            str(self.assertRaises(usage.UsageError, parse, option, value))
            for option, value in (
                ("--pop3s", "tcp:abc"),
                ("--mx", "bogus:25"),
                ("--smtps", "ssl:465"),
                ("--submission", "tcp:70000"),
                ("--pop3", "tcp:110:backlog=many"),
            )
        ]
        self.assertEqual(
            errors,
            [
                "--pop3s: invalid endpoint 'tcp:abc': "
                "invalid literal for int() with base 10: 'abc'",
                "--mx: invalid endpoint 'bogus:25': Unknown endpoint type: 'bogus'",
                "--smtps: invalid endpoint 'ssl:465': use tcp:, zpop applies TLS "
                "itself from the [tls] section",
                "--submission: invalid endpoint 'tcp:70000': "
                "port 70000 out of range 0-65535",
                "--pop3: invalid endpoint 'tcp:110:backlog=many': "
                "invalid literal for int() with base 10: 'many'",
            ],
        )

    def test_malformed_endpoint_in_file(self) -> None:
        """A bad endpoint in the file names the file, section and key."""
        path = self.write("zpop.ini", "[listeners]\nmx = tcp:x\n")
        self.assertEqual(
            str(self.assertRaises(usage.UsageError, parse, "--config", path)),
            f"{path}: [listeners] mx: invalid endpoint 'tcp:x': "
            "invalid literal for int() with base 10: 'x'",
        )

    def test_bad_config(self) -> None:
        """A ConfigError becomes a UsageError naming file, section and key."""
        path = self.write("zpop.ini", "[limits]\nrecipients = many\n")
        missing = os.path.join(self.work, "missing.ini")
        self.assertEqual(
            [
                str(self.assertRaises(usage.UsageError, parse, "--config", path)),
                str(self.assertRaises(usage.UsageError, parse, "--config", missing)),
            ],
            [
                f"{path}: [limits] recipients: bad value 'many': "
                "must be a positive whole number",
                f"cannot read config file {missing}: No such file or directory",
            ],
        )

    def test_sample_config_loads(self) -> None:
        """etc/zpop.ini parses (TLS files need not exist when parsing)."""
        repository = os.path.join(os.path.dirname(__file__), *[os.pardir] * 3)
        sample = os.path.join(repository, "etc", "zpop.ini")
        cfg = parse("--config", os.path.abspath(sample)).config
        self.assertEqual(
            (
                cfg.server.data,
                cfg.host_names,
                dict(cfg.listeners),
                cfg.tls.default.certificate,
                sorted(cfg.tls.by_host),
                cfg.accounts.free_pop_cutoff.date().isoformat(),
                cfg.accounts.bcrypt_cost,
            ),
            (
                "/var/lib/zpop",
                (
                    "pop.example.com",
                    "poppro.example.com",
                    "smtp.example.com",
                    "example.com",
                ),
                {
                    "pop3s": "tcp:995",
                    "pop3": "",
                    "imaps": "tcp:993",
                    "imap": "tcp:143",
                    "smtps": "tcp:465",
                    "submission": "tcp:587",
                    "mx": "tcp:25",
                    "web": "tcp:443",
                    "metrics": "",
                },
                "/etc/letsencrypt/live/example.com/fullchain.pem",
                ["poppro.example.com"],
                "2024-01-01",
                12,
            ),
        )


class MakeServiceTests(EnvironmentMixin, SynchronousTestCase):
    """makeService builds one named tree, with TLS where it is implicit."""

    def setUp(self) -> None:
        self.work = self.isolate()

    def make(self, *args: str, reactor: Any = None) -> MultiService:
        return makeService(parse(*args), reactor or MemoryReactorClock())

    def all_listeners(self) -> list[str]:
        return [f"--{name}=tcp:0:interface=127.0.0.1" for name in LISTENERS]

    def test_tree(self) -> None:
        """Named children db, hashing and one per enabled listener; pop3s,
        imaps and smtps wrapped in TLS, the STLS/STARTTLS ones plaintext."""
        top = self.make("--data", "d", *self.all_listeners())

        def describe(factory: Any) -> str:
            if isinstance(factory, ConnectionLimiter):
                return "limited " + describe(factory.wrappedFactory)
            return type(factory).__name__

        shape = []
        for child in top:
            factory = getattr(child, "factory", None)
            wrapped = (
                describe(factory.wrappedFactory)
                if isinstance(factory, TLSMemoryBIOFactory)
                else None
            )
            shape.append(
                (
                    child.name,
                    type(child).__name__,
                    describe(factory) if factory else None,
                    wrapped,
                )
            )
        self.assertEqual(
            (IService.providedBy(top), isinstance(top, MultiService), shape),
            (
                True,
                True,
                [
                    ("store", "StoreService", None, None),
                    ("db", "ThreadPoolService", None, None),
                    ("hashing", "ThreadPoolService", None, None),
                    ("dkim", "ThreadPoolService", None, None),
                    ("mailauth", "ThreadPoolService", None, None),
                    ("activity", "ActivityRecorder", None, None),
                    ("pop-log", "PopLogRecorder", None, None),
                    (
                        "pop3s",
                        "StreamServerEndpointService",
                        "TLSMemoryBIOFactory",
                        "limited POP3Factory",
                    ),
                    (
                        "pop3",
                        "StreamServerEndpointService",
                        "limited POP3Factory",
                        None,
                    ),
                    (
                        "imaps",
                        "StreamServerEndpointService",
                        "TLSMemoryBIOFactory",
                        "limited IMAPFactory",
                    ),
                    (
                        "imap",
                        "StreamServerEndpointService",
                        "limited IMAPFactory",
                        None,
                    ),
                    (
                        "smtps",
                        "StreamServerEndpointService",
                        "TLSMemoryBIOFactory",
                        "limited SMTPFactory",
                    ),
                    (
                        "submission",
                        "StreamServerEndpointService",
                        "limited SMTPFactory",
                        None,
                    ),
                    (
                        "mx",
                        "StreamServerEndpointService",
                        "limited SMTPFactory",
                        None,
                    ),
                    (
                        "web",
                        "StreamServerEndpointService",
                        "TLSMemoryBIOFactory",
                        "limited ZpopSite",
                    ),
                    ("metrics-scrape", "ThreadPoolService", None, None),
                    (
                        "metrics",
                        "StreamServerEndpointService",
                        "MetricsSite",
                        None,
                    ),
                    ("outbound", "OutboundService", None, None),
                ],
            ),
        )

    def test_default_tree_and_data(self) -> None:
        """Defaults: pop3 is off, imaps and imap on; ./zpop-data (0700) gets
        the database, its change counter, the server key and the self-signed
        certificate."""
        top = self.make()
        data = os.path.join(self.work, "zpop-data")
        self.assertEqual(
            (
                [child.name for child in top],
                oct(os.stat(data).st_mode & 0o777),
                sorted(os.listdir(data)),
                os.listdir(os.path.join(data, "tls")),
            ),
            (
                [
                    "store",
                    "db",
                    "hashing",
                    "dkim",
                    "mailauth",
                    "activity",
                    "pop-log",
                    "pop3s",
                    "imaps",
                    "imap",
                    "smtps",
                    "submission",
                    "mx",
                    "web",
                    "metrics-scrape",
                    "metrics",
                    "outbound",
                ],
                "0o700",
                ["server.key", "tls", DATABASE_NAME, DATABASE_NAME + "-changes"],
                ["selfsigned.pem"],
            ),
        )

    def test_start_logs(self) -> None:
        """Start-up logs the data directory, the certificate source and one
        line per listener with the address it really listens on."""
        reactor = MemoryReactorClock()
        with capturedLogs() as events:
            top = self.make("--data", "d", "--pop3s=tcp:995", reactor=reactor)
            top.privilegedStartService()
            top.startService()
        self.addCleanup(top.stopService)
        data = os.path.join(self.work, "d")
        lines = [
            e["log_format"].format(**e)
            for e in events
            if e.get("log_namespace") == "zpop.tap"
        ]
        self.assertEqual(
            lines,
            [
                f"data directory {data}",
                f"database {data}/{DATABASE_NAME} at schema version {latest_version()}",
                f"TLS: self-signed certificate generated in {data}/tls/selfsigned.pem",
                "listener pop3s: POP3 on 0.0.0.0:995, TLS implicit",
                "listener imaps: IMAP on 0.0.0.0:8993, TLS implicit",
                "listener imap: IMAP on 0.0.0.0:8143, TLS STARTTLS",
                "listener smtps: SMTP on 0.0.0.0:8465, TLS implicit",
                "listener submission: SMTP on 0.0.0.0:8587, TLS STARTTLS",
                "listener mx: SMTP on 0.0.0.0:8025, TLS STARTTLS",
                "listener web: HTTP on 0.0.0.0:8443, TLS implicit",
                "listener metrics: HTTP on 0.0.0.0:9180, TLS none",
            ],
        )
        self.assertEqual(
            [(port, interface) for port, _, _, interface in reactor.tcpServers],
            [
                (995, ""),
                (8993, ""),
                (8143, ""),
                (8465, ""),
                (8587, ""),
                (8025, ""),
                (8443, ""),
                (9180, "127.0.0.1"),
            ],
        )

    def test_busy_port(self) -> None:
        """A port that cannot be bound raises at start-up, naming it."""
        busy = CannotListenError(
            "127.0.0.1", 995, OSError(errno.EADDRINUSE, "Address already in use")
        )
        top = self.make(
            "--data",
            "d",
            "--pop3s=tcp:995:interface=127.0.0.1",
            reactor=RaisingMemoryReactor(listenException=busy),
        )
        with capturedLogs():
            error = self.assertRaises(ListenError, top.privilegedStartService)
        self.assertEqual(
            str(error),
            "zpop: error: listener pop3s cannot listen on 127.0.0.1:995 "
            "(tcp:995:interface=127.0.0.1): Address already in use",
        )

    def test_bad_database(self) -> None:
        """A database this zpop cannot use stops start-up with its message."""
        self.write(f"d/{DATABASE_NAME}", "this is not sqlite" * 100)
        error = self.assertRaises(StartupError, self.make, "--data", "d")
        self.assertEqual(
            error.code,
            f"zpop: error: {self.work}/d/{DATABASE_NAME} is not a zpop database: "
            "file is not a database",
        )

    def test_bad_certificate(self) -> None:
        """An unreadable [tls] certificate stops start-up naming the file."""
        path = self.write("zpop.ini", "[tls]\ncertificate = nope.pem\n")
        error = self.assertRaises(
            StartupError, self.make, "--config", path, "--data", "d"
        )
        self.assertEqual(
            error.code,
            "zpop: error: cannot read TLS certificate "
            f"{self.work}/nope.pem: No such file or directory",
        )

    def test_workers_share_limits(self) -> None:
        """With workers, the tree ends in the worker pool and each process
        enforces its share of the connection limits (rounded up)."""
        config = os.path.join(self.work, "zpop.ini")
        with open(config, "w", encoding="utf-8") as f:
            f.write(
                "[server]\nworkers = 3\n[auth]\nmax_connections_per_client = 20\n"
                "max_connections = 1000\n"
            )
        # Without the metrics listener: with it, several processes switch
        # this (test) process's metrics to files for good (zpop.metrics).
        top = self.make("--config", config, "--data", "d", "--metrics", "")
        names = [child.name for child in top]
        limiter = top.getServiceNamed("submission").factory
        self.assertEqual(
            (names[-2:], limiter.per_client, limiter.total),
            (["outbound", "workers"], 7, 334),
        )

    def test_protocol_factory_unknown(self) -> None:
        """protocol_factory refuses a listener name it does not know."""
        error = self.assertRaises(ValueError, protocol_factory, "jmap", None)
        self.assertEqual(str(error), "unknown listener 'jmap'")


# --- integration: a real twistd ------------------------------------------


def run_twistd(
    args: list[str], cwd: str, timeout: float = 20.0
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("ZPOP_DATA", None)
    return subprocess.run(
        [*twistd_command(), "-n", "--pidfile=", "zpop", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def s_client(port: int, *args: str) -> tuple[str, str]:
    """(negotiated protocol, first line from the server) via openssl s_client."""
    result = subprocess.run(
        [
            require_tool("openssl"),
            "s_client",
            "-connect",
            f"127.0.0.1:{port}",
            "-servername",
            "pop.example.test",
            "-ign_eof",
            *args,
        ],
        input=b"QUIT\r\n",
        capture_output=True,
        timeout=20,
    )
    out = result.stdout.decode("utf-8", "replace")
    match = re.search(r"^New, (\S+), Cipher is (\S+)", out, re.M)
    protocol = match.group(1).rstrip(",") if match else "no handshake"
    if match and match.group(2) == "(NONE)":
        protocol = "(NONE)"
    greeting = re.search(r"^(-ERR .*|\+OK .*|554 .*|220 .*)$", out, re.M)
    return protocol, greeting.group(1).strip() if greeting else ""


def fingerprint(port: int, server: ZpopServer) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with server.ssl_context().wrap_socket(
            raw, server_hostname="pop.example.test"
        ) as s:
            return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()


class _Recording(Service):
    def __init__(self, name: str, log: list[str], pending: Deferred | None) -> None:
        self.setName(name)
        self._log = log
        self._pending = pending

    def stopService(self) -> Deferred | None:  # noqa: N802 - Twisted API
        super().stopService()
        self._log.append(self.name)
        return self._pending


class StopInOrderTests(SynchronousTestCase):
    def test_children_stop_one_at_a_time(self) -> None:
        """The last child stops first, and the one before it only once that
        stop has finished, so the relay still has its database pool."""
        stopped: list[str] = []
        releasing: Deferred = Deferred()
        top = StopInOrder()
        children = (("db", None), ("listener", None), ("outbound", releasing))
        for name, pending in children:
            _Recording(name, stopped, pending).setServiceParent(top)
        top.startService()
        done = top.stopService()
        before = list(stopped)
        releasing.callback(None)
        self.assertEqual(
            (before, stopped, self.successResultOf(done)),
            (["outbound"], ["outbound", "listener", "db"], None),
        )

    def test_store_closed_last(self) -> None:
        """The store service, the first child, closes the store once every
        other child (the database pool included) has stopped."""
        events: list[str] = []

        class Store:
            def close(self) -> None:
                events.append("store closed")

        top = StopInOrder()
        StoreService(Store()).setServiceParent(top)  # type: ignore[arg-type]
        _Recording("db", events, None).setServiceParent(top)
        top.startService()
        self.successResultOf(top.stopService())
        self.assertEqual(events, ["db", "store closed"])

    def test_failed_stop_goes_on(self) -> None:
        """A child whose stop fails is logged; the others still stop."""
        stopped: list[str] = []
        top = StopInOrder()
        _Recording("db", stopped, None).setServiceParent(top)
        _Recording("broken", stopped, fail(RuntimeError("boom"))).setServiceParent(top)
        top.startService()
        self.successResultOf(top.stopService())
        self.assertEqual(stopped, ["broken", "db"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class IntegrationTests(TestCase):
    """twistd -n zpop as a subprocess, on loopback ports."""

    timeout = 120

    def server(self, **kwargs: Any) -> ZpopServer:
        kwargs.setdefault("init", admin_available())
        return start_server(self, **kwargs)

    def test_start_up_log(self) -> None:
        """The log names the data directory, the certificate source and
        every listener with its real port."""
        server = self.server()
        log = server.log_text()
        listeners = [
            (m["name"], m["protocol"], m["host"], int(m["port"]), m["tls"])
            for m in LISTENER_LINE.finditer(log)
        ]
        source = re.search(r"TLS: (.*)", log)
        self.assertEqual(
            (
                f"data directory {server.data}\n" in log,
                source.group(1) if source else None,
                listeners,
            ),
            (
                True,
                f"self-signed certificate generated in {server.certificate_path}",
                [
                    ("pop3s", "POP3", "127.0.0.1", server.ports["pop3s"], "implicit"),
                    ("pop3", "POP3", "127.0.0.1", server.ports["pop3"], "STLS"),
                    ("imaps", "IMAP", "127.0.0.1", server.ports["imaps"], "implicit"),
                    ("imap", "IMAP", "127.0.0.1", server.ports["imap"], "STARTTLS"),
                    ("smtps", "SMTP", "127.0.0.1", server.ports["smtps"], "implicit"),
                    (
                        "submission",
                        "SMTP",
                        "127.0.0.1",
                        server.ports["submission"],
                        "STARTTLS",
                    ),
                    ("mx", "SMTP", "127.0.0.1", server.ports["mx"], "STARTTLS"),
                    ("web", "HTTP", "127.0.0.1", server.ports["web"], "implicit"),
                    ("metrics", "HTTP", "127.0.0.1", server.ports["metrics"], "none"),
                ],
            ),
        )

    def test_openssl_policy(self) -> None:
        """openssl s_client: TLS 1.1 and CBC/RSA-kx suites refused, TLS 1.2
        and 1.3 accepted and greeted, on both implicit-TLS listeners."""
        require_tool("openssl")
        server = self.server(listeners={"pop3": "", "submission": "", "mx": ""})
        results = {}
        for name in ("pop3s", "smtps"):
            port = server.ports[name]
            results[name] = [
                # OpenSSL 3 clients offer TLS 1.1 only at security level 0.
                s_client(port, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")[0],
                s_client(port, "-tls1_2"),
                s_client(port, "-tls1_3"),
                s_client(port, "-tls1_2", "-cipher", "AES128-SHA")[0],
                # -cipher only limits TLS <= 1.2, so cap the version too.
                s_client(port, "-no_tls1_3", "-cipher", "AES256-SHA")[0],
                # ECDHE with CBC and SHA-1, static RSA key exchange, CBC-SHA384.
                s_client(port, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA")[0],
                s_client(port, "-tls1_2", "-cipher", "AES128-GCM-SHA256")[0],
                s_client(port, "-tls1_2", "-cipher", "ECDHE-RSA-AES256-SHA384")[0],
            ]
        pop = "+OK example.test zpop POP3 server ready"
        smtp = "220 smtp.example.test ESMTP zpop ready"
        self.assertEqual(
            results,
            {
                "pop3s": [
                    "(NONE)",
                    ("TLSv1.2", pop),
                    ("TLSv1.3", pop),
                    "(NONE)",
                    "(NONE)",
                    "(NONE)",
                    "(NONE)",
                    "(NONE)",
                ],
                "smtps": [
                    "(NONE)",
                    ("TLSv1.2", smtp),
                    ("TLSv1.3", smtp),
                    "(NONE)",
                    "(NONE)",
                    "(NONE)",
                    "(NONE)",
                    "(NONE)",
                ],
            },
        )

    def test_certificate_reused(self) -> None:
        """A restart serves the same self-signed certificate and says so."""
        server = self.server(listeners={"pop3": "", "submission": "", "mx": ""})
        before = fingerprint(server.ports["pop3s"], server)
        server.restart()
        after = fingerprint(server.ports["pop3s"], server)
        self.assertEqual(
            (
                after,
                "TLS: self-signed certificate reused from "
                f"{server.certificate_path}\n" in server.log_text(current=True),
            ),
            (before, True),
        )

    def test_busy_port(self) -> None:
        """A busy port makes twistd exit non-zero quickly, naming the port."""
        blocker = socket.socket()
        self.addCleanup(blocker.close)
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        server = ZpopServer(
            listeners={**ALL_LOCAL, "smtps": f"tcp:{port}:interface=127.0.0.1"},
            init=False,
        )
        self.addCleanup(server.cleanup)
        started = time.monotonic()
        result = run_twistd(server.zpop_args(), server.dir)
        elapsed = time.monotonic() - started
        expected = (
            f"zpop: error: listener smtps cannot listen on 127.0.0.1:{port} "
            f"(tcp:{port}:interface=127.0.0.1): Address already in use"
        )
        output = result.stdout + result.stderr
        self.assertEqual(
            (result.returncode != 0, expected in output, elapsed < 15),
            (True, True, True),
            output,
        )

    def test_bad_endpoint(self) -> None:
        """A malformed endpoint is a usage error: non-zero exit, the option
        named, no traceback, nothing created."""
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        result = run_twistd(["--pop3s", "tcp:abc"], work)
        output = result.stdout + result.stderr
        self.assertEqual(
            (
                result.returncode != 0,
                "--pop3s: invalid endpoint 'tcp:abc': invalid literal for int() "
                "with base 10: 'abc'" in output,
                "Traceback" in output,
                os.listdir(work),
            ),
            (True, True, False, []),
            output,
        )

    def test_no_options(self) -> None:
        """`twistd -n zpop` alone creates ./zpop-data, a self-signed
        certificate, and listens on 8995, 8993, 8143, 8465, 8587, 8025, 8443
        and (for metrics, loopback only) 9180 (twistd ends itself with the
        signal it got, hence -SIGTERM)."""
        defaults = {
            "pop3s": 8995,
            "imaps": 8993,
            "imap": 8143,
            "smtps": 8465,
            "submission": 8587,
            "mx": 8025,
            "web": 8443,
            "metrics": 9180,
        }
        for port in defaults.values():
            probe = socket.socket()
            try:
                probe.bind(("", port))
            except OSError:
                raise SkipTest(f"port {port} is busy")
            finally:
                probe.close()
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        env = dict(os.environ)
        env.pop("ZPOP_DATA", None)
        env["PYTHONUNBUFFERED"] = "1"
        log_path = os.path.join(work, "twistd.log")
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [*twistd_command(), "-n", "--pidfile=", "zpop"],
                cwd=work,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

        def stop() -> None:
            if process.poll() is None:
                process.terminate()
                process.wait(15)

        self.addCleanup(stop)
        deadline = time.monotonic() + 20
        found: dict[str, int] = {}
        while time.monotonic() < deadline and process.poll() is None:
            with open(log_path, encoding="utf-8", errors="replace") as f:
                found = {
                    m["name"]: int(m["port"]) for m in LISTENER_LINE.finditer(f.read())
                }
            if len(found) == len(defaults):
                break
            time.sleep(0.05)
        stop()
        data = os.path.join(work, "zpop-data")
        with open(log_path, encoding="utf-8", errors="replace") as f:
            log = f.read()
        self.assertEqual(
            (
                found,
                os.path.exists(os.path.join(data, "tls", "selfsigned.pem")),
                f"TLS: self-signed certificate generated in {data}/tls/selfsigned.pem"
                in log,
                process.returncode,
            ),
            (defaults, True, True, -signal.SIGTERM),
            log,
        )

    def test_cli_smoke(self) -> None:
        """Through the zpop CLI: init, a domain and an account; the server
        serves a certificate valid for every configured host name."""
        if not admin_available():
            raise SkipTest("zpop.admin is not there yet")
        server = self.server(listeners={"pop3": "", "submission": "", "mx": ""})
        steps = [
            server.cli("domain", "add", "example.test"),
            server.cli(
                "account",
                "add",
                "alice@example.test",
                "--plan",
                "paid",
                "--password-stdin",
                stdin=b"correct horse battery\n",
            ),
            server.cli("pop", "enable", "alice@example.test", "--mode", "all"),
        ]
        self.assertEqual(
            [(r.returncode, r.stderr) for r in steps], [(0, b"")] * len(steps)
        )
        names = [
            "pop.example.test",
            "poppro.example.test",
            "smtp.example.test",
            "example.test",
            "localhost",
        ]
        greetings = {}
        for name in names:
            with socket.create_connection(
                ("127.0.0.1", server.ports["pop3s"]), timeout=10
            ) as raw:
                with server.ssl_context().wrap_socket(raw, server_hostname=name) as s:
                    greetings[name] = s.recv(200).split(b"\r\n")[0][:3]
        self.assertEqual(set(greetings.values()), {b"+OK"})
        self.assertEqual(sorted(greetings), sorted(names))

    def test_ssl_context_checks_names(self) -> None:
        """The harness's client context rejects a host name the certificate
        does not cover."""
        server = self.server(listeners={"pop3": "", "submission": "", "mx": ""})
        with socket.create_connection(("127.0.0.1", server.ports["pop3s"])) as raw:
            error = self.assertRaises(
                ssl.SSLCertVerificationError,
                server.ssl_context().wrap_socket,
                raw,
                server_hostname="imap.example.org",
            )
        self.assertEqual(error.verify_code, 62)  # X509_V_ERR_HOSTNAME_MISMATCH
