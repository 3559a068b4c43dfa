"""The servers under test: zpop and its anchors, set up on loopback.

Everything lives in one work directory (default /var/tmp/zpop-bench):
the shared message corpus, a zpop data directory, a private Dovecot
instance (pop3 only, passwd-file, Maildir), ``twistd mail`` from the same
virtualenv (through twistd_mail_nodelay.tac), and a private Postfix
instance (25, 587 with STARTTLS + AUTH through Dovecot SASL, 465). Each
server binds 127.0.0.1 only, on fixed high ports.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import bcrypt

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
DOMAIN = "bench.test"
MAIL_USER = "zbench"
NOFILE = 65536

PORTS = {
    "zpop_pop3s": 17995,
    "zpop_smtps": 17465,
    "zpop_submission": 17587,
    "zpop_mx": 17025,
    "zpop_web": 17443,
    "zpop_metrics": 17180,
    "zpop_nocache_pop3s": 18995,
    "dovecot_pop3s": 27995,
    "twmail_pop3s": 37995,
    "postfix_mx": 47025,
    "postfix_submission": 47587,
    "postfix_smtps": 47465,
}


@dataclass
class Plan:
    """How many accounts and messages the benchmarks need."""

    session_users: int = 50
    session_messages: int = 20
    message_size: int = 10 * 1024
    big_mailbox: int = 100_000
    big_message_size: int = 1024
    idle_users: int = 10_000
    anchor_idle_users: int = 1_000
    cold_users: int = 240
    bcrypt_cost: int = 12
    bulk_sizes: dict[str, int] = field(
        default_factory=lambda: {"bulk20": 20 << 20, "bulk50": 50 << 20}
    )

    def key(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


def session_user(i: int) -> str:
    return f"pu{i}@{DOMAIN}"


def password_for(user: str) -> str:
    """The anchors' plaintext password for a user (zpop uses app passwords)."""
    return "pw-" + user.partition("@")[0]


def primary_password_for(user: str) -> str:
    """zpop's primary (bcrypt) password of a session user, for the cached-
    login row. Never containing the local part (zpop's password rule): its
    UTF-8 in hex."""
    return "primary-pw-" + user.partition("@")[0].encode().hex()


COLD_PASSWORD = "correct horse battery staple"


# -- corpus ------------------------------------------------------------------


def make_message(seq: int, size: int, rng: random.Random) -> bytes:
    """A plain-text message of about ``size`` octets, LF line ends, with a
    line starting with a dot (so dot-stuffing is exercised)."""
    header = (
        f"From: sender{seq % 97}@example.org\n"
        f"To: someone@{DOMAIN}\n"
        f"Subject: bench message {seq}\n"
        f"Date: Mon, 01 Jan 2024 00:00:00 +0000\n"
        f"Message-ID: <{seq}.{size}@bench.example.org>\n\n"
    ).encode()
    alphabet = b"abcdefghijklmnopqrstuvwxyz      ABCDEFGH0123456789.,"
    lines = [b".leading dot line"]
    total = len(header) + len(lines[0]) + 1
    while total < size:
        line = bytes(rng.choice(alphabet) for _ in range(72))
        lines.append(line)
        total += 73
    return header + b"\n".join(lines) + b"\n"


def fast_message(seq: int, size: int) -> bytes:
    """A large message built from repeated random lines (fast to make)."""
    rng = random.Random(seq)
    block = make_message(seq, 256 * 1024, rng)
    head, _, body = block.partition(b"\n\n")
    out = bytearray(head + b"\n\n")
    while len(out) < size:
        out += body
    return bytes(out[:size].rpartition(b"\n")[0] + b"\n")


def write_maildir(path: str, messages: list[bytes], start: int = 1_700_000_000) -> None:
    """A Maildir with ``messages`` in cur/, names carrying S= and W= sizes
    (as Dovecot's own deliveries do, so it need not read every file)."""
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    for i, data in enumerate(messages):
        vsize = len(data) + data.count(b"\n")
        name = f"{start + i}.M{i}P1.bench,S={len(data)},W={vsize}:2,S"
        with open(os.path.join(path, "cur", name), "wb") as f:
            f.write(data)


def link_maildir(source: str, target: str) -> None:
    """Hard-link a corpus Maildir's messages into a user's Maildir."""
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(target, sub), exist_ok=True)
    for name in os.listdir(os.path.join(source, "cur")):
        dest = os.path.join(target, "cur", name)
        if not os.path.exists(dest):
            os.link(os.path.join(source, "cur", name), dest)


def build_corpus(work: str, plan: Plan) -> dict[str, str]:
    """Corpus Maildirs: {"session": ..., "big": ..., "bulk20": ..., ...}."""
    root = os.path.join(work, "corpus")
    out = {}
    rng = random.Random(7)
    sets = {
        "session": lambda: [
            make_message(i, plan.message_size, rng)
            for i in range(plan.session_messages)
        ],
        "big": lambda: [
            make_message(i, plan.big_message_size, rng)
            for i in range(min(plan.big_mailbox, 64))
        ],
        **{
            name: (lambda size=size: [fast_message(1, size)])
            for name, size in plan.bulk_sizes.items()
        },
    }
    for name, make in sets.items():
        path = os.path.join(root, name)
        out[name] = path
        if os.path.isdir(os.path.join(path, "cur")):
            continue
        messages = make()
        if name == "big":
            # 100,000 files: a few distinct bodies with distinct headers.
            messages = [
                messages[i % len(messages)].replace(
                    b"Subject: bench message", b"Subject: big %d" % i, 1
                )
                for i in range(plan.big_mailbox)
            ]
        write_maildir(path + ".tmp", messages)
        os.rename(path + ".tmp", path)
    return out


# -- processes ---------------------------------------------------------------


def raise_nofile() -> None:
    """Allow many descriptors (10,000 sessions); called in children too."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, max(hard, NOFILE)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def wait_port(
    port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None
) -> None:
    """Wait until 127.0.0.1:``port`` accepts connections."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on port {port} after {timeout}s")


def stop_process(proc: subprocess.Popen | None, timeout: float = 20.0) -> None:
    """SIGTERM one process we started, then SIGKILL it if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def ensure_mail_user() -> tuple[int, int]:
    """The unprivileged owner of the anchors' mailboxes (created once)."""
    import pwd

    try:
        entry = pwd.getpwnam(MAIL_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                MAIL_USER,
            ],
            check=True,
        )
        entry = pwd.getpwnam(MAIL_USER)
    return entry.pw_uid, entry.pw_gid


def chown_tree(path: str, uid: int, gid: int) -> None:
    subprocess.run(["chown", "-R", f"{uid}:{gid}", path], check=True)


# -- TLS ---------------------------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    """The bench's TLS certificates, made once per work directory and served
    alike by every server: an RSA-2048 and an ECDSA P-256 chain side by side
    (zpop, Dovecot and Postfix pick per client; twistd mail takes one, the
    ECDSA one the clients get from the others). ``ca`` holds both for the
    clients to trust."""

    rsa_cert: str
    rsa_key: str
    ecdsa_cert: str
    ecdsa_key: str
    ca: str


#: Names the bench certificates cover (the clients verify ``SNI``).
CERT_NAMES = ["pop.bench.test", "poppro.bench.test", "smtp.bench.test", DOMAIN]


def make_certificates(work: str) -> Certificates:
    """Generate (or reuse) the bench certificates in WORK/tls."""
    from zpop.tls import generate_self_signed

    tls = os.path.join(work, "tls")
    os.makedirs(tls, exist_ok=True)
    os.chmod(tls, 0o755)
    paths = {}
    for kind in ("rsa", "ecdsa"):
        cert_path = os.path.join(tls, f"{kind}.crt")
        key_path = os.path.join(tls, f"{kind}.key")
        if not (os.path.exists(cert_path) and os.path.exists(key_path)):
            pem = generate_self_signed(
                [*CERT_NAMES, "localhost"], ["127.0.0.1", "::1"], key_type=kind
            ).decode("ascii")
            split = pem.index("-----BEGIN PRIVATE KEY-----")
            with open(cert_path, "w", encoding="ascii") as f:
                f.write(pem[:split])
            with open(key_path, "w", encoding="ascii") as f:
                f.write(pem[split:])
        os.chmod(cert_path, 0o644)
        os.chmod(key_path, 0o640)
        try:
            import grp

            os.chown(key_path, 0, grp.getgrnam("postfix").gr_gid)
        except KeyError:
            pass
        paths[kind] = (cert_path, key_path)
    ca = os.path.join(tls, "ca.pem")
    with open(ca, "w", encoding="ascii") as out:
        for cert_path, _ in paths.values():
            with open(cert_path, encoding="ascii") as f:
                out.write(f.read())
    return Certificates(*paths["rsa"], *paths["ecdsa"], ca)


# -- zpop --------------------------------------------------------------------


class Zpop:
    """zpop under twistd, as checked out.

    Session users have an app password (the POP3 rows use it) and a primary
    bcrypt password (the cached-login row). With ``cache=False`` it runs
    with ``[auth] credential_cache = 0`` on its own port, POP3S only,
    sharing the data directory: the uncached app-password login row.
    """

    name = "zpop"

    def __init__(
        self,
        work: str,
        plan: Plan,
        certs: Certificates,
        cache: bool = True,
        workers: int = 1,
    ) -> None:
        self.certs = certs
        self.cache = cache
        #: [server] workers: processes sharing the listeners.
        self.workers = workers
        self.dir = os.path.join(work, "zpop")
        self.data = os.path.join(self.dir, "data")
        self.setup_config = os.path.join(self.dir, "zpop.ini")
        self.config = self.setup_config
        self.log = os.path.join(self.dir, "twistd.log")
        self.plan = plan
        self.proc: subprocess.Popen | None = None
        self.passwords: dict[str, str] = {}
        self.port = PORTS["zpop_pop3s"]
        #: ``[dns] resolver`` for the MX's SPF, DKIM and DMARC checks.
        self.dns_resolver = ""
        if not cache:
            self.name = "zpop (credential cache off)"
            self.config = os.path.join(self.dir, "zpop-nocache.ini")
            self.log = os.path.join(self.dir, "twistd-nocache.log")
            self.port = PORTS["zpop_nocache_pop3s"]
        self.smtp_ports = {
            "smtps": PORTS["zpop_smtps"],
            "submission": PORTS["zpop_submission"],
            "mx": PORTS["zpop_mx"],
        }
        #: The HTTPS web settings (the cache-off instance serves none).
        self.web_port = PORTS["zpop_web"]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _admin(self, commands: list[dict[str, object]]) -> list[str]:
        prefix = ["--config", self.setup_config, "--data", self.data]
        for c in commands:
            c["argv"] = prefix + list(c["argv"])  # type: ignore[arg-type]
        path = os.path.join(self.dir, "batch.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(commands, f)
        out = subprocess.run(
            [sys.executable, os.path.join(BENCH_DIR, "zadmin_batch.py"), path],
            check=True,
            capture_output=True,
        )
        return json.loads(out.stdout)

    def _admin_parallel(
        self, commands: list[dict[str, object]], parts: int
    ) -> list[str]:
        """Split a batch over ``parts`` processes (bcrypt is CPU-bound)."""
        chunks = [commands[i::parts] for i in range(parts)]
        procs = []
        prefix = ["--config", self.setup_config, "--data", self.data]
        for n, chunk in enumerate(chunks):
            for c in chunk:
                c["argv"] = prefix + list(c["argv"])  # type: ignore[arg-type]
            path = os.path.join(self.dir, f"batch{n}.json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump(chunk, f)
            procs.append(
                subprocess.Popen(
                    [sys.executable, os.path.join(BENCH_DIR, "zadmin_batch.py"), path],
                    stdout=subprocess.PIPE,
                )
            )
        results: list[list[str]] = []
        for p in procs:
            out, _ = p.communicate()
            if p.returncode:
                raise RuntimeError("zpop admin batch failed")
            results.append(json.loads(out))
        merged = [""] * len(commands)
        for n, res in enumerate(results):
            merged[n::parts] = res
        return merged

    def _set_primary_passwords(self) -> None:
        """A bcrypt primary password for each session user (`zpop account
        passwd`), next to its app password."""
        users = [session_user(i) for i in range(self.plan.session_users)]
        # Open the store once first: it migrates an older data directory,
        # which parallel processes must not do at the same time.
        self._admin([{"argv": ["domain", "list"]}])
        self._admin_parallel(
            [
                {
                    "argv": ["account", "passwd", user, "--password-stdin"],
                    "stdin": primary_password_for(user) + "\n",
                }
                for user in users
            ],
            os.cpu_count() or 2,
        )

    def write_config(self) -> None:
        """The bench config: bcrypt cost 12, big messages, and connection
        limits high enough for one client address holding 10,000 sessions."""
        cache = "" if self.cache else "credential_cache = 0\n"
        with open(self.config, "w", encoding="utf-8") as f:
            f.write(
                f"[server]\nhostname = {DOMAIN}\nworkers = {self.workers}\n\n"
                f"[accounts]\nbcrypt_cost = {self.plan.bcrypt_cost}\n\n"
                "[limits]\nmessage_size = 64M\n\n"
                "[auth]\nmax_connections_per_client = 30000\n"
                f"max_connections = 30000\n{cache}\n"
                f"[tls]\ncertificate = {self.certs.rsa_cert}\n"
                f"key = {self.certs.rsa_key}\n"
                f"alt_certificate = {self.certs.ecdsa_cert}\n"
                f"alt_key = {self.certs.ecdsa_key}\n"
            )
            if self.dns_resolver:
                f.write(f"\n[dns]\nresolver = {self.dns_resolver}\n")

    def setup(self, corpus: dict[str, str]) -> None:
        """Accounts, app passwords and messages, once per work directory."""
        marker = os.path.join(self.dir, "setup.json")
        if os.path.exists(marker):
            with open(marker, encoding="utf-8") as f:
                saved = json.load(f)
            if saved.get("plan") == self.plan.key():
                self.passwords = saved["passwords"]
                if not saved.get("primary"):
                    self._set_primary_passwords()
                    saved["primary"] = True
                    with open(marker, "w", encoding="utf-8") as f:
                        json.dump(saved, f)
                return
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.write_config()
        plan = self.plan
        t0 = time.monotonic()
        self._admin([{"argv": ["init"]}, {"argv": ["domain", "add", DOMAIN]}])
        warm = [session_user(i) for i in range(plan.session_users)]
        warm += [
            f"{n}@{DOMAIN}" for n in ["big", "noop", "sender", "rcpt", *plan.bulk_sizes]
        ]
        warm += [f"idle{i}@{DOMAIN}" for i in range(plan.idle_users)]
        commands: list[dict[str, object]] = []
        for user in warm:
            commands += [
                {"argv": ["account", "add", user, "--plan", "paid"]},
                {"argv": ["pop", "enable", user, "--mode", "all"]},
                {"argv": ["app-password", "create", user, "--label", "bench"]},
            ]
        outputs = self._admin(commands)
        self.passwords = {
            user: outputs[3 * i + 2].strip() for i, user in enumerate(warm)
        }
        cold = [
            {
                "argv": [
                    "account",
                    "add",
                    f"cold{i}@{DOMAIN}",
                    "--plan",
                    "paid",
                    "--password-stdin",
                ],
                "stdin": COLD_PASSWORD + "\n",
            }
            for i in range(plan.cold_users)
        ]
        self._admin_parallel(cold, os.cpu_count() or 2)
        self._admin(
            [
                {"argv": ["pop", "enable", f"cold{i}@{DOMAIN}", "--mode", "all"]}
                for i in range(plan.cold_users)
            ]
        )
        imports: list[dict[str, object]] = [
            {"argv": ["import", session_user(i), corpus["session"]]}
            for i in range(plan.session_users)
        ]
        imports.append({"argv": ["import", f"noop@{DOMAIN}", corpus["session"]]})
        imports += [
            {"argv": ["import", f"{n}@{DOMAIN}", corpus[n]]} for n in plan.bulk_sizes
        ]
        imports.append({"argv": ["import", f"big@{DOMAIN}", corpus["big"]]})
        self._admin(imports)
        self._set_primary_passwords()
        with open(marker, "w", encoding="utf-8") as f:
            json.dump(
                {"plan": plan.key(), "passwords": self.passwords, "primary": True}, f
            )
        print(f"  zpop set up in {time.monotonic() - t0:.0f}s", flush=True)

    def start(self) -> None:
        self.write_config()
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        options = [
            "--config",
            self.config,
            "--data",
            self.data,
            f"--pop3s=tcp:{self.port}:interface=127.0.0.1",
            "--pop3=",
        ]
        if self.cache:
            options += [
                f"--{n}=tcp:{p}:interface=127.0.0.1" for n, p in self.smtp_ports.items()
            ]
            options.append(f"--web=tcp:{self.web_port}:interface=127.0.0.1")
        else:
            # Not the default *:8443 either: one web listener is enough.
            options += ["--smtps=", "--submission=", "--mx=", "--web="]
        from zpop.config import LISTENERS

        if "metrics" in LISTENERS:
            # Not the default port 9180, which both instances would want.
            port = PORTS["zpop_metrics"]
            on = f"tcp:{port}:interface=127.0.0.1"
            options.append(f"--metrics={on if self.cache else ''}")
        args = [twistd, "-n", "--pidfile=", "zpop", *options]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                preexec_fn=raise_nofile,
            )
        wait_port(self.port, proc=self.proc)

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def credential(self, user: str) -> str:
        """The app password (cold users: their bcrypt primary password)."""
        if user.startswith("cold"):
            return COLD_PASSWORD
        return self.passwords[user]

    def primary(self, user: str) -> str:
        """A session user's bcrypt primary password."""
        return primary_password_for(user)


# -- Dovecot ----------------------------------------------------------------


DOVECOT_CONF = """\
# Private Dovecot instance for zpop's benchmarks (pop3 only, loopback).
base_dir = {d}/run
state_dir = {d}/state
instance_name = zbench-dovecot
listen = 127.0.0.1
protocols = pop3
log_path = {d}/dovecot.log
ssl = required
ssl_cert = <{certs.rsa_cert}
ssl_key = <{certs.rsa_key}
ssl_alt_cert = <{certs.ecdsa_cert}
ssl_alt_key = <{certs.ecdsa_key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_cache_size = 64M
auth_cache_ttl = 1 hour
mail_location = maildir:{d}/mail/%u/Maildir
mail_uid = {uid}
mail_gid = {gid}
first_valid_uid = 1
pop3_uidl_format = %08Xu%08Xv
pop3_no_flag_updates = yes
pop3_lock_session = yes
mail_fsync = optimized
default_process_limit = 2000
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
# High-performance mode: long-lived login processes, one per core, each
# serving many connections; pop3 processes reused between sessions.
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {port}
    ssl = yes
  }}
  service_count = 0
  process_min_avail = {cores}
  client_limit = 20000
}}
service pop3 {{
  service_count = 1000
  process_min_avail = {cores}
  process_limit = 2000
}}
service anvil {{
  client_limit = 40000
}}
service auth {{
  client_limit = 40000
  unix_listener {d}/auth-postfix {{
    mode = 0666
  }}
}}
"""


class Dovecot:
    """dovecot-pop3d with a passwd-file and Maildirs holding the same mail."""

    name = "dovecot"

    def __init__(self, work: str, plan: Plan, certs: Certificates) -> None:
        self.dir = os.path.join(work, "dovecot")
        self.conf = os.path.join(self.dir, "dovecot.conf")
        self.plan = plan
        self.certs = certs
        self.port = PORTS["dovecot_pop3s"]
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def sasl_socket(self) -> str:
        return os.path.join(self.dir, "auth-postfix")

    def setup(self, corpus: dict[str, str]) -> None:
        uid, gid = ensure_mail_user()
        marker = os.path.join(self.dir, "setup.json")
        plan = self.plan
        fresh = not os.path.exists(marker) or open(marker).read() != plan.key()
        if fresh:
            shutil.rmtree(self.dir, ignore_errors=True)
        for sub in ("run", "state", "mail"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        with open(self.conf, "w", encoding="utf-8") as f:
            f.write(
                DOVECOT_CONF.format(
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
        lines = []
        users = [session_user(i) for i in range(plan.session_users)]
        users += [
            f"{n}@{DOMAIN}" for n in ["big", "noop", "sender", "rcpt", *plan.bulk_sizes]
        ]
        users += [f"idle{i}@{DOMAIN}" for i in range(plan.anchor_idle_users)]
        for user in users:
            lines.append(f"{user}:{{PLAIN}}{password_for(user)}::::::")
        cold_hash = bcrypt.hashpw(
            COLD_PASSWORD.encode(), bcrypt.gensalt(plan.bcrypt_cost)
        ).decode()
        for i in range(plan.cold_users):
            lines.append(f"cold{i}@{DOMAIN}:{{BLF-CRYPT}}{cold_hash}::::::")
        with open(os.path.join(self.dir, "passwd"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        mail = os.path.join(self.dir, "mail")
        for i in range(plan.session_users):
            link_maildir(
                corpus["session"], os.path.join(mail, session_user(i), "Maildir")
            )
        link_maildir(corpus["session"], os.path.join(mail, f"noop@{DOMAIN}", "Maildir"))
        for n in plan.bulk_sizes:
            link_maildir(corpus[n], os.path.join(mail, f"{n}@{DOMAIN}", "Maildir"))
        link_maildir(corpus["big"], os.path.join(mail, f"big@{DOMAIN}", "Maildir"))
        chown_tree(mail, uid, gid)
        with open(marker, "w", encoding="utf-8") as f:
            f.write(plan.key())

    def start(self) -> None:
        with open(os.path.join(self.dir, "stdout.log"), "ab") as log:
            self.proc = subprocess.Popen(
                ["dovecot", "-F", "-c", self.conf],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=raise_nofile,
            )
        wait_port(self.port, proc=self.proc)

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def credential(self, user: str) -> str:
        return COLD_PASSWORD if user.startswith("cold") else password_for(user)


# -- twistd mail ----------------------------------------------------------------


class TwistdMail:
    """Stock ``twistd mail`` (Maildir + dirdbm), TCP_NODELAY via a .tac."""

    name = "twistd mail"

    def __init__(self, work: str, plan: Plan, certs: Certificates) -> None:
        self.dir = os.path.join(work, "twmail")
        self.root = os.path.join(self.dir, "root")
        self.plan = plan
        # One certificate per endpoint: the ECDSA one, which is what the
        # clients negotiate with the servers that hold both.
        self.cert, self.key = certs.ecdsa_cert, certs.ecdsa_key
        self.port = PORTS["twmail_pop3s"]
        self.proc: subprocess.Popen | None = None
        self.users = [session_user(i) for i in range(plan.session_users)]
        self.users += [f"{n}@{DOMAIN}" for n in ["noop", *plan.bulk_sizes]]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def setup(self, corpus: dict[str, str]) -> None:
        os.makedirs(self.root, exist_ok=True)
        for user in self.users:
            local = user.partition("@")[0]
            source = (
                corpus["session"] if local.startswith(("pu", "noop")) else corpus[local]
            )
            link_maildir(source, os.path.join(self.root, local))

    def start(self) -> None:
        args = [
            "--no-smtp",
            "--pop3",
            f"ssl:{self.port}:interface=127.0.0.1:privateKey={self.key}"
            f":certKey={self.cert}",
            "--maildirdbmdomain",
            f"{DOMAIN}={self.root}",
        ]
        users = {u.partition("@")[0]: password_for(u) for u in self.users}
        env = dict(
            os.environ,
            ZBENCH_MAIL_ARGS=json.dumps(args),
            ZBENCH_MAIL_USERS=json.dumps(users),
        )
        with open(os.path.join(self.dir, "twistd.log"), "ab") as log:
            self.proc = subprocess.Popen(
                [
                    os.path.join(os.path.dirname(sys.executable), "twistd"),
                    "-n",
                    "--pidfile=",
                    "-y",
                    os.path.join(BENCH_DIR, "twistd_mail_nodelay.tac"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                env=env,
                stdin=subprocess.DEVNULL,
                preexec_fn=raise_nofile,
            )
        wait_port(self.port, proc=self.proc)

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def credential(self, user: str) -> str:
        return password_for(user)


# -- Postfix --------------------------------------------------------------------


POSTFIX_SERVICES = (
    "pickup cleanup qmgr tlsmgr rewrite bounce defer trace verify flush "
    "proxymap proxywrite smtp relay showq error retry discard local virtual "
    "lmtp anvil scache postlog"
).split()


class Postfix:
    """A private Postfix instance accepting mail for bench.test.

    25: MX (STARTTLS offered, no AUTH); 587: STARTTLS required, AUTH via
    Dovecot SASL; 465: implicit TLS + AUTH. The queue file is fsynced by
    cleanup(8) before the 250 (Postfix's default); the virtual(8) agent then
    delivers every message to one Maildir.
    """

    name = "postfix"

    def __init__(self, work: str, certs: Certificates, sasl_socket: str) -> None:
        self.dir = os.path.join(work, "postfix")
        self.conf = os.path.join(self.dir, "conf")
        self.queue = os.path.join(self.dir, "queue")
        self.certs, self.sasl = certs, sasl_socket
        self.ports = {
            "mx": PORTS["postfix_mx"],
            "submission": PORTS["postfix_submission"],
            "smtps": PORTS["postfix_smtps"],
        }
        self.master_pid: int | None = None

    @property
    def pid(self) -> int:
        assert self.master_pid is not None
        return self.master_pid

    def setup(self) -> None:
        uid, gid = ensure_mail_user()
        for sub in ("conf", "queue", "data", "mail"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        chown_tree(os.path.join(self.dir, "mail"), uid, gid)
        shutil.chown(os.path.join(self.dir, "data"), "postfix")
        main_cf = f"""\
compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {self.dir}/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = smtp.{DOMAIN}
mydomain = {DOMAIN}
myorigin = {DOMAIN}
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps =
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_base = {self.dir}/mail
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = 1
message_size_limit = 67108864
# virtual(8) refuses to start if its limit (default 50 MB) is below this.
virtual_mailbox_limit = 0
smtpd_tls_chain_files = {self.certs.rsa_key}, {self.certs.rsa_cert},
    {self.certs.ecdsa_key}, {self.certs.ecdsa_cert}
smtpd_tls_security_level = may
smtpd_tls_protocols = >=TLSv1.2
smtpd_sasl_type = dovecot
smtpd_sasl_path = {self.sasl}
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions =
maillog_file = {self.dir}/maillog
biff = no
append_dot_mydomain = no
smtputf8_enable = no
default_process_limit = 200
"""
        with open(os.path.join(self.conf, "main.cf"), "w", encoding="utf-8") as f:
            f.write(main_cf)
        lines = []
        with open("/etc/postfix/master.cf", encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                if (
                    line[:1].isspace()
                    or not fields
                    or fields[0].startswith("#")
                    or fields[0] not in POSTFIX_SERVICES
                    or fields[1] == "inet"
                ):
                    continue
                fields[4] = "n"  # no chroot: the SASL socket path is absolute
                lines.append("  ".join(fields))
        sub = (
            "-o smtpd_sasl_auth_enable=yes -o smtpd_relay_restrictions="
            "permit_sasl_authenticated,reject"
        )
        lines += [
            f"127.0.0.1:{self.ports['mx']} inet n - n - - smtpd",
            f"127.0.0.1:{self.ports['submission']} inet n - n - - smtpd "
            f"-o smtpd_tls_security_level=encrypt -o smtpd_tls_auth_only=yes {sub}",
            f"127.0.0.1:{self.ports['smtps']} inet n - n - - smtpd "
            f"-o smtpd_tls_wrappermode=yes {sub}",
        ]
        with open(os.path.join(self.conf, "master.cf"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        subprocess.run(["postfix", "-c", self.conf, "check"], check=True)

    def start(self) -> None:
        self.stop_if_running()
        # An empty queue: mail left over from an earlier run would keep qmgr
        # busy (and past in_flow_delay, slow every smtpd to 1 msg/s).
        subprocess.run(["postsuper", "-c", self.conf, "-d", "ALL"], capture_output=True)
        subprocess.run(
            ["postfix", "-c", self.conf, "start"], check=True, capture_output=True
        )
        pidfile = os.path.join(self.queue, "pid", "master.pid")
        deadline = time.monotonic() + 20
        while not os.path.exists(pidfile) and time.monotonic() < deadline:
            time.sleep(0.1)
        with open(pidfile, encoding="ascii") as f:
            self.master_pid = int(f.read().strip())
        for port in self.ports.values():
            wait_port(port)

    def credential(self, user: str) -> str:
        return password_for(user)

    def stop_if_running(self) -> None:
        subprocess.run(["postfix", "-c", self.conf, "stop"], capture_output=True)

    def stop(self) -> None:
        if self.master_pid is not None:
            subprocess.run(["postfix", "-c", self.conf, "stop"], capture_output=True)
            self.master_pid = None
