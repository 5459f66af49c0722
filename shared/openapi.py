"""The OpenAPI 3.1 document of the HTTP API, generated from the pydantic models.

Schemas come from the same models that validate requests and shape answers, so the document
cannot drift from the code.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared.models import (
    GROUP_BY_PATTERN,
    ChatRequest,
    ChatResponse,
    ErrorResponse,
    HealthReport,
    HealthStatus,
    UsageReport,
)

_SCHEMAS: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
    (ChatRequest, "validation"),
    (ChatResponse, "serialization"),
    (UsageReport, "serialization"),
    (HealthReport, "serialization"),
    (HealthStatus, "serialization"),
    (ErrorResponse, "serialization"),
]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        400: "invalid_request or content_filter",
        403: "forbidden (ENTRA_AUTH: the app role is missing)",
        404: "not_found",
        413: "too_large",
        429: "rate_limited (see Retry-After)",
        502: "upstream_error",
        504: "upstream_timeout",
    }
    return {str(s): _json(ErrorResponse, text[s]) for s in statuses}


STREAM_DESCRIPTION = (
    "With `stream: true`: `text/event-stream`, one JSON object per `data:` frame: "
    '`{"type": "delta", "content"}`..., then `{"type": "done", "finish_reason", "usage"}` '
    '(or a final `{"type": "content_filter"}` / `{"type": "error"}` frame), then `data: [DONE]`.'
)


@functools.cache
def openapi_document(version: str = "1.0.0") -> dict[str, Any]:
    _, defs = models_json_schema(_SCHEMAS, ref_template="#/components/schemas/{model}")
    # The header only: a key in `?code=` ends up in URLs, browser history and proxy logs.
    key_header: list[dict[str, list[str]]] = [{"functionKey": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Azure OpenAI Functions API",
            "version": version,
            "description": "Chat (JSON or Server-Sent Events), usage and health.",
        },
        "servers": [{"url": "/api"}],
        "paths": {
            "/chat": {
                "post": {
                    "operationId": "chat",
                    "security": key_header,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref(ChatRequest)}},
                    },
                    "responses": {
                        "200": {
                            "description": "The answer. " + STREAM_DESCRIPTION,
                            "content": {
                                "application/json": {"schema": _ref(ChatResponse)},
                                "text/event-stream": {"schema": {"type": "string"}},
                            },
                        },
                        **_errors(400, 403, 413, 429, 502, 504),
                    },
                }
            },
            "/usage": {
                "get": {
                    "operationId": "usage",
                    "security": key_header,
                    "parameters": [
                        _query("since", {"type": "string", "format": "date-time"}),
                        _query("until", {"type": "string", "format": "date-time"}),
                        _query(
                            "group_by",
                            {
                                "type": "string",
                                "pattern": GROUP_BY_PATTERN,
                                "default": "deployment",
                            },
                        ),
                    ],
                    "responses": {
                        "200": _json(UsageReport, "Totals and estimated cost per group."),
                        **_errors(400, 403, 413),
                    },
                }
            },
            "/health": {
                "get": {
                    "operationId": "health",
                    "security": [],
                    "responses": {
                        "200": _json(HealthStatus, "Every dependency answers."),
                        "503": _json(HealthStatus, "A dependency does not answer."),
                    },
                }
            },
            "/health/details": {
                "get": {
                    "operationId": "healthDetails",
                    "security": key_header,
                    "responses": {
                        "200": _json(HealthReport, "Every dependency answers."),
                        "503": _json(HealthReport, "A dependency does not answer."),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "security": [],
                    "responses": {"200": {"description": "This document."}},
                }
            },
        },
        "components": {
            "schemas": defs["$defs"],
            "securitySchemes": {
                "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
            },
        },
    }


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}
