"""The OpenAPI 3.1 document at ``/api/v1/openapi.json``, built from the
operation table the resource dispatches from, so it describes exactly the
routes there are, with every status each can answer."""

from __future__ import annotations

import re
from typing import Any

from zpop.web.api.framework import DEFAULT_LIMIT, MAX_LIMIT, Call, Operation, Reply
from zpop.web.api.schemas import SCHEMAS, ref, required_fields

_COMMON = {
    404: "No such resource",
    422: "A field, parameter or value the rules refuse",
    503: "The service cannot answer now; try again",
}
_TOKEN = {
    401: "No token, or not a valid one",
    403: "The token's kind or scope does not allow this",
    429: "Too many failed attempts from this client address",
}
_BODY = {400: "The body is not JSON", 415: "The body is not application/json"}


def operation_id(op: Operation) -> str:
    words = re.findall(r"[a-z]+", op.path.replace("{", "by_").lower())
    return op.method.lower() + "_" + "_".join(words)


def _error(text: str) -> dict[str, Any]:
    return {
        "description": text,
        "content": {"application/json": {"schema": ref("Error")}},
    }


def _responses(op: Operation) -> dict[str, Any]:
    success: dict[str, Any] = {"description": op.summary}
    if op.response is not None:
        success["content"] = {"application/json": {"schema": op.response}}
    if op.etag and op.method in ("GET", "PATCH"):
        success["headers"] = {"ETag": {"schema": {"type": "string"}}}
    if op.links:
        success["links"] = {
            name: {"operationId": target, "parameters": parameters}
            for name, (target, parameters) in op.links.items()
        }
    errors = dict(_COMMON)
    if op.audience != "public":
        errors.update(_TOKEN)
    if op.request is not None:
        errors.update(_BODY)
    if op.etag and op.method == "PATCH":
        errors[412] = "If-Match names a version that is no longer current"
    errors.update(op.errors)
    answers = {str(op.status): success}
    answers.update({str(s): _error(t) for s, t in sorted(errors.items())})
    return answers


def _parameters(op: Operation) -> list[dict[str, Any]]:
    found = [
        {"name": name, "in": "path", "required": True, "schema": schema}
        for name, schema in op.params.items()
    ]
    if op.paginated:
        found += [
            {
                "name": "limit",
                "in": "query",
                "schema": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_LIMIT,
                    "default": DEFAULT_LIMIT,
                },
            },
            {
                "name": "cursor",
                "in": "query",
                "description": "next_cursor of the previous page",
                "schema": {"type": "string"},
            },
        ]
    if op.etag and op.method == "PATCH":
        found.append(
            {
                "name": "If-Match",
                "in": "header",
                "description": "the ETag of the version read; 412 if stale",
                "schema": {"type": "string"},
            }
        )
    return found


def document(operations: list[Operation]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        entry: dict[str, Any] = {
            "operationId": operation_id(op),
            "summary": op.summary,
            "responses": _responses(op),
        }
        parameters = _parameters(op)
        if parameters:
            entry["parameters"] = parameters
        if op.request is not None:
            entry["requestBody"] = {
                "required": op.method != "POST" or bool(required_fields(op.request)),
                "content": {"application/json": {"schema": op.request}},
            }
        entry["security"] = [] if op.audience == "public" else [{"token": []}]
        if op.audience == "admin":
            entry["tags"] = ["admin"]
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "zpop settings API",
            "version": "1",
            "description": "Every setting zpop's web pages and CLI change, for a"
            " personal token's account and, with an admin token, the operator.",
        },
        "servers": [{"url": "/api/v1"}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
        },
    }


def operation(operations: list[Operation]) -> Operation:
    """``GET /openapi.json``: the document of ``operations`` and itself,
    built once."""
    built: list[dict[str, Any]] = []

    async def serve(call: Call) -> Reply:
        if not built:
            built.append(document(operations))
        return Reply(built[0])

    return Operation(
        "GET",
        "/openapi.json",
        serve,
        "This document",
        "public",
        response={"type": "object"},
    )
