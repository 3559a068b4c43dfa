"""The JSON documents the API answers with, one function per record, so
the user's and the operator's view of a setting are the same document."""

from __future__ import annotations

import datetime
from typing import Any

from zpop.accounts import two_factor
from zpop.accounts.accounts import AccountDetails

Document = dict[str, Any]


def iso(timestamp: float | None) -> str | None:
    """RFC 3339 UTC, to the second (None stays None)."""
    if timestamp is None:
        return None
    moment = datetime.datetime.fromtimestamp(int(timestamp), datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def pop_settings(account: Any) -> Document:
    pop = account.pop
    return {
        "enabled": pop.enabled,
        "mode": pop.mode if pop.enabled else None,
        "since": iso(pop.enabled_at) if pop.enabled else None,
        "spam": pop.spam,
        "deletion": pop.deletion,
        "queue": pop.queue,
    }


def imap_settings(account: Any) -> Document:
    return {"enabled": account.imap_enabled}


def two_factor_state(account: Any) -> Document:
    return {"state": two_factor.state_of(account).value}


def me(account: Any) -> Document:
    return {
        "address": account.address,
        "domain": account.domain,
        "organization": account.organization,
        "plan": account.plan,
        "federated": account.federated,
        "password": account.password_hash is not None,
        "two_factor": two_factor.state_of(account).value,
        "created": iso(account.created),
    }


def account_details(details: AccountDetails, recovery: str | None) -> Document:
    account = details.account
    return {
        **me(account),
        "recovery_address": recovery,
        "pop": pop_settings(account),
        "imap": imap_settings(account),
        "aliases": list(details.aliases),
        "app_passwords": len(details.app_passwords),
    }


def app_password(password: Any) -> Document:
    return {
        "id": password.id,
        "label": password.label,
        "created": iso(password.created),
        "last_used": iso(password.last_used),
        "last_used_from": password.last_used_from,
        "pop_start": password.pop_start,
    }


def login_event(event: Any) -> Document:
    return {
        "at": iso(event.at),
        "protocol": event.protocol,
        "client": event.client,
        "credential": event.credential,
        "result": event.result,
        "reason": event.reason,
    }


def pop_download(entry: Any) -> Document:
    return {
        "at": iso(entry.at),
        "action": entry.action,
        "device": entry.credential,
        "client": entry.client,
        "message_id": entry.message_id,
        "uidl": entry.uidl,
        "subject": entry.subject,
    }


def domain(summary: Any) -> Document:
    return {
        "name": summary.domain.name,
        "organization": summary.domain.organization,
        "created": iso(summary.domain.created),
        "accounts": summary.accounts,
    }


def queued(message: Any, owners: dict[int, str]) -> Document:
    return {
        "id": message.id,
        "sender": message.sender,
        "account": None
        if message.account_id is None
        else owners.get(message.account_id),
        "size": message.size,
        "created": iso(message.created),
        "expires": iso(message.expires),
        "recipients": [
            {
                "recipient": r.recipient,
                "state": r.state,
                "attempts": r.attempts,
                "next_attempt": iso(r.next_attempt),
                "last_error": r.last_error,
            }
            for r in message.recipients
        ],
    }
