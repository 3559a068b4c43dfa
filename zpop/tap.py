"""``twistd zpop``: command-line options and the one service tree.

Options only convert and validate strings; ``makeService`` builds the data
directory, database, TLS policy, thread pools and listeners::

    zpop (StopInOrder)
    +-- store       closes the database once everything else has stopped
    +-- db          ThreadPoolService: SQLite calls
    +-- hashing     ThreadPoolService: bcrypt
    +-- dkim        ThreadPoolService: DKIM signing (zpop.mailauth.dkim)
    +-- mailauth    ThreadPoolService: the MX's SPF and DKIM checks
    +-- activity    sign-in activity, written in batches (zpop.accounts.activity)
    +-- pop3s ...   one listener per enabled endpoint, in LISTENERS order
                    (web: the HTTPS settings site, zpop.web;
                    metrics: Prometheus scrapes, zpop.metrics, main
                    process only, after its one-thread pool ``metrics-scrape``)
    +-- outbound    the relay for remote recipients
    +-- workers     with [server] workers > 1: the other processes

A listener that cannot bind aborts start-up (``twistd`` exits 1 naming the
port) instead of leaving a half-started daemon. At stop each child ends
before the one added before it stops, so the relay can still release its
leases through the database pool.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from twisted.application import service, strports
from twisted.application.internet import StreamServerEndpointService
from twisted.cred.portal import Portal
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IProtocolFactory, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactor
from twisted.logger import Logger
from twisted.python import usage
from zope.interface import implementer

from zpop import config as zconfig
from zpop import metrics
from zpop.accounts.activity import ActivityRecorder
from zpop.accounts.credentials import AccountChecker, Authenticator, CachedLogin, Share
from zpop.accounts.passwords import load_or_create_key
from zpop.accounts.pop_log import PopLogRecorder
from zpop.accounts.realm import Realm
from zpop.cluster.pool import WorkerPool
from zpop.config import LISTENERS, Config, ConfigError
from zpop.delivery import SMTPDelivery
from zpop.imap.server import IMAPFactory, ImapSettings
from zpop.limits import REFUSALS, ConnectionLimiter
from zpop.mailauth import service as mailauth_service
from zpop.mailauth.dkim import DkimSigner, Signer
from zpop.mailauth.dkim_keys import DkimKeys, FileKeyStore
from zpop.mailauth.inbound import InboundChecks
from zpop.mailauth.rspamd import RspamdClient, read_password
from zpop.outbound import OutboundService
from zpop.outbound.queue import summary as queue_summary
from zpop.pop3 import POP3Factory, POP3Settings
from zpop.smtp import SMTPFactory
from zpop.smtp_transaction import SMTPSettings
from zpop.store import DATABASE_NAME, IStore, SchemaError, SQLiteStore, schema
from zpop.threads import Runner, ThreadPoolService
from zpop.tls import ServerTLS, TLSConfigError
from zpop.web.site import WebContext, make_site

log = Logger()

#: listener name -> (protocol, how TLS is applied). Implicit listeners are
#: wrapped in TLS here; the others start TLS in the protocol (STLS/STARTTLS).
LISTENER_KINDS: dict[str, tuple[str, str]] = {
    "pop3s": ("POP3", "implicit"),
    "pop3": ("POP3", "STLS"),
    "imaps": ("IMAP", "implicit"),
    "imap": ("IMAP", "STARTTLS"),
    "smtps": ("SMTP", "implicit"),
    "submission": ("SMTP", "STARTTLS"),
    "mx": ("SMTP", "STARTTLS"),
    "web": ("HTTP", "implicit"),
    # Plain HTTP, served by the main process only (zpop.metrics).
    "metrics": ("HTTP", "none"),
}

HASHING_THREADS = 2
#: Threads signing outgoing mail: dkimpy canonicalises in Python, holding
#: the GIL, so more would not sign faster.
DKIM_THREADS = 1

_HELP = {
    "pop3s": "POP3 over implicit TLS (production: tcp:995)",
    "pop3": "POP3 with STLS; empty (default) disables it (production: tcp:110)",
    "imaps": "IMAP over implicit TLS (production: tcp:993)",
    "imap": "IMAP with STARTTLS (production: tcp:143)",
    "smtps": "SMTP submission over implicit TLS (production: tcp:465)",
    "submission": "SMTP submission with STARTTLS (production: tcp:587)",
    "mx": "inbound SMTP (MX) with STARTTLS (production: tcp:25)",
    "web": "HTTPS self-service web settings (production: tcp:443)",
    "metrics": "Prometheus metrics over plain HTTP (default:"
    " tcp:9180:interface=127.0.0.1; production: off)",
}


class StopInOrder(service.MultiService):
    """A MultiService whose children stop one at a time, last added first,
    each once the one after it has finished stopping.

    Upstream stops them all at once, so a service whose stop still needs
    another (the relay releasing its leases needs the database pool) found
    it already stopped.
    """

    def stopService(self) -> Deferred:
        service.Service.stopService(self)
        return Deferred.fromCoroutine(self._stop_children())

    async def _stop_children(self) -> None:
        for child in reversed(list(self)):
            try:
                await maybeDeferred(child.stopService)
            except Exception:
                log.failure("stopping {name}", name=child.name)


class StoreService(service.Service):
    """Closes the store (its connections, change counter and lock file)
    when the tree stops."""

    name = "store"

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    def stopService(self) -> None:
        super().stopService()
        self._store.close()


class StartupError(SystemExit):
    """Start-up cannot go on; ``twistd``/``twist`` exit 1 printing the text.

    A ``SystemExit`` so the operator sees one ``zpop: error: ...`` line, not
    a traceback: it is raised from ``makeService``, before any pid file or
    listener exists.
    """

    def __init__(self, message: str) -> None:
        super().__init__(f"zpop: error: {message}")
        self.message = message


class ListenError(Exception):
    """A listener could not bind; the text names the listener and the port.

    An ``Exception`` (not ``SystemExit``) because ``twistd`` reports these
    from ``privilegedStartService`` through its daemon status pipe.
    """


def validate_endpoint(description: str) -> None:
    """Raise ``ValueError`` if ``description`` is not a usable server endpoint.

    The endpoint is made and listened on with a ``MemoryReactor``, so every
    argument is checked as the real reactor would and nothing binds.
    ``ssl:`` is refused: zpop applies TLS itself, from the ``[tls]`` section.
    """
    if description.split(":", 1)[0].strip().lower() == "ssl":
        raise ValueError("use tcp:, zpop applies TLS itself from the [tls] section")
    reactor = MemoryReactor()
    try:
        endpoints.serverFromString(reactor, description).listen(Factory())
    except (ValueError, TypeError, KeyError, IndexError, OSError) as e:
        raise ValueError(str(e) or e.__class__.__name__)
    for port, *_ in reactor.tcpServers:
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} out of range 0-65535")


class Options(usage.Options):
    """``twistd zpop`` options; ``self.config`` is the resulting ``Config``."""

    synopsis = "[--config FILE] [--data DIR] [--pop3s ENDPOINT] ..."
    longdesc = (
        "Hosted mail: POP3 and IMAP over TLS, SMTP submission and MX. Listener "
        "options take Twisted endpoint strings "
        "(tcp:995, tcp:port=995:interface=\\:\\:); "
        "an empty string disables a listener. Defaults come from the config "
        "file, else unprivileged ports 8995/8993/8143/8465/8587/8025/8443."
    )
    optParameters = [  # noqa: N815 - usage.Options API
        ["config", None, None, "config file (default: DATA/zpop.ini if present)"],
        ["data", None, None, "data directory (default: $ZPOP_DATA or ./zpop-data)"],
    ] + [[name, None, None, _HELP[name]] for name in LISTENERS]

    config: Config
    #: The file ``config`` was read from, if any (worker processes read it).
    config_path: str | None = None

    def postOptions(self) -> None:
        overrides = {"listeners": {n: self[n] for n in LISTENERS}}
        try:
            cfg, path = zconfig.resolve(self["config"], self["data"], overrides)
        except ConfigError as e:
            raise usage.UsageError(str(e))
        listeners = {n: e.strip() for n, e in cfg.listeners.items()}
        for name, description in listeners.items():
            if not description:
                continue
            try:
                validate_endpoint(description)
            except ValueError as e:
                where = (
                    f"--{name}"
                    if self[name] is not None
                    else (f"{path}: [listeners] {name}")
                )
                raise usage.UsageError(
                    f"{where}: invalid endpoint {description!r}: {e}"
                )
        server = replace(cfg.server, data=os.path.abspath(cfg.server.data))
        self.config = cfg.replace(server=server, listeners=listeners)
        self.config_path = path


class WorkerSide(Protocol):
    """What a worker process (``zpop.cluster.worker.Worker``) brings to
    ``build_service``: the sockets it inherited and its pipe to the main
    process. A Protocol, so the assembly needs no import of the worker side
    (which imports the assembly)."""

    listeners: dict[str, tuple[int, int]]
    learn_entry: Share | None
    #: Where to write this process's metrics for the main one (None: off).
    metrics_dir: str | None

    def wake(self) -> None: ...

    def share(self, key: bytes, entry: CachedLogin) -> None: ...

    def listener_service(
        self, name: str, factory: IProtocolFactory
    ) -> service.Service: ...


@dataclass(frozen=True)
class Services:
    """What protocol factories may use; built once by ``makeService``."""

    config: Config
    store: IStore
    tls: ServerTLS
    reactor: Any
    #: The one way in for every protocol (bans, checker, realm, audit).
    authenticator: Authenticator
    #: Runs bcrypt off the reactor (the ``hashing`` thread pool).
    hashing: Runner
    #: Wakes the relay for remote recipients when submission queues mail
    #: (in a worker process: through the main process).
    wake: Callable[[], None] | None = None
    #: The server key (zpop.accounts.passwords): keyed hashes of web
    #: session ids and the CSRF tokens derived from them.
    server_key: bytes = b""
    #: DKIM-signs what is queued for other domains (zpop.mailauth.dkim).
    signer: Signer | None = None
    #: The MX's checks before its 250 (one rspamd client per process).
    inbound: InboundChecks | None = None


def protocol_factory(name: str, services: Services) -> IProtocolFactory:
    """The plaintext protocol factory for listener ``name``.

    Implicit TLS is added by ``makeService``; STLS/STARTTLS is the
    protocol's job (``transport.startTLS(services.tls)``).
    """
    if name not in LISTENER_KINDS:
        raise ValueError(f"unknown listener {name!r}")
    cfg = services.config
    if name == "web":
        return make_site(
            WebContext(
                store=services.store,
                authenticator=services.authenticator,
                clock=services.reactor,
                key=services.server_key,
                config=cfg,
                hashing=services.hashing,
                signer=services.signer,
                dkim=DkimKeys(
                    FileKeyStore(cfg.server.data),
                    services.reactor,
                    cfg.outbound.lifetime,
                ),
            )
        )
    if name in ("imaps", "imap"):
        return IMAPFactory(
            services.authenticator,
            ImapSettings(
                cfg.server.hostname,
                max_message_size=cfg.limits.message_size,
                sessions_per_account_client=-(
                    -cfg.auth.imap_sessions_per_account_client // cfg.server.workers
                ),
            ),
            services.reactor,
            name == "imaps",
            services.tls,
        )
    if name in ("pop3s", "pop3"):
        implicit = name == "pop3s"
        return POP3Factory(
            services.authenticator,
            POP3Settings.from_config(cfg),
            services.reactor,
            implicit,
            services.tls,
        )
    # SMTP: submission on "smtps" (inside implicit TLS) and "submission"
    # (STARTTLS), inbound MX on "mx".
    router = SMTPDelivery(
        services.store,
        cfg.submission,
        cfg.outbound.lifetime,
        services.reactor,
        services.wake,
        signer=services.signer,
        inbound=services.inbound,
    )
    return SMTPFactory(
        name,
        services.authenticator,
        router,
        SMTPSettings.from_config(cfg),
        services.reactor,
        services.tls,
    )


@implementer(IStreamServerEndpoint)
class _ReportingEndpoint:
    """An endpoint that logs the address it really bound (port 0 works)
    and turns a bind failure into a ``ListenError`` naming the listener."""

    def __init__(
        self, name: str, description: str, inner: IStreamServerEndpoint
    ) -> None:
        self._name = name
        self._description = description
        self._inner = inner
        #: The listening port, once listening (worker processes share it).
        self.port: Any = None

    def listen(self, factory: IProtocolFactory) -> Deferred:
        protocol, tls_mode = LISTENER_KINDS[self._name]

        def listening(port: Any) -> Any:
            address = port.getHost()
            where = (
                f"{address.host}:{address.port}"
                if hasattr(address, "port")
                else str(getattr(address, "name", address))
            )
            log.info(
                "listener {name}: {protocol} on {address}, TLS {tls_mode}",
                name=self._name,
                protocol=protocol,
                address=where,
                tls_mode=tls_mode,
            )
            return port

        def failed(failure: Any) -> Any:
            failure.trap(CannotListenError)
            error = failure.value
            reason = getattr(error.socketError, "strerror", None) or str(
                error.socketError
            )
            message = (
                f"zpop: error: listener {self._name} cannot listen on "
                f"{error.interface or '*'}:{error.port} "
                f"({self._description}): {reason}"
            )
            log.critical("{message}", message=message)
            raise ListenError(message)

        def remember(port: Any) -> Any:
            self.port = port
            return port

        d = self._inner.listen(factory).addCallbacks(listening, failed)
        return d.addCallback(remember)


def listener_service(
    name: str, description: str, factory: IProtocolFactory, reactor: Any
) -> StreamServerEndpointService:
    """``strports.service(description, factory)`` that also reports its port:
    a busy port still aborts start-up."""
    svc = strports.service(description, factory, reactor=reactor)
    svc.endpoint = _ReportingEndpoint(name, description, svc.endpoint)
    svc.setName(name)
    return svc


def makeService(options: Options, reactor: Any = None) -> service.MultiService:
    """The zpop service tree for parsed ``options``."""
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    return build_service(options.config, reactor, options.config_path)


def build_service(
    cfg: Config,
    reactor: Any,
    config_path: str | None,
    worker: WorkerSide | None = None,
) -> service.MultiService:
    """The service tree of the main process, or of a worker process that
    serves the main one's listening sockets (``zpop.cluster``)."""
    data_dir = cfg.server.data
    try:
        os.makedirs(data_dir, mode=0o700, exist_ok=True)
    except OSError as e:
        raise StartupError(f"cannot create data directory {data_dir}: {e.strerror}")
    log.info("data directory {data_dir}", data_dir=data_dir)
    # Before anything counts (the thread pools below do).
    metrics_dir = _start_metrics(cfg, worker)
    db_path = os.path.join(data_dir, DATABASE_NAME)
    try:
        upgraded = schema.upgrade(db_path)
    except SchemaError as e:
        raise StartupError(str(e))
    except OSError as e:
        raise StartupError(f"cannot open database {db_path}: {e.strerror}")
    if upgraded.backup is not None:
        log.info(
            "database {path} upgraded from schema version {before}; the old"
            " database was copied to {backup}",
            path=db_path,
            before=upgraded.before,
            backup=upgraded.backup,
        )
    log.info(
        "database {path} at schema version {version}",
        path=db_path,
        version=upgraded.after,
    )
    try:
        server_key = load_or_create_key(data_dir)
    except (OSError, ValueError) as e:
        raise StartupError(f"server key in {data_dir}: {e}")
    try:
        tls = ServerTLS.from_config(cfg.tls, cfg.host_names, data_dir)
    except TLSConfigError as e:
        raise StartupError(str(e))
    except OSError as e:
        raise StartupError(f"TLS: {e}")
    log.info("TLS: {source}", source=tls.source)
    for host, source in sorted(tls.host_sources.items()):
        log.info("TLS for {host}: {source}", host=host, source=source)

    top = StopInOrder()
    top.setName("zpop")
    db = ThreadPoolService(reactor, "db", cfg.server.db_threads)
    store = SQLiteStore(db_path, db)
    # First child, so it stops last: after the pool ran what was queued.
    StoreService(store).setServiceParent(top)
    db.setServiceParent(top)
    hashing = ThreadPoolService(reactor, "hashing", HASHING_THREADS, nice=10)
    hashing.setServiceParent(top)
    # Signing costs about 1 ms a 4 KB message: off the reactor, on its own pool.
    signing = ThreadPoolService(reactor, "dkim", DKIM_THREADS)
    signing.setServiceParent(top)
    # SPF and DKIM checks on the MX: a pool of their own (SPF waits in it).
    checking = ThreadPoolService(reactor, "mailauth", mailauth_service.THREADS)
    checking.setServiceParent(top)
    signer = DkimSigner(FileKeyStore(data_dir), signing, reactor)
    # After the pools, so it stops before them: its last write still runs.
    activity = ActivityRecorder(store, reactor)
    activity.setServiceParent(top)
    pop_log = PopLogRecorder(store, reactor)
    pop_log.setServiceParent(top)
    pool: WorkerPool | None = None

    def share_with_workers(key: bytes, entry: CachedLogin) -> None:
        if pool is not None:
            pool.share(key, entry)

    if worker is not None:
        share: Share | None = worker.share
    else:
        share = share_with_workers if cfg.server.workers > 1 else None
    checker = AccountChecker(
        store,
        server_key,
        hashing,
        reactor,
        cfg.accounts.bcrypt_cost,
        cfg.auth.credential_cache,
        share=share,
    )
    if worker is not None:
        worker.learn_entry = checker.learn
    realm = Realm(
        store,
        cfg.hosts,
        cfg.accounts,
        reactor,
        cfg.pop,
        pop_log.write,
        cfg.limits.message_size,
    )
    portal = Portal(realm, [checker])
    # Only the main process relays; a worker asks it to look at the queue.
    outbound = (
        OutboundService(store, cfg.outbound, cfg.hosts.smtp, reactor, signer=signer)
        if worker is None
        else None
    )
    wake = worker.wake if worker is not None else outbound.wake  # type: ignore[union-attr]
    services = Services(
        config=cfg,
        store=store,
        tls=tls,
        reactor=reactor,
        authenticator=Authenticator(
            portal, store, reactor, cfg.auth, server_key, activity.record
        ),
        wake=wake,
        server_key=server_key,
        hashing=hashing,
        signer=signer,
        inbound=_inbound_checks(cfg, reactor, store, checking),
    )
    endpoints_: list[tuple[str, _ReportingEndpoint]] = []
    for name in LISTENERS:
        if name == "metrics":
            # The main process alone answers scrapes, for every process.
            if worker is None and cfg.listeners.get(name, ""):
                _metrics_listener(
                    top, cfg.listeners[name], metrics_dir, store, reactor
                )
            continue
        if worker is None:
            description = cfg.listeners.get(name, "")
            if not description:
                continue
        elif name not in worker.listeners:
            continue
        # Each process enforces its share of the limits.
        per_client = (
            cfg.auth.imap_connections_per_client
            if LISTENER_KINDS[name][0] == "IMAP"
            else cfg.auth.max_connections_per_client
        )
        factory: IProtocolFactory = ConnectionLimiter(
            protocol_factory(name, services),
            -(-per_client // cfg.server.workers),
            -(-cfg.auth.max_connections // cfg.server.workers),
            REFUSALS[LISTENER_KINDS[name][0]],
            listener=name,
        )
        if LISTENER_KINDS[name][1] == "implicit":
            factory = tls.wrap(factory, reactor)
        if worker is not None:
            worker.listener_service(name, factory).setServiceParent(top)
            continue
        svc = listener_service(name, description, factory, reactor)
        svc.setServiceParent(top)
        endpoints_.append((name, svc.endpoint))
    if outbound is not None:
        outbound.setServiceParent(top)
    if worker is None and cfg.server.workers > 1:
        ports = [(name, lambda e=e: e.port) for name, e in endpoints_]
        pool = WorkerPool(
            reactor,
            cfg.server.workers - 1,
            ports,
            data_dir,
            config_path,
            outbound,
            checker.learn,
            metrics_dir,
        )
        pool.setServiceParent(top)
    return top


def _inbound_checks(
    cfg: Config, reactor: Any, store: Any, pool: ThreadPoolService
) -> InboundChecks:
    """The MX's checks: SPF, DKIM and DMARC always; rspamd when ``[spam]
    rspamd`` is set, its password read once, here."""
    spam = None
    if cfg.spam.rspamd:
        password = None
        if cfg.spam.password_file:
            try:
                password = read_password(cfg.spam.password_file)
            except (OSError, ValueError) as e:
                raise StartupError(f"[spam] password_file: {e}")
        log.info("spam filter: rspamd at {url}", url=cfg.spam.rspamd)
        spam = RspamdClient(reactor, cfg.spam, password)
    return mailauth_service.inbound_checks(reactor, cfg, store, pool, spam)


def _start_metrics(cfg: Config, worker: WorkerSide | None) -> str | None:
    """Where this process's metrics go when several processes serve
    (``zpop.metrics``): the main process empties the per-run directory
    and writes there, a worker writes where the main process said. None:
    in memory (one process, or no ``metrics`` listener)."""
    if worker is not None:
        path = worker.metrics_dir
    elif cfg.listeners.get("metrics", "") and cfg.server.workers > 1:
        path = metrics.directory(cfg.server.data)
        try:
            metrics.clear_directory(path)
        except OSError as e:
            raise StartupError(f"metrics directory {path}: {e.strerror or e}")
    else:
        path = None
    if path is not None:
        metrics.install_multiprocess(path)
    return path


def _loopback_only(description: str) -> bool:
    """Whether an endpoint string listens on loopback (or a Unix socket)."""
    kind = description.split(":", 1)[0].strip().lower()
    if kind == "unix":
        return True
    match = re.search(r"interface=((?:\\:|[^:])*)", description)
    interface = match.group(1).replace("\\:", ":") if match else ""
    return interface in ("::1", "localhost") or interface.startswith("127.")


def _metrics_listener(
    top: service.MultiService,
    description: str,
    metrics_dir: str | None,
    store: IStore,
    reactor: Any,
) -> None:
    """The ``metrics`` listener and the one thread its scrapes collect in."""
    if not _loopback_only(description):
        log.warn(
            "listener metrics ({description}) is plain HTTP beyond loopback:"
            " anyone who reaches it sees the server's traffic counts",
            description=description,
        )
    collecting = ThreadPoolService(reactor, "metrics-scrape", 1)
    collecting.setServiceParent(top)
    registry = (
        metrics.multiprocess_registry(metrics_dir)
        if metrics_dir is not None
        else metrics.current().registry
    )

    async def refresh() -> None:
        count, oldest = await queue_summary(store)
        age = 0.0 if oldest is None else max(0.0, reactor.seconds() - oldest)
        metrics.queue(count, age)

    site = metrics.make_site(
        registry, collecting, lambda: Deferred.fromCoroutine(refresh())
    )
    listener_service("metrics", description, site, reactor).setServiceParent(top)
