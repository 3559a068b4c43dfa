"""Web settings load (issue 13 point 7): sign-in with a cold bcrypt, sign-in
with two-factor, and a settings change, each while a POP3S load runs.

zpop's HTTPS ``web`` listener is driven by a small asyncio HTTP/1.1 client
(keep-alive, a cookie jar per simulated browser) in the same event loop as
the POP3S load and the NOOP probe of ``pop3load``, so the bench stays one
asyncio process and no client thread competes for the GIL with the probe.
The anchors have no web settings: these rows are zpop only.

Every sign-in is one bcrypt on the server (the web never uses the
credential cache). Two-factor sign-ins need a fresh TOTP step per account
(each step is accepted once), so ``TWO_FACTOR_ACCOUNTS`` accounts are
enrolled once per work directory and each is used at most once per
30-second step; the client keeps track of the steps it spent.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import ssl
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pop3load
import proc
import servers
from servers import DOMAIN

from zpop.accounts import totp

HOST = "127.0.0.1"
#: A name the bench certificate holds, so the client verifies it.
SNI = DOMAIN
PASSWORD = servers.COLD_PASSWORD
#: Enrolled once; at most one sign-in each per 30-second TOTP step.
TWO_FACTOR_ACCOUNTS = 120
#: Accounts without two-factor: the cold sign-in and settings rows.
SETTINGS_ACCOUNTS = 10
#: Concurrent web clients per row.
SIGNIN_CLIENTS = 8
SETTINGS_CLIENTS = 10
#: The POP3S background: full sessions (login, STAT, UIDL, 20 RETR, QUIT)
#: started at this fixed rate, so every web row meets the same load and
#: its POP CPU can be subtracted (a closed loop would take whatever CPU
#: bcrypt leaves and make the rows incomparable).
POP_RATE = 25.0
POP_USERS = 40
#: The NOOP probe's interval (as run.py's noops_meanwhile).
NOOP_INTERVAL = 0.02
MARKER = "web-setup.json"


class WebError(Exception):
    """The web listener answered something the bench did not expect."""


@dataclass
class Reply:
    """One HTTP response."""

    status: int
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def expect(self, status: int, location: str | None = None) -> Reply:
        """Raise WebError unless the answer is ``status`` (and, for a
        redirect, goes to ``location``, query string ignored)."""
        where = (self.header("location") or "").partition("?")[0]
        if self.status != status or (location is not None and where != location):
            raise WebError(
                f"HTTP {self.status} (location {where or '-'}), "
                f"expected {status} {location or ''}".strip()
            )
        return self


class Browser:
    """One visitor: a keep-alive HTTPS connection and its cookie jar.

    POSTs carry ``Sec-Fetch-Site: same-origin`` as a browser's own form
    posts do (zpop refuses state changes without it or a matching Origin).
    """

    def __init__(self, port: int, ctx: ssl.SSLContext) -> None:
        self.port = port
        self.ctx = ctx
        self.cookies: dict[str, str] = {}
        self._r: asyncio.StreamReader | None = None
        self._w: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        self._r, self._w = await asyncio.open_connection(
            HOST, self.port, ssl=self.ctx, server_hostname=SNI
        )

    async def request(
        self, method: str, path: str, fields: dict[str, str] | None = None
    ) -> Reply:
        if self._w is None or self._w.is_closing():
            await self._connect()
        assert self._r is not None and self._w is not None
        head = [
            f"{method} {path} HTTP/1.1",
            f"Host: {HOST}:{self.port}",
            "User-Agent: zpop-bench",
            "Accept-Language: en",
        ]
        if self.cookies:
            jar = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            head.append(f"Cookie: {jar}")
        body = b""
        if fields is not None:
            body = urllib.parse.urlencode(fields).encode("ascii")
            head += [
                "Content-Type: application/x-www-form-urlencoded",
                "Sec-Fetch-Site: same-origin",
            ]
        head.append(f"Content-Length: {len(body)}")
        self._w.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        reply = await self._read()
        for cookie in reply.headers.get("set-cookie", []):
            self._keep(cookie)
        if (reply.header("connection") or "").lower() == "close":
            await self.close()
        return reply

    async def _read(self) -> Reply:
        assert self._r is not None
        status_line = await self._r.readline()
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise WebError(f"bad status line {status_line[:100]!r}")
        headers: dict[str, list[str]] = {}
        while True:
            line = await self._r.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        length = headers.get("content-length")
        if length is not None:
            data = await self._r.readexactly(int(length[0]))
        elif "chunked" in (headers.get("transfer-encoding") or [""])[0].lower():
            data = await self._chunks()
        else:
            data = await self._r.read()
        return Reply(int(parts[1]), headers, data)

    async def _chunks(self) -> bytes:
        assert self._r is not None
        out = bytearray()
        while True:
            size = int((await self._r.readline()).split(b";")[0], 16)
            if size == 0:
                await self._r.readline()
                return bytes(out)
            out += await self._r.readexactly(size)
            await self._r.readline()

    def _keep(self, set_cookie: str) -> None:
        pair, *attributes = set_cookie.split(";")
        name, _, value = pair.strip().partition("=")
        if any(a.strip().lower() == "max-age=0" for a in attributes) or not value:
            self.cookies.pop(name, None)
        else:
            self.cookies[name] = value

    async def close(self) -> None:
        w, self._w, self._r = self._w, None, None
        if w is not None:
            w.close()
            try:
                await w.wait_closed()
            except (OSError, ssl.SSLError):
                pass


_CSRF = re.compile(rb'<input[^>]*name="csrf"[^>]*>')
_PENDING = re.compile(rb'<input[^>]*name="pending"[^>]*>')
_VALUE = re.compile(rb'value="([^"]*)"')
_SECRET = re.compile(rb'<code[^>]*id="totp-secret"[^>]*>([^<]*)</code>')


def hidden(body: bytes, pattern: re.Pattern[bytes] = _CSRF) -> str:
    """A hidden field's value (the ``csrf`` token by default)."""
    found = pattern.search(body)
    value = _VALUE.search(found.group(0)) if found else None
    if value is None:
        raise WebError("no such hidden field on the page")
    return value.group(1).decode("ascii")


async def sign_in(
    port: int,
    ctx: ssl.SSLContext,
    address: str,
    secret: bytes | None = None,
    code: str | None = None,
) -> Browser:
    """A new browser signed in to ``address``: GET /login, POST /login and,
    with two-factor (``code`` given, else computed from ``secret``), GET
    and POST /login/code; ends at the 303 to /settings."""
    b = Browser(port, ctx)
    try:
        form = (await b.request("GET", "/login")).expect(200)
        fields = {"address": address, "password": PASSWORD, "csrf": hidden(form.body)}
        if secret is None and code is None:
            (await b.request("POST", "/login", fields)).expect(303, "/settings")
            return b
        (await b.request("POST", "/login", fields)).expect(303, "/login/code")
        form = (await b.request("GET", "/login/code")).expect(200)
        if code is None:
            assert secret is not None
            code = totp.code_at(secret, totp.step_at(time.time()))
        fields = {"code": code, "csrf": hidden(form.body)}
        (await b.request("POST", "/login/code", fields)).expect(303, "/settings")
        return b
    except BaseException:
        await b.close()
        raise


async def enrol(port: int, ctx: ssl.SSLContext, address: str) -> tuple[bytes, int]:
    """Turn two-factor on for ``address`` through the settings page, as a
    user with an app would; its secret and the TOTP step spent confirming."""
    b = await sign_in(port, ctx, address)
    try:
        page = (await b.request("GET", "/settings/two-factor")).expect(200)
        found = _SECRET.search(page.body)
        if found is None:
            raise WebError(f"{address}: no totp-secret on the page (enrolled?)")
        secret = totp.parse_secret_text(found.group(1).decode("ascii"))
        step = totp.step_at(time.time())
        fields = {
            "action": "enrol",
            "pending": hidden(page.body, _PENDING),
            "code": totp.code_at(secret, step),
            "csrf": hidden(page.body),
        }
        done = (await b.request("POST", "/settings/two-factor", fields)).expect(200)
        if b'id="recovery-codes"' not in done.body:
            raise WebError(f"{address}: enrolment not confirmed")
        return secret, step
    finally:
        await b.close()


def two_factor_user(i: int) -> str:
    return f"webtf{i}@{DOMAIN}"


def settings_user(i: int) -> str:
    return f"webset{i}@{DOMAIN}"


@dataclass
class StepPool:
    """The enrolled accounts, each usable once per TOTP step."""

    secrets: dict[str, bytes]
    last: dict[str, int] = field(default_factory=dict)
    #: Times take() found every account used this step (the row then
    #: measures the pool, not zpop: reported in the notes).
    dry: int = 0
    _next: int = 0

    def take(self) -> tuple[str, str] | None:
        """An account not yet used in this step and its code now (marked
        used), or None when every account has had its turn this step."""
        step = totp.step_at(time.time())
        names = list(self.secrets)
        for k in range(len(names)):
            name = names[(self._next + k) % len(names)]
            if self.last.get(name, -1) < step:
                self._next = (self._next + k + 1) % len(names)
                self.last[name] = step
                return name, totp.code_at(self.secrets[name], step)
        self.dry += 1
        return None


@dataclass
class Window:
    """One measured window's web and POP outcome."""

    web: pop3load.LoadResult
    pop: pop3load.LoadResult
    noops: list[float]
    cpu: float
    pop_done: int
    #: Cores busy with anything but zpop and this bench process (other
    #: work on the machine: the noise the figures carry).
    others: float


def busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (``/proc/stat``)."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal: all but idle, iowait.
    return (sum(fields[:8]) - fields[3] - fields[4]) / proc.CLOCK_TICKS


def own_seconds() -> float:
    """CPU seconds this bench process (the load generator) has used."""
    t = os.times()
    return t.user + t.system


async def closed_loop(
    ops: list[Callable[[], Awaitable[bool]]], seconds: float
) -> pop3load.LoadResult:
    """pop3load.closed_loop for operations that may find nothing to do
    (they return False: not counted, the client waits 50 ms)."""
    result = pop3load.LoadResult()
    start = time.perf_counter()
    deadline = start + seconds

    async def worker(op: Callable[[], Awaitable[bool]]) -> None:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                did = await asyncio.wait_for(op(), timeout=60)
            except Exception as e:  # noqa: BLE001 - any failure is counted
                result.errors += 1
                result.first_error = result.first_error or repr(e)[:200]
                await asyncio.sleep(0.05)
                continue
            if not did:
                await asyncio.sleep(0.05)
                continue
            result.latencies.append(time.perf_counter() - t0)
            result.done += 1

    await asyncio.gather(*(worker(op) for op in ops))
    result.seconds = time.perf_counter() - start
    return result


async def paced_pop(
    port: int,
    ctx: ssl.SSLContext,
    users: list[tuple[str, str]],
    stop: asyncio.Event,
    finished: list[float],
    rate: float = POP_RATE,
) -> pop3load.LoadResult:
    """Start a full POP3S session every 1/``rate`` s until ``stop``, each on
    a maildrop no other session holds (zpop allows one per maildrop); a
    start with every user busy is skipped and counted as an error.
    ``finished`` gets each completed session's end time."""
    result = pop3load.LoadResult()
    free = list(users)
    tasks: set[asyncio.Task[None]] = set()
    start = time.perf_counter()

    async def one(user: str, password: str) -> None:
        t0 = time.perf_counter()
        try:
            await pop3load.full_session(port, ctx, user, password, 20)
        except Exception as e:  # noqa: BLE001 - any failure is counted
            result.errors += 1
            result.first_error = result.first_error or repr(e)[:200]
        else:
            finished.append(time.perf_counter())
            result.latencies.append(finished[-1] - t0)
            result.done += 1
        finally:
            free.append((user, password))

    n = 0
    while not stop.is_set():
        if free:
            task = asyncio.create_task(one(*free.pop(0)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        else:
            result.errors += 1
            result.first_error = result.first_error or "every POP user busy"
        n += 1
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass
    await asyncio.gather(*tasks)
    result.seconds = time.perf_counter() - start
    return result


async def noop_probe(
    port: int,
    ctx: ssl.SSLContext,
    user: str,
    password: str,
    stop: asyncio.Event,
    since: list[float],
) -> list[float]:
    """pop3load.noop_probe, keeping only the NOOPs sent after ``since[0]``
    (the measured window's start, set by the caller once it is known)."""
    s = await pop3load.Session.open(port, ctx)
    await s.login(user, password)
    latencies = []
    while not stop.is_set():
        t0 = time.perf_counter()
        await s.cmd(b"NOOP")
        if since and t0 >= since[0]:
            latencies.append(time.perf_counter() - t0)
        await asyncio.sleep(NOOP_INTERVAL)
    await s.quit()
    return latencies


class WebBench:
    """The web rows for bench/run.py: set-up once, then one measure() per
    round."""

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
        #: As long as run.py's cold-login window: bcrypt rows do few a second.
        self.signin_duration = 3 * duration
        self.warmup = warmup
        self.notes: list[str] = [] if notes is None else notes
        self.pool: StepPool | None = None
        self.pop_cpu: float | None = None

    @property
    def port(self) -> int:
        return int(self.zpop.web_port)

    def setup(self) -> None:
        """The web accounts (bcrypt primary passwords) and two-factor
        enrolments, once per zpop data directory (kept in its MARKER)."""
        servers.wait_port(self.port, proc=self.zpop.proc)
        path = os.path.join(self.zpop.dir, MARKER)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                saved = json.load(f)
            if len(saved["secrets"]) >= TWO_FACTOR_ACCOUNTS * 0.9:
                self.pool = StepPool(
                    {a: base64.b32decode(s) for a, s in saved["secrets"].items()}
                )
                return
        t0 = time.monotonic()
        users = [settings_user(i) for i in range(SETTINGS_ACCOUNTS)]
        users += [two_factor_user(i) for i in range(TWO_FACTOR_ACCOUNTS)]
        # may_fail: an earlier, interrupted set-up may have made some.
        self.zpop._admin_parallel(
            [
                {
                    "argv": ["account", "add", u, "--plan", "paid", "--password-stdin"],
                    "stdin": PASSWORD + "\n",
                    "may_fail": True,
                }
                for u in users
            ],
            os.cpu_count() or 2,
        )
        self.zpop._admin(
            [
                {"argv": ["pop", "enable", settings_user(i), "--mode", "all"]}
                for i in range(SETTINGS_ACCOUNTS)
            ]
        )
        secrets, last = asyncio.run(self._enrol_all())
        with open(path, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "secrets": {
                        a: base64.b32encode(s).decode() for a, s in secrets.items()
                    }
                },
                f,
            )
        self.pool = StepPool(secrets, last)
        print(
            f"  web: {len(secrets)} two-factor accounts enrolled in "
            f"{time.monotonic() - t0:.0f}s",
            flush=True,
        )

    async def _enrol_all(self) -> tuple[dict[str, bytes], dict[str, int]]:
        secrets: dict[str, bytes] = {}
        last: dict[str, int] = {}
        sem = asyncio.Semaphore(SIGNIN_CLIENTS)

        async def one(address: str) -> None:
            async with sem:
                try:
                    secrets[address], last[address] = await enrol(
                        self.port, self.ctx, address
                    )
                except (WebError, OSError, ssl.SSLError, ValueError) as e:
                    self.notes.append(f"web set-up: {address} not enrolled: {e}")

        await asyncio.gather(
            *(one(two_factor_user(i)) for i in range(TWO_FACTOR_ACCOUNTS))
        )
        return secrets, last

    # -- the windows -------------------------------------------------------

    def _pop_users(self) -> list[tuple[str, str]]:
        count = min(POP_USERS, self.zpop.plan.session_users)
        names = [servers.session_user(i) for i in range(count)]
        return [(u, self.zpop.credential(u)) for u in names]

    async def _window(
        self,
        ops: list[Callable[[], Awaitable[bool]]],
        seconds: float,
        prepare: Callable[[], Awaitable[None]] | None = None,
    ) -> Window:
        """``prepare``, the web ops unmeasured for the warm-up, then the
        paced POP3S load and the NOOP probe, and the web ops measured."""
        if prepare is not None:
            await prepare()
        if self.warmup > 0 and ops:
            await closed_loop(ops, self.warmup)
        stop = asyncio.Event()
        since: list[float] = []
        finished: list[float] = []
        noop = f"noop@{DOMAIN}"
        pop = asyncio.create_task(
            paced_pop(self.zpop.port, self.ctx, self._pop_users(), stop, finished)
        )
        probe = asyncio.create_task(
            noop_probe(
                self.zpop.port, self.ctx, noop, self.zpop.credential(noop), stop, since
            )
        )
        await asyncio.sleep(0.5)
        cpu0 = proc.cpu_seconds(self.zpop.pid)
        busy0, own0 = busy_seconds(), own_seconds()
        since.append(time.perf_counter())
        try:
            if ops:
                web = await closed_loop(ops, seconds)
            else:
                await asyncio.sleep(seconds)
                web = pop3load.LoadResult(seconds=seconds)
            cpu = proc.cpu_seconds(self.zpop.pid) - cpu0
            until = time.perf_counter()
            others = busy_seconds() - busy0 - (own_seconds() - own0) - cpu
        finally:
            stop.set()
        background = await pop
        noops = await probe
        # The POP sessions whose CPU fell in the window: those that ended
        # in it (the paced load started 0.5 s before and drains after).
        ended = sum(1 for t in finished if since[0] <= t <= until)
        background.seconds = until - since[0]
        background.done = ended
        return Window(web, background, noops, cpu, ended, others / (until - since[0]))

    def _report(self, row: str, what: str, w: Window, per: int) -> dict[str, float]:
        """The row's values; ``per``: HTTP requests per operation. Server
        CPU per operation has the POP background's share taken out (its
        sessions in the window times the CPU per session measured alone)."""
        for name, r in (("web", w.web), ("POP3S background", w.pop)):
            if r.errors:
                self.notes.append(
                    f"zpop {what}: {name} {r.errors} errors, first: {r.first_error}"
                )
        pop_cpu = (self.pop_cpu or 0.0) * w.pop_done
        done = w.web.done
        cpu = (w.cpu - pop_cpu) / done * 1000 if done else float("nan")
        return {
            row: w.web.rate,
            row + "_req": w.web.rate * per,
            row + "_p50": percentile(w.web.latencies, 0.5) * 1000,
            row + "_p99": percentile(w.web.latencies, 0.99) * 1000,
            row + "_cpu": cpu,
            row + "_noop_p99": percentile(w.noops, 0.99) * 1000,
            row + "_pop": w.pop.rate,
            row + "_others": w.others,
        }

    def baseline(self) -> dict[str, float]:
        """The POP3S background alone: the NOOP p99 to compare with, and
        the server CPU per POP session that the web rows subtract."""
        # Twice the usual window: every web row's CPU figure leans on it.
        w = asyncio.run(self._window([], 2 * self.duration))
        self.pop_cpu = w.cpu / w.pop_done if w.pop_done else 0.0
        if w.pop.errors:
            self.notes.append(
                f"zpop web baseline: POP3S {w.pop.errors} errors, "
                f"first: {w.pop.first_error}"
            )
        return {
            "web_base_noop_p99": percentile(w.noops, 0.99) * 1000,
            "web_base_pop": w.pop.rate,
            "web_base_pop_cpu": self.pop_cpu * 1000,
            "web_base_others": w.others,
        }

    def signin(self) -> dict[str, float]:
        """Sign-in without two-factor: one bcrypt each, a new connection
        (and TLS handshake) and cookie jar per sign-in, as a new visit."""
        users = [settings_user(i) for i in range(SETTINGS_ACCOUNTS)]

        def op(user: str) -> Callable[[], Awaitable[bool]]:
            async def run() -> bool:
                b = await sign_in(self.port, self.ctx, user)
                await b.close()
                return True

            return run

        ops = [op(users[i % len(users)]) for i in range(SIGNIN_CLIENTS)]
        w = asyncio.run(self._window(ops, self.signin_duration))
        return self._report("web_signin", "web sign-in", w, 2)

    def two_factor(self) -> dict[str, float]:
        """Sign-in with two-factor: password, then the TOTP code step."""
        pool = self.pool
        assert pool is not None

        async def op() -> bool:
            taken = pool.take()
            if taken is None:
                return False
            address, code = taken
            b = await sign_in(self.port, self.ctx, address, code=code)
            await b.close()
            return True

        dry = pool.dry
        w = asyncio.run(self._window([op] * SIGNIN_CLIENTS, self.signin_duration))
        if pool.dry > dry:
            self.notes.append(
                f"zpop web two-factor sign-in: {len(pool.secrets)} accounts were "
                f"all used in one TOTP step ({pool.dry - dry} waits)"
            )
        return self._report("web_2fa", "web two-factor sign-in", w, 4)

    def settings(self) -> dict[str, float]:
        """A settings change: signed-in sessions (one per account, signed
        in before the window) each POSTing /settings/pop on a keep-alive
        connection, the spam policy flipped each time so every POST writes.
        Timed to the 303; the redirected GET is not made."""
        browsers: list[tuple[Browser, str]] = []

        async def prepare() -> None:
            for i in range(SETTINGS_CLIENTS):
                b = await sign_in(self.port, self.ctx, settings_user(i))
                page = (await b.request("GET", "/settings/pop")).expect(200)
                browsers.append((b, hidden(page.body)))

        def op(n: int) -> Callable[[], Awaitable[bool]]:
            flip = [False]

            async def run() -> bool:
                b, csrf = browsers[n]
                flip[0] = not flip[0]
                fields = {
                    "pop": "all",
                    "spam": "include" if flip[0] else "exclude",
                    "deletion": "keep",
                    "csrf": csrf,
                }
                reply = await b.request("POST", "/settings/pop", fields)
                reply.expect(303, "/settings/pop")
                return True

            return run

        async def measure() -> Window:
            try:
                return await self._window(
                    [op(n) for n in range(SETTINGS_CLIENTS)], self.duration, prepare
                )
            finally:
                for b, _ in browsers:
                    await b.close()

        w = asyncio.run(measure())
        return self._report("web_settings", "web settings change", w, 1)

    def measure(self) -> dict[str, float]:
        """One round of every web row, the baseline first."""
        if self.pool is None:
            self.setup()
        out = self.baseline()
        out.update(self.signin())
        out.update(self.two_factor())
        out.update(self.settings())
        return out


def percentile(values: list[float], q: float) -> float:
    """run.py's percentile (nearest rank); here so run.py imports this
    module and not the other way round."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
