"""Where blocking work runs: thread pools as services, and a synchronous
stand-in for the ``zpop`` command and unit tests.

A *runner* is any callable ``runner(f, *args, **kwargs) -> Deferred`` that
calls ``f`` somewhere and fires with its result.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

Runner = Callable[..., Deferred]


def run_synchronously(f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
    """Call ``f`` now, on this thread: for the CLI and for unit tests."""
    return maybeDeferred(f, *args, **kwargs)


class ThreadPoolService(Service):
    """A named thread pool that starts and stops with the service tree.

    Calling it is a runner. A dedicated pool per concern (database, bcrypt)
    keeps a burst of slow password checks from starving the database.
    """

    def __init__(
        self, reactor: IReactorFromThreads, name: str, size: int, nice: int = 0
    ) -> None:
        self.setName(name)
        self._reactor = reactor
        self.pool = ThreadPool(minthreads=1, maxthreads=size, name=name)
        #: Raise this pool's threads' niceness (Linux: per thread), so CPU-
        #: bound work (bcrypt) never takes a core from the reactor thread.
        self.nice = nice
        self._local = threading.local()

    def _lowered(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not getattr(self._local, "niced", False):
            self._local.niced = True
            try:
                me = threading.get_native_id()
                current = os.getpriority(os.PRIO_PROCESS, me)
                os.setpriority(os.PRIO_PROCESS, me, min(current + self.nice, 19))
            except (AttributeError, OSError):
                pass  # not Linux, or not allowed: run at normal priority
        return f(*args, **kwargs)

    def startService(self) -> None:
        super().startService()
        self.pool.start()

    def stopService(self) -> None:
        super().stopService()
        self.pool.stop()

    def __call__(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
        if self.nice:
            return deferToThreadPool(
                self._reactor, self.pool, self._lowered, f, *args, **kwargs
            )
        return deferToThreadPool(self._reactor, self.pool, f, *args, **kwargs)
