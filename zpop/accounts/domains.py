"""Hosted domains: add, list with their account counts, and the check that
an address is in one."""

from __future__ import annotations

from dataclasses import dataclass

from zpop.accounts import Clock, service
from zpop.accounts.errors import DomainHosted, NotHosted
from zpop.store import AlreadyExists, Domain, IStore, NotFound


@dataclass(frozen=True)
class DomainSummary:
    """A hosted domain and how many accounts it has."""

    domain: Domain
    accounts: int


def kind(organization: bool) -> str:
    """The word for a domain kind (DESIGN §1: personal or organization)."""
    return "organization" if organization else "personal"


@service
async def add_domain(
    store: IStore, clock: Clock, name: str, organization: bool
) -> Domain:
    """Host a domain (``name`` as :func:`addresses.parse_domain` gives it);
    DomainHosted if it is already."""
    try:
        domain: Domain = await store.add_domain(name, organization, clock.seconds())
    except AlreadyExists as e:
        raise DomainHosted(str(e)) from None
    return domain


@service
async def list_domains(store: IStore) -> list[DomainSummary]:
    """Every hosted domain with its number of accounts."""
    domains = await store.list_domains()
    counts: dict[str, int] = {}
    for account in await store.list_accounts():
        counts[account.domain] = counts.get(account.domain, 0) + 1
    return [DomainSummary(d, counts.get(d.name, 0)) for d in domains]


@service
async def require_hosted(store: IStore, domain: str) -> Domain:
    """The hosted domain ``domain``, or NotHosted."""
    try:
        found: Domain = await store.get_domain(domain)
    except NotFound:
        raise NotHosted(domain) from None
    return found
