"""Settings API load (issue 14 point 8): ``GET`` and ``PATCH
/api/v1/settings/pop`` at concurrency 10, beside the same change made
through the ``zpop`` CLI, one process per change.

The question these rows answer is what an operator's script gains by
calling the API instead of spawning ``zpop pop spam``: requests/s, and
CPU per change on both sides (the server's for the API, the CLI
process's own for the CLI, which has to start Python and import zpop each
time). No POP3S background runs: unlike the web rows, nothing here is
about the reactor's latency for mail clients, and a background would only
blur the per-request CPU.

Each of the ``CLIENTS`` API clients holds its own keep-alive HTTPS
connection and its own account's write token (tokens are per account), so
no two clients change the same account and no ``If-Match`` race arises.
The accounts (``api0`` .. ``api9``) and their tokens are made once per
zpop data directory through the real CLI (kept in its ``MARKER``). Every
PATCH and every CLI change flips the account's spam policy, so each one
is a real store write (a durable SQLite commit), never a no-op.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pop3load
import proc
import servers
import webload
from servers import DOMAIN

#: One account and one write token per concurrent client.
CLIENTS = 10
MARKER = "api-setup.json"
PATH = "/api/v1/settings/pop"
#: The two spam policies the changes alternate between.
FLIP = {"include": "exclude", "exclude": "include"}


def api_user(i: int) -> str:
    return f"api{i}@{DOMAIN}"


class ApiClient(webload.Browser):
    """One API client: a keep-alive HTTPS connection and a bearer token.

    It reuses webload.Browser's connection and response parsing (same
    package, same HTTP/1.1 framing); only the request differs: a bearer
    header and a JSON body, no cookies and no form fields.
    """

    def __init__(self, port: int, ctx: ssl.SSLContext, token: str) -> None:
        super().__init__(port, ctx)
        self.token = token

    async def call(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> Any:
        """Send one request; its JSON document (webload.WebError unless
        the answer is 200)."""
        if self._w is None or self._w.is_closing():
            await self._connect()
        assert self._r is not None and self._w is not None
        data = b"" if body is None else json.dumps(body).encode("utf-8")
        head = [
            f"{method} {path} HTTP/1.1",
            f"Host: {webload.HOST}:{self.port}",
            "User-Agent: zpop-bench",
            f"Authorization: Bearer {self.token}",
            "Accept: application/json",
        ]
        if body is not None:
            head.append("Content-Type: application/json")
        head.append(f"Content-Length: {len(data)}")
        self._w.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)
        reply = await self._read()
        if (reply.header("connection") or "").lower() == "close":
            await self.close()
        if reply.status != 200:
            raise webload.WebError(f"HTTP {reply.status}: {reply.body[:200]!r}")
        return json.loads(reply.body)


def children_seconds() -> float:
    """CPU seconds (user + system) of this process's reaped children: the
    CLI processes, each reaped by asyncio before its change counts."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


@dataclass
class Costs:
    """One measured window: the load's outcome and who spent the CPU."""

    result: pop3load.LoadResult
    #: zpop's process tree (both workers), seconds.
    server: float
    #: Reaped children of the bench (the CLI processes), seconds.
    children: float
    #: The bench process itself (the load generator), seconds.
    client: float
    #: Cores busy with anything else on the machine (noise).
    others: float


class ApiBench:
    """The API and CLI rows for bench/run.py: set-up once, then one
    measure() per round."""

    def __init__(
        self,
        zpop: Any,
        cafile: str,
        duration: float,
        warmup: float,
        notes: list[str] | None = None,
    ) -> None:
        """``notes``: where errors during the run are told (run.py's)."""
        self.zpop = zpop
        self.ctx = pop3load.client_context(cafile)
        self.duration = duration
        #: CLI changes take a fraction of a second of CPU each: a longer
        #: window, so a round counts tens of them, not a handful.
        self.cli_duration = 3 * duration
        self.warmup = warmup
        self.notes: list[str] = [] if notes is None else notes
        self.tokens: dict[str, str] = {}
        #: Each account's spam policy as last read or set, so every
        #: change (API or CLI) sets the other one.
        self.spam: dict[str, str] = {}

    @property
    def users(self) -> list[str]:
        return [api_user(i) for i in range(CLIENTS)]

    def setup(self) -> None:
        """The API accounts and a write token each, once per zpop data
        directory (the tokens are kept in its MARKER: shown once)."""
        path = os.path.join(self.zpop.dir, MARKER)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                saved: dict[str, str] = json.load(f)["tokens"]
            if all(u in saved for u in self.users):
                self.tokens = saved
                return
        commands: list[dict[str, object]] = []
        for u in self.users:
            # may_fail: an interrupted set-up may have made the account.
            commands += [
                {"argv": ["account", "add", u, "--plan", "paid"], "may_fail": True},
                {"argv": ["pop", "enable", u, "--mode", "all"], "may_fail": True},
                {
                    "argv": [
                        "api-token",
                        "create",
                        u,
                        "--scope",
                        "write",
                        "--label",
                        "bench-api",
                    ]
                },
            ]
        out = self.zpop._admin(commands)
        self.tokens = {u: out[3 * i + 2].strip() for i, u in enumerate(self.users)}
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"tokens": self.tokens}, f)

    # -- the windows -------------------------------------------------------

    async def _window(
        self, ops: list[Callable[[], Awaitable[None]]], seconds: float
    ) -> Costs:
        """The ops unmeasured for the warm-up, then measured: their result
        and the CPU of zpop, of the CLI children, of the bench itself and
        of everything else, over the window (in-flight operations at the
        deadline are waited for and counted, and the window with them)."""
        if self.warmup > 0:
            await pop3load.closed_loop(ops, self.warmup)
        cpu0, child0 = proc.cpu_seconds(self.zpop.pid), children_seconds()
        busy0, own0 = webload.busy_seconds(), webload.own_seconds()
        res = await pop3load.closed_loop(ops, seconds)
        server = proc.cpu_seconds(self.zpop.pid) - cpu0
        children = children_seconds() - child0
        client = webload.own_seconds() - own0
        others = webload.busy_seconds() - busy0 - server - children - client
        return Costs(res, server, children, client, others / res.seconds)

    def _report(self, row: str, what: str, c: Costs) -> dict[str, float]:
        """A row's values; every CPU figure is ms per completed operation."""
        r = c.result
        if r.errors:
            self.notes.append(f"zpop {what}: {r.errors} errors, first: {r.first_error}")

        def per(seconds: float) -> float:
            return seconds / r.done * 1000 if r.done else float("nan")

        return {
            row: r.rate,
            row + "_p50": webload.percentile(r.latencies, 0.5) * 1000,
            row + "_p99": webload.percentile(r.latencies, 0.99) * 1000,
            row + "_cpu": per(c.server),
            row + "_cli_cpu": per(c.children),
            row + "_client_cpu": per(c.client),
            row + "_others": c.others,
        }

    async def _with_clients(
        self, run: Callable[[list[ApiClient]], Awaitable[Costs]]
    ) -> Costs:
        """``run`` with one connected client per account (the current spam
        policies read first), closing them after."""
        clients = [
            ApiClient(self.zpop.web_port, self.ctx, self.tokens[u]) for u in self.users
        ]
        try:
            for u, client in zip(self.users, clients, strict=True):
                self.spam[u] = (await client.call("GET", PATH))["spam"]
            return await run(clients)
        finally:
            for client in clients:
                await client.close()

    def get(self) -> dict[str, float]:
        """GET /settings/pop back to back on each keep-alive connection:
        token check (keyed hash, store look-up), account read, document."""

        def op(client: ApiClient) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                await client.call("GET", PATH)

            return run

        async def run(clients: list[ApiClient]) -> Costs:
            return await self._window([op(c) for c in clients], self.duration)

        return self._report("api_get", "API GET", asyncio.run(self._with_clients(run)))

    def patch(self) -> dict[str, float]:
        """PATCH /settings/pop, the spam policy flipped each time: the GET's
        work plus one settings write committed before the answer and an
        audit line. The answer is checked to hold the new policy."""

        def op(user: str, client: ApiClient) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                wanted = FLIP[self.spam[user]]
                doc = await client.call("PATCH", PATH, {"spam": wanted})
                if doc.get("spam") != wanted:
                    raise webload.WebError(f"PATCH answered spam={doc.get('spam')}")
                self.spam[user] = wanted

            return run

        async def run(clients: list[ApiClient]) -> Costs:
            ops = [op(u, c) for u, c in zip(self.users, clients, strict=True)]
            return await self._window(ops, self.duration)

        return self._report(
            "api_patch", "API PATCH", asyncio.run(self._with_clients(run))
        )

    def cli(self, concurrency: int) -> dict[str, float]:
        """The same change through ``zpop pop spam ADDRESS POLICY``, one
        process per change (as an operator's script would), ``concurrency``
        processes at a time, each on its own account. The CLI's own CPU
        comes from the reaped children's rusage."""
        zpop_cli = os.path.join(os.path.dirname(sys.executable), "zpop")
        prefix = [zpop_cli, "--config", self.zpop.setup_config, "--data"]
        prefix.append(self.zpop.data)

        def op(user: str) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                wanted = FLIP[self.spam[user]]
                p = await asyncio.create_subprocess_exec(
                    *prefix,
                    "pop",
                    "spam",
                    user,
                    wanted,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                _, err = await p.communicate()
                if p.returncode:
                    raise RuntimeError(
                        f"zpop pop spam exit {p.returncode}: {err[:200]!r}"
                    )
                self.spam[user] = wanted

            return run

        async def run(clients: list[ApiClient]) -> Costs:
            # The clients only read the policies the changes start from.
            ops = [op(u) for u in self.users[:concurrency]]
            return await self._window(ops, self.cli_duration)

        row = f"cli_c{concurrency}"
        return self._report(
            row, f"CLI c={concurrency}", asyncio.run(self._with_clients(run))
        )

    def measure(self) -> dict[str, float]:
        """One round of every API and CLI row."""
        if not self.tokens:
            servers.wait_port(self.zpop.web_port, proc=self.zpop.proc)
            t0 = time.monotonic()
            self.setup()
            print(f"  api: tokens ready in {time.monotonic() - t0:.1f}s", flush=True)
        out = self.get()
        out.update(self.patch())
        out.update(self.cli(1))
        out.update(self.cli(CLIENTS))
        return out
