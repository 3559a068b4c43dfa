"""zpop.metrics in memory: the metric objects, what the protocols and the
authenticator count, and the scrape resource (no listener, no files)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import values
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address
from twisted.internet.defer import fail
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from zpop import metrics
from zpop.limits import REFUSALS, ConnectionLimiter
from zpop.test.unit.test_auth import _AuthenticatorCase
from zpop.test.unit.test_pop3 import MESSAGES, PASSWORD, USER, ProtocolMixin
from zpop.threads import run_synchronously


def samples(m: metrics.Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``m``'s registry: (name, sorted labels) -> value."""
    found = {}
    for family in m.registry.collect():
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


class MetricsCase(SynchronousTestCase):
    """Counts into fresh metrics of its own during each test."""

    def setUp(self) -> None:
        # In memory, whatever an earlier test of this process installed.
        self.patch(values, "ValueClass", values.MutexValue)
        self.metrics = metrics.Metrics()
        previous = metrics.use(self.metrics)
        self.addCleanup(metrics.use, previous)

    def value(self, name: str, **labels: str) -> float:
        got = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if got is None else got


class APITests(MetricsCase):
    def test_functions_count(self) -> None:
        """Each function of the API moves its own series, and only that."""
        metrics.connection_opened("pop3s")
        metrics.connection_opened("pop3s")
        metrics.connection_closed("pop3s")
        metrics.connection_refused("smtps")
        metrics.session_started("submission")
        metrics.login("pop3", "succeeded")
        metrics.login("pop3", "failed")
        metrics.login("smtp", "banned")
        metrics.ban()
        metrics.accepted("mx")
        metrics.delivered("Spam", 2, True)
        metrics.delivered("Inbox", 0, False)
        metrics.relayed("delivered")
        metrics.relayed("deferred", 3)
        metrics.bounced("local")
        metrics.queue(4, 90.5)
        metrics.retrieved(1234)
        metrics.command("pop3", 0.0007)
        metrics.command("pop3", 3.0)
        metrics.thread_pool_queue("db", 5)
        v = self.value
        self.assertEqual(
            [
                v("zpop_connections_total", listener="pop3s"),
                v("zpop_connections_open", listener="pop3s"),
                v("zpop_connections_refused_total", listener="smtps"),
                v("zpop_sessions_total", listener="submission"),
                v("zpop_sessions_open", listener="submission"),
                v("zpop_logins_total", protocol="pop3", result="succeeded"),
                v("zpop_logins_total", protocol="pop3", result="failed"),
                v("zpop_logins_total", protocol="smtp", result="banned"),
                v("zpop_logins_total", protocol="smtp", result="succeeded"),
                v("zpop_bans_total"),
                v("zpop_messages_accepted_total", listener="mx"),
                v("zpop_messages_delivered_local_total", folder="Spam"),
                v("zpop_messages_delivered_local_total", folder="Inbox"),
                v("zpop_messages_queued_total"),
                v("zpop_messages_relayed_total", result="delivered"),
                v("zpop_messages_relayed_total", result="deferred"),
                v("zpop_messages_relayed_total", result="failed"),
                v("zpop_messages_bounced_total", to="local"),
                v("zpop_outbound_queue_messages"),
                v("zpop_outbound_queue_oldest_seconds"),
                v("zpop_pop3_messages_retrieved_total"),
                v("zpop_pop3_retrieved_bytes_total"),
                v("zpop_command_seconds_count", protocol="pop3"),
                v("zpop_command_seconds_bucket", protocol="pop3", le="0.001"),
                v("zpop_command_seconds_bucket", protocol="pop3", le="2.5"),
                v("zpop_command_seconds_bucket", protocol="pop3", le="+Inf"),
                v("zpop_command_seconds_count", protocol="smtp"),
                v("zpop_thread_pool_queue", pool="db"),
            ],
            [2, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 2, 0, 1, 1, 3, 0, 1, 4, 90.5]
            + [1, 1234, 2, 1, 1, 2, 0, 5],
        )

    def test_series_exist_before_events(self) -> None:
        """Login results and relay results are exported at 0 from the start,
        so a rate() over them works from the first scrape."""
        found = samples(self.metrics)
        self.assertEqual(
            found[
                (
                    "zpop_logins_total",
                    (("protocol", "pop3"), ("result", "banned")),
                )
            ],
            0.0,
        )
        self.assertEqual(
            found[("zpop_messages_relayed_total", (("result", "failed"),))], 0.0
        )

    def test_use_swaps(self) -> None:
        """``use`` makes other metrics current and returns the previous."""
        other = metrics.Metrics()
        self.assertIs(metrics.use(other), self.metrics)
        metrics.ban()
        self.assertIs(metrics.use(self.metrics), other)
        self.assertEqual(other.registry.get_sample_value("zpop_bans_total"), 1.0)
        self.assertEqual(self.value("zpop_bans_total"), 0.0)

    def test_hot_path_cost(self) -> None:
        """A command observation and a counter increment cost microseconds
        (a generous bound: the README gives the measured numbers)."""
        n = 20000
        started = time.perf_counter()
        for _ in range(n):
            metrics.command("pop3", 0.0003)
            metrics.retrieved(100)
        per_call = (time.perf_counter() - started) / (2 * n)
        self.assertLess(per_call, 50e-6)


class ListenerTests(MetricsCase):
    def connect(self, limiter: ConnectionLimiter) -> Any:
        address = IPv4Address("TCP", "192.0.2.1", 40000)
        proto = limiter.buildProtocol(address)
        proto.makeConnection(StringTransport(peerAddress=address))
        return proto

    def test_connections_per_listener(self) -> None:
        """The limiter counts accepted, open and refused connections under
        its listener's name."""
        limiter = ConnectionLimiter(
            Factory.forProtocol(Protocol), 5, 1, REFUSALS["POP3"], listener="pop3s"
        )
        self.assertEqual(self.value("zpop_connections_total", listener="pop3s"), 0)
        first = self.connect(limiter)
        self.connect(limiter)
        self.assertEqual(self.value("zpop_connections_open", listener="pop3s"), 1)
        first.connectionLost(None)
        self.assertEqual(
            [
                self.value("zpop_connections_total", listener="pop3s"),
                self.value("zpop_connections_open", listener="pop3s"),
                self.value("zpop_connections_refused_total", listener="pop3s"),
            ],
            [1, 0, 1],
        )


class _POP3Driver(ProtocolMixin):
    """test_pop3's in-memory POP3 set-up, without its tests."""


class POP3Tests(MetricsCase):
    """A POP3 session in memory (zpop.test.unit.test_pop3's set-up)."""

    def setUp(self) -> None:
        super().setUp()
        self.pop = _POP3Driver()
        self.pop.setUp()
        self.send = self.pop.send

    def test_session_commands_and_retrieval(self) -> None:
        """A login opens a pop3s session until the connection ends; each
        command is timed; RETR counts the message and its octets, TOP not."""
        self.send(b"USER " + USER + b"\r\n")
        self.send(b"PASS " + PASSWORD + b"\r\n")
        self.assertEqual(self.value("zpop_sessions_open", listener="pop3s"), 1)
        self.send(b"RETR 2\r\nTOP 1 0\r\nNOOP\r\n")
        self.send(b"QUIT\r\n")
        self.pop.proto.connectionLost(None)
        self.assertEqual(
            [
                self.value("zpop_sessions_total", listener="pop3s"),
                self.value("zpop_sessions_open", listener="pop3s"),
                self.value("zpop_pop3_messages_retrieved_total"),
                self.value("zpop_pop3_retrieved_bytes_total"),
                self.value("zpop_command_seconds_count", protocol="pop3"),
            ],
            [1, 0, 1, len(MESSAGES[1]), 6],
        )

    def test_no_session_without_login(self) -> None:
        """A connection that never logs in opens no session."""
        self.send(b"USER nobody\r\nPASS wrong\r\n")
        self.pop.proto.connectionLost(None)
        self.assertEqual(
            [
                self.value("zpop_sessions_total", listener="pop3s"),
                self.value("zpop_sessions_open", listener="pop3s"),
            ],
            [0, 0],
        )


class AuthenticatorTests(_AuthenticatorCase, MetricsCase):
    """Login outcomes and bans, as the Authenticator sees them."""

    def setUp(self) -> None:
        MetricsCase.setUp(self)
        _AuthenticatorCase.setUp(self)

    def test_logins_and_ban(self) -> None:
        """Successes, failures, the ban they cause and the logins it
        refuses are counted by protocol and result."""
        self.successResultOf(self.login("primary-secret"))
        for n, delay in enumerate((2, 4, 8, 15, 15)):
            self.fail_after(self.login(f"wrong{n}"), delay)
        self.failureResultOf(self.login("primary-secret"))
        self.assertEqual(
            [
                self.value("zpop_logins_total", protocol="pop3", result=r)
                for r in metrics.LOGIN_RESULTS
            ]
            + [self.value("zpop_bans_total")],
            [1, 5, 0, 1, 1],
        )


class ResourceTests(MetricsCase):
    def scrape(self, path: bytes = b"metrics", accept: bytes | None = None) -> Any:
        refreshed: list[bool] = []

        def refresh() -> None:
            refreshed.append(True)
            metrics.queue(2, 30.0)

        site = metrics.make_site(self.metrics.registry, run_synchronously, refresh)
        request = DummyRequest([path])
        if accept is not None:
            request.requestHeaders.setRawHeaders(b"accept", [accept])
        resource = site.resource
        result = resource.render(request)
        self.assertEqual(result, 1)  # NOT_DONE_YET
        self.assertEqual(request.finished, 1)
        self.refreshed = refreshed
        return request

    def test_scrape_parses(self) -> None:
        """GET /metrics refreshes the queue gauges and answers the Prometheus
        text format, which prometheus_client's parser reads back."""
        metrics.login("smtp", "succeeded")
        request = self.scrape()
        body = b"".join(request.written).decode()
        self.assertEqual(self.refreshed, [True])
        self.assertEqual(
            request.responseHeaders.getRawHeaders(b"content-type"),
            [b"text/plain; version=0.0.4; charset=utf-8"],
        )
        families = {f.name: f for f in text_string_to_metric_families(body)}
        logins = {
            (s.labels["protocol"], s.labels["result"]): s.value
            for s in families["zpop_logins"].samples
            if s.name == "zpop_logins_total"
        }
        self.assertEqual(logins[("smtp", "succeeded")], 1.0)
        self.assertEqual(families["zpop_outbound_queue_messages"].samples[0].value, 2)

    def test_openmetrics(self) -> None:
        """A scraper asking for OpenMetrics gets it, ending in # EOF."""
        request = self.scrape(accept=b"application/openmetrics-text; version=1.0.0")
        self.assertTrue(
            request.responseHeaders.getRawHeaders(b"content-type")[0].startswith(
                b"application/openmetrics-text"
            )
        )
        self.assertTrue(b"".join(request.written).endswith(b"# EOF\n"))

    def test_other_paths(self) -> None:
        """Anything but /metrics is a 404 that says where the metrics are."""
        request = self.scrape(b"favicon.ico")
        self.assertEqual(request.responseCode, 404)
        self.assertEqual(
            b"".join(request.written), b"Not found: the metrics are at /metrics\n"
        )

    def test_refresh_failure_still_scrapes(self) -> None:
        """A failing refresh (the store is busy) is logged; the scrape goes on."""
        site = metrics.make_site(
            self.metrics.registry,
            run_synchronously,
            lambda: fail(RuntimeError("store gone")),
        )
        request = DummyRequest([b"metrics"])
        site.resource.render(request)
        self.assertEqual(request.finished, 1)
        self.assertIn(b"zpop_logins_total", b"".join(request.written))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
