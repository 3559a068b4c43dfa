"""Server cost from /proc: CPU seconds and memory of a process tree."""

from __future__ import annotations

import os

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _children() -> dict[int, list[int]]:
    """{parent pid: [child pids]} for every live process."""
    tree: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        tree.setdefault(int(fields[1]), []).append(int(name))
    return tree


def tree_pids(root: int) -> list[int]:
    """``root`` and all its live descendants."""
    tree = _children()
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(tree.get(pid, []))
    return pids


def cpu_seconds(root: int) -> float:
    """CPU (user+system) used so far by ``root``'s tree, reaped children
    included (cutime/cstime), so short-lived workers are counted too."""
    total = 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        total += sum(int(x) for x in fields[11:15])
    return total / CLOCK_TICKS


def _rollup(pid: int, key: bytes) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def memory_bytes(root: int) -> int:
    """Proportional set size (PSS) of ``root``'s tree: for one process its
    RSS; for a forking server, shared pages are not counted twice."""
    return sum(_rollup(pid, b"Pss:") for pid in tree_pids(root))


def rss_bytes(pid: int) -> int:
    """Resident set size of one process."""
    with open(f"/proc/{pid}/statm", "rb") as f:
        return int(f.read().split()[1]) * PAGE_SIZE
