"""Runners: the synchronous one for the CLI and unit tests, and thread pools
that start and stop with the service tree."""

from __future__ import annotations

import os
import threading
import time
from typing import Any, cast

from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.internet import reactor as _global_reactor
from twisted.internet.interfaces import IReactorFromThreads
from twisted.trial.unittest import SynchronousTestCase, TestCase

from zpop.threads import ThreadPoolService, run_synchronously

#: The real reactor, for the tests that run real threads.
REACTOR = cast(IReactorFromThreads, _global_reactor)


class BoomError(Exception):
    """The error the functions under test raise."""


def _describe(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
    return (threading.current_thread(), args, kwargs)


def _fail(message: str) -> None:
    raise BoomError(message)


class RunSynchronouslyTests(SynchronousTestCase):
    """run_synchronously calls the function at once, on this thread."""

    def test_result(self) -> None:
        """It fires with the result, computed on the calling thread, args passed."""
        d = run_synchronously(_describe, 1, 2, key="value")
        self.assertEqual(
            self.successResultOf(d),
            (threading.current_thread(), (1, 2), {"key": "value"}),
        )

    def test_called_before_returning(self) -> None:
        """The function has run by the time run_synchronously returns."""
        calls: list[str] = []
        d = run_synchronously(calls.append, "ran")
        self.assertEqual(calls, ["ran"])
        self.assertIsNone(self.successResultOf(d))

    def test_failure(self) -> None:
        """An exception becomes a fired failed Deferred, not a raise."""
        d = run_synchronously(_fail, "broken")
        failure = self.failureResultOf(d, BoomError)
        self.assertEqual(str(failure.value), "broken")

    def test_deferred_result(self) -> None:
        """A function returning a fired Deferred gives that Deferred's result."""
        d = run_synchronously(defer.succeed, "inner")
        self.assertEqual(self.successResultOf(d), "inner")


class ThreadPoolServiceLifecycleTests(SynchronousTestCase):
    """The pool's threads live while the service runs."""

    def test_configuration(self) -> None:
        """The service is named and sized; no thread runs before it starts."""
        service = ThreadPoolService(REACTOR, "db", 3)
        self.assertEqual((service.name, service.size, service.threads), ("db", 3, []))

    def test_starts_and_stops_with_service(self) -> None:
        """Threads start when calls need them, named after the pool; stopping
        the service ends and joins them."""
        service = ThreadPoolService(REACTOR, "zpop-test-lifecycle", 2)
        service.startService()

        def stop() -> None:
            if service.running:
                service.stopService()

        self.addCleanup(stop)
        idle_at_start = list(service.threads)
        ran = threading.Event()
        service(ran.set)
        self.assertTrue(ran.wait(10))
        started = list(service.threads)
        self.assertEqual(
            (
                bool(service.running),
                idle_at_start,
                [(t.name, t.is_alive()) for t in started],
            ),
            (True, [], [("zpop-test-lifecycle-0", True)]),
        )
        service.stopService()
        self.assertEqual(
            (
                bool(service.running),
                service.threads,
                [t for t in started if t.is_alive()],
            ),
            (False, [], []),
        )

    def test_starts_and_stops_in_a_tree(self) -> None:
        """As a child of a service tree, the pool starts and stops with the tree."""
        tree = MultiService()
        service = ThreadPoolService(REACTOR, "zpop-test-tree", 2)
        service.setServiceParent(tree)
        self.assertIs(tree.getServiceNamed("zpop-test-tree"), service)
        tree.startService()
        self.addCleanup(lambda: tree.running and tree.stopService())
        ran = threading.Event()
        service(ran.set)
        self.assertTrue(ran.wait(10))
        started = list(service.threads)
        self.successResultOf(defer.maybeDeferred(tree.stopService))
        self.assertEqual(
            (len(started), service.threads, [t for t in started if t.is_alive()]),
            (1, [], []),
        )

    def test_queued_before_start(self) -> None:
        """A call made before the service starts runs once it has; stopping
        runs what is queued before the threads end."""
        service = ThreadPoolService(REACTOR, "zpop-test-early", 1)
        ran = threading.Event()
        service(ran.set)
        self.assertFalse(ran.is_set())
        service.startService()
        service.stopService()
        self.assertTrue(ran.is_set())

    def test_refused_after_stop(self) -> None:
        """A call after the service stopped fails at once: no thread would
        ever run it."""
        service = ThreadPoolService(REACTOR, "zpop-test-stopped", 1)
        service.startService()
        service.stopService()
        failure = self.failureResultOf(service(_describe), RuntimeError)
        self.assertEqual(str(failure.value), "thread pool zpop-test-stopped is stopped")


class ThreadPoolServiceTests(TestCase):
    """Calling the service runs the function on a pool thread."""

    def setUp(self) -> None:
        self.service = ThreadPoolService(REACTOR, "zpop-test-pool", 2)
        self.service.startService()
        self.addCleanup(self.service.stopService)

    @defer.inlineCallbacks
    def test_runs_off_the_reactor_thread(self) -> Any:
        """The function runs on one of the pool's threads, with its arguments."""
        here = threading.current_thread()
        thread, args, kwargs = yield self.service(_describe, 1, key="value")
        self.assertIsNot(thread, here)
        self.assertIn(thread, self.service.threads)
        self.assertEqual((args, kwargs), ((1,), {"key": "value"}))

    @defer.inlineCallbacks
    def test_result_arrives_on_the_reactor_thread(self) -> Any:
        """The Deferred fires on the reactor thread, not on the pool thread."""
        here = threading.current_thread()
        fired_on = []
        d = self.service(_describe)
        d.addCallback(lambda result: fired_on.append(threading.current_thread()))
        yield d
        self.assertEqual(fired_on, [here])

    @defer.inlineCallbacks
    def test_failure(self) -> Any:
        """An exception in the pool fails the Deferred with that exception."""
        error = yield self.assertFailure(self.service(_fail, "broken"), BoomError)
        self.assertEqual(str(error), "broken")

    @defer.inlineCallbacks
    def test_reuses_the_last_idle_thread(self) -> Any:
        """Calls one after another run on one thread: no second thread starts
        while one is idle."""
        first, _, _ = yield self.service(_describe)
        second, _, _ = yield self.service(_describe)
        self.assertEqual((second, self.service.threads), (first, [first]))

    @defer.inlineCallbacks
    def test_call_from_a_callback_runs_on_the_same_thread(self) -> Any:
        """A call made by a result's callback (the next chunk of a RETR)
        finds the thread that produced the result idle already: it runs
        there, and no second thread starts. (The thread here dawdles 50 ms
        after handing the result over, time enough for the callback to run
        first if it went idle only afterwards.)"""

        class Dawdling:
            @staticmethod
            def callFromThread(f: Any, *args: Any) -> None:  # noqa: N802
                REACTOR.callFromThread(f, *args)
                time.sleep(0.05)

        self.patch(self.service, "_reactor", Dawdling())
        for _ in range(5):
            second: defer.Deferred = defer.Deferred()

            def again(result: Any, second: defer.Deferred = second) -> Any:
                self.service(_describe).chainDeferred(second)
                return result

            first, _, _ = yield self.service(_describe).addCallback(again)
            then, _, _ = yield second
            self.assertEqual((then, self.service.threads), (first, [first]))

    @defer.inlineCallbacks
    def test_concurrent_calls(self) -> Any:
        """Several calls run at once, on at most ``size`` threads."""
        barrier = threading.Barrier(2, timeout=10)

        def meet() -> threading.Thread:
            barrier.wait()
            return threading.current_thread()

        threads = yield defer.gatherResults([self.service(meet), self.service(meet)])
        self.assertEqual(len(set(threads)), 2)
        self.assertLessEqual(len(self.service.threads), 2)


class NicePoolTests(TestCase):
    """A pool for CPU-bound work runs at a lower priority than the reactor."""

    @defer.inlineCallbacks
    def test_threads_niced(self) -> Any:
        """Work on a nice=10 pool runs at niceness 10 above the process's;
        the reactor thread keeps its own."""
        service = ThreadPoolService(REACTOR, "zpop-test-nice", 1, nice=10)
        service.startService()
        self.addCleanup(service.stopService)
        base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

        def niceness() -> int:
            return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

        pooled = yield service(niceness)
        self.assertEqual(
            (pooled, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())),
            (min(base + 10, 19), base),
        )
