"""A real rspamd on loopback, for integration tests and the bench.

Usage from a trial test::

    rspamd = start_rspamd(self)       # stopped again by addCleanup
    settings = {"spam": {"rspamd": rspamd.url}}
    rspamd.stop()                     # to see zpop's fail policy

The Debian package's configuration (/etc/rspamd) is used as it ships, with
a top-level file and ``local.d`` in a temp dir: one normal worker on
127.0.0.1:<free port>, no controller or proxy, logging to a file in the
temp dir, no Redis, and the modules that need Redis or the network (DNS
lists, SPF/DKIM/DMARC, fuzzy, reputation, ...) disabled, so it starts in
a second and answers without a network. Two test rules score messages by
their Subject (``TEST_RULES``), so a test can ask for ``add header`` or
``greylist`` from rspamd's own default thresholds.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from zpop.test.tools import require_tool

#: GTUBE: rspamd's built-in test pattern, whose action is ``reject``.
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

#: A Subject word -> the score the test rule adds. rspamd's default actions
#: are greylist at 4, add header at 6 and reject at 15, and a clean test
#: message scores about 0 here, so these land on ``add header`` and
#: ``greylist``.
TEST_RULES = {
    "zpop-test-spam": ("ZPOP_TEST_SPAM", 7.0),
    "zpop-test-grey": ("ZPOP_TEST_GREY", 4.5),
}

#: Modules switched off: they need Redis, DNS or other network services.
DISABLED_MODULES = (
    "antivirus",
    "arc",
    "asn",
    "aws_s3",
    "bimi",
    "clickhouse",
    "dcc",
    "dkim",
    "dkim_signing",
    "dmarc",
    "elastic",
    "emails",
    "external_services",
    "fuzzy_check",
    "greylist",
    "hfilter",
    "history_redis",
    "metadata_exporter",
    "metric_exporter",
    "mx_check",
    "neural",
    "p0f",
    "phishing",
    "ratelimit",
    "rbl",
    "replies",
    "reputation",
    "rspamd_update",
    "spamtrap",
    "spf",
    "url_redirector",
    "whitelist",
)

CONTROLLER = """\
worker "controller" {{
    bind_socket = "127.0.0.1:{port}";
    count = 1;
    password = "{password}";
    # Not loopback: the tests' requests must show the password.
    secure_ip = "192.0.2.1";
    static_dir = "${{WWWDIR}}";
}}
"""

TOP_LEVEL = """\
.include "$CONFDIR/common.conf"
options {{
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
}}
logging {{
    type = "file";
    filename = "$LOGDIR/rspamd.log";
    level = "info";
}}
worker "normal" {{
    bind_socket = "127.0.0.1:{port}";
    .include "$CONFDIR/worker-normal.inc"
    count = {count};
}}
"""

OPTIONS = """\
# No resolver: nothing may wait on the network.
dns {{ nameserver = ["127.0.0.1:1"]; timeout = 0.2s; retransmits = 0; }}
# Loopback clients are scanned like any other.
local_addrs = [];
# Hyperscan's compiled expressions (the URL suffix list alone takes
# seconds) are kept for the next rspamd.
hs_cache_dir = "{cache}/";
"""


#: Where every test rspamd keeps hyperscan's cache (cold, a start takes
#: about 8 s; warm, half a second).
CACHE_DIR = os.path.join(tempfile.gettempdir(), f"zpop-rspamd-cache-{os.getuid()}")


class RspamdError(AssertionError):
    """rspamd did not start (or stop) as expected; carries its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RspamdServer:
    """One rspamd (config, temp dir, process).

    ``actions`` ({"add_header": 3.0}) are merged into rspamd's defaults;
    ``workers`` is the normal worker's process count. With
    ``controller_password`` a controller worker listens too
    (``controller_url``), answering ``/checkv2`` only with that
    ``Password``.
    """

    def __init__(
        self,
        actions: Mapping[str, float] | None = None,
        workers: int = 1,
        controller_password: str | None = None,
    ) -> None:
        self.binary = require_tool("rspamd")
        self.dir = tempfile.mkdtemp(prefix="zpop-rspamd-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(self.dir, "log", "rspamd.log")
        self.process: subprocess.Popen[bytes] | None = None
        for sub in ("local.d", "db", "run", "log"):
            os.mkdir(os.path.join(self.dir, sub))
        top = TOP_LEVEL.format(port=self.port, count=workers)
        self.controller_url = ""
        if controller_password is not None:
            port = free_port()
            self.controller_url = f"http://127.0.0.1:{port}"
            top += CONTROLLER.format(port=port, password=controller_password)
        self._write("rspamd.conf", top)
        self._write("local.d/options.inc", OPTIONS.format(cache=CACHE_DIR))
        for module in DISABLED_MODULES:
            self._write(f"local.d/{module}.conf", "enabled = false;\n")
        rules = "".join(
            f'{symbol} {{\n  re = "Subject=/{word}/iH";\n  score = {score};\n'
            f'  description = "zpop test rule";\n}}\n'
            for word, (symbol, score) in TEST_RULES.items()
        )
        self._write("local.d/regexp.conf", rules)
        if actions:
            self._write(
                "local.d/actions.conf",
                "".join(f"{k} = {v};\n" for k, v in actions.items()),
            )
        self._user: tuple[int, int] | None = None
        if os.geteuid() == 0:
            # As root rspamd wants a user to drop to; it reads the config
            # and writes db/run/log as that user.
            try:
                entry = pwd.getpwnam("_rspamd")
                self._user = (entry.pw_uid, entry.pw_gid)
            except KeyError:
                self._user = None
            os.chmod(self.dir, 0o755)
        os.makedirs(CACHE_DIR, mode=0o755, exist_ok=True)
        if self._user is not None:
            for sub in ("db", "run", "log"):
                os.chown(os.path.join(self.dir, sub), *self._user)
            os.chown(CACHE_DIR, *self._user)

    def _write(self, name: str, text: str) -> None:
        with open(os.path.join(self.dir, name), "w", encoding="utf-8") as f:
            f.write(text)

    def command(self) -> list[str]:
        """The argv running this rspamd in the foreground."""
        argv = [self.binary, "-f", "-c", os.path.join(self.dir, "rspamd.conf")]
        if os.geteuid() == 0:
            if self._user is not None:
                argv += ["-u", "_rspamd", "-g", "_rspamd"]
            else:
                argv.append("-i")
        for var, sub in (
            ("LOCAL_CONFDIR", ""),
            ("DBDIR", "db"),
            ("RUNDIR", "run"),
            ("LOGDIR", "log"),
        ):
            argv += ["--var", f"{var}={os.path.join(self.dir, sub).rstrip('/')}"]
        return argv

    def start(self, timeout: float = 60.0) -> str:
        """Start rspamd and wait until it answers ``/ping``; its URL."""
        if self.process is not None:
            raise RspamdError("rspamd already running")
        with open(os.path.join(self.dir, "stdout.txt"), "ab") as out:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.ping():
                return self.url
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise RspamdError(f"rspamd exited with {code}:\n{self.log_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RspamdError(f"rspamd silent after {timeout}s:\n{self.log_text()}")
            time.sleep(0.05)

    def ping(self) -> bool:
        """Whether the normal worker answers ``/ping`` right now."""
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=2) as r:
                return bool(r.status == 200 and r.read().strip() == b"pong")
        except (OSError, urllib.error.URLError):
            return False

    def stop(self, timeout: float = 15.0) -> None:
        """Stop rspamd and its workers (its process group) and wait."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        # Workers may outlive the main process by a moment.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)

    def check(self, message: bytes, **headers: str) -> dict[str, Any]:
        """rspamd's JSON answer for ``message`` (a direct ``/checkv2``)."""
        request = urllib.request.Request(
            f"{self.url}/checkv2", data=message, headers=headers, method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as r:
            answer: dict[str, Any] = json.loads(r.read())
            return answer

    def log_text(self) -> str:
        """rspamd's log and its console output."""
        text = ""
        for path in (os.path.join(self.dir, "stdout.txt"), self.log_path):
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    text += f.read()
            except FileNotFoundError:
                pass
        return text

    def cleanup(self) -> None:
        """Stop rspamd and remove its temp dir."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_rspamd(testcase: Any, **kwargs: Any) -> RspamdServer:
    """A started ``RspamdServer`` that ``testcase`` cleans up afterwards."""
    server = RspamdServer(**kwargs)
    testcase.addCleanup(server.cleanup)
    server.start()
    return server
