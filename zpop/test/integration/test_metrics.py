"""The ``metrics`` listener of the real server: one scrape of a server with
two processes shows what both of them did, in a format Prometheus reads."""

from __future__ import annotations

import os
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase, TestCase

from zpop.test.harness import HOSTNAME, ZpopServer
from zpop.test.integration.test_smtp import POP3Client, SMTPSClient
from zpop.test.integration.test_workers import wait_for

ALICE = f"alice@{HOSTNAME}"
BOB = f"bob@{HOSTNAME}"
PASSWORD = "correct horse battery"
MESSAGE = (
    f"From: Alice <{ALICE}>\r\nTo: <{BOB}>\r\nSubject: metrics\r\n\r\nCount me.\r\n"
).encode()
#: POP3S sessions the test makes; enough that both processes get some.
SESSIONS = 30

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(server: ZpopServer, accept: str | None = None) -> tuple[str, str]:
    """GET /metrics: (content type, body)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.ports['metrics']}/metrics",
        headers={"Accept": accept} if accept else {},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.headers["Content-Type"], response.read().decode()


def parse(text: str) -> Samples:
    """Every sample, parsed by prometheus_client: (name, labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


class MetricsTwoWorkersTests(TestCase):
    timeout = 180
    settings: dict[str, dict[str, str]] = {
        "server": {"workers": "2"},
        "auth": {"failure_delay": "0.01", "max_connections_per_client": "100"},
    }

    def setUp(self) -> None:
        self.server = ZpopServer(settings=self.settings)
        self.addCleanup(self.server.cleanup)
        self.server.start()
        wait_for(lambda: "worker 1 ready" in self.server.log_text(current=True))
        self.server.zpop("domain", "add", HOSTNAME)
        for address in (ALICE, BOB):
            self.server.add_account(address, PASSWORD)
        self.server.zpop("pop", "enable", BOB, "--mode", "all")

    def pop_session(self, password: str = PASSWORD, client: Any = None) -> int:
        """A POP3S login as bob (on ``client``, connected already, or a new
        connection), RETR 1 and QUIT: the octets retrieved."""
        if client is None:
            client = POP3Client(self.server)
        try:
            client.user(BOB)
            client.pass_(password)
            _, lines, octets = client.retr(1)
            client.quit()
            return int(octets)
        finally:
            client.close()

    def logouts(self) -> list[str]:
        return [
            line
            for line in self.server.log_text(current=True).splitlines()
            if " logout " in line
        ]

    def test_one_scrape_sums_both_processes(self) -> None:
        """Logins, sessions, connections, commands, retrievals and the
        submitted message are counted in whichever process served them, and
        the main process's scrape shows the totals of both."""
        with SMTPSClient(self.server, self.server.ports["smtps"]) as smtp:
            smtp.login(ALICE, PASSWORD)
            smtp.sendmail(ALICE, [BOB], MESSAGE)
        # Connected all at once, so both processes accept some; then logged
        # in one after the other (one session per maildrop).
        clients = [POP3Client(self.server) for _ in range(SESSIONS)]
        size = sum(self.pop_session(client=c) for c in clients) // SESSIONS
        bad: Any = None
        try:
            self.pop_session("wrong password")
        except Exception as e:  # poplib.error_proto
            bad = e
        self.assertIn(b"[AUTH]", bad.args[0])
        wait_for(lambda: len(self.logouts()) == SESSIONS + 1)
        served_by_worker = [line for line in self.logouts() if "[worker 1: " in line]
        # Both processes served: otherwise the test proves no summing.
        self.assertTrue(0 < len(served_by_worker) < SESSIONS + 1)

        content_type, text = scrape(self.server)
        self.assertEqual(content_type, "text/plain; version=0.0.4; charset=utf-8")
        samples = parse(text)
        got = {
            "logins pop3 succeeded": value(
                samples, "zpop_logins_total", protocol="pop3", result="succeeded"
            ),
            "logins pop3 failed": value(
                samples, "zpop_logins_total", protocol="pop3", result="failed"
            ),
            "logins smtp succeeded": value(
                samples, "zpop_logins_total", protocol="smtp", result="succeeded"
            ),
            "bans": value(samples, "zpop_bans_total"),
            "connections pop3s": value(
                samples, "zpop_connections_total", listener="pop3s"
            ),
            "connections open pop3s": value(
                samples, "zpop_connections_open", listener="pop3s"
            ),
            "connections smtps": value(
                samples, "zpop_connections_total", listener="smtps"
            ),
            "sessions pop3s": value(samples, "zpop_sessions_total", listener="pop3s"),
            "sessions open pop3s": value(
                samples, "zpop_sessions_open", listener="pop3s"
            ),
            "sessions smtps": value(samples, "zpop_sessions_total", listener="smtps"),
            "retrieved": value(samples, "zpop_pop3_messages_retrieved_total"),
            "retrieved bytes": value(samples, "zpop_pop3_retrieved_bytes_total"),
            # USER, PASS, RETR, QUIT per session; USER, PASS for the wrong one.
            "pop3 commands": value(
                samples, "zpop_command_seconds_count", protocol="pop3"
            ),
            "accepted smtps": value(
                samples, "zpop_messages_accepted_total", listener="smtps"
            ),
            "delivered Inbox": value(
                samples, "zpop_messages_delivered_local_total", folder="Inbox"
            ),
            "queued": value(samples, "zpop_messages_queued_total"),
            "queue": value(samples, "zpop_outbound_queue_messages"),
        }
        self.assertEqual(
            got,
            {
                "logins pop3 succeeded": SESSIONS,
                "logins pop3 failed": 1,
                "logins smtp succeeded": 1,
                "bans": 0,
                "connections pop3s": SESSIONS + 1,
                "connections open pop3s": 0,
                "connections smtps": 1,
                "sessions pop3s": SESSIONS,
                "sessions open pop3s": 0,
                "sessions smtps": 1,
                "retrieved": SESSIONS,
                "retrieved bytes": SESSIONS * size,
                "pop3 commands": 4 * SESSIONS + 2,
                "accepted smtps": 1,
                "delivered Inbox": 1,
                "queued": 0,
                "queue": 0,
            },
        )
        # SMTP commands were timed too (EHLO, AUTH, MAIL, RCPT, DATA, QUIT).
        self.assertGreaterEqual(
            value(samples, "zpop_command_seconds_count", protocol="smtp"), 6
        )
        # Each process's pools report (db and hashing, summed), and no
        # series carries a pid label: the sum is the library's merge.
        self.assertIn(("zpop_thread_pool_queue", (("pool", "db"),)), samples)
        self.assertFalse(any(dict(labels).get("pid") for _, labels in samples))
        # The per-run files of both processes are in the data directory.
        files = os.listdir(os.path.join(self.server.data, "metrics"))
        self.assertGreaterEqual(len([f for f in files if f.startswith("counter_")]), 2)

    def test_openmetrics_and_other_paths(self) -> None:
        """A scraper asking for OpenMetrics gets it; / is a 404 naming
        /metrics."""
        content_type, text = scrape(
            self.server, "application/openmetrics-text; version=1.0.0"
        )
        self.assertTrue(content_type.startswith("application/openmetrics-text"))
        self.assertTrue(text.endswith("# EOF\n"))
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(
                f"http://127.0.0.1:{self.server.ports['metrics']}/", timeout=30
            )
        self.assertEqual(caught.exception.code, 404)


class MetricsOneProcessTests(MetricsTwoWorkersTests):
    """The same with one process: values in memory, no metrics files."""

    settings = {"auth": {"failure_delay": "0.01"}}

    def setUp(self) -> None:
        self.server = ZpopServer(settings=self.settings)
        self.addCleanup(self.server.cleanup)
        self.server.start()
        self.server.zpop("domain", "add", HOSTNAME)
        for address in (ALICE, BOB):
            self.server.add_account(address, PASSWORD)
        self.server.zpop("pop", "enable", BOB, "--mode", "all")

    def test_one_scrape_sums_both_processes(self) -> None:
        """One process counts in memory: the same totals, and no files."""
        with SMTPSClient(self.server, self.server.ports["smtps"]) as smtp:
            smtp.login(ALICE, PASSWORD)
            smtp.sendmail(ALICE, [BOB], MESSAGE)
        for _ in range(3):
            self.pop_session()
        wait_for(lambda: len(self.logouts()) == 3)
        samples = parse(scrape(self.server)[1])
        self.assertEqual(
            [
                value(
                    samples, "zpop_logins_total", protocol="pop3", result="succeeded"
                ),
                value(samples, "zpop_sessions_total", listener="pop3s"),
                value(samples, "zpop_messages_accepted_total", listener="smtps"),
                value(samples, "zpop_pop3_messages_retrieved_total"),
            ],
            [3, 3, 1, 3],
        )
        self.assertFalse(os.path.exists(os.path.join(self.server.data, "metrics")))


class LoopbackTests(SynchronousTestCase):
    def test_loopback_only(self) -> None:
        """The warning about plain HTTP beyond loopback spares loopback
        addresses and Unix sockets, and names every other endpoint."""
        from zpop.tap import _loopback_only

        self.assertEqual(
            {
                d: _loopback_only(d)
                for d in (
                    "tcp:9180:interface=127.0.0.1",
                    "tcp:port=9180:interface=\\:\\:1",
                    "tcp6:9180:interface=\\:\\:1",
                    "unix:/run/zpop/metrics.sock",
                    "tcp:9180",
                    "tcp:9180:interface=0.0.0.0",
                    "tcp6:port=9180:interface=\\:\\:",
                )
            },
            {
                "tcp:9180:interface=127.0.0.1": True,
                "tcp:port=9180:interface=\\:\\:1": True,
                "tcp6:9180:interface=\\:\\:1": True,
                "unix:/run/zpop/metrics.sock": True,
                "tcp:9180": False,
                "tcp:9180:interface=0.0.0.0": False,
                "tcp6:port=9180:interface=\\:\\:": False,
            },
        )
