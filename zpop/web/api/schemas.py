"""The JSON Schemas of the API's bodies (OpenAPI 3.1 takes JSON Schema
2020-12 as it is), named once and referred to by the operations and the
document's ``components``."""

from __future__ import annotations

from typing import Any

from zpop.accounts.accounts import PLANS
from zpop.accounts.api_tokens import API_SCOPES
from zpop.accounts.app_passwords import POP_STARTS
from zpop.accounts.settings import (
    DELETION_POLICIES,
    POP_MODES,
    POP_QUEUES,
    SPAM_POLICIES,
)

Schema = dict[str, Any]

TIME: Schema = {"type": "string", "format": "date-time"}
TIME_OR_NULL: Schema = {"type": ["string", "null"], "format": "date-time"}
ADDRESS: Schema = {"type": "string", "format": "email", "maxLength": 254}
LABEL: Schema = {"type": "string", "minLength": 1, "maxLength": 100}
TWO_FACTOR_STATES = ("off", "required", "on")


def obj(properties: dict[str, Schema], required: list[str] | None = None) -> Schema:
    """A closed object (no other properties) with ``required`` fields (all
    by default: an answer always carries every field)."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def page_of(name: str) -> Schema:
    return obj(
        {
            "items": {"type": "array", "items": ref(name)},
            "next_cursor": {"type": ["string", "null"]},
        }
    )


POP_FIELDS: dict[str, Schema] = {
    "enabled": {"type": "boolean"},
    "mode": {"enum": [*POP_MODES, None]},
    "since": TIME_OR_NULL,
    "spam": {"enum": list(SPAM_POLICIES)},
    "deletion": {"enum": list(DELETION_POLICIES)},
    "queue": {"enum": list(POP_QUEUES)},
}
#: Where an app password's own POP queue starts (per-device queues only).
POP_START: Schema = {"enum": list(POP_STARTS)}

SCHEMAS: dict[str, Schema] = {
    "Error": obj(
        {"error": obj({"code": {"type": "string"}, "message": {"type": "string"}})}
    ),
    "PopSettings": obj(POP_FIELDS),
    "PopChange": obj(
        {k: v for k, v in POP_FIELDS.items() if k != "since"}, required=[]
    ),
    "ImapSettings": obj({"enabled": {"type": "boolean"}}),
    "TwoFactor": obj({"state": {"enum": list(TWO_FACTOR_STATES)}}),
    "Me": obj(
        {
            "address": ADDRESS,
            "domain": {"type": "string"},
            "organization": {"type": "boolean"},
            "plan": {"enum": list(PLANS)},
            "federated": {"type": "boolean"},
            "password": {"type": "boolean"},
            "two_factor": {"enum": list(TWO_FACTOR_STATES)},
            "created": TIME,
        }
    ),
    "AppPassword": obj(
        {
            "id": {"type": "integer"},
            "label": {"type": "string"},
            "created": TIME,
            "last_used": TIME_OR_NULL,
            "last_used_from": {"type": ["string", "null"]},
            "pop_start": POP_START,
        }
    ),
    "NewAppPassword": obj(
        {
            "id": {"type": "integer"},
            "label": {"type": "string"},
            "created": TIME,
            "pop_start": POP_START,
            "password": {"type": "string"},
        }
    ),
    "AppPasswordRequest": obj(
        {"label": LABEL, "pop_start": POP_START}, required=["label"]
    ),
    "LoginEvent": obj(
        {
            "at": TIME,
            "protocol": {"type": "string"},
            "client": {"type": "string"},
            "credential": {"type": "string"},
            "result": {"enum": ["succeeded", "failed", "refused"]},
            "reason": {"type": "string"},
        }
    ),
    "PopDownload": obj(
        {
            "at": TIME,
            "action": {"enum": ["retr", "dele"]},
            "device": {"type": "string"},
            "client": {"type": "string"},
            "message_id": {"type": "integer", "minimum": 1},
            "uidl": {"type": "string"},
            "subject": {"type": "string"},
        }
    ),
    "Domain": obj(
        {
            "name": {"type": "string"},
            "organization": {"type": "boolean"},
            "created": TIME,
            "accounts": {"type": "integer", "minimum": 0},
        }
    ),
    "NewDomain": obj(
        {"name": {"type": "string"}, "organization": {"type": "boolean"}},
        required=["name"],
    ),
    "Account": obj(
        {
            "address": ADDRESS,
            "domain": {"type": "string"},
            "organization": {"type": "boolean"},
            "plan": {"enum": list(PLANS)},
            "federated": {"type": "boolean"},
            "password": {"type": "boolean"},
            "two_factor": {"enum": list(TWO_FACTOR_STATES)},
            "created": TIME,
            "recovery_address": {"type": ["string", "null"]},
            "pop": ref("PopSettings"),
            "imap": ref("ImapSettings"),
            "aliases": {"type": "array", "items": {"type": "string"}},
            "app_passwords": {"type": "integer", "minimum": 0},
        }
    ),
    "NewAccount": obj(
        {
            "address": ADDRESS,
            "plan": {"enum": list(PLANS)},
            "federated": {"type": "boolean"},
            "password": {"type": "string", "minLength": 1, "maxLength": 1024},
        },
        required=["address"],
    ),
    "AccountChange": obj(
        {
            "plan": {"enum": list(PLANS)},
            "password": {"type": "string", "minLength": 1, "maxLength": 1024},
            "recovery_address": ADDRESS,
        },
        required=[],
    ),
    "DnsRecords": obj(
        {
            "domain": {"type": "string"},
            "records": {
                "type": "array",
                "items": obj(
                    {
                        "name": {"type": "string"},
                        "ttl": {"type": "integer", "minimum": 0},
                        "type": {"type": "string"},
                        "data": {"type": "string"},
                    }
                ),
            },
            "notes": {"type": "array", "items": {"type": "string"}},
        }
    ),
    "TwoFactorChange": obj({"state": {"enum": ["required", "off"]}}),
    "Alias": obj({"alias": ADDRESS}),
    "ResetLink": obj({"link": {"type": "string"}, "expires": TIME}),
    "QueuedRecipient": obj(
        {
            "recipient": {"type": "string"},
            "state": {"type": "string"},
            "attempts": {"type": "integer", "minimum": 0},
            "next_attempt": TIME,
            "last_error": {"type": ["string", "null"]},
        }
    ),
    "QueuedMessage": obj(
        {
            "id": {"type": "integer"},
            "sender": {"type": "string"},
            "account": {"type": ["string", "null"]},
            "size": {"type": "integer", "minimum": 0},
            "created": TIME,
            "expires": TIME,
            "recipients": {"type": "array", "items": ref("QueuedRecipient")},
        }
    ),
    "Retried": obj(
        {
            "due": {"type": "integer", "minimum": 0},
            "released": {"type": "integer", "minimum": 0},
        }
    ),
    "Deleted": obj({"recipients": {"type": "integer", "minimum": 0}}),
    "ApiTokenScope": {"enum": list(API_SCOPES)},
}


def required_fields(schema: Schema) -> list[str]:
    """The fields a request body schema (or the one it refers to) requires."""
    if "$ref" in schema:
        schema = SCHEMAS[schema["$ref"].rsplit("/", 1)[1]]
    return list(schema.get("required", []))
