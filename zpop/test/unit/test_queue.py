"""Tests for zpop.outbound.queue: what an operator does to the outbound
queue (list, retry now, delete), on a MemoryStore."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from zpop import owners
from zpop.outbound import queue
from zpop.store import QueuedMessage
from zpop.test.stores import make_store, result

NOW = 1_700_000_000.0


class QueueTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = make_store()
        self.addCleanup(self.store.close)

    def enqueue(self, *recipients: str, created: float = NOW) -> int:
        """Queue a message, due at ``created``, as SMTP submission does."""
        accepted = result(
            self.store.accept_message(
                [],
                QueuedMessage(
                    "bob@example.com",
                    recipients,
                    b"Subject: x\r\n\r\nx\r\n",
                    created,
                    created + 99,
                ),
            )
        )
        return int(accepted.queue_id)

    def next_attempts(self) -> list[float]:
        return [
            r.next_attempt
            for m in result(self.store.list_outbound())
            for r in m.recipients
        ]

    def test_list(self) -> None:
        """Every queued message with its recipients, oldest first."""
        self.assertEqual(self.successResultOf(queue.list_queue(self.store)), [])
        first = self.enqueue("a@remote.example", "b@remote.example")
        second = self.enqueue("c@remote.example")
        found = self.successResultOf(queue.list_queue(self.store))
        self.assertEqual(
            [(m.id, [r.recipient for r in m.recipients]) for m in found],
            [
                (first, ["a@remote.example", "b@remote.example"]),
                (second, ["c@remote.example"]),
            ],
        )

    def test_retry_one_and_all(self) -> None:
        """Retry makes one message's queued recipients due now, or every
        message's; nothing to release, nothing released."""
        first = self.enqueue("a@remote.example", "b@remote.example")
        self.enqueue("c@remote.example")
        retried = self.successResultOf(queue.retry(self.store, first, NOW + 60))
        self.assertEqual((retried.due, retried.released), (2, 0))
        self.assertEqual(self.next_attempts(), [NOW + 60, NOW + 60, NOW])
        retried = self.successResultOf(queue.retry(self.store, None, NOW + 120))
        self.assertEqual(tuple(retried), (3, 0))
        self.assertEqual(self.next_attempts(), [NOW + 120] * 3)

    def test_retry_releases_dead_leases(self) -> None:
        """Retry releases the claims of processes that are gone, so their
        deliveries are due at once; a live process keeps its claims."""
        self.enqueue("a@remote.example")
        self.enqueue("c@other.example")
        [gone] = result(self.store.claim_outbound("gone", NOW, 300.0, 1))
        [live] = result(self.store.claim_outbound("live", NOW, 300.0, 1))
        self.patch(owners, "is_dead", lambda owner: owner == "gone")
        retried = self.successResultOf(queue.retry(self.store, None, NOW))
        self.assertEqual(retried, queue.Retried(due=2, released=1))
        self.assertEqual(result(self.store.outbound_lease_owners()), ["live"])
        again = result(self.store.claim_outbound("next", NOW, 300.0, 10))
        self.assertEqual([j.message_id for j in again], [gone.message_id])
        self.assertNotEqual(live.message_id, gone.message_id)

    def test_retry_unknown(self) -> None:
        """An unknown id is refused, naming it."""
        failure = self.failureResultOf(
            queue.retry(self.store, 7, NOW), queue.UnknownQueuedMessage
        )
        self.assertEqual(
            (str(failure.value), failure.value.message_id),
            ("no queued message 7", 7),
        )

    def test_delete(self) -> None:
        """Delete removes a message and counts its recipients; a second
        delete is refused."""
        first = self.enqueue("a@remote.example", "b@remote.example")
        self.assertEqual(self.successResultOf(queue.delete(self.store, first)), 2)
        self.assertEqual(result(self.store.list_outbound()), [])
        failure = self.failureResultOf(
            queue.delete(self.store, first), queue.UnknownQueuedMessage
        )
        self.assertEqual(str(failure.value), f"no queued message {first}")
