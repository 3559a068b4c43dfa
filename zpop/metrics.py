"""Server metrics for Prometheus (``prometheus_client``), and the ``metrics``
listener that serves them.

The protocols and services call the small functions below
(``metrics.login("pop3", "succeeded")``); each is one increment or one
observation on a prebuilt child (looked up in a dict, never through
``labels()``), so the POP and SMTP hot paths pay 1-2 microseconds a command
and allocate nothing per command. Nothing here reads the clock of the reactor:
latencies are the monotonic ``perf_counter``.

**Several processes.** With ``[server] workers = N`` every process serves
the same listeners, so its counts are a share of the server's. zpop uses
``prometheus_client``'s multiprocess mode rather than asking the workers
over zpop.cluster's pipes at each scrape: each process writes its values
into memory-mapped files of one per-run directory (``DATA/metrics``,
emptied by the main process at start, before any worker exists), and the
main process's scrape sums them with the library's own merge rules
(counters and histograms add up, each gauge by its ``multiprocess_mode``).
Reasons: the merge of histograms and gauges is the library's, tested
code, not ours; a scrape needs no round trip to busy or restarting
workers and never waits for one (a stuck worker's last values are still
read); a worker that died keeps its counts in the totals (counters never
go backwards) while ``mark_process_dead`` drops its live gauges; and the
pipes stay what they are, small best-effort lines. The price, one mmap
write (and a getpid) per increment instead of an in-memory add, is about
2 microseconds more per command (README, "Metrics"). A single process
(``workers = 1``)
keeps its values in memory and nothing touches the disk.

Reading the files takes a few milliseconds per worker, so a scrape
collects in a thread of its own pool (``metrics-scrape``, one thread), never on
the reactor. The queue gauges are refreshed by the main process from the
store (its ``db`` pool) just before each scrape.

**The listener** speaks plain HTTP: it is meant for loopback (the
embedded default ``tcp:9180:interface=127.0.0.1``) or a private network
the operator controls, as Prometheus' own exporters do; the metrics carry
no address, account or secret (labels are listener, protocol, result and
pool names only). Anyone who can reach it sees traffic volumes, so zpop
warns when it listens beyond loopback; put TLS and authentication in
front of it (a reverse proxy) if it must cross an untrusted network.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    values,
)
from prometheus_client.exposition import choose_encoder
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.web import resource, server

log = Logger()

#: Where the per-process files of a multi-process server live, in DATA.
DIRECTORY_NAME = "metrics"

#: Buckets of the command latency histograms, in seconds: a cached POP
#: command takes well under a millisecond, a DATA commit a few, a login
#: with a bcrypt check tens to hundreds.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

#: The protocols whose commands are timed (zpop.commands.CommandRunner).
PROTOCOLS = ("pop3", "smtp")

#: Login results, for ``login``.
LOGIN_RESULTS = ("succeeded", "failed", "refused", "banned")


class Metrics:
    """Every metric of zpop, registered in ``registry``.

    One instance is current (``current()``); tests make their own and
    ``use()`` it.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.connections = Counter(
            "zpop_connections",
            "Connections accepted, by listener.",
            ["listener"],
            registry=r,
        )
        self.connections_refused = Counter(
            "zpop_connections_refused",
            "Connections refused by the connection limits, by listener.",
            ["listener"],
            registry=r,
        )
        self.connections_open = Gauge(
            "zpop_connections_open",
            "Connections open now, by listener.",
            ["listener"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.sessions = Counter(
            "zpop_sessions",
            "Logged-in sessions started (POP3 login, SMTP AUTH; the mx and web"
            " listeners count none), by listener.",
            ["listener"],
            registry=r,
        )
        self.sessions_open = Gauge(
            "zpop_sessions_open",
            "Logged-in sessions open now, by listener.",
            ["listener"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.logins = Counter(
            "zpop_logins",
            "Login attempts, by protocol and result (succeeded, failed: bad"
            " credentials, refused: account state, banned: client banned).",
            ["protocol", "result"],
            registry=r,
        )
        self.bans = Counter(
            "zpop_bans",
            "Client addresses banned after repeated login failures.",
            registry=r,
        )
        self.accepted = Counter(
            "zpop_messages_accepted",
            "Messages accepted (250 after DATA), by listener.",
            ["listener"],
            registry=r,
        )
        self.delivered_local = Counter(
            "zpop_messages_delivered_local",
            "Copies of accepted messages stored in hosted recipients'"
            " mailboxes, by folder (Sent copies not counted).",
            ["folder"],
            registry=r,
        )
        self.queued = Counter(
            "zpop_messages_queued",
            "Accepted messages put in the outbound queue for remote recipients.",
            registry=r,
        )
        self.relayed = Counter(
            "zpop_messages_relayed",
            "Outbound deliveries to remote servers, per recipient, by result"
            " (delivered, deferred: retried later, failed: permanently).",
            ["result"],
            registry=r,
        )
        self.bounced = Counter(
            "zpop_messages_bounced",
            "Delivery status notifications made for failed outbound mail, by"
            " where they went (local, queued, dropped).",
            ["to"],
            registry=r,
        )
        self.queue_messages = Gauge(
            "zpop_outbound_queue_messages",
            "Messages in the outbound queue.",
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self.queue_oldest = Gauge(
            "zpop_outbound_queue_oldest_seconds",
            "Age of the oldest message in the outbound queue (0 when empty).",
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self.retrieved = Counter(
            "zpop_pop3_messages_retrieved",
            "Messages sent to POP3 clients by RETR.",
            registry=r,
        )
        self.retrieved_bytes = Counter(
            "zpop_pop3_retrieved_bytes",
            "Octets of messages sent to POP3 clients by RETR.",
            registry=r,
        )
        self.command_seconds = Histogram(
            "zpop_command_seconds",
            "Time from a command's line to its reply, by protocol.",
            ["protocol"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.thread_pool_queue = Gauge(
            "zpop_thread_pool_queue",
            "Calls waiting for a thread, by pool (db, hashing, ...).",
            ["pool"],
            multiprocess_mode="livesum",
            registry=r,
        )
        # Children made once: the hot paths only look them up in a dict
        # (``labels()`` costs a few microseconds a call).
        self.latency = {p: self.command_seconds.labels(p) for p in PROTOCOLS}
        self._logins: dict[tuple[str, str], Any] = {}
        for protocol in ("pop3", "smtp", "imap", "web"):
            for result in LOGIN_RESULTS:
                self.login_series(protocol, result)
        for result in ("delivered", "deferred", "failed"):
            self.relayed.labels(result)
        self._listeners: dict[str, _ListenerSeries] = {}

    def login_series(self, protocol: str, result: str) -> Any:
        """The logins counter of ``protocol`` and ``result``."""
        try:
            return self._logins[protocol, result]
        except KeyError:
            child = self._logins[protocol, result] = self.logins.labels(
                protocol, result
            )
            return child

    def listener(self, name: str) -> _ListenerSeries:
        """The connection and session series of listener ``name``."""
        try:
            return self._listeners[name]
        except KeyError:
            series = self._listeners[name] = _ListenerSeries(self, name)
            return series

    def prepare_listener(self, listener: str) -> None:
        """Make a listener's series exist (at 0) before its first event."""
        self.listener(listener)
        if listener in ("smtps", "submission", "mx"):
            self.accepted.labels(listener)


class _ListenerSeries:
    """One listener's children of the connection and session metrics."""

    __slots__ = ("connections", "refused", "open", "sessions", "sessions_open")

    def __init__(self, m: Metrics, name: str) -> None:
        self.connections = m.connections.labels(name)
        self.refused = m.connections_refused.labels(name)
        self.open = m.connections_open.labels(name)
        self.sessions = m.sessions.labels(name)
        self.sessions_open = m.sessions_open.labels(name)


# zpop, not the environment, chooses where values live: in memory until
# ``install_multiprocess`` (a PROMETHEUS_MULTIPROC_DIR inherited from the
# main process must not make a worker map its files twice).
values.ValueClass = values.MutexValue
_current = Metrics()
_installed: str | None = None


def current() -> Metrics:
    """The metrics the functions below count into."""
    return _current


def use(metrics: Metrics) -> Metrics:
    """Count into ``metrics`` from now on; returns the previous ones."""
    global _current
    previous, _current = _current, metrics
    return previous


# -- several processes -------------------------------------------------------


def directory(data_dir: str) -> str:
    """The per-run directory of a multi-process server's metric files."""
    return os.path.join(data_dir, DIRECTORY_NAME)


def clear_directory(path: str) -> None:
    """Make ``path`` an empty directory for this run (main process, before
    any worker starts): files of an earlier run would be summed in."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    for name in glob.glob(os.path.join(path, "*.db")):
        os.remove(name)


def install_multiprocess(path: str) -> Metrics:
    """From now on this process writes its values into files in ``path``
    (``prometheus_client``'s multiprocess mode), for the main process to
    sum; returns the new current metrics.

    Called at the start of ``build_service``, before anything counts. The
    library picks its value class from ``PROMETHEUS_MULTIPROC_DIR`` when it
    is imported, which is before zpop knows its data directory: set both.
    """
    global _installed
    if _installed == path:
        return _current
    if _installed is not None:
        raise RuntimeError(f"metrics already write to {_installed}")
    _installed = path
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    values.ValueClass = values.MultiProcessValue()
    fresh = Metrics()
    use(fresh)
    return fresh


def process_ended(pid: int, path: str) -> None:
    """A worker process ended: drop its live gauges (open connections and
    sessions, queued calls); its counters stay in the totals."""
    try:
        multiprocess.mark_process_dead(pid, path)
    except OSError as e:
        log.warn("metrics of ended process {pid}: {error}", pid=pid, error=e)


def multiprocess_registry(path: str) -> CollectorRegistry:
    """A registry whose collection sums every process's files in ``path``."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path)
    return registry


# -- what the protocols and services call -------------------------------------


def connection_opened(listener: str) -> None:
    """A connection was accepted (within the limits)."""
    series = _current.listener(listener)
    series.connections.inc()
    series.open.inc()


def connection_closed(listener: str) -> None:
    """An accepted connection ended."""
    _current.listener(listener).open.dec()


def connection_refused(listener: str) -> None:
    """A connection was refused by the connection limits."""
    _current.listener(listener).refused.inc()


def session_started(listener: str) -> None:
    """A session logged in."""
    series = _current.listener(listener)
    series.sessions.inc()
    series.sessions_open.inc()


def session_ended(listener: str) -> None:
    """A logged-in session's connection ended."""
    _current.listener(listener).sessions_open.dec()


def login(protocol: str, result: str) -> None:
    """A login attempt ended with ``result`` (one of LOGIN_RESULTS)."""
    _current.login_series(protocol, result).inc()


def ban() -> None:
    """A client address was banned."""
    _current.bans.inc()


def command(protocol: str, seconds: float) -> None:
    """A ``protocol`` command took ``seconds`` to its reply."""
    _current.latency[protocol].observe(seconds)


def retrieved(octets: int) -> None:
    """A POP3 RETR sent a message of ``octets``."""
    m = _current
    m.retrieved.inc()
    m.retrieved_bytes.inc(octets)


def accepted(listener: str) -> None:
    """An SMTP listener accepted a message (its 250 after DATA)."""
    _current.accepted.labels(listener).inc()


def delivered(folder: str, local: int, queued: bool) -> None:
    """An accepted message was stored: ``local`` copies in hosted
    recipients' ``folder``, and ``queued`` for remote recipients."""
    m = _current
    if local:
        m.delivered_local.labels(folder).inc(local)
    if queued:
        m.queued.inc()


def relayed(result: str, count: int = 1) -> None:
    """Outbound deliveries to ``count`` recipients ended with ``result``:
    delivered, deferred or failed."""
    _current.relayed.labels(result).inc(count)


def bounced(to: str) -> None:
    """A DSN was made and went ``to`` local, queued or dropped."""
    _current.bounced.labels(to).inc()


def queue(messages: int, oldest_seconds: float) -> None:
    """The outbound queue now holds ``messages``, the oldest that old."""
    m = _current
    m.queue_messages.set(messages)
    m.queue_oldest.set(oldest_seconds)


def thread_pool_queue(pool: str, waiting: int) -> None:
    """``waiting`` calls now wait for a thread of ``pool``."""
    _current.thread_pool_queue.labels(pool).set(waiting)


# -- the listener ---------------------------------------------------------------


class MetricsResource(resource.Resource):
    """``GET /metrics``: the scrape, in the format the ``Accept`` header
    asks for (OpenMetrics or the Prometheus text format).

    ``registry`` is what to collect (this process's, or the sum of every
    process's files); ``runner`` runs the collection off the reactor;
    ``refresh`` updates what is read at scrape time (the queue gauges) and
    may fail without failing the scrape.
    """

    isLeaf = True  # noqa: N815 - twisted.web API

    def __init__(
        self,
        registry: CollectorRegistry,
        runner: Callable[..., Deferred],
        refresh: Callable[[], Any] | None = None,
    ) -> None:
        super().__init__()
        self._registry = registry
        self._runner = runner
        self._refresh = refresh

    def render_GET(self, request: server.Request) -> Any:  # noqa: N802 - twisted.web API
        if request.postpath not in ([b"metrics"], [b"metrics", b""]):
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            request.write(b"Not found: the metrics are at /metrics\n")
            request.finish()
            return server.NOT_DONE_YET
        accept = request.getHeader(b"accept") or b""
        encoder, content_type = choose_encoder(accept.decode("latin-1"))
        finished = [False]
        request.notifyFinish().addBoth(lambda _: finished.__setitem__(0, True))
        d = maybeDeferred(self._refresh) if self._refresh else succeed(None)
        d.addErrback(lambda f: log.failure("metrics: refreshing", f))
        d.addCallback(lambda _: self._runner(encoder, self._registry))

        def send(body: bytes) -> None:
            if finished[0]:
                return
            request.setHeader(b"content-type", content_type.encode("ascii"))
            request.setHeader(b"cache-control", b"no-store")
            request.write(body)
            request.finish()

        def failed(failure: Any) -> None:
            log.failure("metrics: collecting", failure)
            if finished[0]:
                return
            request.setResponseCode(500)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            request.write(b"collecting the metrics failed; see the server log\n")
            request.finish()

        d.addCallbacks(send, failed)
        return server.NOT_DONE_YET


class MetricsSite(server.Site):
    """The ``metrics`` listener's site: no access log line per scrape."""

    noisy = False

    def log(self, request: Any) -> None:
        pass


def make_site(
    registry: CollectorRegistry,
    runner: Callable[..., Deferred],
    refresh: Callable[[], Any] | None = None,
) -> MetricsSite:
    """The ``metrics`` listener's protocol factory."""
    return MetricsSite(MetricsResource(registry, runner, refresh))
