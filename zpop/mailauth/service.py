"""The MX's checks as the server runs them: DNS through twisted.names to
``[dns] resolver``, pyspf and dkimpy in a thread pool of their own, and
the store saying which domains are hosted."""

from __future__ import annotations

from typing import Any

from twisted.internet.threads import blockingCallFromThread

from zpop.config import Config
from zpop.mailauth import dmarc
from zpop.mailauth.checks import DkimVerifier, SpfChecker
from zpop.mailauth.dns import Resolver
from zpop.mailauth.inbound import InboundChecks, MailAuthenticator, SpamFilter
from zpop.store import IStore, NotFound
from zpop.threads import ThreadPoolService

#: Threads for SPF and DKIM checks: an SPF check waits in its thread for
#: each DNS answer, so a few slow domains must not hold up the rest.
THREADS = 8


def inbound_checks(
    reactor: Any,
    config: Config,
    store: IStore,
    pool: ThreadPoolService,
    spam: SpamFilter | None = None,
) -> InboundChecks:
    """SPF, DKIM and DMARC, then ``spam``, for the MX."""
    lookup = Resolver(reactor, config.dns)
    dmarc.public_suffixes()

    def wait(lookup_call: Any, name: str, qtype: str) -> Any:
        return blockingCallFromThread(reactor, lookup_call, name, qtype)

    async def is_hosted(domain: str) -> bool:
        try:
            await store.get_domain(domain)
        except NotFound:
            return False
        return True

    hostname = config.server.hostname
    authenticator = MailAuthenticator(
        hostname,
        lookup,
        SpfChecker(pool, lookup, wait),
        DkimVerifier(pool, lookup),
        is_hosted,
    )
    return InboundChecks(hostname, authenticator, spam)
