"""The coroutine driver shared by POP3 and SMTP handlers."""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from zpop.commands import start


class StartTests(SynchronousTestCase):
    def test_finished_without_waiting(self) -> None:
        """A coroutine awaiting only fired Deferreds runs to its end at once;
        no Deferred is made."""
        done: list[int] = []

        async def handler() -> None:
            done.append(await succeed(1) + await succeed(2))

        self.assertIsNone(start(handler()))
        self.assertEqual(done, [3])

    def test_refusal_raised_at_once(self) -> None:
        """An exception before the first real wait is raised by start."""

        async def handler() -> None:
            await succeed(None)
            raise ValueError("refused")

        self.assertRaises(ValueError, start, handler())

    def test_waits_and_resumes(self) -> None:
        """A coroutine that really waits is driven to its end, its result and
        a later failure passed through the Deferred start returns."""
        first: Deferred[int] = Deferred()
        second: Deferred[int] = Deferred()

        async def handler() -> int:
            value = await first
            try:
                await second
            except KeyError:
                return value * 10
            return -1

        d = start(handler())
        assert d is not None
        self.assertNoResult(d)
        first.callback(4)
        self.assertNoResult(d)
        second.errback(KeyError("x"))
        self.assertEqual(self.successResultOf(d), 40)

    def test_failure_after_waiting(self) -> None:
        """An exception after a real wait fails the Deferred."""
        pending: Deferred[None] = Deferred()

        async def handler() -> None:
            await pending
            raise ValueError("late")

        d = start(handler())
        assert d is not None
        pending.callback(None)
        self.failureResultOf(d, ValueError)
