"""Soak zpop under mixed load while killing its processes; prove no mail was
lost and no deletion went wrong.

    python bench/soak.py --minutes 10 [--seed S] [--keep] [--json FILE]

Run by hand, not in CI. For ``--minutes`` it runs zpop (``[server] workers
= 2``, started by ``zpop.test.harness.ZpopServer`` on 127.0.0.1) under:

- POP3S clients (poplib): log in, STAT/UIDL, RETR a few messages, DELE some,
  mostly QUIT, sometimes drop the connection or RSET first. Every session is
  recorded: which deletions got ``+OK``, and whether its QUIT got ``+OK``,
  ``-ERR``, no reply, or was never sent.
- submission clients (smtplib, 587 STARTTLS + AUTH and 465 implicit TLS)
  sending to hosted recipients and to ``remote.test``, which ``[routes]``
  sends to an SMTP sink this script runs in-process (asyncio, in a thread);
- MX clients (smtplib to the mx port, no AUTH, STARTTLS half the time)
  delivering to hosted recipients.

Every message carries a unique token (Subject, ``X-Soak-Token``,
Message-ID, body); a client records it only once ``sendmail`` returned, that
is after the ``250`` to DATA. Meanwhile, at random moments, it SIGKILLs the
worker process (a child of the main twistd process, found through /proc) or
the main process; after a main kill it waits until no process of this
server is left (workers must exit with the main one) and starts the server
again on the same ports. Clients count connection errors as client-seen
errors.

At the end it stops the server cleanly, starts it again, waits (bounded)
for the outbound queue to drain to the sink, then checks, from the SQLite
database (read-only) and a final POP session per account, against the
clients' records:

- every message that got ``250`` is stored exactly once for each hosted
  recipient (plus one copy in the submitter's Sent folder), or reached the
  sink for each remote recipient (a duplicate at the sink is fine, a loss is
  not);
- every deletion whose session got ``+OK`` to QUIT is applied (gone from
  POP's offer; in Trash for ``deletion delete`` accounts, still in the Inbox
  for ``keep``), and no other deletion is (sessions that never sent QUIT, or
  got ``-ERR`` to it, change nothing; a QUIT without reply may go either
  way).

It prints the load held, the faults injected, the sessions, the client-seen
errors, the server log's tracebacks and the verdict, and exits 1 if any
message was lost or duplicated in the store or any deletion was wrong.
``[outbound] lease`` is set to 15 s (renewed every lease/3 while a delivery
runs) so a delivery interrupted by a main kill is retried within the drain
wait. Everything runs on 127.0.0.1; the server, its workers, the sink and
the temp directory are removed at the end (``--keep`` keeps the directory).
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import json
import os
import poplib
import random
import re
import shutil
import signal
import smtplib
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH_DIR)
sys.path.insert(1, os.path.dirname(BENCH_DIR))

import proc  # noqa: E402

from zpop.store import DATABASE_NAME  # noqa: E402
from zpop.test.harness import HOSTNAME, ServerError, ZpopServer  # noqa: E402

DOMAIN = "soak.test"
REMOTE = "remote.test"
POP_SNI = f"pop.{HOSTNAME}"
SMTP_SNI = f"smtp.{HOSTNAME}"
HOST = "127.0.0.1"
#: Client socket timeout, seconds: a client stuck on a dead server gives up.
TIMEOUT = 20.0
#: The outbound lease in the soak config (the default is 300 s).
LEASE = 15.0
#: Longest wait for a worker to exit after the main process was killed.
ORPHAN_WAIT = 20.0
TOKEN_HEADER = re.compile(rb"X-Soak-Token: ([A-Za-z0-9-]+)")
TOKEN_SUBJECT = re.compile(r"soak ([A-Za-z0-9-]+)")


def password(address: str) -> str:
    # One per account, never containing its local part (the password rule,
    # zpop.accounts.password_rules): the local part's UTF-8 in hex.
    return "soak-pw-" + address.partition("@")[0].encode().hex()


# -- records -------------------------------------------------------------------


@dataclass
class Accepted:
    """A message that got 250 after DATA, and for which recipients."""

    token: str
    kind: str
    local: list[str]
    remote: list[str]
    sender: str | None


@dataclass
class PopSession:
    """What one POP session did, as its client saw it.

    ``outcome``: ``acked`` (+OK to QUIT), ``quit_err`` (-ERR to QUIT),
    ``no_reply`` (QUIT sent, no reply), ``no_quit`` (ended before QUIT:
    an error), ``dropped`` (the client closed without QUIT on purpose),
    ``login`` (never logged in).
    """

    account: str
    deleted: set[str] = field(default_factory=set)
    retrieved: int = 0
    outcome: str = "no_quit"


class Ledger:
    """Every client's records, shared by the client threads."""

    def __init__(self, seed: int) -> None:
        self.lock = threading.Lock()
        self.prefix = f"s{seed}"
        self.counter = 0
        self.accepted: list[Accepted] = []
        #: tokens sent whose 250 never came (or was not seen)
        self.unacked: dict[str, list[str]] = {}
        self.pop: list[PopSession] = []
        self.errors: Counter[str] = Counter()
        #: the first few texts of each kind of error, for the report
        self.examples: dict[str, list[str]] = {}
        self.sessions: Counter[str] = Counter()
        self.sessions_ok: Counter[str] = Counter()
        self.refused_rcpts = 0

    def token(self, kind: str) -> str:
        with self.lock:
            self.counter += 1
            return f"{self.prefix}-{kind[0]}{self.counter:07d}"

    def error(self, kind: str, exc: BaseException | str) -> None:
        if isinstance(exc, BaseException):
            name = type(exc).__name__
            if isinstance(exc, smtplib.SMTPResponseException):
                name = f"{name} {exc.smtp_code}"
            elif closed_by_server(exc):
                name = "connection closed (EOF)"
            elif isinstance(exc, poplib.error_proto):
                words = pop_text(exc).split()
                code = next((w for w in words[1:3] if w.startswith("[")), "")
                name = f"-ERR {code}".strip()
        else:
            name = exc
        key = f"{kind}: {name}"
        text = pop_text(exc) if isinstance(exc, poplib.error_proto) else str(exc)
        text = text[:160]
        with self.lock:
            self.errors[key] += 1
            seen = self.examples.setdefault(key, [])
            if len(seen) < 3 and text not in seen:
                seen.append(text)


def pop_text(exc: poplib.error_proto) -> str:
    """The server's reply (or poplib's own text) an error_proto carries."""
    arg = exc.args[0] if exc.args else ""
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


def closed_by_server(exc: BaseException) -> bool:
    """poplib raises error_proto("-ERR EOF") itself when the connection
    closes: no reply, not a -ERR from the server."""
    return isinstance(exc, poplib.error_proto) and exc.args[:1] == ("-ERR EOF",)


# -- the SMTP sink -------------------------------------------------------------


class Sink:
    """An SMTP server on 127.0.0.1 (asyncio, its own thread) that accepts
    everything and records (token, recipient) for every message it took."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: Counter[tuple[str, str]] = Counter()
        self.messages = 0
        self.untokened = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="sink", daemon=True)
        self._ready = threading.Event()

    def start(self) -> int:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("SMTP sink did not start")
        return self.port

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def pairs(self) -> set[tuple[str, str]]:
        with self.lock:
            return set(self.received)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._session, HOST, 0)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            self._loop.run_until_complete(server.wait_closed())
            self._loop.close()

    async def _session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        def send(text: str) -> None:
            writer.write(text.encode() + b"\r\n")

        rcpts: list[str] = []
        try:
            send("220 sink.test ESMTP soak sink")
            while True:
                line = await asyncio.wait_for(reader.readline(), 300)
                if not line:
                    break
                verb = line[:4].upper()
                if verb == b"EHLO":
                    send("250-sink.test\r\n250-8BITMIME\r\n250-PIPELINING\r\n250 SIZE")
                elif verb == b"HELO":
                    send("250 sink.test")
                elif verb == b"MAIL":
                    rcpts = []
                    send("250 2.1.0 ok")
                elif verb == b"RCPT":
                    m = re.search(rb"<([^>]*)>", line)
                    rcpts.append((m.group(1) if m else b"").decode().lower())
                    send("250 2.1.5 ok")
                elif verb == b"DATA":
                    if not rcpts:
                        send("503 5.5.1 no recipients")
                        continue
                    send("354 go ahead")
                    await writer.drain()
                    lines = []
                    while True:
                        data = await asyncio.wait_for(reader.readline(), 300)
                        if not data:
                            return  # cut off: nothing recorded, no 250
                        if data in (b".\r\n", b".\n"):
                            break
                        lines.append(data[1:] if data.startswith(b".") else data)
                    m = TOKEN_HEADER.search(b"".join(lines))
                    with self.lock:
                        self.messages += 1
                        if m is None:
                            self.untokened += 1
                        else:
                            for rcpt in rcpts:
                                self.received[(m.group(1).decode(), rcpt)] += 1
                    rcpts = []
                    send("250 2.0.0 queued")
                elif verb == b"RSET":
                    rcpts = []
                    send("250 2.0.0 ok")
                elif verb == b"NOOP":
                    send("250 2.0.0 ok")
                elif verb == b"QUIT":
                    send("221 2.0.0 bye")
                    break
                else:
                    send("502 5.5.2 not implemented")
                await writer.drain()
        except (TimeoutError, OSError):
            pass
        finally:
            writer.close()


# -- clients -------------------------------------------------------------------


class POP3S(poplib.POP3_SSL):
    """poplib over TLS to 127.0.0.1, sending a host name as SNI."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        super().__init__(HOST, port, context=context, timeout=TIMEOUT)

    def _create_socket(self, timeout: float) -> socket.socket:
        sock = socket.create_connection((HOST, self.port), timeout)
        return self.context.wrap_socket(sock, server_hostname=POP_SNI)


class SMTPS(smtplib.SMTP_SSL):
    """smtplib over implicit TLS to 127.0.0.1, sending a host name as SNI."""

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = socket.create_connection((host, port), timeout)
        return self.context.wrap_socket(sock, server_hostname=SMTP_SNI)


def smtp_starttls(port: int, context: ssl.SSLContext | None) -> smtplib.SMTP:
    """smtplib to 127.0.0.1:port, then STARTTLS naming SMTP_SNI if a context
    is given."""
    conn = smtplib.SMTP(HOST, port, timeout=TIMEOUT)
    if context is not None:
        conn._host = SMTP_SNI  # the name starttls() verifies and sends as SNI
        conn.starttls(context=context)
    return conn


def make_message(
    rng: random.Random, token: str, sender: str, rcpts: list[str]
) -> bytes:
    """A CRLF message of 0.3-6 KB carrying ``token``, with a line starting
    with a dot (dot-stuffing on the way)."""
    head = (
        f"From: {sender}\r\nTo: {', '.join(rcpts)}\r\nSubject: soak {token}\r\n"
        f"Date: {email.utils.formatdate()}\r\n"
        f"Message-ID: <{token}@soak.test>\r\nX-Soak-Token: {token}\r\n\r\n"
    )
    filler = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz     ") for _ in range(60))
    lines = [f"token {token}", ".a line starting with a dot", "."]
    lines += [filler] * rng.randint(2, 100)
    return (head + "\r\n".join(lines) + "\r\n").encode()


class Load:
    """The client threads and the parameters they share."""

    def __init__(
        self,
        args: argparse.Namespace,
        ledger: Ledger,
        ports: dict[str, int],
        context: ssl.SSLContext,
        pop_accounts: list[str],
        senders: list[str],
    ) -> None:
        self.args = args
        self.ledger = ledger
        self.ports = ports
        self.ctx = context
        self.pop_accounts = pop_accounts
        self.senders = senders
        self.remotes = [f"x{i}@{REMOTE}" for i in range(4)]
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self, seed: int) -> None:
        n = self.args.pop_clients
        for i in range(n):
            mine = self.pop_accounts[i::n]
            self._spawn(f"pop{i}", self.pop_loop, random.Random(f"{seed}-pop{i}"), mine)
        for i in range(self.args.submit_clients):
            rng = random.Random(f"{seed}-sub{i}")
            self._spawn(f"submit{i}", self.submit_loop, rng)
        for i in range(self.args.mx_clients):
            self._spawn(f"mx{i}", self.mx_loop, random.Random(f"{seed}-mx{i}"))

    def join(self, timeout: float) -> list[str]:
        """Stop the clients; the names of those still running at ``timeout``."""
        self.stop.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in self.threads if t.is_alive()]

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        t = threading.Thread(target=self._guard, args=(target, *args), name=name)
        t.daemon = True
        self.threads.append(t)
        t.start()

    def _guard(self, target: Callable[..., None], *args: Any) -> None:
        try:
            target(*args)
        except Exception:
            self.ledger.error("client bug", traceback.format_exc().splitlines()[-1])
            traceback.print_exc()

    def _pause(self, rng: random.Random, failed: bool) -> None:
        self.stop.wait(
            rng.uniform(0.2, 0.6) if failed else rng.uniform(0, self.args.think)
        )

    # POP3 ---------------------------------------------------------------------

    def pop_loop(self, rng: random.Random, accounts: list[str]) -> None:
        i = 0
        while not self.stop.is_set():
            account = accounts[i % len(accounts)]
            i += 1
            ok = self.pop_session(rng, account)
            self._pause(rng, not ok)

    def pop_session(self, rng: random.Random, account: str) -> bool:
        led = self.ledger
        rec = PopSession(account)
        with led.lock:
            led.pop.append(rec)
            led.sessions["pop3"] += 1
        conn: POP3S | None = None
        quit_sent = False
        try:
            rec.outcome = "login"
            conn = POP3S(self.ports["pop3s"], self.ctx)
            conn.user(account)
            conn.pass_(password(account))
            rec.outcome = "no_quit"
            count, _ = conn.stat()
            if count and rng.random() < 0.5:
                conn.uidl()
            picks = rng.sample(range(1, count + 1), min(count, rng.randint(0, 6)))
            tokens: dict[int, str] = {}
            for n in picks:
                lines = conn.retr(n)[1]
                rec.retrieved += 1
                m = TOKEN_HEADER.search(b"\n".join(lines[:40]))
                if m:
                    tokens[n] = m.group(1).decode()
            for n, token in tokens.items():
                if rng.random() < 0.7:
                    conn.dele(n)
                    rec.deleted.add(token)
            roll = rng.random()
            if roll < 0.04:
                conn.rset()
                rec.deleted.clear()
            elif roll < 0.12:
                rec.outcome = "dropped"
                conn.sock.close()
                conn = None
                return True
            quit_sent = True
            try:
                conn._shortcmd("QUIT")
            except poplib.error_proto as e:
                rec.outcome = "no_reply" if closed_by_server(e) else "quit_err"
                led.error("pop3 QUIT", e)
                return False
            rec.outcome = "acked"
            with led.lock:
                led.sessions_ok["pop3"] += 1
            return True
        except (OSError, EOFError, poplib.error_proto, ValueError) as e:
            if quit_sent:
                rec.outcome = "no_reply"
            led.error("pop3", e)
            return False
        finally:
            if conn is not None:
                try:
                    conn.close()
                except OSError:
                    pass

    # SMTP ---------------------------------------------------------------------

    def _send(
        self,
        kind: str,
        conn: smtplib.SMTP,
        rng: random.Random,
        sender: str,
        rcpts: list[str],
        submitter: str | None,
    ) -> None:
        led = self.ledger
        token = led.token(kind)
        with led.lock:
            led.unacked[token] = list(rcpts)
        data = make_message(rng, token, sender, rcpts)
        try:
            refused = conn.sendmail(sender, rcpts, data)
        except smtplib.SMTPRecipientsRefused as e:
            with led.lock:
                led.refused_rcpts += len(e.recipients)
            return
        ok = [r for r in rcpts if r not in refused]
        record = Accepted(
            token,
            kind,
            [r for r in ok if r.endswith("@" + DOMAIN)],
            [r for r in ok if r.endswith("@" + REMOTE)],
            submitter,
        )
        with led.lock:
            del led.unacked[token]
            led.accepted.append(record)
            led.refused_rcpts += len(refused)

    def _recipients(self, rng: random.Random, remote: bool) -> list[str]:
        pool = self.pop_accounts + (self.remotes if remote else [])
        rcpts = rng.sample(pool, rng.randint(1, 3))
        if rng.random() < 0.05:
            rcpts.append(f"nobody@{DOMAIN}")  # 550 5.1.1, the others go on
        return rcpts

    def submit_loop(self, rng: random.Random) -> None:
        while not self.stop.is_set():
            implicit = rng.random() < 0.4
            kind = "smtps" if implicit else "submission"
            with self.ledger.lock:
                self.ledger.sessions[kind] += 1
            ok = False
            conn: smtplib.SMTP | None = None
            try:
                if implicit:
                    conn = SMTPS(
                        HOST, self.ports["smtps"], context=self.ctx, timeout=TIMEOUT
                    )
                else:
                    conn = smtp_starttls(self.ports["submission"], self.ctx)
                sender = rng.choice(self.senders)
                conn.login(sender, password(sender))
                for _ in range(rng.randint(1, 3)):
                    rcpts = self._recipients(rng, remote=True)
                    self._send(kind, conn, rng, sender, rcpts, sender)
                conn.quit()
                conn = None
                ok = True
                with self.ledger.lock:
                    self.ledger.sessions_ok[kind] += 1
            except (OSError, smtplib.SMTPException) as e:
                self.ledger.error(kind, e)
            finally:
                if conn is not None:
                    conn.close()
            self._pause(rng, not ok)

    def mx_loop(self, rng: random.Random) -> None:
        while not self.stop.is_set():
            with self.ledger.lock:
                self.ledger.sessions["mx"] += 1
            ok = False
            conn: smtplib.SMTP | None = None
            try:
                tls = self.ctx if rng.random() < 0.5 else None
                conn = smtp_starttls(self.ports["mx"], tls)
                for _ in range(rng.randint(1, 3)):
                    sender = f"ext{rng.randint(0, 99)}@mx-sender.test"
                    rcpts = self._recipients(rng, remote=False)
                    self._send("mx", conn, rng, sender, rcpts, None)
                conn.quit()
                conn = None
                ok = True
                with self.ledger.lock:
                    self.ledger.sessions_ok["mx"] += 1
            except (OSError, smtplib.SMTPException) as e:
                self.ledger.error("mx", e)
            finally:
                if conn is not None:
                    conn.close()
            self._pause(rng, not ok)


# -- processes and faults ------------------------------------------------------


def cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def worker_pids(main_pid: int, data_dir: str) -> list[int]:
    """The zpop worker processes under the main twistd process: its
    descendants whose command line names the data directory (whatever the
    worker module is called: ``zpop.workers``, ``zpop.cluster.worker``)."""
    return [
        pid
        for pid in proc.tree_pids(main_pid)
        if pid != main_pid and data_dir.encode() in cmdline(pid)
    ]


def server_pids(marker: str) -> list[int]:
    """Every live process (not a zombie) whose command line names ``marker``
    (this run's temp directory): the server's main process and workers."""
    found = []
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        if marker.encode() in cmdline(int(name)):
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            if stat[stat.rindex(b")") + 2 :][:1] != b"Z":
                found.append(int(name))
    return found


@dataclass
class Faults:
    worker_kills: int = 0
    main_kills: int = 0
    #: seconds from a worker kill until the main process ran a new worker
    respawn: list[float] = field(default_factory=list)
    #: seconds from a main kill until no worker was left
    orphan_exit: list[float] = field(default_factory=list)
    #: seconds from a main kill until the restarted server listened
    downtime: list[float] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)


def plan_faults(
    rng: random.Random, duration: float, gap: float
) -> list[tuple[float, str]]:
    """(seconds into the run, "worker" | "main"): as many of each kind,
    one per ``gap`` seconds on average, none in the first and last 10%."""
    n = max(2, int(duration // gap))
    kinds = (["worker", "main"] * n)[:n]
    rng.shuffle(kinds)
    start, end = duration * 0.1, duration * 0.9
    slot = (end - start) / n
    return [
        (start + slot * (i + rng.uniform(0.15, 0.85)), k) for i, k in enumerate(kinds)
    ]


class Operator:
    """Kills and restarts the server."""

    def __init__(self, server: ZpopServer, rng: random.Random) -> None:
        self.server = server
        self.rng = rng
        self.faults = Faults()
        self.t0 = time.monotonic()

    def note(self, text: str) -> None:
        line = f"[{time.monotonic() - self.t0:7.1f}s] {text}"
        self.faults.log.append(line)
        print(line, flush=True)

    @property
    def main_pid(self) -> int:
        assert self.server.process is not None
        return self.server.process.pid

    def kill_worker(self) -> None:
        deadline = time.monotonic() + 30
        workers = worker_pids(self.main_pid, self.server.data)
        while not workers and time.monotonic() < deadline:
            time.sleep(0.2)
            workers = worker_pids(self.main_pid, self.server.data)
        if not workers:
            self.faults.findings.append("no worker process running for 30 s")
            self.note("worker kill skipped: no worker running")
            return
        victim = self.rng.choice(workers)
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        self.faults.worker_kills += 1
        self.note(f"SIGKILL worker {victim}")
        while time.monotonic() < killed + 90:
            fresh = [
                p for p in worker_pids(self.main_pid, self.server.data) if p != victim
            ]
            if len(fresh) >= len(workers):
                self.faults.respawn.append(time.monotonic() - killed)
                self.note(
                    f"  worker respawned as {fresh} after "
                    f"{self.faults.respawn[-1]:.1f}s"
                )
                return
            time.sleep(0.1)
        self.faults.findings.append(f"worker {victim} not replaced within 90 s")

    def kill_main(self) -> None:
        workers = worker_pids(self.main_pid, self.server.data)
        main = self.main_pid
        killed = time.monotonic()
        self.server.kill()
        self.faults.main_kills += 1
        self.note(f"SIGKILL main {main} (workers {workers})")
        self.wait_gone(killed)
        self.faults.orphan_exit.append(time.monotonic() - killed)
        self.note(f"  no server process left after {self.faults.orphan_exit[-1]:.1f}s")
        time.sleep(self.rng.uniform(0, 2))
        self.start()
        self.faults.downtime.append(time.monotonic() - killed)
        self.note(
            f"  restarted (main {self.main_pid}) "
            f"{self.faults.downtime[-1]:.1f}s after the kill"
        )

    def wait_gone(self, since: float) -> None:
        """Wait until no process of this server runs; kill stragglers (a
        finding) after ORPHAN_WAIT seconds."""
        while True:
            left = server_pids(self.server.dir)
            if not left:
                return
            if time.monotonic() > since + ORPHAN_WAIT:
                self.faults.findings.append(
                    f"processes {left} still running {ORPHAN_WAIT:.0f}s after"
                    " the main process was killed; SIGKILLed"
                )
                for pid in left:
                    os.kill(pid, signal.SIGKILL)
                time.sleep(0.5)
                since = time.monotonic()
            time.sleep(0.1)

    def start(self) -> None:
        for attempt in range(4):
            try:
                self.server.start(timeout=90)
                return
            except ServerError as e:
                first = str(e).splitlines()[0]
                self.faults.findings.append(
                    f"start attempt {attempt + 1} failed: {first}"
                )
                self.note(f"  start failed: {first}")
                self.wait_gone(time.monotonic())
                time.sleep(2)
        raise RuntimeError("the server does not start again")

    def clean_restart(self) -> None:
        t = time.monotonic()
        status = self.server.stop(timeout=60)
        # twistd re-raises the SIGTERM it handled: -15 after a clean stop.
        clean = "Server Shut Down" in self.server.log_text(current=True)
        self.note(
            f"clean stop: exit status {status}"
            f" ({'shut down cleanly' if clean else 'NO clean shutdown logged'})"
            f" after {time.monotonic() - t:.1f}s"
        )
        if not clean:
            self.faults.findings.append("SIGTERM: no clean shutdown logged")
        self.wait_gone(time.monotonic())
        self.start()
        self.note(f"final start: main {self.main_pid}")

    def run(self, plan: list[tuple[float, str]], stop: threading.Event) -> None:
        for at, kind in plan:
            if stop.wait(max(0.0, self.t0 + at - time.monotonic())):
                return
            if kind == "worker":
                self.kill_worker()
            else:
                self.kill_main()


# -- verification --------------------------------------------------------------


@dataclass
class StoredCopy:
    folder: str
    pop_removed: bool


def read_store(db_path: str) -> dict[tuple[str, str], list[StoredCopy]]:
    """{(address, token): [copies]} for every message carrying a token,
    read from the database read-only."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute(
            "SELECT m.id, a.address, m.folder, m.pop_removed, m.subject"
            " FROM messages m JOIN accounts a ON a.id = m.account_id"
        ).fetchall()
        found: dict[tuple[str, str], list[StoredCopy]] = {}
        for mid, address, folder, removed, subject in rows:
            m = TOKEN_SUBJECT.search(subject or "")
            token = m.group(1) if m else None
            if token is None:
                chunk = conn.execute(
                    "SELECT data FROM body_chunks WHERE message_id = ? AND seq = 0",
                    (mid,),
                ).fetchone()
                hit = TOKEN_HEADER.search(chunk[0]) if chunk else None
                token = hit.group(1).decode() if hit else None
            if token is not None:
                found.setdefault((address, token), []).append(
                    StoredCopy(folder, bool(removed))
                )
        return found
    finally:
        conn.close()


def queue_pending(db_path: str) -> int:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(
            "SELECT count(*) FROM outbound_recipients WHERE state = 'queued'"
        ).fetchone()[0]
    finally:
        conn.close()


def queue_failed(db_path: str) -> int:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(
            "SELECT count(*) FROM outbound_recipients WHERE state = 'failed'"
        ).fetchone()[0]
    finally:
        conn.close()


def pop_offer(port: int, ctx: ssl.SSLContext, account: str) -> set[str]:
    """The tokens POP offers ``account`` now (TOP n 0 of each message)."""
    for attempt in range(10):
        try:
            conn = POP3S(port, ctx)
            conn.user(account)
            conn.pass_(password(account))
            count, _ = conn.stat()
            offered = set()
            for n in range(1, count + 1):
                m = TOKEN_HEADER.search(b"\n".join(conn.top(n, 0)[1]))
                if m:
                    offered.add(m.group(1).decode())
            conn.quit()
            return offered
        except (OSError, poplib.error_proto) as e:
            if attempt == 9:
                raise
            print(f"  final POP check of {account}: {e}; again", flush=True)
            time.sleep(2)
    raise AssertionError("unreachable")


@dataclass
class Verdict:
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    lost_remote: list[str] = field(default_factory=list)
    remote_duplicates: int = 0
    wrong_deletions: list[str] = field(default_factory=list)
    checked_local: int = 0
    checked_remote: int = 0
    checked_sent: int = 0
    checked_deletions: int = 0
    ambiguous_applied: int = 0
    ambiguous_kept: int = 0
    unacked_stored: int = 0
    #: sessions whose QUIT got no reply: deletions "applied" or "kept"
    ambiguous_sessions: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not (
            self.lost or self.duplicated or self.lost_remote or self.wrong_deletions
        )


def verify(
    ledger: Ledger,
    store: dict[tuple[str, str], list[StoredCopy]],
    sink: Counter[tuple[str, str]],
    offers: dict[str, set[str]],
    delete_mode: set[str],
) -> Verdict:
    v = Verdict()
    for acc in ledger.accepted:
        for rcpt in acc.local:
            v.checked_local += 1
            copies = [c for c in store.get((rcpt, acc.token), []) if c.folder != "Sent"]
            if not copies:
                v.lost.append(f"{acc.kind} {acc.token} -> {rcpt}: not stored")
            elif len(copies) > 1:
                v.duplicated.append(
                    f"{acc.kind} {acc.token} -> {rcpt}: {len(copies)} copies"
                )
        for rcpt in acc.remote:
            v.checked_remote += 1
            got = sink.get((acc.token, rcpt), 0)
            if not got:
                v.lost_remote.append(
                    f"{acc.kind} {acc.token} -> {rcpt}: not at the sink"
                )
            elif got > 1:
                v.remote_duplicates += 1
        if acc.sender is not None:
            v.checked_sent += 1
            sent = [
                c for c in store.get((acc.sender, acc.token), []) if c.folder == "Sent"
            ]
            if not sent:
                v.lost.append(f"{acc.kind} {acc.token}: no Sent copy for {acc.sender}")
            elif len(sent) > 1:
                v.duplicated.append(f"{acc.kind} {acc.token}: {len(sent)} Sent copies")
    for token, rcpts in ledger.unacked.items():
        for rcpt in rcpts:
            copies = [c for c in store.get((rcpt, token), []) if c.folder != "Sent"]
            v.unacked_stored += bool(copies)
            if len(copies) > 1:
                v.duplicated.append(
                    f"unacknowledged {token} -> {rcpt}: {len(copies)} copies"
                )
    acked: set[tuple[str, str]] = set()
    maybe: set[tuple[str, str]] = set()
    for s in ledger.pop:
        if s.outcome == "acked":
            acked.update((s.account, t) for t in s.deleted)
        elif s.outcome == "no_reply":
            maybe.update((s.account, t) for t in s.deleted)
    for (account, token), copies in store.items():
        if account not in offers:
            continue
        mine = [c for c in copies if c.folder != "Sent"]
        if len(mine) != 1:
            continue  # counted above as lost or duplicated, or not ours
        copy = mine[0]
        v.checked_deletions += 1
        offered = token in offers[account]
        key = (account, token)
        where = (
            f"{account} {token} ({copy.folder}, pop_removed={int(copy.pop_removed)})"
        )
        removed_folder = "Trash" if account in delete_mode else "Inbox"
        if key in acked and offered:
            v.wrong_deletions.append(
                f"{where}: deletion acknowledged but still offered"
            )
        elif key not in acked and key not in maybe and not offered:
            v.wrong_deletions.append(
                f"{where}: no acknowledged deletion but not offered"
            )
        elif not offered and (copy.folder != removed_folder or not copy.pop_removed):
            v.wrong_deletions.append(f"{where}: deleted but stored in the wrong place")
        elif offered and (copy.folder != "Inbox" or copy.pop_removed):
            v.wrong_deletions.append(f"{where}: offered but stored as removed")
        elif key in maybe and key not in acked:
            if offered:
                v.ambiguous_kept += 1
            else:
                v.ambiguous_applied += 1
    # A QUIT without reply may go either way, but all or nothing: its
    # messages (those no other session deleted) are all gone or all there.
    shared = Counter(
        (s.account, t) for s in ledger.pop if s.outcome != "acked" for t in s.deleted
    )
    for s in ledger.pop:
        if s.outcome != "no_reply" or s.account not in offers:
            continue
        gone = {
            t not in offers[s.account]
            for t in s.deleted
            if (s.account, t) not in acked
            and shared[(s.account, t)] == 1
            and (s.account, t) in store
        }
        if len(gone) > 1:
            v.wrong_deletions.append(
                f"{s.account}: a QUIT without reply applied only some of"
                f" {sorted(s.deleted)}"
            )
        elif gone:
            v.ambiguous_sessions["applied" if True in gone else "kept"] += 1
    for account, tokens in offers.items():
        for token in tokens:
            if (account, token) not in store:
                v.wrong_deletions.append(
                    f"{account} {token}: offered, not in the store"
                )
    return v


def server_log_problems(text: str) -> list[str]:
    """Critical and error events in the server's log, each with its
    indented continuation lines (the traceback), and any stray traceback."""
    problems: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if any(k in line for k in ("#critical]", "#error]", "Unhandled", "Traceback")):
            block = [line]
            while i + 1 < len(lines) and lines[i + 1][:1] in ("\t", " "):
                i += 1
                block.append(lines[i])
            problems.append("\n".join(block))
        i += 1
    return problems


# -- main ----------------------------------------------------------------------


def rate(n: float, seconds: float) -> str:
    return f"{n / seconds:.2f}/s" if seconds > 0 else "-"


def setup_accounts(
    server: ZpopServer,
    pop_accounts: list[str],
    senders: list[str],
    delete_mode: set[str],
) -> None:
    """Domain and accounts through the real CLI (zadmin_batch: one process)."""
    prefix = ["--config", server.config_path, "--data", server.data]
    commands: list[dict[str, object]] = [{"argv": [*prefix, "domain", "add", DOMAIN]}]
    for address in pop_accounts + senders:
        commands.append(
            {
                "argv": [
                    *prefix,
                    "account",
                    "add",
                    address,
                    "--plan",
                    "paid",
                    "--password-stdin",
                ],
                "stdin": password(address) + "\n",
            }
        )
    for address in pop_accounts:
        commands.append({"argv": [*prefix, "pop", "enable", address, "--mode", "all"]})
        if address in delete_mode:
            commands.append({"argv": [*prefix, "pop", "deletion", address, "delete"]})
    path = os.path.join(server.dir, "setup.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(commands, f)
    env = {k: v for k, v in os.environ.items() if k != "ZPOP_DATA"}
    result = subprocess.run(
        [sys.executable, os.path.join(BENCH_DIR, "zadmin_batch.py"), path],
        capture_output=True,
        cwd=server.dir,
        env=env,
        timeout=300,
    )
    if result.returncode:
        raise RuntimeError(f"account set-up failed: {result.stderr.decode()}")


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--pop-clients", type=int, default=4)
    parser.add_argument("--pop-accounts", type=int, default=12)
    parser.add_argument("--submit-clients", type=int, default=2)
    parser.add_argument("--mx-clients", type=int, default=2)
    parser.add_argument(
        "--think",
        type=float,
        default=0.2,
        help="longest pause between a client's sessions, s",
    )
    parser.add_argument(
        "--fault-gap", type=float, default=30.0, help="mean seconds between faults"
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=4 * LEASE + 90,
        help="longest wait for the outbound queue at the end, s",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp directory")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(list(argv) if argv is not None else None)
    seed = (
        args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    )
    rng = random.Random(seed)
    duration = args.minutes * 60
    print(f"soak: {args.minutes:g} min, seed {seed}", flush=True)

    tmp = tempfile.mkdtemp(prefix="zpop-soak-")
    sink = Sink()
    server: ZpopServer | None = None
    load: Load | None = None
    ok = False
    try:
        sink_port = sink.start()
        settings = {
            "server": {"workers": "2"},
            "outbound": {
                "lease": f"{LEASE:g}",
                "scan_interval": "1",
                "retry_min": "5",
                "retry_max": "30",
            },
            "routes": {REMOTE: f"{HOST}:{sink_port}"},
            "auth": {"max_connections_per_client": "1000"},
        }
        server = ZpopServer(tmp, settings=settings, listeners={"pop3": ""})
        pop_accounts = [f"p{i}@{DOMAIN}" for i in range(args.pop_accounts)]
        senders = [f"s{i}@{DOMAIN}" for i in range(3)]
        delete_mode = set(pop_accounts[1::2])
        result = server.cli("init")
        if result.returncode:
            raise RuntimeError(f"zpop init: {result.stderr.decode()}")
        setup_accounts(server, pop_accounts, senders, delete_mode)
        op = Operator(server, rng)
        op.start()
        # Every later start listens on the same ports.
        ports = dict(server.ports)
        for name, port in ports.items():
            server.listeners[name] = f"tcp:{port}:interface={HOST}"
        first = worker_pids(op.main_pid, server.data)
        op.note(
            f"server up: main {op.main_pid}, workers {first},"
            f" ports {ports}, sink {sink_port}"
        )
        ledger = Ledger(seed)
        load = Load(args, ledger, ports, server.ssl_context(), pop_accounts, senders)
        plan = plan_faults(rng, duration, args.fault_gap)
        t_load = time.monotonic()
        op.t0 = t_load
        load.start(seed)
        stop = threading.Event()
        timer = threading.Timer(duration, stop.set)
        timer.start()
        op.run(plan, stop)
        stop.wait()
        stuck = load.join(3 * TIMEOUT)
        held = time.monotonic() - t_load
        op.note(
            f"load stopped after {held:.0f}s" + (f"; stuck: {stuck}" if stuck else "")
        )

        op.clean_restart()
        db = os.path.join(server.data, DATABASE_NAME)
        wanted = {(a.token, r) for a in ledger.accepted for r in a.remote}
        t_drain = time.monotonic()
        while True:
            pending = queue_pending(db)
            missing = len(wanted - sink.pairs())
            if (not pending and not missing) or time.monotonic() > t_drain + args.drain:
                break
            time.sleep(1)
        drained = time.monotonic() - t_drain
        op.note(
            f"outbound drain: {pending} queued, {missing} not at the sink,"
            f" after {drained:.0f}s"
        )
        store = read_store(db)
        offers = {a: pop_offer(ports["pop3s"], load.ctx, a) for a in pop_accounts}
        with sink.lock:
            received = Counter(sink.received)
        verdict = verify(ledger, store, received, offers, delete_mode)
        failed_rcpts = queue_failed(db)
        problems = server_log_problems(server.log_text())
        ok = verdict.ok
        figures = report(
            args,
            seed,
            held,
            ledger,
            op.faults,
            verdict,
            sink,
            drained,
            pending,
            failed_rcpts,
            problems,
            stuck,
        )
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(figures, f, indent=2)
        return 0 if ok else 1
    finally:
        if load is not None:
            load.join(3 * TIMEOUT)
        if server is not None:
            try:
                server.stop(timeout=30)
            except ServerError:
                server.kill()
            left = server_pids(tmp)
            if left:
                print(f"finding: processes {left} left after the final stop; killed")
            for pid in left:
                os.kill(pid, signal.SIGKILL)
        sink.stop()
        if args.keep or not ok:
            print(f"kept {tmp} (server log: {tmp}/twistd.log)")
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def report(
    args: argparse.Namespace,
    seed: int,
    held: float,
    led: Ledger,
    faults: Faults,
    v: Verdict,
    sink: Sink,
    drained: float,
    pending: int,
    failed_rcpts: int,
    problems: list[str],
    stuck: list[str],
) -> dict[str, Any]:
    outcomes = Counter(s.outcome for s in led.pop)
    retrieved = sum(s.retrieved for s in led.pop)
    acked_dele = sum(len(s.deleted) for s in led.pop if s.outcome == "acked")
    by_kind = Counter(a.kind for a in led.accepted)
    rcpts = Counter()
    for a in led.accepted:
        rcpts[a.kind] += len(a.local) + len(a.remote)

    def mean(xs: list[float]) -> str:
        return f"{sum(xs) / len(xs):.1f}s (max {max(xs):.1f}s)" if xs else "-"

    print("\n===== soak result =====")
    print(
        f"seed {seed}; load held {held:.0f}s; clients: pop {args.pop_clients}, "
        f"submission {args.submit_clients}, mx {args.mx_clients}"
    )
    print("load:")
    print(
        f"  pop3s: {led.sessions['pop3']} sessions"
        f" ({rate(led.sessions['pop3'], held)}),"
        f" {led.sessions_ok['pop3']} ended with +OK to QUIT;"
        f" {retrieved} RETR ({rate(retrieved, held)}),"
        f" {acked_dele} deletions acknowledged ({rate(acked_dele, held)})"
    )
    for kind in ("submission", "smtps", "mx"):
        print(
            f"  {kind}: {led.sessions[kind]} sessions"
            f" ({rate(led.sessions[kind], held)}),"
            f" {led.sessions_ok[kind]} clean; {by_kind[kind]} messages accepted"
            f" ({rate(by_kind[kind], held)}), {rcpts[kind]} recipients"
        )
    print(
        f"  unacknowledged messages (sent, no 250 seen): {len(led.unacked)},"
        f" {v.unacked_stored} of their hosted copies stored anyway;"
        f" recipients refused: {led.refused_rcpts}"
    )
    print(
        f"faults: {faults.worker_kills} worker kills"
        f" (respawned in {mean(faults.respawn)}),"
        f" {faults.main_kills} main kills (workers gone in {mean(faults.orphan_exit)},"
        f" listening again in {mean(faults.downtime)})"
    )
    print(
        "pop sessions by outcome: "
        + ", ".join(f"{k} {n}" for k, n in sorted(outcomes.items()))
    )
    print(f"client-seen errors: {sum(led.errors.values())}")
    for name, n in led.errors.most_common():
        print(f"  {n:6d}  {name}")
        if not name.endswith("ConnectionRefusedError"):
            for text in led.examples.get(name, []):
                print(f"          e.g. {text}")
    print(
        f"sink: {sink.messages} messages received,"
        f" {v.remote_duplicates} (token, recipient) duplicates,"
        f" {sink.untokened} without a token; queue after {drained:.0f}s drain:"
        f" {pending} queued, {failed_rcpts} failed"
    )
    print(
        f"checked: {v.checked_local} hosted copies, {v.checked_sent} Sent copies,"
        f" {v.checked_remote} remote deliveries,"
        f" {v.checked_deletions} messages' POP state"
        f" (QUIT without reply: {v.ambiguous_applied} deletions applied,"
        f" {v.ambiguous_kept} not; sessions: {v.ambiguous_sessions['applied']}"
        f" all applied, {v.ambiguous_sessions['kept']} none)"
    )
    print(f"server log: {len(problems)} tracebacks/errors")
    for p in problems[:6]:
        lines = p.splitlines()
        shown = lines if len(lines) <= 8 else [*lines[:3], "\t...", *lines[-3:]]
        print("  | " + "\n  | ".join(shown))
    for f in faults.findings:
        print(f"finding: {f}")
    if stuck:
        print(f"clients stuck at the end: {stuck}")
    lost = len(v.lost) + len(v.lost_remote)
    print(
        f"VERDICT: messages lost: {lost}, duplicated in the store: {len(v.duplicated)},"
        f" wrong deletions: {len(v.wrong_deletions)} -> {'PASS' if v.ok else 'FAIL'}"
    )
    for line in (v.lost + v.lost_remote + v.duplicated + v.wrong_deletions)[:30]:
        print(f"  {line}")
    return {
        "seed": seed,
        "held_seconds": held,
        "clients": {
            "pop": args.pop_clients,
            "submission": args.submit_clients,
            "mx": args.mx_clients,
        },
        "sessions": dict(led.sessions),
        "sessions_ok": dict(led.sessions_ok),
        "pop_outcomes": dict(outcomes),
        "retrieved": retrieved,
        "deletions_acked": acked_dele,
        "accepted": dict(by_kind),
        "recipients": dict(rcpts),
        "unacked": len(led.unacked),
        "unacked_stored": v.unacked_stored,
        "faults": {
            "worker_kills": faults.worker_kills,
            "main_kills": faults.main_kills,
            "respawn": faults.respawn,
            "orphan_exit": faults.orphan_exit,
            "downtime": faults.downtime,
            "findings": faults.findings,
            "log": faults.log,
        },
        "errors": dict(led.errors),
        "error_examples": led.examples,
        "sink_messages": sink.messages,
        "remote_duplicates": v.remote_duplicates,
        "drain_seconds": drained,
        "queue_pending": pending,
        "queue_failed": failed_rcpts,
        "checked": {
            "local": v.checked_local,
            "sent": v.checked_sent,
            "remote": v.checked_remote,
            "deletions": v.checked_deletions,
            "ambiguous_applied": v.ambiguous_applied,
            "ambiguous_kept": v.ambiguous_kept,
            "ambiguous_sessions": dict(v.ambiguous_sessions),
        },
        "log_problems": problems,
        "lost": v.lost + v.lost_remote,
        "duplicated": v.duplicated,
        "wrong_deletions": v.wrong_deletions,
        "pass": v.ok,
    }


if __name__ == "__main__":
    sys.exit(main())
