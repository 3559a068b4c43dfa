"""The account rules, one module per concept, shared by the ``zpop`` command
and the web settings and API to come (DESIGN §2, CONVENTIONS 16).

Services take their collaborators (store, config, clock, server key,
hashing runner) as arguments and return the store's Deferreds, so the same
call runs on the reactor with the threaded store and in the CLI with
``run_synchronously``. They raise :mod:`zpop.accounts.errors`. The
address grammar they share with every layer is :mod:`zpop.wire.addresses`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, Protocol, TypeVar

from twisted.internet.defer import Deferred

P = ParamSpec("P")
R = TypeVar("R")


def service(f: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Deferred[R]]:
    """Write a service as a coroutine, call it as a Deferred-returning
    function: on a synchronous store it has fired when it returns."""

    @functools.wraps(f)
    def call(*args: P.args, **kwargs: P.kwargs) -> Deferred[R]:
        return Deferred.fromCoroutine(f(*args, **kwargs))

    return call


class Clock(Protocol):
    """The one thing services ask of a clock (``task.Clock``, the reactor,
    or the CLI's wrapped ``time.time``)."""

    def seconds(self) -> float: ...
