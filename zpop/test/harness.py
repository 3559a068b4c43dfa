"""A real zpop server in a subprocess, for integration tests.

Usage from a trial test::

    server = start_server(self)              # stopped again by addCleanup
    server.cli("domain", "add", "example.test")
    server.cli("account", "add", "a@example.test", "--password-stdin",
               stdin=b"secret\\n")
    with socket.create_connection(("127.0.0.1", server.ports["pop3s"])) as s:
        tls = server.ssl_context().wrap_socket(
            s, server_hostname="pop.example.test")

Every listener binds port 0 on 127.0.0.1; ``start()`` waits for the
``listener NAME: PROTO on HOST:PORT, TLS MODE`` log lines and returns the
ports. Blocking calls are fine: trial test methods may block.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from typing import Any

from zpop.config import LISTENERS
from zpop.test.dns_server import DnsServer

HOSTNAME = "example.test"

LISTENER_LINE = re.compile(
    r"listener (?P<name>[a-z0-9]+): (?P<protocol>POP3|IMAP|SMTP|HTTP) on "
    r"(?P<host>\S+):(?P<port>\d+), TLS (?P<tls>implicit|STLS|STARTTLS|none)"
)

DEFAULT_SETTINGS: dict[str, dict[str, str]] = {
    "server": {"hostname": HOSTNAME},
    "accounts": {"bcrypt_cost": "4"},
    # Failed logins are slowed by seconds in production; tests that are not
    # about throttling should not wait for that.
    "auth": {"failure_delay": "0.01"},
}


_empty_dns: list[DnsServer] = []


def empty_dns() -> DnsServer:
    """A DNS server on loopback with no records, shared by this process's
    servers that were given no ``[dns] resolver``: every name is NXDOMAIN,
    so the MX's checks find nothing published, at once."""
    if not _empty_dns:
        server = DnsServer(tempfile.mkdtemp(prefix="zpop-dns-"))
        atexit.register(server.stop)
        _empty_dns.append(server)
    return _empty_dns[0]


def admin_available() -> bool:
    """Whether the ``zpop`` CLI module (zpop.admin) is installed."""
    return importlib.util.find_spec("zpop.admin") is not None


def twistd_command() -> list[str]:
    """``twistd`` from the running interpreter's environment."""
    path = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.path.exists(path):
        return [path]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


#: What a server log never shows unless a test expects it.
UNEXPECTED_ERROR = re.compile(r"Unhandled Error|Traceback \(most recent call last\)")


class ServerError(AssertionError):
    """The server did not start (or stop) as expected; carries its log."""


class ZpopServer:
    """One zpop server (config, data directory, twistd process) in a temp dir.

    ``settings`` ({section: {key: value}}) is merged over the defaults
    (hostname example.test, bcrypt cost 4, self-signed TLS). ``listeners``
    maps listener names to endpoint strings (default: all of them, web too, on
    ``tcp:0:interface=127.0.0.1``; "" disables one).
    """

    def __init__(
        self,
        directory: str | None = None,
        settings: Mapping[str, Mapping[str, str]] | None = None,
        listeners: Mapping[str, str] | None = None,
        init: bool = True,
    ) -> None:
        self._own_dir = directory is None
        self.dir = directory or tempfile.mkdtemp(prefix="zpop-test-")
        self.data = os.path.join(self.dir, "data")
        self.config_path = os.path.join(self.dir, "zpop.ini")
        self.log_path = os.path.join(self.dir, "twistd.log")
        self.listeners = {n: "tcp:0:interface=127.0.0.1" for n in LISTENERS}
        self.listeners.update(listeners or {})
        self.ports: dict[str, int] = {}
        self.process: subprocess.Popen[bytes] | None = None
        self._init = init
        self._initialized = False
        self._log_offset = 0
        #: Patterns of logged errors a test provokes on purpose; any other
        #: traceback in the log fails the test at cleanup.
        self.expected_errors: list[str] = []
        merged: dict[str, dict[str, str]] = {
            s: dict(v) for s, v in DEFAULT_SETTINGS.items()
        }
        for section, values in (settings or {}).items():
            merged.setdefault(section, {}).update(values)
        if "resolver" not in merged.get("dns", {}):
            # The MX checks SPF, DKIM and DMARC: never against the world.
            merged.setdefault("dns", {})["resolver"] = empty_dns().address
        with open(self.config_path, "w", encoding="utf-8") as f:
            for section, values in merged.items():
                f.write(f"[{section}]\n")
                for key, value in values.items():
                    f.write(f"{key} = {value}\n")
                f.write("\n")

    # The CLI -----------------------------------------------------------

    def cli_command(self, *args: str) -> list[str]:
        """The argv running the ``zpop`` CLI on this server's config and data."""
        return [
            sys.executable,
            "-m",
            "zpop.admin",
            "--config",
            self.config_path,
            "--data",
            self.data,
            *args,
        ]

    def cli(
        self, *args: str, stdin: bytes = b"", timeout: float = 60.0
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``zpop ARGS`` (does not check the exit status)."""
        return subprocess.run(
            self.cli_command(*args),
            input=stdin,
            capture_output=True,
            timeout=timeout,
            cwd=self.dir,
            env=self._env(),
        )

    def zpop(self, *args: str, stdin: bytes = b"", status: int = 0) -> str:
        """Run ``zpop ARGS``; its stdout (its stderr when a failure
        ``status`` is expected). AssertionError if it exits otherwise."""
        done = self.cli(*args, stdin=stdin)
        if done.returncode != status:
            raise AssertionError(
                f"zpop {' '.join(args)} exited {done.returncode}:"
                f" {done.stdout.decode()} {done.stderr.decode()}"
            )
        return (done.stdout if status == 0 else done.stderr).decode()

    def add_account(self, address: str, password: str, *flags: str) -> None:
        """A paid account with a primary password (``flags`` added)."""
        self.zpop(
            "account",
            "add",
            address,
            "--plan",
            "paid",
            *flags,
            "--password-stdin",
            stdin=password.encode() + b"\n",
        )

    # The server --------------------------------------------------------

    def zpop_args(self) -> list[str]:
        """The ``zpop`` plugin's arguments: config, data and listeners."""
        args = ["--config", self.config_path, "--data", self.data]
        for name, endpoint in self.listeners.items():
            args.append(f"--{name}={endpoint}")
        return args

    def twistd_args(self) -> list[str]:
        """The full ``twistd -n zpop ...`` argv for the current listeners."""
        return [*twistd_command(), "-n", "--pidfile=", "zpop", *self.zpop_args()]

    def start(self, timeout: float = 20.0) -> dict[str, int]:
        """Start twistd; wait until every enabled listener is listening.

        Runs ``zpop init`` first, once, if ``init`` was asked for. Returns
        ``{listener name: port}``; raises ``ServerError`` with the log if
        the server exits or is not listening in time.
        """
        if self.process is not None:
            raise ServerError("server already running")
        if self._init and not self._initialized:
            result = self.cli("init")
            if result.returncode != 0:
                raise ServerError(
                    f"zpop init failed ({result.returncode}): "
                    f"{result.stderr.decode(errors='replace')}"
                )
            self._initialized = True
        self._log_offset = (
            os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        )
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.twistd_args(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                env=self._env(),
            )
        wanted = {n for n, e in self.listeners.items() if e}
        deadline = time.monotonic() + timeout
        while True:
            found = self.listening()
            if wanted <= set(found):
                self.ports = {n: found[n] for n in wanted}
                return dict(self.ports)
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise ServerError(
                    f"twistd exited with {code} before listening:\n{self.log_text()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise ServerError(f"not listening after {timeout}s:\n{self.log_text()}")
            time.sleep(0.05)

    def listening(self) -> dict[str, int]:
        """The listeners the current run has logged so far: {name: port}."""
        return {
            m["name"]: int(m["port"])
            for m in LISTENER_LINE.finditer(self.log_text(current=True))
        }

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait; returns the exit status (None if not running)."""
        return self._end(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """SIGKILL and wait; returns the exit status (None if not running)."""
        return self._end(signal.SIGKILL, 15.0)

    def restart(self, same_ports: bool = True) -> dict[str, int]:
        """Stop and start again, by default on the same ports."""
        if same_ports and self.ports:
            for name, port in self.ports.items():
                self.listeners[name] = f"tcp:{port}:interface=127.0.0.1"
        self.stop()
        return self.start()

    def _end(self, sig: int, timeout: float) -> int | None:
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise ServerError(
                    f"twistd did not exit {timeout}s after signal {sig}:\n"
                    f"{self.log_text()}"
                )
        return process.returncode

    def cleanup(self) -> None:
        """Kill the server if running and remove the temp dir if we made it;
        then fail if its log shows an error no test expected."""
        self.kill()
        unexpected = self.unexpected_errors()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        if unexpected:
            raise ServerError(
                "the server logged an unexpected error:\n" + "\n...\n".join(unexpected)
            )

    def unexpected_errors(self) -> list[str]:
        """Each "Unhandled Error" or traceback in the log (with the lines
        around it) that matches none of ``expected_errors``."""
        lines = self.log_text().splitlines()
        found = []
        for n, line in enumerate(lines):
            if UNEXPECTED_ERROR.search(line):
                block = "\n".join(lines[max(0, n - 3) : n + 30])
                if not any(re.search(p, block) for p in self.expected_errors):
                    found.append(block)
        return found

    # Inspection --------------------------------------------------------

    def log_text(self, current: bool = False) -> str:
        """twistd's output (stdout and stderr), all runs or the current one."""
        try:
            with open(self.log_path, "rb") as f:
                if current:
                    f.seek(self._log_offset)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    @property
    def certificate_path(self) -> str:
        """DATA/tls/selfsigned.pem: the generated certificate (and key)."""
        return os.path.join(self.data, "tls", "selfsigned.pem")

    def certificate_pem(self) -> str:
        """Only the certificate block of the self-signed file."""
        with open(self.certificate_path, encoding="ascii") as f:
            text = f.read()
        match = re.search(
            r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?",
            text,
            re.S,
        )
        if match is None:
            raise ServerError(f"no certificate in {self.certificate_path}")
        return match.group(0)

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting only the self-signed certificate,
        checking host names (use server_hostname="pop.example.test")."""
        ctx = ssl.create_default_context(cadata=self.certificate_pem())
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("ZPOP_DATA", None)
        return env


def start_server(testcase: Any, **kwargs: Any) -> ZpopServer:
    """A started ``ZpopServer`` that ``testcase`` cleans up afterwards."""
    server = ZpopServer(**kwargs)
    testcase.addCleanup(server.cleanup)
    server.start()
    return server
