"""IMAP rows, zpop beside Dovecot's imapd in the same run, same machine,
same mail (issue 19 item 8): IMAPS login+SELECT+LOGOUT sessions/s at
c=1/10/50; a 100,000-message INBOX's SELECT plus ``UID FETCH 1:* (UID FLAGS
RFC822.SIZE)``; FETCH BODY[] of a 20 MB message; APPEND of 10 KB messages;
idle IDLE sessions held and the server memory each.

    sudo .venv/bin/python bench/imapload.py [--big N] [--idle N] [--out FILE]

As root it installs dovecot-imapd. Both servers bind 127.0.0.1 only and
are stopped at the end. The client is asyncio (two processes for the load
rows) on the same two cores as the servers, for both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import ssl
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import servers  # noqa: E402

HOST = "127.0.0.1"
SNI = "pop.bench.test"
PASSWORD = "bench password 1"
ZPOP_PORT = 17993
DOVECOT_PORT = 18993
WINDOW = 10.0
LIMIT = 1 << 27

DOVECOT_IMAP_CONF = """\
# Private Dovecot instance for zpop's IMAP benchmark (imap only, loopback).
base_dir = {d}/run
state_dir = {d}/state
instance_name = zbench-imap
listen = 127.0.0.1
protocols = imap
log_path = {d}/dovecot.log
ssl = required
ssl_cert = <{certs.rsa_cert}
ssl_key = <{certs.rsa_key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_cache_size = 64M
auth_cache_ttl = 1 hour
mail_location = maildir:{d}/mail/%u/Maildir
mail_uid = {uid}
mail_gid = {gid}
first_valid_uid = 1
mail_fsync = optimized
mail_max_userip_connections = 100000
default_process_limit = 20000
default_client_limit = 40000
default_vsz_limit = 1G
passdb {{
  driver = passwd-file
  args = {d}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={d}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {port}
    ssl = yes
  }}
  service_count = 0
  process_min_avail = {cores}
  client_limit = 20000
}}
service imap {{
  service_count = 1000
  process_min_avail = {cores}
  process_limit = 20000
}}
service anvil {{
  client_limit = 40000
}}
service auth {{
  client_limit = 40000
}}
"""


def users(kind: str, count: int) -> list[str]:
    return [f"{kind}{i}@{servers.DOMAIN}" for i in range(count)]


# -- the mail ----------------------------------------------------------------


def build_corpus(work: str, big: int) -> dict[str, str]:
    root = os.path.join(work, "imap-corpus")
    marker = os.path.join(root, f"done-{big}")
    paths = {n: os.path.join(root, n) for n in ("big", "huge", "small")}
    if os.path.exists(marker):
        return paths
    shutil.rmtree(root, ignore_errors=True)
    messages = [
        b"From: a@example.org\nSubject: message %d\n\n" % i + b"x" * 900 + b"\n"
        for i in range(big)
    ]
    servers.write_maildir(paths["big"], messages)
    servers.write_maildir(paths["huge"], [servers.fast_message(1, 20 * 1024 * 1024)])
    servers.write_maildir(paths["small"], [b"Subject: hi\n\nhello\n"] * 3)
    open(marker, "w").close()
    return paths


# -- the servers ---------------------------------------------------------------


class ZpopImap:
    name = "zpop"

    def __init__(self, work: str, certs: servers.Certificates) -> None:
        self.dir = os.path.join(work, "zpop-imap")
        self.data = os.path.join(self.dir, "data")
        self.config = os.path.join(self.dir, "zpop.ini")
        self.certs = certs
        self.port = ZPOP_PORT
        self.proc: subprocess.Popen[bytes] | None = None

    def setup(self, corpus: dict[str, str], accounts: list[str], marker: str) -> None:
        done = os.path.join(self.dir, "setup")
        if os.path.exists(done) and open(done).read() == marker:
            return
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        with open(self.config, "w", encoding="utf-8") as f:
            f.write(
                f"[server]\nhostname = {servers.DOMAIN}\n\n"
                "[accounts]\nbcrypt_cost = 12\n\n[limits]\nmessage_size = 64M\n\n"
                "[auth]\nmax_connections_per_client = 30000\n"
                "max_connections = 30000\nimap_connections_per_client = 30000\n"
                "imap_sessions_per_account_client = 30000\n\n"
                f"[tls]\ncertificate = {self.certs.rsa_cert}\n"
                f"key = {self.certs.rsa_key}\n"
            )
        commands: list[dict[str, object]] = [
            {"argv": ["init"]},
            {"argv": ["domain", "add", servers.DOMAIN]},
        ]
        for user in accounts:
            commands.append(
                {
                    "argv": [
                        "account",
                        "add",
                        user,
                        "--plan",
                        "paid",
                        "--password-stdin",
                    ],
                    "stdin": PASSWORD + "\n",
                }
            )
        commands += [
            {"argv": ["import", f"big@{servers.DOMAIN}", corpus["big"]]},
            {"argv": ["import", f"huge@{servers.DOMAIN}", corpus["huge"]]},
        ]
        for user in accounts:
            if user.startswith("sess"):
                commands.append({"argv": ["import", user, corpus["small"]]})
        prefix = ["--config", self.config, "--data", self.data]
        for c in commands:
            c["argv"] = prefix + list(c["argv"])  # type: ignore[arg-type]
        batch = os.path.join(self.dir, "batch.json")
        with open(batch, "w", encoding="utf-8") as f:
            json.dump(commands, f)
        subprocess.run(
            [sys.executable, os.path.join(servers.BENCH_DIR, "zadmin_batch.py"), batch],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        with open(done, "w") as f:
            f.write(marker)

    def start(self) -> None:
        off = [
            f"--{n}="
            for n in (
                "pop3s",
                "pop3",
                "imap",
                "smtps",
                "submission",
                "mx",
                "web",
                "metrics",
            )
        ]
        log = open(os.path.join(self.dir, "twistd.log"), "ab")
        self.proc = subprocess.Popen(
            [
                os.path.join(os.path.dirname(sys.executable), "twistd"),
                "-n",
                "--pidfile=",
                "zpop",
                "--config",
                self.config,
                "--data",
                self.data,
                f"--imaps=tcp:{self.port}:interface=127.0.0.1",
                *off,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=servers.raise_nofile,
        )
        servers.wait_port(self.port, proc=self.proc)

    def rss(self) -> int:
        assert self.proc is not None
        return process_rss([self.proc.pid])

    def stop(self) -> None:
        servers.stop_process(self.proc)


class DovecotImap:
    name = "dovecot"

    def __init__(self, work: str, certs: servers.Certificates) -> None:
        self.dir = os.path.join(work, "dovecot-imap")
        self.conf = os.path.join(self.dir, "dovecot.conf")
        self.certs = certs
        self.port = DOVECOT_PORT
        self.proc: subprocess.Popen[bytes] | None = None

    def setup(self, corpus: dict[str, str], accounts: list[str], marker: str) -> None:
        uid, gid = servers.ensure_mail_user()
        done = os.path.join(self.dir, "setup")
        fresh = not (os.path.exists(done) and open(done).read() == marker)
        if fresh:
            shutil.rmtree(self.dir, ignore_errors=True)
        for sub in ("run", "state", "mail"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        with open(self.conf, "w", encoding="utf-8") as f:
            f.write(
                DOVECOT_IMAP_CONF.format(
                    d=self.dir,
                    certs=self.certs,
                    uid=uid,
                    gid=gid,
                    port=self.port,
                    cores=os.cpu_count() or 2,
                )
            )
        if not fresh:
            return
        with open(os.path.join(self.dir, "passwd"), "w", encoding="utf-8") as f:
            f.write("".join(f"{u}:{{PLAIN}}{PASSWORD}::::::\n" for u in accounts))
        mail = os.path.join(self.dir, "mail")
        for user in accounts:
            target = os.path.join(mail, user, "Maildir")
            if user.startswith("big@"):
                servers.link_maildir(corpus["big"], target)
            elif user.startswith("huge@"):
                servers.link_maildir(corpus["huge"], target)
            elif user.startswith("sess"):
                servers.link_maildir(corpus["small"], target)
            else:
                for sub in ("cur", "new", "tmp"):
                    os.makedirs(os.path.join(target, sub), exist_ok=True)
        servers.chown_tree(mail, uid, gid)
        with open(done, "w") as f:
            f.write(marker)

    def start(self) -> None:
        log = open(os.path.join(self.dir, "stdout.log"), "ab")
        self.proc = subprocess.Popen(
            ["dovecot", "-F", "-c", self.conf],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=servers.raise_nofile,
        )
        servers.wait_port(self.port, proc=self.proc)

    def rss(self) -> int:
        out = subprocess.run(
            [
                "pgrep",
                "-f",
                "zbench-imap|dovecot/imap|dovecot/auth|dovecot/anvil"
                "|dovecot/log|dovecot/config|dovecot -F -c " + self.conf,
            ],
            capture_output=True,
            text=True,
        ).stdout.split()
        assert self.proc is not None
        pids = {int(p) for p in out} | {self.proc.pid}
        return process_rss(sorted(pids))

    def stop(self) -> None:
        servers.stop_process(self.proc)


def process_rss(pids: list[int]) -> int:
    """Bytes of resident memory of these processes (Pss where known, so
    shared pages count once)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


# -- the client ------------------------------------------------------------------


class Imap:
    """One IMAPS connection, command by command."""

    def __init__(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.r, self.w = r, w
        self.n = 0

    @classmethod
    async def open(cls, port: int, ctx: ssl.SSLContext) -> Imap:
        r, w = await asyncio.open_connection(
            HOST, port, ssl=ctx, server_hostname=SNI, limit=LIMIT
        )
        session = cls(r, w)
        await r.readline()
        return session

    async def command(self, text: bytes, literal: bytes | None = None) -> int:
        """Send a command; read to its tagged OK; the octets received."""
        self.n += 1
        tag = b"t%d" % self.n
        if literal is None:
            self.w.write(tag + b" " + text + b"\r\n")
        else:
            self.w.write(
                tag + b" " + text + b" {%d+}\r\n" % len(literal) + literal + b"\r\n"
            )
        received = 0
        while True:
            line = await self.r.readline()
            if not line:
                raise ConnectionError("closed")
            received += len(line)
            if line.endswith(b"}\r\n") and b"{" in line:
                size = int(line[line.rindex(b"{") + 1 : -3])
                await self.r.readexactly(size)
                received += size
                continue
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(line.decode(errors="replace"))
                return received

    async def login(self, user: str) -> None:
        await self.command(b'LOGIN "%s" "%s"' % (user.encode(), PASSWORD.encode()))

    def close(self) -> None:
        self.w.close()


def context(cafile: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


async def _sessions(port: int, cafile: str, names: list[str], seconds: float) -> int:
    ctx = context(cafile)
    deadline = time.monotonic() + seconds
    done = 0

    async def loop(user: str) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            s = await Imap.open(port, ctx)
            await s.login(user)
            await s.command(b"SELECT INBOX")
            await s.command(b"LOGOUT")
            s.close()
            done += 1

    await asyncio.gather(*(loop(u) for u in names))
    return done


def _sessions_worker(args: tuple[int, str, list[str], float]) -> int:
    return asyncio.run(_sessions(*args))


def sessions_per_second(port: int, cafile: str, concurrency: int) -> float:
    names = users("sess", concurrency)
    parts = min(2, concurrency)
    chunks = [names[i::parts] for i in range(parts)]
    with multiprocessing.Pool(parts) as pool:
        started = time.monotonic()
        counts = pool.map(_sessions_worker, [(port, cafile, c, WINDOW) for c in chunks])
        elapsed = time.monotonic() - started
    return sum(counts) / elapsed


async def _timed(
    port: int, cafile: str, user: str, commands: list[bytes]
) -> tuple[float, int]:
    s = await Imap.open(port, context(cafile))
    await s.login(user)
    started = time.monotonic()
    received = 0
    for c in commands:
        received += await s.command(c)
    elapsed = time.monotonic() - started
    await s.command(b"LOGOUT")
    s.close()
    return elapsed, received


def best_of(
    n: int, port: int, cafile: str, user: str, commands: list[bytes]
) -> tuple[float, int]:
    runs = [asyncio.run(_timed(port, cafile, user, commands)) for _ in range(n)]
    return min(runs)


async def _appends(port: int, cafile: str, names: list[str], seconds: float) -> int:
    ctx = context(cafile)
    body = b"Subject: append\r\n\r\n" + (b"y" * 78 + b"\r\n") * 128
    deadline = time.monotonic() + seconds
    done = 0

    async def loop(user: str) -> None:
        nonlocal done
        s = await Imap.open(port, ctx)
        await s.login(user)
        while time.monotonic() < deadline:
            await s.command(b"APPEND INBOX", body)
            done += 1
        await s.command(b"LOGOUT")
        s.close()

    await asyncio.gather(*(loop(u) for u in names))
    return done


def appends_per_second(port: int, cafile: str) -> float:
    started = time.monotonic()
    done = asyncio.run(_appends(port, cafile, users("append", 10), WINDOW))
    return done / (time.monotonic() - started)


async def _idle(
    port: int, cafile: str, names: list[str], count: int, hold: Any
) -> None:
    ctx = context(cafile)
    held = []
    for i in range(count):
        s = await Imap.open(port, ctx)
        await s.login(names[i % len(names)])
        await s.command(b"SELECT INBOX")
        s.n += 1
        s.w.write(b"i IDLE\r\n")
        await s.r.readline()
        held.append(s)
    hold.put(len(held))
    await asyncio.sleep(3600)


def _idle_worker(
    port: int, cafile: str, names: list[str], count: int, hold: Any
) -> None:
    servers.raise_nofile()
    asyncio.run(_idle(port, cafile, names, count, hold))


def idle_memory(server: Any, cafile: str, count: int) -> tuple[int, float]:
    """Sessions held in IDLE, and the server's memory per session."""
    before = server.rss()
    queue: Any = multiprocessing.Queue()
    parts = 2
    procs = [
        multiprocessing.Process(
            target=_idle_worker,
            args=(server.port, cafile, users("idle", 50), count // parts, queue),
        )
        for _ in range(parts)
    ]
    for p in procs:
        p.start()
    held = sum(queue.get(timeout=900) for _ in procs)
    time.sleep(3)
    after = server.rss()
    for p in procs:
        p.terminate()
        p.join()
    return held, (after - before) / held


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", default="/var/tmp/zpop-bench")
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--out", default=os.path.join(servers.BENCH_DIR, "imap.json"))
    args = parser.parse_args()
    if os.geteuid() == 0 and shutil.which("dovecot") is None:
        subprocess.run(
            [
                "apt-get",
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "dovecot-core",
                "dovecot-imapd",
            ],
            check=True,
        )
    servers.raise_nofile()
    os.makedirs(args.work, exist_ok=True)
    certs = servers.make_certificates(args.work)
    corpus = build_corpus(args.work, args.big)
    accounts = [
        f"big@{servers.DOMAIN}",
        f"huge@{servers.DOMAIN}",
        *users("sess", 50),
        *users("append", 10),
        *users("idle", 50),
    ]
    marker = f"big={args.big}"
    results: dict[str, dict[str, float]] = {}
    for server in (ZpopImap(args.work, certs), DovecotImap(args.work, certs)):
        t0 = time.monotonic()
        server.setup(corpus, accounts, marker)
        print(f"{server.name}: set up in {time.monotonic() - t0:.0f}s", flush=True)
        server.start()
        try:
            row: dict[str, float] = {}
            for c in (1, 10, 50):
                sessions_per_second(server.port, certs.ca, c)  # warm-up
                row[f"sessions_c{c}"] = sessions_per_second(server.port, certs.ca, c)
            best_of(
                1, server.port, certs.ca, f"big@{servers.DOMAIN}", [b"SELECT INBOX"]
            )
            elapsed, _ = best_of(
                3,
                server.port,
                certs.ca,
                f"big@{servers.DOMAIN}",
                [b"SELECT INBOX", b"UID FETCH 1:* (UID FLAGS RFC822.SIZE)"],
            )
            row["big_select_fetch_s"] = elapsed
            elapsed, octets = best_of(
                3,
                server.port,
                certs.ca,
                f"huge@{servers.DOMAIN}",
                [b"EXAMINE INBOX", b"FETCH 1 BODY.PEEK[]"],
            )
            row["fetch_20mb_mbs"] = octets / elapsed / 1e6
            row["append_10kb_s"] = appends_per_second(server.port, certs.ca)
            held, each = idle_memory(server, certs.ca, args.idle)
            row["idle_held"] = held
            row["idle_kib_each"] = each / 1024
            results[server.name] = row
            print(server.name, json.dumps(row), flush=True)
        finally:
            server.stop()
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
