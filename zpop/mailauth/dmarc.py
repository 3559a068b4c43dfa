"""DMARC (RFC 7489): the ``From:`` domain's policy, found in DNS at
``_dmarc.DOMAIN`` or at its organizational domain (the public suffix list,
from the ``publicsuffixlist`` package), and whether SPF or DKIM passed for
a domain aligned with it.

``evaluate`` is pure: the records and results go in, the result and the
disposition come out, so every rule is tested without DNS.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from publicsuffixlist import PublicSuffixList

from zpop.mailauth.checks import DkimResult, SpfResult
from zpop.mailauth.dns import Lookup, txt_records


@functools.cache
def public_suffixes() -> PublicSuffixList:
    """The public suffix list, parsed once (a tenth of a second) when the
    server builds its checks, not whenever this module is imported."""
    return PublicSuffixList()


POLICIES = ("none", "quarantine", "reject")
#: What ``pct`` sampling falls back to (RFC 7489 §6.6.4).
_WEAKER = {"reject": "quarantine", "quarantine": "none", "none": "none"}


@dataclass(frozen=True)
class Policy:
    """A DMARC record's tags that decide (defaults as RFC 7489 §6.3)."""

    #: p=, and sp= for subdomains of the domain the record was found at.
    p: str
    sp: str
    #: Alignment: ``r`` (relaxed, same organizational domain) or ``s``.
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100
    #: The domain whose ``_dmarc`` record this is.
    domain: str = ""


@dataclass(frozen=True)
class DmarcResult:
    """RFC 8601 ``dmarc=``: pass, fail, none, temperror or permerror."""

    result: str
    from_domain: str
    #: The policy that applied (p= or sp=), None without a record.
    policy: str | None = None
    #: What to do: none, quarantine or reject (after pct sampling).
    disposition: str = "none"
    reason: str = ""


@functools.lru_cache(maxsize=4096)
def organizational_domain(domain: str) -> str:
    """The registered domain under its public suffix (``mail.example.co.uk``
    -> ``example.co.uk``); the domain itself if it is a suffix. Cached:
    the list's lookup costs a third of a millisecond, and an MX asks it
    for the same few domains again and again."""
    return public_suffixes().privatesuffix(domain.lower().rstrip(".")) or domain.lower()


def aligned(domain: str, from_domain: str, mode: str) -> bool:
    """Whether an authenticated ``domain`` aligns with the From domain."""
    domain, from_domain = domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    if mode == "s":
        return domain == from_domain
    return organizational_domain(domain) == organizational_domain(from_domain)


def parse_record(text: bytes) -> Policy | None:
    """The policy of a ``v=DMARC1`` record, or None if it is not one or has
    no valid p= (RFC 7489 §6.6.3: such records are ignored)."""
    try:
        decoded = text.decode("ascii")
    except UnicodeDecodeError:
        return None
    tags: dict[str, str] = {}
    for part in decoded.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags.setdefault(name.strip().lower(), value.strip())
    if tags.get("v") != "DMARC1" or not decoded.lstrip().startswith("v"):
        return None
    p = tags.get("p", "").lower()
    if p not in POLICIES:
        return None
    sp = tags.get("sp", p).lower()
    if sp not in POLICIES:
        sp = p
    pct_text = tags.get("pct", "100")
    pct = int(pct_text) if pct_text.isdigit() else 100
    return Policy(
        p=p,
        sp=sp,
        adkim="s" if tags.get("adkim", "r").lower() == "s" else "r",
        aspf="s" if tags.get("aspf", "r").lower() == "s" else "r",
        pct=min(pct, 100),
    )


async def find_policy(lookup: Lookup, from_domain: str) -> Policy | None:
    """The From domain's policy, else its organizational domain's; None
    if neither publishes one. Fails TemporaryDnsError (RFC 7489 §6.6.3)."""
    organizational = organizational_domain(from_domain)
    for domain in dict.fromkeys([from_domain, organizational]):
        answers = await lookup.lookup(f"_dmarc.{domain}", "TXT")
        policies = [p for p in map(parse_record, txt_records(answers)) if p]
        if len(policies) == 1:
            found = policies[0]
            return Policy(found.p, found.sp, found.adkim, found.aspf, found.pct, domain)
    return None


def evaluate(
    from_domain: str,
    policy: Policy | None,
    spf: SpfResult,
    dkim: list[DkimResult],
    sample: float | None = None,
) -> DmarcResult:
    """The DMARC result of the checks, and what the policy says to do.
    ``sample`` in [0, 100) decides pct= (random when None)."""
    if policy is None:
        return DmarcResult("none", from_domain, reason="no DMARC record")
    applied = policy.p
    if from_domain != policy.domain:
        applied = policy.sp
    spf_ok = spf.result == "pass" and aligned(spf.domain, from_domain, policy.aspf)
    dkim_ok = any(
        r.result == "pass" and aligned(r.domain, from_domain, policy.adkim)
        for r in dkim
    )
    if spf_ok or dkim_ok:
        via = "SPF" if spf_ok else "DKIM"
        return DmarcResult("pass", from_domain, applied, reason=f"aligned {via} pass")
    if sample is None:
        sample = random.uniform(0, 100)  # noqa: S311 - sampling, not a secret
    disposition = applied if sample < policy.pct else _WEAKER[applied]
    return DmarcResult(
        "fail", from_domain, applied, disposition, "no aligned SPF or DKIM pass"
    )


def could_pass(
    from_domain: str, policy: Policy | None, spf: SpfResult, dkim: list[DkimResult]
) -> bool:
    """Whether a temporary error left an aligned check undecided: the
    answer could still make a failing message pass."""
    aspf = policy.aspf if policy else "r"
    adkim = policy.adkim if policy else "r"
    return (
        spf.result == "temperror" and aligned(spf.domain, from_domain, aspf)
    ) or any(
        r.result == "temperror" and aligned(r.domain, from_domain, adkim) for r in dkim
    )
