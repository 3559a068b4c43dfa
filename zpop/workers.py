"""Worker processes: more cores for the same listeners.

One Twisted process uses one core. With ``[server] workers = N`` the main
process (the one ``twistd`` runs) starts N-1 more, hands each its listening
sockets, and all of them accept from those sockets. A worker has the same
configuration, data directory and database, so what sessions must share
already is shared: bans and failure counters live in the database,
maildrop locks are kernel locks on a file beside it (``zpop.store.locks``),
and a credential change reaches every process's caches through the
store's change counter (``zpop.store.changes``). Only the main process
relays outbound mail; a worker that queued some tells it through a pipe.
A password verified in one process is told to the others through the main
process, so each polling client still costs one bcrypt per cache period,
whichever process its connections land in.

A worker writes its log events, formatted, as JSON lines to its standard
output; the main process publishes them in its own log, marked
``[worker N: namespace#level]``. A worker
stops when its standard input, a pipe from the main process, closes, so it
never outlives the main process, even one killed with SIGKILL. The main
process restarts a worker that dies, waiting longer each time one dies
soon after starting.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.application import service
from twisted.internet import abstract
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IProtocolFactory, IPushProducer
from twisted.internet.main import CONNECTION_DONE
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import (
    ILogObserver,
    InvalidLogLevelError,
    Logger,
    LogLevel,
    formatEvent,
    globalLogBeginner,
    globalLogPublisher,
)
from twisted.python.failure import Failure
from zope.interface import implementer, provider

from zpop.auth import CachedLogin

log = Logger()

#: The worker's end of its pipe to the main process: ``wake`` lines (the
#: relay should look at the queue) and ``login`` lines (a verification to
#: share). The main process sends ``login`` lines to the worker's stdin.
TO_MAIN_FD = 3
#: Longest line sent on a pipe: one write of up to PIPE_BUF bytes is atomic,
#: so concurrent writers never interleave and a full pipe never cuts one.
MAX_MESSAGE = 4096
#: The worker's first inherited listening socket; the others follow.
FIRST_LISTENER_FD = 4
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
        checker: Any,
    ) -> None:
        self.setName("workers")
        self._reactor = reactor
        self._count = count
        self._ports = list(ports)
        self._data_dir = data_dir
        self._config_path = config_path
        self._outbound = outbound
        self._checker = checker
        checker.share = self.share
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
        argv = [sys.executable, "-m", "zpop.workers", str(number), self._data_dir]
        if self._config_path is not None:
            argv += ["--config", self._config_path]
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
            if _learn(self._checker, line):
                for other in self._workers.values():
                    if other.number != number:
                        other.send(line + b"\n")
        else:
            log.warn("worker {number} sent {line!r}", number=number, line=line[:80])

    def share(self, key: bytes, entry: Any) -> None:
        """The main process's checker verified a password: tell the workers."""
        line = _login_line(key, entry)
        if line is not None:
            for worker in self._workers.values():
                worker.send(line)

    def ended(self, worker: _WorkerProcess, reason: Failure) -> None:
        if self._workers.get(worker.number) is worker:
            del self._workers[worker.number]
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


def _login_line(key: bytes, entry: Any) -> bytes | None:
    """A ``login`` line for a remembered verification, None if too long."""
    line = (
        b"login " + json.dumps({"key": key.hex(), **entry.as_dict()}).encode() + b"\n"
    )
    return line if len(line) <= MAX_MESSAGE else None


def _learn(checker: Any, line: bytes) -> bool:
    """Give ``checker`` the verification in a ``login`` line; False if the
    line is malformed."""
    try:
        fields = json.loads(line[len(b"login ") :])
        key = bytes.fromhex(fields.pop("key"))
        entry = CachedLogin.from_dict(fields)
    except (ValueError, TypeError, KeyError, AttributeError):
        log.warn("malformed login line {line!r}", line=line[:80])
        return False
    checker.learn(key, entry)
    return True


# -- the worker's side ------------------------------------------------------------


class _AdoptedListener(service.Service):
    """Accepts from a listening socket inherited from the main process."""

    def __init__(
        self, reactor: Any, fd: int, family: int, factory: IProtocolFactory
    ) -> None:
        self._reactor = reactor
        self._fd = fd
        self._family = family
        self._factory = factory
        self._port: Any = None

    def startService(self) -> None:
        super().startService()
        self._port = self._reactor.adoptStreamPort(
            self._fd, self._family, self._factory
        )
        os.close(self._fd)  # adoptStreamPort works on a copy

    def stopService(self) -> Any:
        super().stopService()
        return self._port.stopListening() if self._port is not None else None


@dataclass
class Worker:
    """A worker process's part in ``zpop.tap.build_service``."""

    reactor: Any
    #: listener name -> (inherited file descriptor, address family)
    listeners: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: The process's credentials checker (set by build_service).
    checker: Any = None

    @staticmethod
    def _send(line: bytes) -> None:
        try:
            os.write(TO_MAIN_FD, line)
        except OSError:
            pass  # full pipe: the main process is busy, this one is lost

    def wake(self) -> None:
        """Ask the main process's relay to look at the queue now."""
        self._send(b"wake\n")

    def share(self, key: bytes, entry: Any) -> None:
        """Tell the other processes of a password verified here."""
        line = _login_line(key, entry)
        if line is not None:
            self._send(line)

    def use_checker(self, checker: Any) -> None:
        self.checker = checker
        checker.share = self.share

    def listener_service(self, name: str, factory: IProtocolFactory) -> Any:
        fd, family = self.listeners[name]
        svc = _AdoptedListener(self.reactor, fd, family, factory)
        svc.setName(name)
        return svc


class _ParentWatch(abstract.FileDescriptor):
    """Reads the main process's pipe (standard input): verifications from
    other processes; stops the reactor when it closes."""

    def __init__(self, reactor: Any, worker: Worker) -> None:
        super().__init__(reactor)
        self._worker = worker
        self._buffer = b""

    def fileno(self) -> int:
        return 0

    def doRead(self) -> Any:
        try:
            data = os.read(0, 65536)
        except BlockingIOError:
            return None
        if not data:
            return CONNECTION_DONE
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        self._buffer = self._buffer[:MAX_MESSAGE]
        for line in lines:
            if line.startswith(b"login ") and self._worker.checker is not None:
                _learn(self._worker.checker, line)
        return None

    def connectionLost(self, reason: Failure) -> None:
        abstract.FileDescriptor.connectionLost(self, reason)
        reactor: Any = self.reactor
        if reactor.running:
            reactor.stop()


def _log_to_main(out: Any) -> Any:
    """An observer writing each event, formatted here, as a JSON line for
    the main process: it only has to publish it."""

    @provider(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        text = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            text += "\n" + failure.getTraceback()
        record = {
            "time": event.get("log_time", 0.0),
            "level": event.get("log_level", LogLevel.info).name,
            "namespace": event.get("log_namespace", "-"),
            "text": text,
        }
        out.write(json.dumps(record) + "\n")
        out.flush()

    return observe


def _listener(text: str) -> tuple[str, int, int]:
    name, fd, family = text.split(":")
    return name, int(fd), int(family)


def main(argv: list[str] | None = None) -> None:
    """Run worker process ``number`` (started by WorkerPool, not by hand)."""
    parser = argparse.ArgumentParser(prog="python -m zpop.workers")
    parser.add_argument("number", type=int)
    parser.add_argument("data")
    parser.add_argument("--config")
    parser.add_argument("--listener", type=_listener, action="append", default=[])
    args = parser.parse_args(argv)
    # Signals for the terminal's process group (Ctrl-C) go to the main
    # process, which stops its workers in order.
    os.setpgrp()

    from twisted.internet import reactor

    from zpop.tap import Options, build_service

    globalLogBeginner.beginLoggingTo(
        [_log_to_main(sys.stdout)], redirectStandardIO=False
    )
    options = Options()
    config = ["--config", args.config] if args.config else []
    options.parseOptions([*config, "--data", args.data])
    for fd in (0, TO_MAIN_FD):
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    worker = Worker(reactor, {name: (fd, fam) for name, fd, fam in args.listener})
    top = build_service(options.config, reactor, options.config_path, worker)
    top.privilegedStartService()
    top.startService()
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    reactor.addReader(_ParentWatch(reactor, worker))
    log.info("worker {number} ready", number=args.number)
    reactor.run()


if __name__ == "__main__":
    # Through the package, so build_service sees this module's classes.
    from zpop.workers import main as _main

    _main()
