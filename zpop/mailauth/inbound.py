"""The MX's checks of a message before its ``250`` (DESIGN §1 "Mail
authentication and spam filtering"): SPF for the envelope sender and the
HELO name, every DKIM signature, and DMARC for the ``From:`` domain,
recorded in an ``Authentication-Results`` field (RFC 8601) whose
authserv-id is our host name; then the spam filter, which sees those
results. Either may refuse the message or send it to Spam.

Rules beyond the RFCs: any ``Authentication-Results`` field arriving with
our authserv-id is removed first (it would forge our word). Mail from
outside whose ``From:`` claims a hosted domain is never filed in the
Inbox unless DMARC passes: the hosted domains' own mail comes through
submission, not the MX. A DNS failure refuses the message for now (``451
4.4.3``) only when the policy's outcome depends on the missing answer;
otherwise ``temperror`` is recorded and delivery goes on.
"""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from twisted.logger import Logger

from zpop.mailauth import dmarc
from zpop.mailauth.checks import DkimResult, DkimVerifier, SpfChecker, SpfResult
from zpop.mailauth.dns import Lookup, TemporaryDnsError
from zpop.mailauth.rspamd import without_status_fields
from zpop.mailauth.verdict import InboundMessage, Refused, Verdict

log = Logger()

#: A header field: its name, and its value with folded lines.
_FIELD = re.compile(rb"([^\s:]+)[ \t]*:(.*?\r\n(?:[ \t].*?\r\n)*)", re.S)
#: What may stand in an A-R property value unquoted: no space, ";" or "(".
_TOKEN = re.compile(r"[^\x00-\x20\x7f()<>@,;:\\\"/\[\]?=]+")


class SpamFilter(Protocol):
    """A spam filter (zpop.mailauth.rspamd.RspamdClient)."""

    async def check(
        self, message: InboundMessage, authentication_results: bytes
    ) -> Verdict:
        """The filter's verdict; raises Refused to refuse the message."""


@dataclass(frozen=True)
class Authentication:
    """What the SPF, DKIM and DMARC checks found."""

    spf: SpfResult
    helo: SpfResult
    dkim: list[DkimResult]
    dmarc: dmarc.DmarcResult


class MailAuthenticator:
    """SPF, DKIM and DMARC for one message, and what they mean for it."""

    def __init__(
        self,
        hostname: str,
        lookup: Lookup,
        spf: SpfChecker,
        dkim: DkimVerifier,
        is_hosted: Callable[[str], Awaitable[bool]],
        sample: Callable[[], float] | None = None,
    ) -> None:
        self._hostname = hostname.lower()
        self._lookup = lookup
        self._spf = spf
        self._dkim = dkim
        self._is_hosted = is_hosted
        self._sample = sample

    async def check(self, message: InboundMessage) -> tuple[Verdict, Authentication]:
        """The verdict of the checks (the Authentication-Results field, and
        Spam for a quarantined or forged hosted sender); raises Refused for
        a DMARC reject (550 5.7.1) or an answer the policy needs (451 4.4.3)."""
        spf, helo = await self._spf.check(message.client, message.sender, message.helo)
        signatures = await self._dkim.check(message.body)
        from_domain, problem = from_domain_of(message.body)
        policy: dmarc.Policy | None = None
        if from_domain is None:
            result = dmarc.DmarcResult("permerror", "", reason=problem)
        else:
            try:
                policy = await dmarc.find_policy(self._lookup, from_domain)
            except TemporaryDnsError:
                result = self._without_policy(from_domain, spf, signatures)
            else:
                sample = self._sample() if self._sample else None
                result = dmarc.evaluate(from_domain, policy, spf, signatures, sample)
        found = Authentication(spf, helo, signatures, result)
        fields = authentication_results(self._hostname, found)
        if result.disposition != "none" and from_domain is not None:
            if dmarc.could_pass(from_domain, policy, spf, signatures):
                raise Refused(
                    451,
                    "4.4.3",
                    "Temporary DNS failure checking the sender, try again later",
                )
        if result.disposition == "reject":
            raise Refused(
                550,
                "5.7.1",
                f"Message rejected by the DMARC policy of {result.from_domain}",
            )
        folder = "Spam" if result.disposition == "quarantine" else None
        if folder is None and result.result != "pass" and from_domain is not None:
            hosted = await self._claims_hosted(from_domain)
            if hosted:
                folder = "Spam"
        return Verdict(folder=folder, fields=fields), found

    def _without_policy(
        self, from_domain: str, spf: SpfResult, signatures: list[DkimResult]
    ) -> dmarc.DmarcResult:
        """The DMARC record could not be read: a strictly aligned pass
        passes under any record; anything else needs the record."""
        strict = dmarc.Policy("none", "none", "s", "s", 100, from_domain)
        passed = dmarc.evaluate(from_domain, strict, spf, signatures, 100.0)
        if passed.result == "pass":
            return passed
        raise Refused(
            451, "4.4.3", "Temporary DNS failure reading the sender's DMARC policy"
        )

    async def _claims_hosted(self, from_domain: str) -> bool:
        organizational = dmarc.organizational_domain(from_domain)
        for domain in dict.fromkeys([from_domain, organizational]):
            if await self._is_hosted(domain):
                return True
        return False


class InboundChecks:
    """Every check the MX makes of a message, in order."""

    def __init__(
        self,
        hostname: str = "",
        authenticator: MailAuthenticator | None = None,
        spam: SpamFilter | None = None,
    ) -> None:
        self._hostname = hostname.lower()
        self._authenticator = authenticator
        self._spam = spam

    async def check(self, message: InboundMessage) -> Verdict:
        """The verdict on ``message``; raises Refused to refuse it."""
        body = message.body
        if self._hostname:
            body = remove_our_results(body, self._hostname)
        if self._spam is not None:
            # The filter's verdict field must not meet a forged one.
            body = without_status_fields(body)
        verdict = Verdict(body=body if body != message.body else None)
        fields = b""
        if self._authenticator is not None:
            found, auth = await self._authenticator.check(message)
            fields = found.fields
            log.info(
                "{queue_id} spf={spf} dkim={dkim} dmarc={dmarc}",
                queue_id=message.queue_id,
                spf=auth.spf.result,
                dkim=",".join(r.result for r in auth.dkim) or "none",
                dmarc=auth.dmarc.result,
            )
            verdict = Verdict(found.folder, fields, verdict.body)
        if self._spam is not None:
            spam = await self._spam.check(message, fields)
            folder = verdict.folder if verdict.folder == "Spam" else spam.folder
            verdict = Verdict(folder, verdict.fields + spam.fields, verdict.body)
        return verdict


def from_domain_of(body: bytes) -> tuple[str | None, str]:
    """The domain of the one ``From:`` address (RFC 7489 §6.6.1), or None
    and why not."""
    end = body.find(b"\r\n\r\n")
    header = body if end < 0 else body[: end + 4]
    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(
        header
    )
    values = parsed.get_all("From") or []
    if len(values) != 1:
        return None, f"{len(values)} From fields"
    addresses = [a for _, a in email.utils.getaddresses([str(values[0])]) if a]
    domains = {a.rpartition("@")[2].lower().rstrip(".") for a in addresses}
    if len(domains) != 1 or "" in domains:
        return None, "not one From domain"
    (domain,) = domains
    if not domain.isascii() or not _TOKEN.fullmatch(domain):
        return None, "unusable From domain"
    return domain, ""


def remove_our_results(body: bytes, hostname: str) -> bytes:
    """``body`` without the Authentication-Results fields claiming to be
    ours (authserv-id ``hostname``, RFC 8601 §5)."""
    end = body.find(b"\r\n\r\n")
    if end < 0:
        return body
    header, rest = body[: end + 2], body[end + 2 :]
    kept: list[bytes] = []
    position = 0
    for match in _FIELD.finditer(header):
        if match.start() != position:
            return body  # not a header we can take apart: leave it whole
        position = match.end()
        name, value = match.group(1), match.group(2)
        if name.lower() == b"authentication-results":
            authserv = value.split(b";", 1)[0]
            authserv = re.sub(rb"\([^)]*\)", b"", authserv).strip().split()
            if authserv and authserv[0].decode("ascii", "replace").lower() == hostname:
                continue
        kept.append(match.group(0))
    if position != len(header):
        return body
    return b"".join(kept) + rest


def authentication_results(hostname: str, found: Authentication) -> bytes:
    """The Authentication-Results field (RFC 8601), folded, ending CRLF."""
    parts = [
        f"spf={found.spf.result} smtp.mailfrom={_value(found.spf.domain)}",
        f"spf={found.helo.result} smtp.helo={_value(found.helo.domain)}",
    ]
    if not found.dkim:
        parts.append("dkim=none")
    for r in found.dkim:
        part = f"dkim={r.result}"
        if r.domain:
            part += f" header.d={_value(r.domain)} header.s={_value(r.selector)}"
        if r.tag:
            part += f" header.b={_value(r.tag)}"
        parts.append(part)
    result = found.dmarc
    comment = ""
    if result.policy is not None:
        comment = f" (p={result.policy} dis={result.disposition})"
    parts.append(
        f"dmarc={result.result}{comment} header.from={_value(result.from_domain)}"
    )
    return (
        "Authentication-Results: "
        + hostname
        + ";\r\n\t"
        + ";\r\n\t".join(parts)
        + "\r\n"
    ).encode("ascii", "replace")


def _value(text: str) -> str:
    """A property value: a token, else a quoted string without controls."""
    if _TOKEN.fullmatch(text):
        return text
    cleaned = "".join(c for c in text if " " <= c <= "~" and c not in '"\\')
    return f'"{cleaned}"'
