"""The OpenAPI 3.0 document, generated from the route table (the same fields that validate requests)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..config import VERSION
from ..errors import (
    ConflictError,
    InvalidInputError,
    LimitExceededError,
    NotFoundError,
    StoreCorruptError,
    StoreLockedError,
)
from .routes import Endpoint

ERRORS = {
    InvalidInputError.http_status: "bad input",
    401: "missing or wrong bearer token",
    NotFoundError.http_status: "not found",
    ConflictError.http_status: "conflict with the store's state (or a write to a read-only server)",
    LimitExceededError.http_status: "too large",
    StoreLockedError.http_status: "the store is locked by another process",
    StoreCorruptError.http_status: "the store database is damaged, or the model cannot be loaded",
}

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}


def _operation(ep: Endpoint) -> dict[str, Any]:
    ok_content: dict[str, Any] = (
        {"application/json": {"schema": {"type": "object"}}}
        if ep.media_type == "application/json"
        else {ep.media_type: {"schema": {"type": "string"}}}
    )
    responses: dict[str, Any] = {str(ep.status): {"description": "ok", "content": ok_content}}
    if not ep.public:
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        responses |= {str(code): {"description": text, "content": error} for code, text in sorted(ERRORS.items())}
    op: dict[str, Any] = {"summary": ep.summary, "responses": responses}
    if ep.public:
        op["security"] = []
    parameters = [{"name": f.name, "in": "path", "required": True, "schema": f.schema()} for f in ep.path_fields]
    parameters += [{"name": f.name, "in": "query", "required": f.required, "schema": f.schema()} for f in ep.query]
    if parameters:
        op["parameters"] = parameters
    if ep.body_fields:
        content: dict[str, Any] = {"application/json": {"schema": _object(ep.body_fields)}}
        if ep.form is not None:
            form = _object(ep.form, names=lambda f: f.form_name)
            form["required"] = sorted({"file", *form.get("required", [])})
            content["multipart/form-data"] = {"schema": form}
        op["requestBody"] = {"required": ep.body_required, "content": content}
    return op


def _object(fields: Sequence[Any], names: Any = None) -> dict[str, Any]:
    name_of = names or (lambda f: f.name)
    out: dict[str, Any] = {"type": "object", "properties": {name_of(f): f.schema() for f in fields}}
    required = [name_of(f) for f in fields if f.required]
    if required:
        out["required"] = required
    return out


def document(endpoints: Sequence[Endpoint]) -> dict[str, Any]:
    """The OpenAPI document of these endpoints (the page at ``/`` is left out: it is not an API)."""
    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        if ep.media_type != "text/html":
            paths.setdefault(ep.path, {})[ep.method.lower()] = _operation(ep)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "vecclf",
            "version": VERSION,
            "description": "Embedding classifier: k-NN, logistic head and zero-shot over a local store.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": ERROR_SCHEMA},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }
