"""The main process's side of the worker processes: start, restart, stop,
relay their logs and pass shared verifications between them."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from twisted.application import service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import InvalidLogLevelError, Logger, LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from zpop import metrics
from zpop.accounts.credentials import CachedLogin, Share
from zpop.cluster.pipe import (
    FIRST_LISTENER_FD,
    MAX_MESSAGE,
    TO_MAIN_FD,
    learn,
    login_line,
)

log = Logger()

#: Seconds before a dead worker is restarted; doubled, up to MAX_RESTART_DELAY,
#: while workers keep dying within STABLE seconds of starting.
RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 60.0
STABLE = 10.0
#: Seconds a worker gets to finish its sessions' commits when stopping.
STOP_TIMEOUT = 10.0
#: Longest log line relayed from a worker.
MAX_LOG_LINE = 1 << 20




@implementer(IPushProducer)
class _StdinBackedUp:
    """Whether a worker's stdin pipe holds more than its buffer (64 KiB):
    Twisted pauses a pipe's producer then and resumes it once drained."""

    paused = False

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted API
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802 - Twisted API
        self.paused = False

    def stopProducing(self) -> None:  # noqa: N802 - Twisted API
        self.paused = True


class _WorkerProcess(ProcessProtocol):
    """The main process's end of one worker: its log, wake-ups and exit."""

    transport: Any

    def __init__(self, pool: WorkerPool, number: int, started: float) -> None:
        self.pool = pool
        self.number = number
        self.started = started
        self.ended: Deferred = Deferred()
        #: The process id, kept for after it ended (the transport forgets).
        self.pid: int | None = None
        self._log = b""
        self._messages = b""
        self._stdin = _StdinBackedUp()

    def connectionMade(self) -> None:
        self.transport.pipes[0].registerProducer(self._stdin, True)

    def send(self, line: bytes) -> None:
        """Pass a shared verification on, unless the worker stopped reading
        (SIGSTOP, a hang) and 64 KiB already wait: they are a cache hint,
        dropped rather than buffered without bound."""
        if not self._stdin.paused:
            self.transport.write(line)

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == TO_MAIN_FD:
            self._messages += data
            *lines, self._messages = self._messages.split(b"\n")
            self._messages = self._messages[:MAX_MESSAGE]
            for line in lines:
                self.pool.message(self.number, line)
            return
        if childFD != 1:
            for text in data.decode("utf-8", "replace").splitlines():
                log.warn("worker {number}: {line}", number=self.number, line=text)
            return
        self._log += data
        *lines, self._log = self._log.split(b"\n")
        if len(self._log) > MAX_LOG_LINE:
            lines.append(self._log[:MAX_LOG_LINE])
            self._log = b""
        for line in lines:
            self._relay(line.decode("utf-8", "replace"))

    def _relay(self, line: str) -> None:
        if not line:
            return
        try:
            record = json.loads(line)
            level = LogLevel.levelWithName(record["level"])
            namespace = str(record["namespace"])
            event = {
                "log_format": "{text}",
                "text": str(record["text"]),
                "log_time": float(record["time"]),
                "log_level": level,
                "log_namespace": namespace,
                "log_system": f"worker {self.number}: {namespace}#{level.name}",
            }
        except (ValueError, TypeError, KeyError, InvalidLogLevelError):
            log.info("worker {number}: {line}", number=self.number, line=line)
            return
        globalLogPublisher(event)

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)
        self.pool.ended(self, reason)

    def stop(self, reactor: Any) -> Deferred:
        if self.ended.called:
            return succeed(None)
        self.transport.signalProcess("TERM")
        kill = reactor.callLater(STOP_TIMEOUT, self.transport.signalProcess, "KILL")
        done: Deferred = Deferred()

        def ended(result: object) -> None:
            if kill.active():
                kill.cancel()
            done.callback(None)

        self.ended.addBoth(ended)
        return done


class WorkerPool(service.Service):
    """Starts, restarts and stops the worker processes of the main process.

    ``ports`` are (listener name, a function returning its listening port)
    for every listener, listening by the time this service starts.
    """

    def __init__(
        self,
        reactor: Any,
        count: int,
        ports: Sequence[tuple[str, Callable[[], Any]]],
        data_dir: str,
        config_path: str | None,
        outbound: Any,
        learn: Share,
        metrics_dir: str | None = None,
    ) -> None:
        """``metrics_dir``: where the workers write their metrics
        (zpop.metrics), None for nowhere."""
        self.setName("workers")
        self._metrics_dir = metrics_dir
        self._reactor = reactor
        self._count = count
        self._ports = list(ports)
        self._data_dir = data_dir
        self._config_path = config_path
        self._outbound = outbound
        self._learn = learn
        self._workers: dict[int, _WorkerProcess] = {}
        self._restarts: dict[int, Any] = {}
        self._delays: dict[int, float] = {}

    def startService(self) -> None:
        super().startService()
        for number in range(1, self._count + 1):
            self._spawn(number)

    def _spawn(self, number: int) -> None:
        self._restarts.pop(number, None)
        if not self.running:
            return
        argv = [
            sys.executable, "-m", "zpop.cluster.worker", str(number), self._data_dir
        ]
        if self._config_path is not None:
            argv += ["--config", self._config_path]
        if self._metrics_dir is not None:
            argv += ["--metrics-dir", self._metrics_dir]
        child_fds: dict[int, Any] = {0: "w", 1: "r", 2: "r", TO_MAIN_FD: "r"}
        for fd, (name, port_of) in enumerate(self._ports, FIRST_LISTENER_FD):
            sock = port_of().socket
            child_fds[fd] = sock.fileno()
            argv += ["--listener", f"{name}:{fd}:{int(sock.family)}"]
        worker = _WorkerProcess(self, number, self._reactor.seconds())
        self._reactor.spawnProcess(
            worker, sys.executable, argv, env=dict(os.environ), childFDs=child_fds
        )
        self._workers[number] = worker
        worker.pid = worker.transport.pid
        log.info(
            "worker {number} started, pid {pid}",
            number=number,
            pid=worker.transport.pid,
        )

    def message(self, number: int, line: bytes) -> None:
        """A line from worker ``number``: a wake-up or a verification."""
        if line == b"wake":
            if self._outbound is not None:
                self._outbound.wake()
        elif line.startswith(b"login "):
            if learn(line, self._learn):
                for other in self._workers.values():
                    if other.number != number:
                        other.send(line + b"\n")
        else:
            log.warn("worker {number} sent {line!r}", number=number, line=line[:80])

    def share(self, key: bytes, entry: CachedLogin) -> None:
        """The main process's checker verified a password: tell the workers."""
        line = login_line(key, entry)
        if line is not None:
            for worker in self._workers.values():
                worker.send(line)

    def ended(self, worker: _WorkerProcess, reason: Failure) -> None:
        if self._workers.get(worker.number) is worker:
            del self._workers[worker.number]
        if self._metrics_dir is not None and worker.pid is not None:
            metrics.process_ended(worker.pid, self._metrics_dir)
        if not self.running:
            return
        lived = self._reactor.seconds() - worker.started
        delay = RESTART_DELAY
        if lived < STABLE:
            delay = min(self._delays.get(worker.number, 0) * 2, MAX_RESTART_DELAY)
            delay = max(delay, RESTART_DELAY)
        self._delays[worker.number] = delay
        log.warn(
            "worker {number} ended ({reason}); restarting in {delay:.0f}s",
            number=worker.number,
            reason=reason.getErrorMessage(),
            delay=delay,
        )
        self._restarts[worker.number] = self._reactor.callLater(
            delay, self._spawn, worker.number
        )

    def stopService(self) -> Deferred:
        super().stopService()
        for call in self._restarts.values():
            call.cancel()
        self._restarts.clear()
        stopping = [w.stop(self._reactor) for w in self._workers.values()]
        return DeferredList(stopping).addCallback(lambda _: None)
