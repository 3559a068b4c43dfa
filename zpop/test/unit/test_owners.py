"""Lease owners: a claim of a dead process of this host is released at once."""

from __future__ import annotations

import os
import socket

from twisted.trial.unittest import SynchronousTestCase

from zpop import owners
from zpop.store import QueuedMessage
from zpop.test.stores import make_store, result

NOW = 1_700_000_000.0
#: Above the kernel's largest pid_max (2**22): never a running process.
NO_SUCH_PID = 4_194_399


def other_start(owner: str) -> str:
    """``owner`` with a start time no process of that pid has."""
    host, pid, start = owner.rsplit(":", 2)
    return f"{host}:{pid}:{start.split('.')[0]}.1"


class OwnerTests(SynchronousTestCase):
    def test_current_owner(self) -> None:
        """This process names its host and pid, and is alive."""
        owner = owners.current_owner()
        host, pid, _ = owner.rsplit(":", 2)
        self.assertEqual(
            (host, pid, owners.is_dead(owner)),
            (socket.gethostname(), str(os.getpid()), False),
        )

    def test_dead(self) -> None:
        """A pid that runs no process, or runs one started at another time
        (a reused pid), is dead."""
        mine = owners.current_owner()
        host, _, start = mine.rsplit(":", 2)
        self.assertEqual(
            [owners.is_dead(f"{host}:{NO_SUCH_PID}:{start}"),
             owners.is_dead(other_start(mine))],
            [True, True],
        )

    def test_unknown_is_not_dead(self) -> None:
        """Another host, a malformed owner or an owner made without /proc is
        never taken for dead: its lease runs out by time."""
        start = owners.current_owner().rsplit(":", 1)[1]
        self.assertEqual(
            [
                owners.is_dead(f"other-host.example:{NO_SUCH_PID}:{start}"),
                owners.is_dead("garbage"),
                owners.is_dead(f"{socket.gethostname()}:x:{start}"),
                owners.is_dead(f"{socket.gethostname()}:{NO_SUCH_PID}:unknown.ab12"),
            ],
            [False] * 4,
        )


class ReleaseTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = make_store()
        self.addCleanup(self.store.close)

    def queue(self, recipient: str) -> None:
        result(
            self.store.accept_message(
                [],
                QueuedMessage(
                    "bob@example.com", (recipient,), b"Subject: x\r\n\r\nx\r\n",
                    NOW, NOW + 86400.0,
                ),
            )
        )

    def test_release_dead_leases(self) -> None:
        """Only the dead local owner's claims are released; a live local
        owner and another host keep theirs until their leases run out."""
        live = owners.current_owner()
        dead = other_start(live)
        remote = f"other-host.example:{NO_SUCH_PID}:{live.rsplit(':', 1)[1]}"
        for owner, domain in ((live, "a"), (dead, "b"), (remote, "c")):
            self.queue(f"x@{domain}.example")
            [job] = result(self.store.claim_outbound(owner, NOW, 300.0, 1))
            self.assertEqual(job.domain, f"{domain}.example")
        self.assertEqual(
            sorted(result(self.store.outbound_lease_owners())),
            sorted([live, dead, remote]),
        )
        self.assertEqual(result(owners.release_dead_leases(self.store)), 1)
        reclaimed = result(self.store.claim_outbound("new", NOW + 1, 300.0, 10))
        self.assertEqual(
            ([job.domain for job in reclaimed],
             sorted(result(self.store.outbound_lease_owners()))),
            (["b.example"], sorted([live, remote, "new"])),
        )
