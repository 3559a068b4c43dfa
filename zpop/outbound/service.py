"""The outbound scheduler: deliver queued mail to the rest of the Internet.

``OutboundService`` (the ``outbound`` child of the service tree) claims due
recipients from the store's outbound queue with a lease, groups them by
destination domain, and delivers each domain's messages over as few SMTP
connections as the limits allow (``[outbound] max_connections`` overall,
``max_connections_per_domain`` per domain; one connection carries many
messages). Where a domain's mail goes is ``zpop.outbound.routing``'s
decision, the SMTP dialogue is ``zpop.outbound.client``'s: the scheduler
only says "deliver these jobs over this hop" and records what comes back.

Every recipient's result is recorded on its own (``zpop.outbound.retry``
says what a reply or an error means: delivered, failed, or queued again
with a back-off). Once no recipient of a message is left queued, the
message leaves the queue and, if any recipient failed and the sender is not
the null sender, one DSN (``zpop.outbound.dsn``) is stored in the same
transaction. A crash at any moment loses nothing: claims are leases that
run out (a dead process's leases are released at start, ``zpop.owners``),
and a message whose 250 was lost is sent again (a duplicate, never a loss).
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from zpop import metrics, owners
from zpop.config import OutboundConfig
from zpop.outbound.client import Deliverer, DeliveryError, RemoteReply, hop_endpoint
from zpop.outbound.dsn import SUBJECT, build_dsn
from zpop.outbound.retry import outcome
from zpop.outbound.routing import Hop, Router
from zpop.store import IStore, NotFound
from zpop.store.records import NewMessage, OutboundJob, QueuedMessage

if TYPE_CHECKING:
    from zpop.mailauth.dkim import Signer

# The namespace of the module this was split from, so log filters and what
# operators grep for ("[zpop.outbound#...]") stay as they were.
log = Logger(namespace="zpop.outbound")

#: A recipient's state after an attempt -> its result in zpop.metrics.
_RESULTS = {"delivered": "delivered", "queued": "deferred", "failed": "failed"}

#: Recipients claimed per scan, and the most waiting in memory.
CLAIM_BATCH = 500


class OutboundService(Service):
    """Delivers the outbound queue; child ``outbound`` of the service tree.

    ``reactor`` connects and times out sessions; ``clock`` (default: the
    reactor) tells the time and schedules scans, so tests drive the retry
    schedule with a ``Clock``. ``connect(hop)`` returns a client endpoint
    (default: ``HostnameEndpoint``).
    """

    def __init__(
        self,
        store: IStore,
        config: OutboundConfig,
        hostname: str,
        reactor: Any,
        clock: IReactorTime | None = None,
        resolver: Any = None,
        connect: Callable[[Hop], Any] | None = None,
        owner: str | None = None,
        signer: Signer | None = None,
    ) -> None:
        self.setName("outbound")
        self._store = store
        self._config = config
        #: The name this relay gives itself: EHLO, and the DSN's reporting MTA.
        self._hostname = hostname
        self._reactor = reactor
        self._clock = clock if clock is not None else reactor
        self._resolver = resolver
        #: DKIM-signs the DSNs that go to remote senders.
        self._signer = signer
        self._deliverer = Deliverer(
            reactor,
            config,
            hostname,
            store.read_outbound_body,
            connect or functools.partial(hop_endpoint, reactor),
        )
        self.owner = owner or owners.current_owner()
        self.router: Router | None = None
        self._router_error: str | None = None
        self._waiting: dict[str, deque[OutboundJob]] = {}
        self._per_domain: dict[str, int] = {}
        self._active = 0
        self._workers: set[Deferred] = set()
        self._finalizing: set[int] = set()
        self._scan: Deferred | None = None
        self._again = False
        self._loops: list[LoopingCall] = []
        self._stopping = False
        self._first: IDelayedCall | None = None
        self._claimed = False

    # -- life cycle --------------------------------------------------------

    def _make_router(self) -> None:
        try:
            self.router = Router(self._config, self._resolver)
        except (OSError, UnicodeDecodeError) as e:
            self._router_error = f"cannot read the smart host password file: {e}"
            log.error("outbound: {error}", error=self._router_error)

    def startService(self) -> None:  # noqa: N802
        super().startService()
        self._stopping = False
        self._make_router()
        for interval, job in (
            (self._config.scan_interval, self._tick),
            (self._config.lease / 3, self._renew),
        ):
            loop = LoopingCall(job)
            loop.clock = self._clock
            loop.start(interval, now=False).addErrback(
                lambda f: log.failure("outbound loop stopped", f)
            )
            self._loops.append(loop)
        # The first scan as soon as the reactor runs (not inside startService),
        # after taking back what a crashed process of this host held.
        self._first = self._clock.callLater(0, self._recover)
        log.info("outbound relay started as {owner}", owner=self.owner)

    def _recover(self) -> None:
        d = owners.release_dead_leases(self._store)
        d.addErrback(lambda f: log.failure("outbound: releasing dead leases", f))
        d.addBoth(lambda _: self._tick())

    def stopService(self) -> Deferred:  # noqa: N802
        super().stopService()
        self._stopping = True
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops = []
        if self._first is not None and self._first.active():
            self._first.cancel()
        self._deliverer.abort(DeliveryError("zpop is shutting down"))
        # Interrupted recipients are not counted as attempts: release them so
        # the next start retries at once.
        if not self._claimed:
            return defer.succeed(None)
        d = defer.DeferredList(list(self._workers), consumeErrors=True)
        d.addCallback(lambda _: self._store.release_outbound_leases(self.owner))
        d.addErrback(lambda f: log.failure("outbound: releasing leases", f))
        return d

    def wake(self) -> None:
        """Scan now rather than at the next tick: a message was just queued."""
        if self.running and not self._stopping:
            self._clock.callLater(0, self._tick)

    def _tick(self) -> Deferred | None:
        if self._scan is not None:
            self._again = True
            return None
        d = self.run_once(wait=False)
        d.addErrback(lambda f: log.failure("outbound scan failed", f))
        return None

    def _renew(self) -> Deferred:
        d = self._store.renew_outbound_leases(
            self.owner, self._clock.seconds(), self._config.lease
        )
        d.addErrback(lambda f: log.failure("outbound: renewing leases", f))
        return d

    # -- scanning ---------------------------------------------------------

    def run_once(self, wait: bool = True) -> Deferred:
        """Claim due work, start deliveries, finish completed messages.

        With ``wait`` the Deferred fires once every delivery started so far
        has been recorded (tests); the timer loop does not wait.
        """
        if self.router is None and self._router_error is None:
            self._make_router()
        d = Deferred.fromCoroutine(self._run_once())
        self._scan = d

        def done(result: object) -> object:
            self._scan = None
            if self._again:
                # Woken while scanning: what was queued meanwhile goes now.
                self._again = False
                self._clock.callLater(0, self._tick)
            return result

        d.addBoth(done)
        if wait:
            d.addCallback(lambda _: self.idle())
        return d

    def idle(self) -> Deferred:
        """Fires when no delivery is running (including ones they start)."""

        async def wait() -> None:
            while self._workers or self._finalizing:
                await defer.DeferredList(list(self._workers), consumeErrors=True)
                if self._finalizing:
                    await self._finish_all()

        return Deferred.fromCoroutine(wait())

    async def _run_once(self) -> None:
        await self._finish_all()
        waiting = sum(len(q) for q in self._waiting.values())
        if waiting < CLAIM_BATCH and not self._stopping:
            jobs = await self._store.claim_outbound(
                self.owner,
                self._clock.seconds(),
                self._config.lease,
                CLAIM_BATCH - waiting,
            )
            for job in jobs:
                self._claimed = True
                self._waiting.setdefault(job.domain, deque()).append(job)
            if jobs:
                log.info("outbound: claimed {count} deliveries", count=len(jobs))
        self._dispatch()

    async def _finish_all(self) -> None:
        for message_id in await self._store.finished_outbound(100):
            await self._finalize(message_id)

    def _dispatch(self) -> None:
        if self._stopping:
            return
        for domain, queue in list(self._waiting.items()):
            while (
                queue
                and self._active < self._config.max_connections
                and self._per_domain.get(domain, 0)
                < self._config.max_connections_per_domain
            ):
                self._start_worker(domain)
                if len(queue) <= self._per_domain[domain]:
                    break
            if not queue and not self._per_domain.get(domain):
                del self._waiting[domain]

    def _start_worker(self, domain: str) -> None:
        self._active += 1
        self._per_domain[domain] = self._per_domain.get(domain, 0) + 1
        d = Deferred.fromCoroutine(self._worker(domain))
        self._workers.add(d)

        def finished(result: object) -> None:
            self._workers.discard(d)
            self._active -= 1
            self._per_domain[domain] -= 1
            if not self._per_domain[domain]:
                del self._per_domain[domain]
                if not self._waiting.get(domain):
                    self._waiting.pop(domain, None)
            if isinstance(result, Failure):
                log.failure("outbound worker for {domain}", result, domain=domain)
            self._dispatch()

        d.addBoth(finished)

    # -- one domain -------------------------------------------------------

    def _next_job(self, domain: str) -> OutboundJob | None:
        queue = self._waiting.get(domain)
        if not queue or self._stopping:
            return None
        return queue.popleft()

    async def _worker(self, domain: str) -> None:
        """Deliver ``domain``'s waiting jobs over one connection at a time."""
        while not self._stopping and self._waiting.get(domain):
            if self.router is None:
                error = DeliveryError(self._router_error or "no router")
                await self._fail_waiting(domain, error)
                return
            try:
                hops = await self.router.route(domain)
            except DeliveryError as e:
                await self._fail_waiting(domain, e)
                return
            last: DeliveryError | None = None
            progressed = False
            for hop in hops:
                try:
                    progressed = await self._deliverer.deliver(
                        hop, functools.partial(self._next_job, domain), self._record
                    )
                except DeliveryError as e:
                    last = e
                    continue
                break
            else:
                if last is not None:
                    await self._fail_waiting(domain, last)
                return
            if not progressed:
                return

    async def _fail_waiting(self, domain: str, error: DeliveryError) -> None:
        """Record ``error`` for every waiting job of ``domain``."""
        while True:
            job = self._next_job(domain)
            if job is None:
                return
            await self._record(job, {r: error for r in job.recipients})

    # -- results ------------------------------------------------------------

    async def _record(
        self,
        job: OutboundJob,
        results: Mapping[str, RemoteReply | DeliveryError],
        mta: str | None = None,
    ) -> None:
        if self._stopping and all(
            isinstance(r, DeliveryError) for r in results.values()
        ):
            return  # interrupted by shutdown: not an attempt
        now = self._clock.seconds()
        rows = []
        for recipient, attempts in zip(job.recipients, job.attempts, strict=True):
            result = results[recipient]
            rows.append(
                outcome(
                    recipient,
                    attempts + 1,
                    now,
                    job.expires,
                    self._config,
                    reply=result if isinstance(result, RemoteReply) else None,
                    error=result if isinstance(result, DeliveryError) else None,
                    remote_mta=mta,
                )
            )
        for row in rows:
            log.info(
                "outbound {id} to={recipient} state={state} {error}",
                id=job.message_id,
                recipient=row.recipient,
                state=row.state,
                error=row.error or f"via {row.remote_mta}",
            )
        complete = await self._store.record_outbound_results(
            self.owner, job.message_id, rows, now
        )
        for row in rows:
            metrics.relayed(_RESULTS.get(row.state, row.state))
        if complete:
            await self._finalize(job.message_id)

    async def _bounce_to(
        self, sender: str, body: bytes, now: float
    ) -> tuple[str, tuple[int, NewMessage] | None, QueuedMessage | None]:
        """Where a DSN for ``sender`` goes: the Inbox of the hosted account
        (or alias), nowhere for an unknown address of a hosted domain (no
        one to tell), else the queue from the null sender."""
        owner = await self._store.get_account_for_recipient(sender)
        if owner is not None:
            return "local", (owner.id, NewMessage("Inbox", body, SUBJECT, now)), None
        try:
            await self._store.get_domain(sender.rpartition("@")[2])
        except NotFound:
            expires = now + self._config.lifetime
            if self._signer is not None:
                body = await self._signer.sign(body)
            return "queued", None, QueuedMessage("", (sender,), body, now, expires)
        return "dropped", None, None

    async def _finalize(self, message_id: int) -> None:
        """Remove a message whose recipients are all final; bounce failures."""
        if message_id in self._finalizing:
            return
        self._finalizing.add(message_id)
        try:
            try:
                message = await self._store.get_outbound(message_id)
            except NotFound:
                return
            failed = [r for r in message.recipients if r.state == "failed"]
            where, local, queued = "none", None, None
            if failed and message.sender:
                head = await self._store.read_outbound_body(message_id, 0, 65536)
                now = self._clock.seconds()
                body = build_dsn(
                    self._hostname,
                    message.sender,
                    failed,
                    head,
                    message.created,
                    now,
                )
                where, local, queued = await self._bounce_to(message.sender, body, now)
            if not await self._store.finish_outbound(message_id, local, queued):
                return  # another scan finished it
            if where != "none":
                metrics.bounced(where)
            log.info(
                "outbound {id} done: delivered={delivered} failed={failed}"
                " bounce={where}",
                id=message_id,
                delivered=len(message.recipients) - len(failed),
                failed=len(failed),
                where=where,
            )
        except NotFound:
            return
        finally:
            self._finalizing.discard(message_id)
