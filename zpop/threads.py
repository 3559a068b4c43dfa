"""Where blocking work runs: thread pools as services, and a synchronous
stand-in for the ``zpop`` command and unit tests.

A *runner* is any callable ``runner(f, *args, **kwargs) -> Deferred`` that
calls ``f`` somewhere and fires with its result.
"""

from __future__ import annotations

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

    def __init__(self, reactor: IReactorFromThreads, name: str, size: int) -> None:
        self.setName(name)
        self._reactor = reactor
        self.pool = ThreadPool(minthreads=1, maxthreads=size, name=name)

    def startService(self) -> None:
        super().startService()
        self.pool.start()

    def stopService(self) -> None:
        super().stopService()
        self.pool.stop()

    def __call__(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
        return deferToThreadPool(self._reactor, self.pool, f, *args, **kwargs)
