"""The ``metrics`` row group (issue 14, "Done when"): a Prometheus scrape of
zpop with several workers under a load the bench counts itself must show
every metric the issue lists, with deltas equal to the bench's counts.

One measure() scrapes ``/metrics`` (plain HTTP, servers.PORTS
"zpop_metrics"), runs a small load whose every event the client counts
(POP3S full sessions, wrong-password logins, SMTP on the three listeners
including one message to a domain that does not exist, web sign-ins),
waits until the server is idle again (the bounce made, connections
closed), scrapes again and compares each delta with the bench's count. It
also reads the per-process files of ``DATA/metrics`` (zpop.metrics'
multiprocess mode) to show that each process served part of the load and
that the per-process deltas add up to the scrape's.

Wrong passwords are fixed strings per account, so a later run within
``[auth] failure_window`` repeats the same (account, secret) pairs, which
zpop does not count again towards a ban (zpop.store.sqlite_throttle): the
bench never bans 127.0.0.1 however often it runs.
"""

from __future__ import annotations

import asyncio
import base64
import glob
import os
import re
import ssl
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import pop3load
import servers
import smtpload
import webload
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from servers import DOMAIN

#: (sample name, sorted label pairs) -> value
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

POP_CLIENTS = 10
POP_SESSIONS_EACH = 5
RETR = 20
WRONG_LOGINS = 3
SMTP_CONNECTIONS = 2
SMTP_PER_CONNECTION = 3
WEB_SIGNINS = 3
#: A domain that cannot exist (RFC 6761): its MX lookup answers NXDOMAIN,
#: so zpop fails the delivery permanently and bounces to the sender.
REMOTE_RECIPIENT = "nobody@zpop-bench.invalid"
#: The families issue 14 lists, and the label values each must show.
FAMILIES: dict[str, dict[str, tuple[str, ...]]] = {
    "zpop_connections": {"listener": ("pop3s", "smtps", "submission", "mx", "web")},
    "zpop_connections_refused": {},
    "zpop_connections_open": {"listener": ("pop3s", "smtps", "submission", "mx")},
    "zpop_sessions": {"listener": ("pop3s", "smtps", "submission")},
    "zpop_sessions_open": {"listener": ("pop3s", "smtps", "submission")},
    "zpop_logins": {
        "protocol": ("pop3", "smtp", "web"),
        "result": ("succeeded", "failed", "refused", "banned"),
    },
    "zpop_bans": {},
    "zpop_messages_accepted": {"listener": ("smtps", "submission", "mx")},
    "zpop_messages_delivered_local": {},
    "zpop_messages_queued": {},
    "zpop_messages_relayed": {"result": ("delivered", "deferred", "failed")},
    "zpop_messages_bounced": {"to": ("local",)},
    "zpop_outbound_queue_messages": {},
    "zpop_outbound_queue_oldest_seconds": {},
    "zpop_pop3_messages_retrieved": {},
    "zpop_pop3_retrieved_bytes": {},
    "zpop_command_seconds": {"protocol": ("pop3", "smtp")},
    "zpop_thread_pool_queue": {"pool": ("db", "hashing")},
}


@dataclass
class Counts:
    """What the bench itself did and saw, by the scrape's series."""

    connections: dict[str, int] = field(default_factory=dict)
    sessions: dict[str, int] = field(default_factory=dict)
    logins: dict[tuple[str, str], int] = field(default_factory=dict)
    accepted: dict[str, int] = field(default_factory=dict)
    commands: dict[str, int] = field(default_factory=dict)
    local_copies: int = 0
    queued: int = 0
    relay_failed: int = 0
    bounced_local: int = 0
    retrieved: int = 0
    #: Sum of the sizes RETR announced ("+OK N octets", RFC 1939: CRLF form).
    retrieved_octets: int = 0
    #: The bodies as received, dot-stuffing undone, terminator not counted.
    received_octets: int = 0
    errors: list[str] = field(default_factory=list)
    #: POP3S sessions logged in and not yet QUIT, client side.
    open_pop: int = 0
    #: (open_pop, connections_open, sessions_open of pop3s) at a mid-load
    #: scrape: the gauges are seen non-zero under load.
    midway: tuple[int, float, float] = (0, 0.0, 0.0)

    def add(self, table: dict[Any, int], key: Any, n: int = 1) -> None:
        table[key] = table.get(key, 0) + n


def scrape(port: int) -> Samples:
    """GET /metrics (the Prometheus text format) as {(name, labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        text = r.read().decode("utf-8")
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = float(s.value)
    return out


def families(port: int) -> dict[str, set[tuple[tuple[str, str], ...]]]:
    """The scrape's families and the label sets of their samples."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        text = r.read().decode("utf-8")
    return {
        f.name: {tuple(sorted(s.labels.items())) for s in f.samples}
        for f in text_string_to_metric_families(text)
    }


def per_process(directory: str) -> dict[int, Samples]:
    """Each process's own values, from its files in DATA/metrics (the
    library's merge, one process at a time)."""
    by_pid: dict[int, list[str]] = {}
    for path in glob.glob(os.path.join(directory, "*.db")):
        found = re.search(r"_(\d+)\.db$", path)
        if found:
            by_pid.setdefault(int(found.group(1)), []).append(path)
    out: dict[int, Samples] = {}
    for pid, files in by_pid.items():
        samples: Samples = {}
        for metric in MultiProcessCollector.merge(files, accumulate=True):
            for s in metric.samples:
                samples[s.name, tuple(sorted(s.labels.items()))] = float(s.value)
        out[pid] = samples
    return out


def number(x: float) -> str:
    """A count as an integer, anything else as it is."""
    return f"{x:.0f}" if float(x).is_integer() else f"{x:g}"


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over the series of ``name`` that carry ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


class CountingPop:
    """A POP3S session that counts what it sends and receives."""

    def __init__(self, counts: Counts) -> None:
        self.c = counts

    async def _cmd(self, s: pop3load.Session, text: bytes) -> bytes:
        self.c.add(self.c.commands, "pop3")
        return await s.cmd(text)

    async def full_session(
        self, port: int, ctx: ssl.SSLContext, user: str, pw: str
    ) -> None:
        s = await pop3load.Session.open(port, ctx)
        self.c.add(self.c.connections, "pop3s")
        await self._cmd(s, b"USER " + user.encode())
        await self._cmd(s, b"PASS " + pw.encode())
        self.c.add(self.c.logins, ("pop3", "succeeded"))
        self.c.add(self.c.sessions, "pop3s")
        self.c.open_pop += 1
        await self._cmd(s, b"STAT")
        await self._cmd(s, b"UIDL")
        await s.r.readuntil(b"\r\n.\r\n")
        for i in range(1, RETR + 1):
            first = await self._cmd(s, b"RETR %d" % i)
            body = await s.r.readuntil(b"\r\n.\r\n")
            lines = body[:-3].split(b"\r\n")
            unstuffed = b"\r\n".join(
                line[1:] if line.startswith(b".") else line for line in lines
            )
            self.c.retrieved += 1
            self.c.retrieved_octets += int(first.split()[1])
            self.c.received_octets += len(unstuffed)
        await self._cmd(s, b"QUIT")
        self.c.open_pop -= 1
        s.w.close()

    async def wrong_login(self, port: int, ctx: ssl.SSLContext, user: str) -> None:
        s = await pop3load.Session.open(port, ctx)
        self.c.add(self.c.connections, "pop3s")
        await self._cmd(s, b"USER " + user.encode())
        # Fixed per account: a rerun repeats it (not counted towards a ban).
        try:
            await self._cmd(s, b"PASS not-the-password-of-" + user.encode())
        except pop3load.ProtocolError:
            self.c.add(self.c.logins, ("pop3", "failed"))
        else:
            self.c.errors.append(f"{user}: a wrong password was accepted")
        s.abort()


async def counted_smtp(
    counts: Counts,
    port: int,
    mode: str,
    ctx: ssl.SSLContext,
    user: str,
    password: str,
    rcpt: str,
    count: int,
    data: bytes,
) -> None:
    """smtpload.connection, counting commands, logins and 250s after DATA."""
    implicit = mode == "smtps"
    reader, writer = await asyncio.open_connection(
        pop3load.HOST,
        port,
        ssl=ctx if implicit else None,
        server_hostname=smtpload.SNI if implicit else None,
    )
    counts.add(counts.connections, mode)
    c = smtpload.Conn(reader, writer)

    async def cmd(text: bytes, expect: bytes) -> bytes:
        counts.add(counts.commands, "smtp")
        return await c.cmd(text, expect)

    try:
        await c.reply(b"220")
        await cmd(b"EHLO client.bench.test", b"250")
        if not implicit:
            await cmd(b"STARTTLS", b"220")
            await writer.start_tls(ctx, server_hostname=smtpload.SNI)
            await cmd(b"EHLO client.bench.test", b"250")
        sender = user
        if mode != "mx":
            token = base64.b64encode(f"\0{user}\0{password}".encode())
            await cmd(b"AUTH PLAIN " + token, b"235")
            counts.add(counts.logins, ("smtp", "succeeded"))
            counts.add(counts.sessions, mode)
        else:
            sender = "someone@example.org"
        for _ in range(count):
            await cmd(f"MAIL FROM:<{sender}>".encode(), b"250")
            await cmd(f"RCPT TO:<{rcpt}>".encode(), b"250")
            await cmd(b"DATA", b"354")
            # The end of the data is timed as a command (its commit).
            counts.add(counts.commands, "smtp")
            writer.write(data)
            await c.reply(b"250")
            counts.add(counts.accepted, mode)
            if rcpt.endswith("@" + DOMAIN):
                counts.local_copies += 1
            else:
                counts.queued += 1
                counts.relay_failed += 1
                counts.bounced_local += 1  # the sender is hosted
        await cmd(b"QUIT", b"221")
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass


class CountingBrowser(webload.Browser):
    """A webload.Browser that counts the connections it opens."""

    def __init__(self, port: int, ctx: ssl.SSLContext, counts: Counts) -> None:
        super().__init__(port, ctx)
        self.counts = counts

    async def _connect(self) -> None:
        await super()._connect()
        self.counts.add(self.counts.connections, "web")


async def web_sign_in(
    port: int, ctx: ssl.SSLContext, counts: Counts, user: str
) -> None:
    """GET /login, POST /login to the 303 to /settings (one bcrypt)."""
    b = CountingBrowser(port, ctx, counts)
    try:
        form = (await b.request("GET", "/login")).expect(200)
        fields = {
            "address": user,
            "password": servers.COLD_PASSWORD,
            "csrf": webload.hidden(form.body),
        }
        (await b.request("POST", "/login", fields)).expect(303, "/settings")
        counts.add(counts.logins, ("web", "succeeded"))
    finally:
        await b.close()


class MetricsCheck:
    """The ``metrics`` row group for bench/run.py (zpop only)."""

    def __init__(self, zpop: Any, cafile: str, notes: list[str]) -> None:
        self.zpop = zpop
        self.cafile = cafile
        self.ctx = pop3load.client_context(cafile)
        self.notes = notes
        self.port = servers.PORTS["zpop_metrics"]
        #: Rows that did not match, over every measure() (run.py exits 1).
        self.failures: list[str] = []

    async def _load(self, counts: Counts) -> None:
        z = self.zpop
        pop = CountingPop(counts)

        async def client(user: str) -> None:
            for _ in range(POP_SESSIONS_EACH):
                await pop.full_session(z.port, self.ctx, user, z.credential(user))

        wrong = [
            f"idle{z.plan.idle_users - 1 - i}@{DOMAIN}" for i in range(WRONG_LOGINS)
        ]
        sender, rcpt = f"sender@{DOMAIN}", f"rcpt@{DOMAIN}"
        data = smtpload.message(10 * 1024, sender, rcpt)
        remote = smtpload.message(2 * 1024, sender, REMOTE_RECIPIENT)

        def smtp(mode: str, to: str = rcpt, n: int = SMTP_PER_CONNECTION) -> Any:
            return counted_smtp(
                counts,
                z.smtp_ports[mode],
                mode,
                self.ctx,
                sender,
                z.credential(sender),
                to,
                n,
                remote if to != rcpt else data,
            )

        async def web() -> None:
            cold = z.plan.cold_users
            for i in range(WEB_SIGNINS):
                await web_sign_in(
                    z.web_port, self.ctx, counts, f"cold{cold - 1 - i}@{DOMAIN}"
                )

        jobs = [client(servers.session_user(i)) for i in range(POP_CLIENTS)]
        jobs += [pop.wrong_login(z.port, self.ctx, u) for u in wrong]
        for mode in ("submission", "smtps", "mx"):
            jobs += [smtp(mode) for _ in range(SMTP_CONNECTIONS)]
        jobs.append(smtp("submission", REMOTE_RECIPIENT, 1))
        jobs.append(web())

        async def midway() -> None:
            await asyncio.sleep(0.3)
            held = counts.open_pop
            got = await asyncio.to_thread(scrape, self.port)
            counts.midway = (
                held,
                value(got, "zpop_connections_open", listener="pop3s"),
                value(got, "zpop_sessions_open", listener="pop3s"),
            )

        jobs.append(midway())
        results = await asyncio.gather(*jobs, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                counts.errors.append(repr(r)[:200])

    def _settled(
        self, before: Samples, counts: Counts, timeout: float = 30.0
    ) -> Samples:
        """Scrape until the bounce is made and every connection closed."""
        deadline = time.monotonic() + timeout
        while True:
            after = scrape(self.port)
            bounced = total(after, "zpop_messages_bounced_total") - total(
                before, "zpop_messages_bounced_total"
            )
            idle = (
                total(after, "zpop_connections_open") == 0
                and total(after, "zpop_sessions_open") == 0
                and value(after, "zpop_outbound_queue_messages") == 0
            )
            if (
                bounced >= counts.bounced_local and idle
            ) or time.monotonic() > deadline:
                return after
            time.sleep(0.5)

    def measure(self) -> dict[str, float]:
        z = self.zpop
        servers.wait_port(self.port, proc=z.proc)
        directory = os.path.join(z.data, "metrics")
        procs_before = per_process(directory)
        before = scrape(self.port)
        counts = Counts()
        t0 = time.monotonic()
        asyncio.run(self._load(counts))
        took = time.monotonic() - t0
        after = self._settled(before, counts)
        procs_after = per_process(directory)
        present = families(self.port)

        def d(name: str, **labels: str) -> float:
            return total(after, name, **labels) - total(before, name, **labels)

        rows: list[tuple[str, float, float]] = []
        for listener in ("pop3s", "smtps", "submission", "mx", "web"):
            rows.append(
                (
                    f'zpop_connections_total{{listener="{listener}"}}',
                    counts.connections.get(listener, 0),
                    d("zpop_connections_total", listener=listener),
                )
            )
        rows.append(
            (
                "zpop_connections_refused_total (all)",
                0,
                d("zpop_connections_refused_total"),
            )
        )
        for listener in ("pop3s", "smtps", "submission", "mx"):
            rows.append(
                (
                    f'zpop_sessions_total{{listener="{listener}"}}',
                    counts.sessions.get(listener, 0),
                    d("zpop_sessions_total", listener=listener),
                )
            )
        for protocol in ("pop3", "smtp", "web"):
            for result in ("succeeded", "failed", "refused", "banned"):
                rows.append(
                    (
                        f'zpop_logins_total{{protocol="{protocol}",result="{result}"}}',
                        counts.logins.get((protocol, result), 0),
                        d("zpop_logins_total", protocol=protocol, result=result),
                    )
                )
        rows.append(("zpop_bans_total", 0, d("zpop_bans_total")))
        for listener in ("submission", "smtps", "mx"):
            rows.append(
                (
                    f'zpop_messages_accepted_total{{listener="{listener}"}}',
                    counts.accepted.get(listener, 0),
                    d("zpop_messages_accepted_total", listener=listener),
                )
            )
        rows += [
            (
                "zpop_messages_delivered_local_total (all folders)",
                counts.local_copies,
                d("zpop_messages_delivered_local_total"),
            ),
            (
                "zpop_messages_queued_total",
                counts.queued,
                d("zpop_messages_queued_total"),
            ),
            (
                'zpop_messages_relayed_total{result="failed"}',
                counts.relay_failed,
                d("zpop_messages_relayed_total", result="failed"),
            ),
            (
                'zpop_messages_relayed_total{result="delivered"|"deferred"}',
                0,
                d("zpop_messages_relayed_total", result="delivered")
                + d("zpop_messages_relayed_total", result="deferred"),
            ),
            (
                'zpop_messages_bounced_total{to="local"}',
                counts.bounced_local,
                d("zpop_messages_bounced_total", to="local"),
            ),
            (
                "zpop_outbound_queue_messages (after)",
                0,
                value(after, "zpop_outbound_queue_messages"),
            ),
            (
                "zpop_outbound_queue_oldest_seconds (after)",
                0,
                value(after, "zpop_outbound_queue_oldest_seconds"),
            ),
            (
                "zpop_pop3_messages_retrieved_total",
                counts.retrieved,
                d("zpop_pop3_messages_retrieved_total"),
            ),
            (
                "zpop_pop3_retrieved_bytes_total (vs RETR's announced octets)",
                counts.retrieved_octets,
                d("zpop_pop3_retrieved_bytes_total"),
            ),
        ]
        for protocol in ("pop3", "smtp"):
            rows.append(
                (
                    f'zpop_command_seconds_count{{protocol="{protocol}"}}',
                    counts.commands.get(protocol, 0),
                    d("zpop_command_seconds_count", protocol=protocol),
                )
            )
            rows.append(
                (
                    f'zpop_command_seconds_bucket{{le="+Inf",protocol="{protocol}"}}',
                    counts.commands.get(protocol, 0),
                    d("zpop_command_seconds_bucket", protocol=protocol, le="+Inf"),
                )
            )
        for listener in ("pop3s", "smtps", "submission", "mx"):
            rows.append(
                (
                    f'zpop_connections_open{{listener="{listener}"}} (after)',
                    0,
                    value(after, "zpop_connections_open", listener=listener),
                )
            )
            rows.append(
                (
                    f'zpop_sessions_open{{listener="{listener}"}} (after)',
                    0,
                    value(after, "zpop_sessions_open", listener=listener),
                )
            )
        for pool in ("db", "hashing"):
            rows.append(
                (
                    f'zpop_thread_pool_queue{{pool="{pool}"}} (after)',
                    0,
                    value(after, "zpop_thread_pool_queue", pool=pool),
                )
            )

        mismatches = [name for name, want, got in rows if want != got]
        # Every family the issue lists, with the label values it must show.
        missing = []
        for name, labels in FAMILIES.items():
            if name not in present:
                missing.append(name)
                continue
            for label, wanted in labels.items():
                shown = {v for ls in present[name] for k, v in ls if k == label}
                missing += [
                    f'{name}{{{label}="{v}"}}' for v in wanted if v not in shown
                ]
        # The per-process files: each process's share of the POP3S sessions,
        # and the shares adding up to the scrape's delta.
        share: dict[int, float] = {}
        for pid in sorted(set(procs_before) | set(procs_after)):
            a, b = procs_after.get(pid, {}), procs_before.get(pid, {})
            share[pid] = value(a, "zpop_sessions_total", listener="pop3s") - value(
                b, "zpop_sessions_total", listener="pop3s"
            )
        sessions_delta = d("zpop_sessions_total", listener="pop3s")
        spread_ok = (
            len(share) == z.workers
            and all(v > 0 for v in share.values())
            and sum(share.values()) == sessions_delta
        )

        lines = [
            f"metrics check: load of {took:.1f}s, scrape of 127.0.0.1:{self.port}",
            "",
            "| metric | bench count | scrape delta | match |",
            "|---|---|---|---|",
        ]
        for name, want, got in rows:
            ok = "yes" if want == got else "**NO**"
            lines.append(f"| `{name}` | {number(want)} | {number(got)} | {ok} |")
        lines += [
            "",
            f"RETR bodies as received (CRLF, dot-stuffing undone): "
            f"{counts.received_octets} octets; announced: {counts.retrieved_octets}.",
            "",
            "| process (pid) | POP3S sessions (its file's delta) |",
            "|---|---|",
        ]
        for pid, v in share.items():
            role = "main" if pid == z.pid else "worker"
            lines.append(f"| {role} ({pid}) | {v:g} |")
        lines += [
            f"| sum / scrape delta | {sum(share.values()):g} / {sessions_delta:g} |",
            "",
            f"mid-load scrape: the bench had {counts.midway[0]} POP3S sessions"
            f' logged in; zpop_connections_open{{listener="pop3s"}} ='
            f' {counts.midway[1]:g}, zpop_sessions_open{{listener="pop3s"}} ='
            f" {counts.midway[2]:g}",
            "",
            "families missing from the scrape: " + (", ".join(missing) or "none"),
            f"load errors: {counts.errors or 'none'}",
        ]
        print("\n".join(lines), flush=True)
        failed = [f"mismatch {m}" for m in mismatches]
        failed += [f"missing {m}" for m in missing]
        if not spread_ok:
            failed.append(f"sessions not spread over {z.workers} processes: {share}")
        failed += [f"load error {e}" for e in counts.errors]
        for f in failed:
            self.notes.append(f"zpop metrics check: {f}")
        self.failures += failed
        return {
            "metrics_rows": float(len(rows)),
            "metrics_mismatches": float(len(mismatches)),
            "metrics_missing": float(len(missing)),
            "metrics_procs": float(sum(1 for v in share.values() if v > 0)),
        }
