"""Where blocking work runs: thread pools as services, and a synchronous
stand-in for the ``zpop`` command and unit tests.

A *runner* is any callable ``runner(f, *args, **kwargs) -> Deferred`` that
calls ``f`` somewhere and fires with its result.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.failure import Failure

from zpop import metrics

Runner = Callable[..., Deferred]

#: One queued call: its Deferred, the function and its arguments.
_Call = tuple[Deferred, Callable[..., Any], tuple[Any, ...], dict[str, Any]]


def run_synchronously(f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
    """Call ``f`` now, on this thread: for the CLI and for unit tests."""
    return maybeDeferred(f, *args, **kwargs)


class ThreadPoolService(Service):
    """A named set of threads that starts and stops with the service tree.

    Calling it is a runner: one of at most ``size`` threads runs the call,
    and the Deferred fires on the reactor thread. A dedicated pool per
    concern (database, bcrypt) keeps a burst of slow password checks from
    starving the database.

    Not Twisted's ThreadPool: its per-call coordination (a Team and a
    LockWorker, a queue and a condition per worker, a log context) hands
    the GIL back and forth several times a call, and a POP3 session makes
    a few calls while the reactor thread is busy. This dispatch cut a
    session's server CPU by about 0.15 ms of 3.5-4 (A/B, three pairs).
    Like Twisted's, it starts threads only when every thread is busy, and
    it hands a call to the thread that went idle last: under light load
    one thread does the work, with one SQLite page cache and one malloc
    arena warm, instead of every thread growing its own.
    """

    def __init__(
        self, reactor: IReactorFromThreads, name: str, size: int, nice: int = 0
    ) -> None:
        self.setName(name)
        self._pool_name = name
        self._reactor = reactor
        self.size = size
        #: Raise this pool's threads' niceness (Linux: per thread), so CPU-
        #: bound work (bcrypt) never takes a core from the reactor thread.
        self.nice = nice
        self.threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        #: Inboxes of idle threads, the last one to go idle at the end.
        self._idle: list[SimpleQueue[_Call | None]] = []
        self._inboxes: list[SimpleQueue[_Call | None]] = []
        #: Calls waiting for a thread (all busy, or not started yet).
        self._backlog: deque[_Call] = deque()
        self._stopped = False

    def startService(self) -> None:
        super().startService()
        self._stopped = False
        with self._lock:
            early, self._backlog = self._backlog, deque()
        for call in early:
            self._dispatch(call)
        with self._lock:
            metrics.thread_pool_queue(self._pool_name, len(self._backlog))

    def stopService(self) -> None:
        """Run what is queued, then end and join the threads."""
        super().stopService()
        self._stopped = True
        with self._lock:
            inboxes, self._inboxes, self._idle = self._inboxes, [], []
            threads, self.threads = self.threads, []
        # A busy thread runs the backlog before it reads its inbox again.
        for inbox in inboxes:
            inbox.put(None)
        for thread in threads:
            thread.join()

    def __call__(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
        if self._stopped:
            return fail(RuntimeError(f"thread pool {self.name} is stopped"))
        d: Deferred = Deferred()
        self._dispatch((d, f, args, kwargs))
        return d

    def _dispatch(self, call: _Call) -> None:
        with self._lock:
            if not self.running:
                self._backlog.append(call)
                return
            if self._idle:
                inbox = self._idle.pop()
            elif len(self.threads) < self.size:
                inbox = SimpleQueue()
                thread = threading.Thread(
                    target=self._work,
                    args=(inbox,),
                    name=f"{self.name}-{len(self.threads)}",
                    daemon=True,
                )
                self.threads.append(thread)
                self._inboxes.append(inbox)
                thread.start()
            else:
                self._backlog.append(call)
                # Only while every thread is busy: no cost on the fast path.
                metrics.thread_pool_queue(self._pool_name, len(self._backlog))
                return
        inbox.put(call)

    def _work(self, inbox: SimpleQueue[_Call | None]) -> None:
        if self.nice:
            try:
                me = threading.get_native_id()
                current = os.getpriority(os.PRIO_PROCESS, me)
                os.setpriority(os.PRIO_PROCESS, me, min(current + self.nice, 19))
            except (AttributeError, OSError):
                pass  # not Linux, or not allowed: run at normal priority
        call = inbox.get()
        while call is not None:
            fire, result = self._run(call)
            # Idle (or on to the backlog) before the result is delivered, so
            # a call its callback makes (the next chunk of a RETR) finds this
            # thread, with its warm buffers, rather than another or a new one.
            with self._lock:
                call = self._backlog.popleft() if self._backlog else None
                if call is None:
                    self._idle.append(inbox)
                else:
                    metrics.thread_pool_queue(self._pool_name, len(self._backlog))
            self._reactor.callFromThread(fire, result)
            # An idle thread keeps no reference to the last call's data.
            del fire, result
            if call is None:
                call = inbox.get()

    @staticmethod
    def _run(call: _Call) -> tuple[Callable[[Any], Any], Any]:
        """Make the call: how to fire its Deferred, and with what."""
        d, f, args, kwargs = call
        try:
            return d.callback, f(*args, **kwargs)
        except BaseException:
            return d.errback, Failure()
