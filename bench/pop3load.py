"""POP3S load generators (asyncio streams; a blocking socket for bulk RETR)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

HOST = "127.0.0.1"
SNI = "pop.bench.test"
STREAM_LIMIT = 1 << 26


class ProtocolError(Exception):
    """The server answered something a benchmark session did not expect."""


def client_context(cafile: str) -> ssl.SSLContext:
    """A verifying client context trusting the bench certificate."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def served_key(port: int, ctx: ssl.SSLContext) -> str:
    """The key type of the certificate an implicit-TLS server on ``port``
    serves this client: "ECDSA secp256r1", "RSA-2048"..."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    with socket.create_connection((HOST, port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=SNI) as tls:
            der = tls.getpeercert(binary_form=True)
    key = x509.load_der_x509_certificate(der).public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    return type(key).__name__


class Session:
    """One POP3S connection driven command by command (no pipelining)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.r = reader
        self.w = writer

    @classmethod
    async def open(cls, port: int, ctx: ssl.SSLContext) -> Session:
        reader, writer = await asyncio.open_connection(
            HOST, port, ssl=ctx, server_hostname=SNI, limit=STREAM_LIMIT
        )
        session = cls(reader, writer)
        await session.line()
        return session

    async def line(self) -> bytes:
        data = await self.r.readline()
        if not data.startswith(b"+OK"):
            raise ProtocolError(data[:200].decode(errors="replace") or "EOF")
        return data

    async def cmd(self, text: bytes) -> bytes:
        self.w.write(text + b"\r\n")
        return await self.line()

    async def multi(self, text: bytes) -> int:
        """Send a command with a multi-line answer; returns its size."""
        first = await self.cmd(text)
        data = await self.r.readline()
        if data == b".\r\n":
            return len(first)
        rest = await self.r.readuntil(b"\r\n.\r\n")
        return len(first) + len(data) + len(rest)

    async def login(self, user: str, password: str) -> None:
        await self.cmd(b"USER " + user.encode())
        await self.cmd(b"PASS " + password.encode())

    async def quit(self) -> None:
        try:
            await self.cmd(b"QUIT")
        finally:
            self.w.close()
            try:
                await self.w.wait_closed()
            except (OSError, ssl.SSLError):
                pass

    def abort(self) -> None:
        self.w.transport.abort()


async def full_session(
    port: int, ctx: ssl.SSLContext, user: str, password: str, retr: int
) -> None:
    """connect, TLS, USER/PASS, STAT, UIDL, RETR 1..retr, QUIT."""
    s = await Session.open(port, ctx)
    await s.login(user, password)
    await s.cmd(b"STAT")
    await s.multi(b"UIDL")
    for i in range(1, retr + 1):
        await s.multi(b"RETR %d" % i)
    await s.quit()


async def login_session(
    port: int, ctx: ssl.SSLContext, user: str, password: str
) -> None:
    """connect, TLS, USER/PASS, QUIT: one login."""
    s = await Session.open(port, ctx)
    await s.login(user, password)
    await s.quit()


async def stat_uidl(port: int, ctx: ssl.SSLContext, user: str, password: str) -> float:
    """Seconds from connect to the end of UIDL (login + STAT + UIDL)."""
    t0 = time.perf_counter()
    s = await Session.open(port, ctx)
    await s.login(user, password)
    await s.cmd(b"STAT")
    await s.multi(b"UIDL")
    elapsed = time.perf_counter() - t0
    await s.quit()
    return elapsed


@dataclass
class LoadResult:
    """Completed operations and their latencies over one timed window."""

    done: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    first_error: str = ""

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0


async def closed_loop(
    workers: list[Callable[[], Awaitable[None]]],
    duration: float,
    max_ops: int | None = None,
) -> LoadResult:
    """Run each worker's operation back to back until ``duration`` elapses
    (or ``max_ops`` complete); each worker is one concurrent client."""
    result = LoadResult()
    deadline = time.perf_counter() + duration
    start = time.perf_counter()

    async def worker(op: Callable[[], Awaitable[None]]) -> None:
        while time.perf_counter() < deadline:
            if max_ops is not None and result.done + result.errors >= max_ops:
                return
            t0 = time.perf_counter()
            try:
                await asyncio.wait_for(op(), timeout=60)
            except Exception as e:  # noqa: BLE001 - any failure is counted
                result.errors += 1
                result.first_error = result.first_error or repr(e)[:200]
                await asyncio.sleep(0.05)
                continue
            result.latencies.append(time.perf_counter() - t0)
            result.done += 1

    await asyncio.gather(*(worker(w) for w in workers))
    result.seconds = time.perf_counter() - start
    return result


async def noop_probe(
    port: int,
    ctx: ssl.SSLContext,
    user: str,
    password: str,
    stop: asyncio.Event,
    interval: float = 0.02,
) -> list[float]:
    """Logged in, send NOOP every ``interval`` s until ``stop``; latencies."""
    s = await Session.open(port, ctx)
    await s.login(user, password)
    latencies = []
    while not stop.is_set():
        t0 = time.perf_counter()
        await s.cmd(b"NOOP")
        latencies.append(time.perf_counter() - t0)
        await asyncio.sleep(interval)
    await s.quit()
    return latencies


async def hold_idle(
    port: int,
    ctx: ssl.SSLContext,
    users: list[tuple[str, str]],
    parallel: int = 50,
) -> tuple[list[Session], int]:
    """Open and log in one session per user (``parallel`` at a time);
    returns the open sessions and the number of failures."""
    sessions: list[Session] = []
    failures = 0
    sem = asyncio.Semaphore(parallel)

    async def one(user: str, password: str) -> None:
        nonlocal failures
        async with sem:
            try:
                s = await Session.open(port, ctx)
                await s.login(user, password)
                sessions.append(s)
            except (OSError, ssl.SSLError, ProtocolError, asyncio.IncompleteReadError):
                failures += 1

    await asyncio.gather(*(one(u, p) for u, p in users))
    return sessions, failures


def bulk_retr(
    port: int,
    cafile: str,
    user: str,
    password: str,
    number: int = 1,
    sample: Callable[[], None] | None = None,
) -> tuple[int, float]:
    """RETR one big message over a blocking TLS socket; (octets, seconds of
    the RETR alone). ``sample`` is called every few MB while receiving."""
    ctx = client_context(cafile)
    raw = socket.create_connection((HOST, port))
    sock = ctx.wrap_socket(raw, server_hostname=SNI)
    f = sock.makefile("rb", buffering=1 << 20)

    def ok() -> bytes:
        line = f.readline()
        if not line.startswith(b"+OK"):
            raise ProtocolError(line[:200].decode(errors="replace"))
        return line

    ok()
    for command in (b"USER " + user.encode(), b"PASS " + password.encode()):
        sock.sendall(command + b"\r\n")
        ok()
    t0 = time.perf_counter()
    sock.sendall(b"RETR %d\r\n" % number)
    total = len(ok())
    tail = b""
    next_sample = 4 << 20
    while not tail.endswith(b"\r\n.\r\n"):
        chunk = f.read1(1 << 20)
        if not chunk:
            raise ProtocolError("EOF during RETR")
        total += len(chunk)
        tail = (tail + chunk[-5:])[-5:]
        if sample is not None and total >= next_sample:
            sample()
            next_sample += 4 << 20
    elapsed = time.perf_counter() - t0
    sock.sendall(b"QUIT\r\n")
    try:
        sock.recv(4096)
    except OSError:
        pass
    sock.close()
    return total, elapsed
