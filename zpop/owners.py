"""Lease owners: which process, on which host, holds a claim.

An owner is ``host:pid:start``, where ``start`` is the kernel's boot id
and the process's start time, so a pid reused after a crash (or after a
reboot) is never taken for the process that took the claim. A claim of a
process that is known to be dead can be released at once instead of
waiting for its lease to run out; an owner on another host (or one whose
start cannot be read, on a system without ``/proc``) can only be waited
out.
"""

from __future__ import annotations

import os
import secrets
import socket

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from zpop.store import IStore

log = Logger()

_PROC = "/proc"


def _boot_id() -> str | None:
    try:
        with open(f"{_PROC}/sys/kernel/random/boot_id") as f:
            return f.read().strip().replace("-", "")[:12]
    except OSError:
        return None


def _start_ticks(pid: int) -> str | None:
    """Field 22 of ``/proc/PID/stat``: start time in clock ticks after boot."""
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return fields[19].decode("ascii") if len(fields) > 19 else None


def _start(pid: int) -> str | None:
    boot, ticks = _boot_id(), _start_ticks(pid)
    if boot is None or ticks is None:
        return None
    return f"{boot}.{ticks}"


def current_owner() -> str:
    """This process as a lease owner."""
    pid = os.getpid()
    # Without /proc a random tag keeps owners unique; it never reads as dead.
    start = _start(pid) or f"unknown.{secrets.token_hex(4)}"
    return f"{socket.gethostname()}:{pid}:{start}"


def is_dead(owner: str) -> bool:
    """Whether ``owner`` is a process of this host that no longer runs.

    False whenever that cannot be told for sure: another host, a malformed
    owner, no ``/proc``.
    """
    parts = owner.rsplit(":", 2)
    if len(parts) != 3:
        return False
    host, pid_text, start = parts
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    if start.startswith("unknown.") or _boot_id() is None:
        return False
    return _start(int(pid_text)) != start


async def _release_dead_leases(store: IStore) -> int:
    released = 0
    for owner in await store.outbound_lease_owners():
        if is_dead(owner):
            count = await store.release_outbound_leases(owner)
            log.info(
                "outbound: released {count} deliveries of dead process {owner}",
                count=count,
                owner=owner,
            )
            released += count
    return released


def release_dead_leases(store: IStore) -> Deferred:
    """Release the claims of processes of this host that are gone (killed
    with ``kill -9``, crashed), so their deliveries are due at once rather
    than when their leases run out; fires with the number released. Claims
    of other hosts still expire by time."""
    return Deferred.fromCoroutine(_release_dead_leases(store))
