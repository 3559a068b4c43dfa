"""Worker processes: the real server with ``[server] workers = 2``, and the
main process's side of a worker with a fake reactor."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from zpop.accounts.credentials import CachedLogin
from zpop.cluster.pipe import TO_MAIN_FD
from zpop.cluster.pool import (
    MAX_RESTART_DELAY,
    RESTART_DELAY,
    WorkerPool,
    _WorkerProcess,
)
from zpop.store.changes import Verified
from zpop.test.integration.test_pop3 import POP3Client, ServerMixin

STARTED = re.compile(r"worker (\d+) started, pid (\d+)")


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaped has ended)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_for(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout}s: {condition}")
        time.sleep(0.05)


class WorkersIntegrationTests(ServerMixin, TestCase):
    settings = {
        "server": {"workers": "2"},
        "auth": {"failure_delay": "0.01", "max_connections_per_client": "100"},
    }

    def setUp(self) -> None:
        super().setUp()
        wait_for(lambda: "worker 1 ready" in self.server.log_text(current=True))

    def worker_pids(self) -> list[int]:
        return [int(m[1]) for m in STARTED.findall(self.server.log_text(current=True))]

    def sessions(self, count: int) -> None:
        """``count`` POP3S sessions, open at once, then each QUIT."""
        clients = [POP3Client(self.server) for _ in range(count)]
        for client in clients:
            client.quit()

    def test_both_processes_serve(self) -> None:
        """Connections to one listening port are served by the main process
        and by the worker, each logging its own sessions."""
        self.sessions(40)
        wait_for(lambda: self.server.log_text(current=True).count(" logout ") >= 40)
        lines = [
            line
            for line in self.server.log_text(current=True).splitlines()
            if " logout " in line
        ]
        by_worker = [line for line in lines if "[worker 1: " in line]
        self.assertEqual(len(lines), 40)
        self.assertGreater(len(by_worker), 0)
        self.assertLess(len(by_worker), 40)

    def test_killed_worker_is_restarted(self) -> None:
        """A worker killed with SIGKILL is started again, and mail is served
        throughout; its maildrop locks are the store's, so a session it held
        is not left IN-USE by a live process."""
        address = self.account()
        self.deliver(address, "one")
        (pid,) = self.worker_pids()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: len(self.worker_pids()) == 2)
        self.assertNotEqual(self.worker_pids()[1], pid)
        wait_for(lambda: self.server.log_text(current=True).count("ready") >= 2)
        self.assertIn("worker 1 ended", self.server.log_text(current=True))
        for _ in range(6):
            self.assertEqual(self.subjects(address), ["one"])

    def test_stop_ends_workers(self) -> None:
        """SIGTERM to the main process stops its workers before it exits."""
        (pid,) = self.worker_pids()
        # twistd ends by re-raising the signal that stopped it.
        self.assertEqual(self.server.stop(), -signal.SIGTERM)
        self.assertFalse(alive(pid))
        self.assertIn(
            "[worker 1: twisted.internet.base#info] Main loop terminated.",
            self.server.log_text(),
        )

    def test_workers_do_not_outlive_main(self) -> None:
        """A main process killed with SIGKILL leaves no worker behind: each
        notices its pipe from the main process close."""
        (pid,) = self.worker_pids()
        self.server.kill()
        wait_for(lambda: not alive(pid), timeout=10)


class _StdinPipe:
    producer: Any = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:  # noqa: N802
        self.producer = producer


class _Transport:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[str] = []
        self.written: list[bytes] = []
        self.pipes = {0: _StdinPipe()}

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def signalProcess(self, name: str) -> None:  # noqa: N802 - Twisted API
        self.signals.append(name)


class _Reactor(Clock):
    """A Clock that records spawnProcess calls."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[Any, list[str], dict[int, Any]]] = []

    def spawnProcess(  # noqa: N802 - Twisted API
        self, protocol: Any, executable: str, args: list[str], **kwargs: Any
    ) -> Any:
        protocol.makeConnection(_Transport(1000 + len(self.spawned)))
        self.spawned.append((protocol, args, kwargs["childFDs"]))
        return protocol.transport


class _Port:
    class socket:  # noqa: N801 - stands in for a socket object
        family = 2

        @staticmethod
        def fileno() -> int:
            return 17


class _Outbound:
    wakes = 0

    def wake(self) -> None:
        self.wakes += 1


class _Checker:
    """Records what an AccountChecker would learn."""

    def __init__(self) -> None:
        self.learned: list[tuple[bytes, CachedLogin]] = []

    def learn(self, key: bytes, entry: CachedLogin) -> None:
        self.learned.append((key, entry))


ENTRY = CachedLogin(
    "alice@example.com",
    "app password phone",
    7,
    Verified(3, 100.0),
    generation=5,
    expires=400.0,
)


class WorkerPoolTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = _Reactor()
        self.outbound = _Outbound()
        self.checker = _Checker()
        self.pool = WorkerPool(
            self.reactor,
            1,
            [("pop3s", _Port)],
            "/data",
            "/etc/zpop.ini",
            self.outbound,
            self.checker.learn,
        )
        self.pool.startService()
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def test_spawn_hands_over_the_sockets(self) -> None:
        """A worker gets the config, data directory and listening sockets."""
        ((_, args, fds),) = self.reactor.spawned
        self.assertEqual(
            (args[1:], fds),
            (
                [
                    "-m",
                    "zpop.cluster.worker",
                    "1",
                    "/data",
                    "--config",
                    "/etc/zpop.ini",
                    "--listener",
                    "pop3s:4:2",
                ],
                {0: "w", 1: "r", 2: "r", TO_MAIN_FD: "r", 4: 17},
            ),
        )

    def test_log_and_wake(self) -> None:
        """Events (JSON lines) are published as system "worker N", other
        output is logged as text, and a byte on the wake pipe wakes the relay."""
        ((worker, _, _),) = self.reactor.spawned
        record = {"time": 1.0, "level": "warn", "namespace": "zpop.x", "text": "hi"}
        line = (json.dumps(record) + "\n").encode()
        worker.childDataReceived(1, line[:10])
        worker.childDataReceived(1, line[10:] + b"not json\n")
        worker.childDataReceived(2, b"Traceback: boom\n")
        worker.childDataReceived(TO_MAIN_FD, b"wa")
        worker.childDataReceived(TO_MAIN_FD, b"ke\n")
        relayed = [
            e for e in self.events if e.get("log_system") == "worker 1: zpop.x#warn"
        ]
        self.assertEqual(
            [(e["text"], e["log_level"], e["log_namespace"]) for e in relayed],
            [("hi", LogLevel.warn, "zpop.x")],
        )
        texts = [e.get("line") for e in self.events if "line" in e]
        self.assertEqual(texts, ["not json", "Traceback: boom"])
        self.assertEqual(self.outbound.wakes, 1)

    def test_verifications_shared(self) -> None:
        """A verification a worker shares is learned by the main process and
        passed to the other workers, not back; the main process's own go to
        every worker; a malformed line is logged and goes nowhere."""
        self.pool._count = 2
        self.pool._spawn(2)
        one, two = (w for w, _, _ in self.reactor.spawned)
        key = b"\x01" * 32
        line = json.dumps({"key": key.hex(), **ENTRY.as_dict()}).encode()
        one.childDataReceived(TO_MAIN_FD, b"login " + line + b"\nlogin {}\n")
        self.assertEqual(self.checker.learned, [(key, ENTRY)])
        self.assertEqual(
            (one.transport.written, two.transport.written),
            ([], [b"login " + line + b"\n"]),
        )
        self.pool.share(key, ENTRY)
        self.assertEqual(one.transport.written, [b"login " + line + b"\n"])
        warnings = [
            e for e in self.events if e.get("log_format", "").startswith("malformed")
        ]
        self.assertEqual(len(warnings), 1)

    def test_backed_up_worker_skipped(self) -> None:
        """While a worker's stdin pipe is backed up (it stopped reading),
        shared verifications for it are dropped, not buffered; once the
        pipe drains they flow again."""
        ((worker, _, _),) = self.reactor.spawned
        pipe = worker.transport.pipes[0]
        pipe.producer.pauseProducing()
        self.pool.share(b"\x01" * 32, ENTRY)
        skipped = list(worker.transport.written)
        pipe.producer.resumeProducing()
        self.pool.share(b"\x02" * 32, ENTRY)
        self.assertEqual(
            (skipped, [line[:6] for line in worker.transport.written]),
            ([], [b"login "]),
        )

    def test_restart_backs_off(self) -> None:
        """A worker that keeps dying soon after starting is restarted after
        a delay that doubles up to the maximum; one that lived long is
        restarted after the shortest delay."""
        delays = []
        for _ in range(9):
            worker = self.reactor.spawned[-1][0]
            worker.processEnded(Failure(RuntimeError("died")))
            before = len(self.reactor.spawned)
            waited = 0.0
            while len(self.reactor.spawned) == before:
                self.reactor.advance(RESTART_DELAY)
                waited += RESTART_DELAY
            delays.append(waited)
        self.assertEqual(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60])
        self.assertEqual(MAX_RESTART_DELAY, 60)
        self.reactor.advance(3600)
        self.reactor.spawned[-1][0].processEnded(Failure(RuntimeError("died")))
        self.reactor.advance(RESTART_DELAY)
        self.assertEqual(len(self.reactor.spawned), 11)

    def test_stop(self) -> None:
        """Stopping sends SIGTERM, then SIGKILL to a worker still running
        after the timeout; no restart follows."""
        ((worker, _, _),) = self.reactor.spawned
        d = self.pool.stopService()
        self.assertEqual(worker.transport.signals, ["TERM"])
        self.reactor.advance(10)
        self.assertEqual(worker.transport.signals, ["TERM", "KILL"])
        worker.processEnded(Failure(RuntimeError("killed")))
        self.successResultOf(d)
        self.reactor.advance(3600)
        self.assertEqual(len(self.reactor.spawned), 1)


class _EndedPool:
    def ended(self, worker: Any, reason: Any) -> None:
        pass


class StdinBackpressureTests(TestCase):
    """A real child that never reads its stdin: the main process's buffer
    for it stays bounded."""

    def test_stopped_reader_bounds_the_buffer(self) -> Any:
        """Offered 1 MiB of lines, a worker that reads nothing is sent only
        what fills Twisted's 64 KiB pipe buffer (and the kernel's pipe);
        the rest is dropped, and the writer is paused."""
        worker = _WorkerProcess(_EndedPool(), 1, 0.0)  # type: ignore[arg-type]
        process = reactor.spawnProcess(  # type: ignore[attr-defined]
            worker,
            sys.executable,
            [sys.executable, "-c", "import time; time.sleep(60)"],
            childFDs={0: "w", 1: "r", 2: "r"},
        )
        self.addCleanup(lambda: worker.ended)
        self.addCleanup(process.signalProcess, "KILL")
        accepted = []
        write = process.write

        def counted(data: bytes) -> None:
            accepted.append(len(data))
            write(data)

        process.write = counted
        line = b"x" * 1023 + b"\n"
        for _ in range(1024):
            worker.send(line)
        self.assertEqual(
            (worker._stdin.paused, sum(accepted) <= 64 * 1024 + len(line)),
            (True, True),
        )
