"""A worker process: serves the main process's listening sockets with the
same service tree (``zpop.tap.build_service``), logs through the main
process and stops when it goes."""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from twisted.application import service
from twisted.internet import abstract
from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.main import CONNECTION_DONE
from twisted.logger import (
    ILogObserver,
    Logger,
    LogLevel,
    formatEvent,
    globalLogBeginner,
)
from twisted.python.failure import Failure
from zope.interface import provider

from zpop.accounts.credentials import CachedLogin, Share
from zpop.cluster.pipe import MAX_MESSAGE, TO_MAIN_FD, learn, login_line
from zpop.tap import Options, build_service

log = Logger()


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
    #: Where the verifications other processes made go: the checker's
    #: ``learn``, given by build_service once it made the checker.
    learn_entry: Share | None = None
    #: Where this process writes its metrics (zpop.metrics), or None.
    metrics_dir: str | None = None

    @staticmethod
    def _send(line: bytes) -> None:
        try:
            os.write(TO_MAIN_FD, line)
        except OSError:
            pass  # full pipe: the main process is busy, this one is lost

    def wake(self) -> None:
        """Ask the main process's relay to look at the queue now."""
        self._send(b"wake\n")

    def share(self, key: bytes, entry: CachedLogin) -> None:
        """Tell the other processes of a password verified here."""
        line = login_line(key, entry)
        if line is not None:
            self._send(line)

    def listener_service(
        self, name: str, factory: IProtocolFactory
    ) -> service.Service:
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
            if line.startswith(b"login ") and self._worker.learn_entry is not None:
                learn(line, self._worker.learn_entry)
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
    parser = argparse.ArgumentParser(prog="python -m zpop.cluster.worker")
    parser.add_argument("number", type=int)
    parser.add_argument("data")
    parser.add_argument("--config")
    parser.add_argument("--listener", type=_listener, action="append", default=[])
    parser.add_argument("--metrics-dir")
    args = parser.parse_args(argv)
    # Signals for the terminal's process group (Ctrl-C) go to the main
    # process, which stops its workers in order.
    os.setpgrp()

    from twisted.internet import reactor

    globalLogBeginner.beginLoggingTo(
        [_log_to_main(sys.stdout)], redirectStandardIO=False
    )
    options = Options()
    config = ["--config", args.config] if args.config else []
    options.parseOptions([*config, "--data", args.data])
    for fd in (0, TO_MAIN_FD):
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    worker = Worker(
        reactor,
        {name: (fd, fam) for name, fd, fam in args.listener},
        metrics_dir=args.metrics_dir,
    )
    top = build_service(options.config, reactor, options.config_path, worker)
    top.privilegedStartService()
    top.startService()
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    reactor.addReader(_ParentWatch(reactor, worker))
    log.info("worker {number} ready", number=args.number)
    reactor.run()


if __name__ == "__main__":
    main()
