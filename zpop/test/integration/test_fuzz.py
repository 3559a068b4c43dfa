"""A short, seeded run of the network fuzzer (bench/fuzz.py) against the
real server: random and mutated sessions on every listener, then the
server must still serve real clients, stay within its memory bound and
have logged no unhandled error."""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType

from twisted.trial.unittest import TestCase

import zpop
from zpop.test.harness import ZpopServer

FUZZ_PATH = os.path.join(
    os.path.dirname(os.path.abspath(zpop.__file__)),
    os.pardir,
    "bench",
    "fuzz.py",
)
SEED = 20261201
SECONDS = 20.0
MAX_SESSIONS = 600


def load_fuzz() -> ModuleType:
    """bench/fuzz.py, loaded by path (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("zpop_bench_fuzz", FUZZ_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look the module up in sys.modules while the class is built.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class FuzzIntegrationTests(TestCase):
    """~20 s of fuzzing with a fixed seed, on all five listeners."""

    timeout = 240

    def test_fuzz_every_listener(self) -> None:
        """Seeded fuzzing of every listener: clients served, RSS +<50 MB, log clean."""
        fuzz = load_fuzz()
        server = ZpopServer(settings=fuzz.SERVER_SETTINGS)
        self.addCleanup(server.cleanup)
        server.start()
        fuzz.prepare(server)
        report = fuzz.fuzz(server, SECONDS, SEED, max_sessions=MAX_SESSIONS)
        summary = report.summary()
        self.assertEqual(
            (
                report.health_failures,
                report.rss_growth < fuzz.DEFAULT_RSS_BOUND,
                sorted(report.log_errors),
            ),
            ([], True, []),
            summary,
        )
        self.assertEqual(
            (
                sorted(report.sessions),
                min(report.sessions.values()) >= 8,  # at least one batch
                report.checks_passed["health"] >= 2,
                report.checks_failed["health"],
            ),
            (sorted(fuzz.LISTENERS), True, True, 0),
            summary,
        )
