"""Run zpop's benchmarks against Dovecot, twistd mail and Postfix; write
bench/RESULTS.md.

    /tmp/venv/bin/python bench/run.py            # full run (~15-20 min)
    /tmp/venv/bin/python bench/run.py --quick    # small smoke run

As root it installs the Debian packages it needs (dovecot-core,
dovecot-pop3d, postfix). Servers bind 127.0.0.1 only; every one started is
stopped at the end. Rounds are interleaved: each round measures every row
on every server, rotating which server goes first.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import bcrypt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import apiload  # noqa: E402
import metricscheck  # noqa: E402
import pop3load  # noqa: E402
import proc  # noqa: E402
import servers  # noqa: E402
import smtpload  # noqa: E402
import webload  # noqa: E402
from servers import DOMAIN  # noqa: E402

from zpop.test.dns_server import DnsServer  # noqa: E402

#: The MX row's envelope and From: domain (zpop's MX checks it: SPF pass,
#: DMARC pass, as most mail from a well-run domain).
MX_SENDER_DOMAIN = "example.org"

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
PACKAGES = ["dovecot-core", "dovecot-pop3d", "postfix"]

Server = Any
#: (row id, server name) -> one value per round
Values = dict[tuple[str, str], list[float]]


@dataclass
class Row:
    """One line of the results table."""

    id: str
    label: str
    unit: str
    higher_is_better: bool = True
    fmt: str = "{:.1f}"
    #: the anchor's row to divide by (default: the same row)
    anchor_row: str | None = None


def install_packages() -> None:
    """apt-get install the anchors' packages if missing (root only)."""
    missing = [
        p
        for p in PACKAGES
        if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode
    ]
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"missing Debian packages {missing}: run as root or install them")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", *missing],
        check=True,
        env=env,
    )
    # The system-wide instances are not ours to run; ours are private.
    for unit in ("dovecot", "postfix"):
        subprocess.run(["systemctl", "stop", unit], capture_output=True)


def _bcrypt_worker(args: tuple[bytes, float]) -> int:
    hashed, seconds = args
    deadline = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < deadline:
        bcrypt.checkpw(servers.COLD_PASSWORD.encode(), hashed)
        n += 1
    return n


def bcrypt_capacity(cost: int, seconds: float = 4.0) -> float:
    """bcrypt checks per second this machine does on all its cores."""
    hashed = bcrypt.hashpw(servers.COLD_PASSWORD.encode(), bcrypt.gensalt(cost))
    cores = os.cpu_count() or 1
    with multiprocessing.Pool(cores) as pool:
        counts = pool.map(_bcrypt_worker, [(hashed, seconds)] * cores)
    # Each worker checks for ``seconds`` (pool start-up not counted).
    return sum(counts) / seconds


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Bench:
    """The measurements; each returns {row id: value} for one server."""

    def __init__(self, args: argparse.Namespace, cert: str) -> None:
        self.args = args
        self.cert = cert
        self.ctx = pop3load.client_context(cert)
        self.notes: list[str] = []
        self.round = 0

    # -- POP3 --------------------------------------------------------------

    def sessions(self, s: Server, conc: int) -> dict[str, float]:
        users = [servers.session_user(i) for i in range(conc)]

        def op(user: str) -> Callable[[], Any]:
            password = s.credential(user)
            return lambda: pop3load.full_session(
                s.port, self.ctx, user, password, self.args.retr
            )

        res, cpu, _ = self.closed_loop(
            s, f"sessions c={conc}", [op(u) for u in users], self.args.duration
        )
        return {
            f"sess{conc}": res.rate,
            f"sess{conc}_p50": percentile(res.latencies, 0.5) * 1000,
            f"sess{conc}_p99": percentile(res.latencies, 0.99) * 1000,
            f"sess{conc}_cpu": cpu,
        }

    async def noops_meanwhile(self, s: Server, load: Any) -> tuple[Any, float]:
        """Await ``load`` while another session, logged in, sends NOOP every
        20 ms: its result and the NOOPs' p99 in ms."""
        stop = asyncio.Event()
        user = f"noop@{DOMAIN}"
        probe = asyncio.create_task(
            pop3load.noop_probe(s.port, self.ctx, user, s.credential(user), stop)
        )
        await asyncio.sleep(0.3)
        try:
            result = await load
        finally:
            stop.set()
        return result, percentile(await probe, 0.99) * 1000

    def closed_loop(
        self,
        s: Server,
        what: str,
        ops: list[Callable[[], Any]],
        seconds: float,
        noops: bool = False,
    ) -> tuple[pop3load.LoadResult, float, float | None]:
        """Run ``ops`` as concurrent clients for ``seconds``; the result,
        the server's CPU ms per completed operation and, with ``noops``,
        the p99 of a concurrent session's NOOPs. Errors become notes.

        The same load runs unmeasured for ``--warmup`` seconds first, for
        every server alike: a server that just (re)started or ran another
        row grows its process pools and fills its caches there, not in the
        window. (Without it, Dovecot's warm logins measured 197-255/s in
        full runs, where they follow its restart and the cold row, against
        about 600/s when measured alone.)"""
        if self.args.warmup > 0:
            asyncio.run(pop3load.closed_loop(ops, self.args.warmup))
        cpu0 = proc.cpu_seconds(s.pid)
        noop_p99 = None
        if noops:
            res, noop_p99 = asyncio.run(
                self.noops_meanwhile(s, pop3load.closed_loop(ops, seconds))
            )
        else:
            res = asyncio.run(pop3load.closed_loop(ops, seconds))
        cpu = proc.cpu_seconds(s.pid) - cpu0
        if res.errors:
            self.notes.append(
                f"{s.name} {what}: {res.errors} errors, first: {res.first_error}"
            )
        return res, cpu / res.done * 1000 if res.done else float("nan"), noop_p99

    def bulk(self, s: Server) -> dict[str, float]:
        user = f"bulk20@{DOMAIN}"
        # Unmeasured first, as for the closed loops: with several processes
        # (zpop's workers, Dovecot's pop3 processes) a RETR can land on one
        # that has not streamed a large body yet.
        for _ in range(2 if self.args.warmup > 0 else 0):
            pop3load.bulk_retr(s.port, self.cert, user, s.credential(user))
        rates = []
        for _ in range(2):
            octets, seconds = pop3load.bulk_retr(
                s.port, self.cert, user, s.credential(user)
            )
            rates.append(octets / seconds / 1e6)
        user = f"bulk50@{DOMAIN}"
        before = proc.memory_bytes(s.pid)
        peak = [before]

        def sample() -> None:
            peak[0] = max(peak[0], proc.memory_bytes(s.pid))

        pop3load.bulk_retr(s.port, self.cert, user, s.credential(user), sample=sample)
        return {"bulk_mbs": max(rates), "bulk_mem": (peak[0] - before) / 2**20}

    def big(self, s: Server) -> dict[str, float]:
        user = f"big@{DOMAIN}"
        password = s.credential(user)
        times = [
            asyncio.run(pop3load.stat_uidl(s.port, self.ctx, user, password))
            for _ in range(3)
        ]
        return {"big": statistics.median(times) * 1000}

    def idle(self, s: Server, n: int, row: str) -> dict[str, float]:
        """Memory per idle authenticated TLS session, on a freshly restarted
        server: restart, log 50 sessions in and out (one-time set-up: TLS
        context, thread pools, caches), then hold ``n`` sessions and compare
        the process tree's PSS before and after."""
        users = [
            (f"idle{i}@{DOMAIN}", s.credential(f"idle{i}@{DOMAIN}")) for i in range(n)
        ]
        s.stop()
        s.start()

        async def hold() -> tuple[float, int, float]:
            warm, _ = await pop3load.hold_idle(s.port, self.ctx, users[:50])
            for sess in warm:
                await sess.quit()
            await asyncio.sleep(2.0)  # maildrop locks released
            before = proc.memory_bytes(s.pid)
            t0 = time.perf_counter()
            sessions, failures = await pop3load.hold_idle(s.port, self.ctx, users)
            took = time.perf_counter() - t0
            await asyncio.sleep(1.0)
            after = proc.memory_bytes(s.pid)
            # Check the server still answers one of them.
            if sessions:
                await sessions[0].cmd(b"NOOP")
            for sess in sessions:
                sess.abort()
            await asyncio.sleep(0.5)
            held = len(sessions)
            per = (after - before) / held / 1024 if held else float("nan")
            if failures:
                self.notes.append(f"{s.name} idle {n}: {failures} logins failed")
            return per, held, took

        per, held, took = asyncio.run(hold())
        # And restart after: Dovecot keeps the ~1,000 pop3 processes this
        # burst spawned, and its logins right after cost 4.9 ms of server
        # CPU instead of 1.5 (207/s instead of 636/s measured without this
        # row before). The rows after this one see every server as freshly
        # started, as the first rows do.
        s.stop()
        s.start()
        return {row: per, row + "_held": held, row + "_rate": held / took}

    def cold(self, s: Server) -> dict[str, float]:
        # Each round logs in a fresh third of the cold accounts, so zpop's
        # credential cache (issue 6) cannot make a later round warm.
        per = self.args.plan.cold_users // 3
        users = [
            f"cold{i}@{DOMAIN}"
            for i in range(self.round % 3 * per, (self.round % 3 + 1) * per)
        ]
        if isinstance(s, servers.Dovecot):
            subprocess.run(
                ["doveadm", "-c", s.conf, "auth", "cache", "flush"], capture_output=True
            )
        queue = list(users)

        def op() -> Any:
            if not queue:
                return asyncio.sleep(0.05)
            user = queue.pop()
            return pop3load.login_session(s.port, self.ctx, user, s.credential(user))

        load = pop3load.closed_loop(
            [op] * self.args.cold_conc, self.args.cold_duration, max_ops=len(users)
        )
        res, noop_p99 = asyncio.run(self.noops_meanwhile(s, load))
        return {"cold": res.rate, "cold_noop_p99": noop_p99}

    def logins(self, s: Server, row: str = "logins") -> dict[str, float]:
        """50 clients, login + QUIT in a loop on their own accounts.

        zpop (credential cache on): primary bcrypt passwords, each account
        logged in once before the window, so the window's logins are
        credential-cache hits (the warm-up is checked: it must take under
        a second for 50 accounts, else the cache was cold). zpop with the
        cache off: app passwords (HMAC + store). Anchors: their own warm
        path (Dovecot: auth cache; twistd mail: in-memory dict).
        """
        conc = self.args.login_conc
        users = [servers.session_user(i) for i in range(conc)]
        cached = isinstance(s, servers.Zpop) and s.cache

        def password(user: str) -> str:
            return s.primary(user) if cached else s.credential(user)

        if cached:

            async def warm() -> None:
                await asyncio.gather(
                    *(
                        pop3load.login_session(s.port, self.ctx, u, password(u))
                        for u in users
                    )
                )

            asyncio.run(warm())
            t0 = time.perf_counter()
            asyncio.run(warm())
            if time.perf_counter() - t0 > 1.0:
                self.notes.append(
                    f"{s.name}: second warm-up of {conc} primary-password logins "
                    f"took {time.perf_counter() - t0:.1f}s: cache not hit?"
                )

        def op(user: str) -> Callable[[], Any]:
            pw = password(user)
            return lambda: pop3load.login_session(s.port, self.ctx, user, pw)

        res, cpu, noop_p99 = self.closed_loop(
            s, row, [op(u) for u in users], self.args.duration, noops=True
        )
        assert noop_p99 is not None
        return {row: res.rate, row + "_cpu": cpu, row + "_noop_p99": noop_p99}

    # -- SMTP --------------------------------------------------------------

    def smtp(self, s: Server, ports: dict[str, int]) -> dict[str, float]:
        out: dict[str, float] = {}
        ctx = pop3load.client_context(self.cert)
        sender, rcpt = f"sender@{DOMAIN}", f"rcpt@{DOMAIN}"
        for mode, port in ports.items():
            # Mail from outside comes From: its own domain (smtpload's MX
            # envelope sender is someone@example.org).
            author = f"someone@{MX_SENDER_DOMAIN}" if mode == "mx" else sender
            data = smtpload.message(10 * 1024, author, rcpt)
            refusal = asyncio.run(smtpload.probe(port, mode, ctx))
            if refusal is not None:
                self.notes.append(f"{s.name} SMTP {mode} not available: {refusal}")
                continue
            for conc in (1, 10, 50):
                for per_conn in (1, 10):

                    def op(
                        port: int = port,
                        mode: str = mode,
                        per_conn: int = per_conn,
                        data: bytes = data,
                    ) -> Any:
                        return smtpload.connection(
                            port,
                            mode,
                            ctx,
                            sender,
                            s.credential(sender),
                            rcpt,
                            per_conn,
                            data,
                        )

                    res, _, _ = self.closed_loop(
                        s,
                        f"SMTP {mode} c={conc} x{per_conn}",
                        [op] * conc,
                        self.args.smtp_duration,
                    )
                    out[f"smtp_{mode}_{conc}_{per_conn}"] = res.rate * per_conn
        return out


# -- results ---------------------------------------------------------------


def rows() -> list[Row]:
    out = []
    for c in (1, 10, 50):
        out += [
            Row(f"sess{c}", f"POP3S full sessions/s, concurrency {c}", "sessions/s"),
            Row(f"sess{c}_p50", f"  session latency p50, c={c}", "ms", False),
            Row(f"sess{c}_p99", f"  session latency p99, c={c}", "ms", False),
            Row(
                f"sess{c}_cpu",
                f"  server CPU per session, c={c}",
                "ms",
                False,
                "{:.2f}",
            ),
        ]
    out += [
        Row("bulk_mbs", "bulk RETR 20 MB over TLS", "MB/s"),
        Row("bulk_mem", "  server memory growth during a 50 MB RETR", "MiB", False),
        Row(
            "big", "100,000-message mailbox: login+STAT+UIDL (index warm)", "ms", False
        ),
        Row(
            "idle",
            "idle authenticated TLS session, server memory each (fresh server)",
            "KiB",
            False,
        ),
        Row("idle_held", "  sessions held for that row", "sessions", True, "{:.0f}"),
        Row(
            "idle10k_held",
            "  concurrent authenticated sessions held (zpop big run)",
            "sessions",
            True,
            "{:.0f}",
        ),
        Row("idle10k", "  memory per session in the big run", "KiB", False),
        Row(
            "idle10k_rate", "  logins/s while opening them (50 in parallel)", "logins/s"
        ),
        Row("cold", "cold primary-password (bcrypt) logins/s", "logins/s"),
        Row("cold_noop_p99", "  another session's NOOP p99 meanwhile", "ms", False),
        Row(
            "logins",
            "warm logins/s (zpop: primary password, credential-cache hits; "
            "Dovecot: auth cache)",
            "logins/s",
        ),
        Row("logins_cpu", "  server CPU per login", "ms", False, "{:.2f}"),
        Row("logins_noop_p99", "  another session's NOOP p99 meanwhile", "ms", False),
        Row(
            "logins_app",
            "app-password logins/s (zpop, credential cache off)",
            "logins/s",
            anchor_row="logins",
        ),
        Row(
            "logins_app_cpu",
            "  server CPU per app-password login",
            "ms",
            False,
            "{:.2f}",
            anchor_row="logins_cpu",
        ),
        Row(
            "logins_app_noop_p99",
            "  another session's NOOP p99 meanwhile",
            "ms",
            False,
            anchor_row="logins_noop_p99",
        ),
    ]
    out += web_rows()
    out += api_rows()
    out += [
        Row(
            "metrics_rows",
            "metrics: scrape deltas compared (zpop only)",
            "series",
            True,
            "{:.0f}",
        ),
        Row(
            "metrics_mismatches",
            "  deltas that differ from the bench's counts",
            "series",
            False,
            "{:.0f}",
        ),
        Row(
            "metrics_missing",
            "  issue 14 families or labels missing",
            "series",
            False,
            "{:.0f}",
        ),
        Row(
            "metrics_procs",
            "  processes that served POP3S sessions",
            "processes",
            True,
            "{:.0f}",
        ),
    ]
    for mode, name in (
        ("submission", "587 STARTTLS+AUTH"),
        ("smtps", "465 TLS+AUTH"),
        ("mx", "MX 25 STARTTLS"),
    ):
        for c in (1, 10, 50):
            for per in (1, 10):
                out.append(
                    Row(
                        f"smtp_{mode}_{c}_{per}",
                        f"SMTP {name}, 10 KB, c={c}, {per} msg/conn",
                        "msgs/s",
                    )
                )
    return out


def web_rows() -> list[Row]:
    """The web settings rows (issue 13 point 7): zpop only, no anchor has
    web settings. Each runs beside a paced POP3S load (webload.POP_RATE)."""
    out = [
        Row(
            "web_base_noop_p99",
            f"web rows' POP3S background alone ({webload.POP_RATE:.0f} "
            "sessions/s): NOOP p99 (zpop only)",
            "ms",
            False,
        ),
        Row("web_base_pop", "  POP3S background sessions/s", "sessions/s"),
        Row(
            "web_base_pop_cpu",
            "  server CPU per background session",
            "ms",
            False,
            "{:.2f}",
        ),
        Row(
            "web_base_others",
            "  cores other processes kept busy meanwhile (machine noise)",
            "cores",
            False,
            "{:.2f}",
        ),
    ]
    for row, label, unit, requests in (
        ("web_signin", "web sign-in, cold bcrypt", "sign-ins/s", "GET+POST /login"),
        (
            "web_2fa",
            "web sign-in with two-factor (TOTP)",
            "sign-ins/s",
            "GET+POST /login, GET+POST /login/code",
        ),
        ("web_settings", "web settings change (POST /settings/pop)", "changes/s", ""),
    ):
        out.append(Row(row, f"{label}, beside the POP3S load (zpop only)", unit))
        if requests:
            out.append(Row(row + "_req", f"  HTTP requests/s ({requests})", "req/s"))
        out += [
            Row(row + "_p50", "  latency p50", "ms", False, "{:.0f}"),
            Row(row + "_p99", "  latency p99", "ms", False, "{:.0f}"),
            Row(
                row + "_cpu",
                "  server CPU each (POP3S background subtracted)",
                "ms",
                False,
            ),
            Row(row + "_noop_p99", "  concurrent POP NOOP p99", "ms", False),
            Row(row + "_pop", "  POP3S background sessions/s meanwhile", "sessions/s"),
            Row(
                row + "_others",
                "  cores other processes kept busy meanwhile (machine noise)",
                "cores",
                False,
                "{:.2f}",
            ),
        ]
    return out


def api_rows() -> list[Row]:
    """The settings API rows and the CLI beside them (issue 14 point 8):
    zpop only, no background load (apiload's docstring says why)."""
    out = []
    for row, label, unit in (
        ("api_get", f"API GET /settings/pop, c={apiload.CLIENTS}", "req/s"),
        ("api_patch", f"API PATCH /settings/pop, c={apiload.CLIENTS}", "req/s"),
        ("cli_c1", "CLI `zpop pop spam`, one process at a time", "changes/s"),
        ("cli_c10", f"CLI `zpop pop spam`, {apiload.CLIENTS} at a time", "changes/s"),
    ):
        cli = row.startswith("cli")
        out += [
            Row(row, f"{label} (zpop only)", unit),
            Row(row + "_p50", "  latency p50", "ms", False, "{:.0f}"),
            Row(row + "_p99", "  latency p99", "ms", False, "{:.0f}"),
            Row(row + "_cpu", "  server CPU each", "ms", False, "{:.2f}"),
        ]
        if cli:
            out.append(Row(row + "_cli_cpu", "  CLI process CPU each", "ms", False))
        else:
            out.append(
                Row(
                    row + "_client_cpu",
                    "  load generator CPU each",
                    "ms",
                    False,
                    "{:.2f}",
                )
            )
        out.append(
            Row(
                row + "_others",
                "  cores other processes kept busy meanwhile (machine noise)",
                "cores",
                False,
                "{:.2f}",
            )
        )
    return out


def cell(values: list[float] | None, fmt: str) -> str:
    if not values:
        return "–"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def median(values: Values, row: str, server: str) -> float | None:
    v = values.get((row, server))
    return statistics.median(v) if v else None


def targets(
    values: Values, capacity: float, idle_target: int
) -> list[tuple[str, str, str]]:
    """(target of issue 7, measured, PASS/FAIL/NOT MEASURED) for zpop."""

    def m(row: str, server: str = "zpop") -> float | None:
        return median(values, row, server)

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    def verdict(ok: bool | None) -> str:
        return "NOT MEASURED" if ok is None else ("PASS" if ok else "FAIL")

    def times(r: float | None) -> str:
        return f"{r:.2f}×" if r is not None else "–"

    out: list[tuple[str, str, str]] = []

    def check(label: str, measured: str, ok: bool | None) -> None:
        out.append((label, measured, verdict(ok)))

    def at_least(label: str, r: float | None, factor: float) -> None:
        check(label, times(r), None if r is None else r >= factor)

    def measured(
        label: str, v: float | None, shown: str, ok: Callable[[float], bool]
    ) -> None:
        """``shown`` formats ``v`` (as ``{v}``); ``ok`` judges it."""
        if v is None:
            check(label, "–", None)
        else:
            check(label, shown.format(v=v), ok(v))

    at_least(
        "POP3S sessions/s c=50 ≥ 2× Dovecot",
        ratio(m("sess50"), m("sess50", "dovecot")),
        2,
    )
    at_least(
        "POP3S sessions/s c=50 ≥ 1× twistd mail",
        ratio(m("sess50"), m("sess50", "twistd mail")),
        1,
    )
    measured(
        "≤ 4 ms server CPU per session (c=50)",
        m("sess50_cpu"),
        "{v:.2f} ms",
        lambda c: c <= 4,
    )
    b = m("bulk_mbs")
    measured("bulk RETR ≥ 400 MB/s class", b, "{v:.0f} MB/s", lambda b: b >= 400)
    at_least("bulk RETR ≥ 1.7× Dovecot", ratio(b, m("bulk_mbs", "dovecot")), 1.7)
    g = m("bulk_mem")
    measured(
        "memory growth < 8 MB in a 50 MB RETR",
        None if g is None else g * 1.048576,
        "{v:.1f} MB",
        lambda mb: mb < 8,
    )
    r = ratio(m("big"), m("big", "dovecot"))
    check(
        "100k mailbox login+STAT+UIDL ≤ 1.0× Dovecot (time)",
        times(r),
        None if r is None else r <= 1.0,
    )
    i, held = m("idle"), m("idle_held")
    check(
        "idle TLS session ≤ 32 KiB",
        f"{i:.1f} KiB ({held:.0f} held, fresh server)"
        if i is not None and held
        else "–",
        None if i is None or i <= 0 else i <= 32,
    )
    h = m("idle10k_held")
    ok = None if h is None else (True if h >= 10_000 else None)
    if h is not None and idle_target >= 10_000 and h < 10_000:
        ok = False
    check(
        "10,000 idle authenticated sessions held",
        f"{h:.0f} held of {idle_target} tried" if h is not None else "–",
        ok,
    )
    c = m("cold")
    measured(
        f"cold bcrypt logins ≥ 90% of bcrypt capacity ({capacity:.1f}/s)",
        None if c is None else c / capacity,
        "{v:.0%}",
        lambda share: share >= 0.9,
    )
    measured(
        "  with a concurrent session's NOOP p99 < 50 ms",
        m("cold_noop_p99"),
        "{v:.1f} ms",
        lambda n: n < 50,
    )
    at_least(
        "cached (primary-password) logins ≥ 3× Dovecot",
        ratio(m("logins"), m("logins", "dovecot")),
        3,
    )
    at_least(
        "app-password logins ≥ 3× Dovecot",
        ratio(m("logins_app"), m("logins", "dovecot")),
        3,
    )
    mm, missing = m("metrics_mismatches"), m("metrics_missing")
    check(
        "Prometheus scrape matches the bench's counts (issue 14)",
        "–" if mm is None else f"{mm:.0f} mismatched, {missing:.0f} missing",
        None if mm is None else mm == 0 and missing == 0,
    )
    r = ratio(m("smtp_submission_10_1"), m("smtp_submission_10_1", "postfix"))
    check(
        "SMTP submission (587) durable 10 KB c=10 ≥ Postfix",
        times(r) if r is not None else "not available",
        None if r is None else r >= 1,
    )
    return out


def load_before(name: str) -> dict[str, str]:
    """Earlier zpop cells saved as bench/NAME, for the "before" columns."""
    try:
        with open(os.path.join(BENCH_DIR, name), encoding="utf-8") as f:
            return json.load(f)
    except OSError:
        return {}


def write_results(
    path: str,
    values: Values,
    columns: list[str],
    capacity: float,
    idle_target: int,
    meta: list[str],
    notes: list[str],
    profiles: list[str],
) -> None:
    first = load_before("first_run.json")
    previous = load_before("previous_run.json")
    lines = [
        "# zpop benchmark results",
        "",
        "Generated by `bench/run.py` (see bench/README.md). Cells: median over "
        "rounds (min–max). Ratio = zpop / anchor (Dovecot for POP3, Postfix "
        "for SMTP); for rows where lower is better a ratio < 1 is zpop "
        'doing better. "zpop first" is the first run\'s zpop column '
        '(bench/first_run.json), before any optimisation; "zpop previous" the '
        "previous session's final run (bench/previous_run.json), before the "
        "ECDSA certificate, kernel maildrop locks, the new thread pool and the "
        "bench's warm-ups.",
        "",
    ]
    lines += meta + [""]
    lines += [
        "| row | unit | zpop first | zpop previous | "
        + " | ".join(columns)
        + " | zpop/anchor |",
        "|---|---|---|---|" + "---|" * len(columns) + "---|",
    ]
    for row in rows():
        if not any((row.id, c) in values for c in columns):
            continue
        cells = [cell(values.get((row.id, c)), row.fmt) for c in columns]
        anchor = "postfix" if row.id.startswith("smtp") else "dovecot"
        z = median(values, row.id, "zpop")
        a = median(values, row.anchor_row or row.id, anchor)
        ratio = f"{z / a:.2f}" if z is not None and a else "–"
        if row.id.startswith("smtp") and z is None:
            ratio = "not available"
        lines.append(
            f"| {row.label} | {row.unit} | {first.get(row.id, '–')} | "
            f"{previous.get(row.id, '–')} | " + " | ".join(cells) + f" | {ratio} |"
        )
    lines += [
        "",
        "## Targets of issue 7 (zpop)",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
    ]
    lines += [
        f"| {t} | {v} | {ok} |" for t, v, ok in targets(values, capacity, idle_target)
    ]
    if notes:
        lines += ["", "## Notes from the run", ""] + [f"- {n}" for n in notes]
    if profiles:
        lines += ["", "## Profiles (py-spy, zpop server under load)", ""] + profiles
    lines.append("")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


# -- profiling --------------------------------------------------------------


def _pool_waits() -> tuple[str, ...]:
    """The frames of zpop's pool threads blocked waiting for work: py-spy
    counts a thread blocked in SimpleQueue.get as running."""
    from zpop.threads import ThreadPoolService

    lines, first = inspect.getsourcelines(ThreadPoolService._work)
    return tuple(
        f"ThreadPoolService._work (zpop/threads.py:{first + n})"
        for n, text in enumerate(lines)
        if "inbox.get()" in text
    )


#: Leaf frames of threads waiting, not running: left out of the shares.
IDLE_FRAMES = (
    "Condition.wait",
    "epollreactor.py:227",
    "untilConcludes",
    "Event.wait",
    *_pool_waits(),
)


def top_frames(raw_path: str, n: int = 15) -> tuple[list[str], list[str]]:
    """(self-time top, inclusive top of zpop's and pyOpenSSL's functions)
    from py-spy's raw collapsed stacks, as shares of the busy samples of
    every process and thread."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    with open(raw_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            if not count.isdigit():
                continue
            frames = stack.split(";")
            if any(idle in frames[-1] for idle in IDLE_FRAMES):
                continue
            k = int(count)
            total += k
            own[frames[-1]] = own.get(frames[-1], 0) + k
            for frame in set(frames):
                if frame.startswith(("process ", "<module>", "main (zpop/")):
                    continue  # py-spy's process line, interpreter start-up
                if "zpop/" in frame or "OpenSSL/" in frame:
                    incl[frame] = incl.get(frame, 0) + k

    def fmt(d: dict[str, int]) -> list[str]:
        best = sorted(d.items(), key=lambda kv: -kv[1])[:n]
        return [f"{v / total:5.1%}  {k}" for k, v in best] if total else []

    return fmt(own), fmt(incl)


def profile(name: str, pid: int, seconds: float, load: Callable[[], Any]) -> list[str]:
    """py-spy the server while ``load`` runs; svg + raw in bench/profiles."""
    spy = shutil.which("py-spy") or os.path.join(
        os.path.dirname(sys.executable), "py-spy"
    )
    outdir = os.path.join(BENCH_DIR, "profiles")
    os.makedirs(outdir, exist_ok=True)
    out = []
    for fmt, ext in (("flamegraph", "svg"), ("raw", "txt")):
        path = os.path.join(outdir, f"{name}.{ext}")
        spy_proc = subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(int(seconds)),
                "--rate",
                "200",
                "--format",
                fmt,
                "--output",
                path,
                "--nonblocking",
                # zpop's worker processes too.
                "--subprocesses",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        load()
        try:
            spy_proc.wait(seconds + 30)
        except subprocess.TimeoutExpired:
            spy_proc.kill()
            spy_proc.wait()
    return out + summary(name)


def summary(name: str) -> list[str]:
    """RESULTS.md's section for the profile bench/profiles/NAME.txt."""
    own, incl = top_frames(os.path.join(BENCH_DIR, "profiles", f"{name}.txt"))
    out = [
        f"### {name}",
        "",
        f"Flame graph: `bench/profiles/{name}.svg`, raw "
        f"stacks: `bench/profiles/{name}.txt`.",
        "",
        "Self time (share of busy samples, all processes and threads):",
        "",
        "```",
    ]
    out += own + ["```", "", "Inclusive (zpop and pyOpenSSL):", "", "```"]
    out += incl + ["```", ""]
    return out


# -- main -----------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/var/tmp/zpop-bench")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--retr", type=int, default=20)
    parser.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        help="seconds of unmeasured load before each closed-loop window",
    )
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument(
        "--idle-users",
        type=int,
        default=10_000,
        help="sessions zpop holds at once in the idle run (10,000 accounts "
        "take ~12 min to create on 2 cores the first time)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="zpop's [server] workers (default: one per core)",
    )
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--no-smtp", action="store_true")
    parser.add_argument("--output", default=os.path.join(BENCH_DIR, "RESULTS.md"))
    parser.add_argument(
        "--only",
        default="",
        help="re-measure only these row groups (comma-separated first words of "
        "the progress labels: sessions, bulk, 100k, idle, cold, warm, "
        "app-password, web, api, metrics, SMTP) and merge them into the values "
        "an earlier run saved in bench/results.json (no big idle run, no profiles)",
    )
    args = parser.parse_args()
    args.plan = servers.Plan(idle_users=args.idle_users)
    args.cold_conc, args.cold_duration = 8, 12.0
    args.login_conc = 50
    args.smtp_duration = 2.0
    if args.quick:
        args.plan = servers.Plan(
            idle_users=200, anchor_idle_users=100, big_mailbox=2000, cold_users=48
        )
        args.rounds, args.duration, args.smtp_duration = 1, 1.5, 1.0
        args.cold_duration = 3.0
        args.work += "-quick"
    only = {w.strip().lower() for w in args.only.split(",") if w.strip()}
    servers.raise_nofile()
    install_packages()
    # Before any server runs, so nothing else competes for the cores.
    capacity = bcrypt_capacity(args.plan.bcrypt_cost)
    print(
        f"bcrypt cost {args.plan.bcrypt_cost}: {capacity:.1f} checks/s on all cores",
        flush=True,
    )
    started = time.monotonic()
    os.makedirs(args.work, exist_ok=True)
    print("setting up", flush=True)
    corpus = servers.build_corpus(args.work, args.plan)
    certs = servers.make_certificates(args.work)
    zpop = servers.Zpop(args.work, args.plan, certs, workers=args.workers)
    zpop.setup(corpus)
    znocache = servers.Zpop(
        args.work, args.plan, certs, cache=False, workers=args.workers
    )
    znocache.passwords = zpop.passwords
    # The MX checks SPF, DKIM and DMARC: the MX row's sender publishes SPF
    # and a DMARC reject policy on a loopback DNS server (nothing leaves).
    dns = DnsServer(os.path.join(args.work, "dns"))
    dns.add(MX_SENDER_DOMAIN, "TXT", "v=spf1 ip4:127.0.0.1 -all")
    dns.add(f"_dmarc.{MX_SENDER_DOMAIN}", "TXT", "v=DMARC1; p=reject")
    zpop.dns_resolver = znocache.dns_resolver = dns.address
    dovecot = servers.Dovecot(args.work, args.plan, certs)
    dovecot.setup(corpus)
    twmail = servers.TwistdMail(args.work, args.plan, certs)
    twmail.setup(corpus)
    postfix = servers.Postfix(args.work, certs, dovecot.sasl_socket)
    postfix.setup()
    running: list[Server] = []
    values: Values = {}
    bench = Bench(args, certs.ca)
    negotiated: list[str] = []
    profiles: list[str] = []
    try:
        for s in (zpop, znocache, dovecot, twmail):
            s.start()
            running.append(s)
        if not args.no_smtp:
            postfix.start()
            running.append(postfix)
        negotiated = [
            f"{name} {pop3load.served_key(port, bench.ctx)}"
            for name, port in (
                ("zpop", zpop.port),
                ("Dovecot", dovecot.port),
                ("twistd mail", twmail.port),
                ("zpop 465", zpop.smtp_ports["smtps"]),
                ("Postfix 465", postfix.ports["smtps"]),
            )
            if port != postfix.ports["smtps"] or not args.no_smtp
        ]
        # Warm Dovecot's index of the 100k mailbox (and zpop's page cache).
        for s in (dovecot, zpop):
            bench.big(s)
        pops = [zpop, dovecot, twmail]
        web = webload.WebBench(zpop, certs.ca, args.duration, args.warmup, bench.notes)
        api = apiload.ApiBench(zpop, certs.ca, args.duration, args.warmup, bench.notes)
        scrapes = metricscheck.MetricsCheck(zpop, certs.ca, bench.notes)
        plan: list[tuple[str, list[Server], Callable[[Server], dict[str, float]]]] = [
            (f"sessions c={c}", pops, (lambda s, c=c: bench.sessions(s, c)))
            for c in (1, 10, 50)
        ]
        plan += [
            ("bulk RETR", pops, bench.bulk),
            ("100k mailbox", [zpop, dovecot], bench.big),
            (
                "idle sessions (restarted server)",
                [zpop, dovecot],
                lambda s: bench.idle(s, args.plan.anchor_idle_users, "idle"),
            ),
            ("cold logins", [zpop, dovecot], bench.cold),
            ("warm logins", [zpop, dovecot, twmail], bench.logins),
            (
                "app-password logins",
                [znocache],
                lambda s: bench.logins(s, "logins_app"),
            ),
            # No anchor has web settings.
            ("web sign-in and settings change", [zpop], lambda s: web.measure()),
            (
                "api GET/PATCH /settings/pop and the CLI",
                [zpop],
                lambda s: api.measure(),
            ),
            # Issue 14's "Done when": the scrape against the bench's counts.
            (
                "metrics scrape against the bench's counts",
                [zpop],
                lambda s: scrapes.measure(),
            ),
        ]
        if not args.no_smtp:
            plan.append(
                (
                    "SMTP",
                    [zpop, postfix],
                    lambda s: bench.smtp(s, s.smtp_ports if s is zpop else s.ports),
                )
            )
        if only:
            plan = [p for p in plan if p[0].split()[0].lower() in only]
        for r in range(args.rounds):
            bench.round = r
            for label, group, measure in plan:
                if label == "SMTP" and r >= 2:
                    continue
                order = group[r % len(group) :] + group[: r % len(group)]
                for s in order:
                    print(
                        f"round {r + 1}/{args.rounds}: {label} on {s.name}", flush=True
                    )
                    # The cache-off instance reports in zpop's column.
                    name = "zpop" if s is znocache else s.name
                    for row, value in measure(s).items():
                        values.setdefault((row, name), []).append(value)
        if not only:
            print(
                f"{args.plan.idle_users} idle sessions on a restarted zpop",
                flush=True,
            )
            big = bench.idle(zpop, args.plan.idle_users, "idle10k")
            for row, value in big.items():
                values.setdefault((row, "zpop"), []).append(value)
        if not args.no_profile and not only:
            print("profiling zpop", flush=True)
            profiles += profile_zpop(bench, zpop, znocache, args)
    finally:
        for s in reversed(running):
            s.stop()
        dns.stop()
    elapsed = time.monotonic() - started
    meta = [
        f"- Machine: {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB; "
        f"load generator (Python asyncio, one process) on the same machine.",
        f"- {args.rounds} interleaved rounds, {args.duration:.0f} s per "
        f"load window; full run took {elapsed / 60:.1f} min.",
        f"- bcrypt cost {args.plan.bcrypt_cost}: the machine does {capacity:.1f} "
        "checks/s on all cores.",
        '- "Warm" logins: zpop = primary bcrypt password, each account logged '
        "in once (twice, the second timed as a check) before the window, so "
        "every login in the window is a credential-cache hit (`[auth] "
        "credential_cache`, 300 s default); Dovecot = passwd-file + auth cache "
        "(64M, 1 h), high-performance login processes, pop3 processes reused; "
        "twistd mail = plain passwords in an in-memory dict. App-password "
        "logins are measured on a second zpop (same data) with "
        "`credential_cache = 0`, so each is HMAC + a store look-up.",
        f"- zpop runs with `[server] workers = {args.workers}` (processes sharing "
        "its listening sockets; Dovecot and Postfix use several processes too, "
        "twistd mail one).",
        "- twistd mail runs through bench/twistd_mail_nodelay.tac (TCP_NODELAY "
        "and three Python 3 fixes without which it cannot log in or RETR).",
        "- TLS: every server holds the same self-signed RSA-2048 and ECDSA P-256 "
        "certificates side by side (twistd mail can take one: the ECDSA one); "
        "the clients (Python's ssl, TLS 1.3) were served: "
        + ", ".join(negotiated)
        + ".",
    ]
    notes = bench.notes
    saved_path = os.path.join(BENCH_DIR, "results.json")
    if only:
        with open(saved_path, encoding="utf-8") as f:
            saved = json.load(f)
        fresh = {row for row, _ in values}
        old = {
            (row, server): v for row, server, v in saved["values"] if row not in fresh
        }
        values = {**old, **values}
        remeasured = (
            f"- Re-measured afterwards with `--only {args.only}` "
            f"({args.rounds} rounds, {elapsed / 60:.1f} min)"
        )
        if "cold" in fresh:
            meta = (
                [m for m in saved["meta"] if not m.startswith("- bcrypt")]
                + [m for m in meta if m.startswith("- bcrypt")]
                + [f"{remeasured}; bcrypt capacity from that run."]
            )
        else:
            # The cold row stays judged against its own run's capacity.
            capacity = saved_capacity(saved)
            meta = saved["meta"] + [f"{remeasured}."]
        notes = saved["notes"] + [f"(--only {args.only} run) {n}" for n in notes]
        profiles = saved["profiles"]
    with open(saved_path, "w", encoding="utf-8") as f:
        json.dump(
            {
                "values": [[row, server, v] for (row, server), v in values.items()],
                "capacity": capacity,
                "meta": meta,
                "notes": notes,
                "profiles": profiles,
            },
            f,
            indent=0,
            ensure_ascii=False,
        )
    columns = ["zpop", "dovecot", "twistd mail"]
    if not args.no_smtp:
        columns.append("postfix")
    write_results(
        args.output,
        values,
        columns,
        capacity,
        args.plan.idle_users,
        meta,
        notes,
        profiles,
    )
    print(f"wrote {args.output}", flush=True)
    if scrapes.failures:
        sys.exit(f"metrics check FAILED: {'; '.join(scrapes.failures)}")


def saved_capacity(saved: dict[str, Any]) -> float:
    """The bcrypt capacity of the run saved in results.json (older files
    have it only in their meta line)."""
    if "capacity" in saved:
        return float(saved["capacity"])
    for line in saved["meta"]:
        found = re.search(r"does ([0-9.]+) checks/s", line)
        if found:
            return float(found.group(1))
    raise RuntimeError("results.json holds no bcrypt capacity")


def profile_zpop(
    bench: Bench, zpop: Server, znocache: Server, args: argparse.Namespace
) -> list[str]:
    """py-spy profiles of zpop under the loads its targets are about."""
    out: list[str] = []
    seconds = 8.0
    old = args.duration
    args.duration = seconds - 1
    try:
        out += profile(
            "sessions-c50", zpop.pid, seconds, lambda: bench.sessions(zpop, 50)
        )

        def bulk_loop() -> None:
            deadline = time.monotonic() + seconds - 1
            while time.monotonic() < deadline:
                pop3load.bulk_retr(
                    zpop.port,
                    bench.cert,
                    f"bulk20@{DOMAIN}",
                    zpop.credential(f"bulk20@{DOMAIN}"),
                )

        out += profile("bulk-retr", zpop.pid, seconds, bulk_loop)

        def big_loop() -> None:
            deadline = time.monotonic() + seconds - 1
            while time.monotonic() < deadline:
                bench.big(zpop)

        out += profile("mailbox-100k", zpop.pid, seconds, big_loop)
        out += profile("logins-cached", zpop.pid, seconds, lambda: bench.logins(zpop))
        out += profile(
            "logins-app-nocache",
            znocache.pid,
            seconds,
            lambda: bench.logins(znocache, "logins_app"),
        )
        if not args.no_smtp:
            out += profile(
                "smtp-submission-c10",
                zpop.pid,
                seconds,
                lambda: smtp_load(bench, zpop, "submission", 10, 1, seconds - 1),
            )
    finally:
        args.duration = old
    return out


def smtp_load(
    bench: Bench, s: Server, mode: str, conc: int, per_conn: int, seconds: float
) -> float:
    """One SMTP load window on zpop; returns messages/s."""
    ctx = pop3load.client_context(bench.cert)
    sender, rcpt = f"sender@{DOMAIN}", f"rcpt@{DOMAIN}"
    data = smtpload.message(10 * 1024, sender, rcpt)
    port = s.smtp_ports[mode]

    def op() -> Any:
        return smtpload.connection(
            port, mode, ctx, sender, s.credential(sender), rcpt, per_conn, data
        )

    res = asyncio.run(pop3load.closed_loop([op] * conc, seconds))
    return res.rate * per_conn


if __name__ == "__main__":
    main()
