"""The OpenAPI 3.1 document of the HTTP API, generated from the pydantic models.

Schemas come from the same models that validate requests and shape answers, so the document
cannot drift from the code.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared.chat.models import ChatRequest, ChatResponse
from shared.core.health import HealthReport, HealthStatus
from shared.core.models import ErrorResponse
from shared.gateway.models import (
    ChatCompletionsBody,
    EmbeddingsBody,
    ResponsesBody,
    ServiceErrorResponse,
)
from shared.http.openapi_gateway import gateway_paths
from shared.jobs.models import ClassificationJob, EmbeddingJob, JobView, SubmitAccepted
from shared.metering.models import GROUP_BY_PATTERN, UsageReport
from shared.metering.teams import (
    KeyCreated,
    NewTeam,
    TeamChanges,
    TeamCreated,
    TeamDetail,
    TeamList,
    TeamView,
)

_SCHEMAS: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
    (ChatRequest, "validation"),
    (ChatResponse, "serialization"),
    (UsageReport, "serialization"),
    (HealthReport, "serialization"),
    (HealthStatus, "serialization"),
    (ErrorResponse, "serialization"),
    (EmbeddingJob, "validation"),
    (ClassificationJob, "validation"),
    (SubmitAccepted, "serialization"),
    (JobView, "serialization"),
    (ChatCompletionsBody, "validation"),
    (EmbeddingsBody, "validation"),
    (ResponsesBody, "validation"),
    (ServiceErrorResponse, "serialization"),
    (NewTeam, "validation"),
    (TeamChanges, "validation"),
    (TeamCreated, "serialization"),
    (TeamView, "serialization"),
    (TeamDetail, "serialization"),
    (TeamList, "serialization"),
    (KeyCreated, "serialization"),
]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        400: "invalid_request or content_filter",
        401: "unauthorized (no valid team key: none, unknown, revoked, or a disabled team's)",
        403: "forbidden (ENTRA_AUTH: the app role is missing)",
        404: "not_found",
        409: "conflict (a used job_id with another body or of the other kind; a team id taken; "
        "two live keys)",
        413: "too_large",
        429: "rate_limited (see Retry-After)",
        502: "upstream_error",
        503: "unavailable (the job could not be queued; submit it again)",
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
    # The data plane takes a team's key, in either header the openai SDKs send.
    team_key: list[dict[str, list[str]]] = [{"teamKey": []}, {"teamBearer": []}]
    master_key: list[dict[str, list[str]]] = [{"masterKey": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Azure OpenAI Functions API",
            "version": version,
            "description": (
                "Chat (JSON or Server-Sent Events), queue jobs, usage and health, and the "
                "Azure OpenAI-compatible routes (docs/gateway.md)."
            ),
        },
        "servers": [{"url": "/api"}],
        "paths": {
            "/chat": {
                "post": {
                    "operationId": "chat",
                    "security": team_key,
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
                        **_errors(400, 401, 403, 413, 429, 502, 504),
                    },
                }
            },
            "/usage": {
                "get": {
                    "operationId": "usage",
                    "description": "The caller's team's usage only.",
                    "security": team_key,
                    "parameters": _usage_query(),
                    "responses": {
                        "200": _json(UsageReport, "Totals and estimated cost per group."),
                        **_errors(400, 401, 403, 413),
                    },
                }
            },
            "/usage/all": {
                "get": {
                    "operationId": "platformUsage",
                    "description": "Every team's usage (`group_by=team` for chargeback).",
                    "security": master_key,
                    "parameters": _usage_query(),
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
            **_job_paths(team_key),
            **gateway_paths(team_key),
            **_team_paths(master_key),
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
                "teamKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "api-key",
                    "description": "A team's key (what AzureOpenAI(api_key=...) sends).",
                },
                "teamBearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A team's key (what OpenAI(api_key=...) sends).",
                },
                # The team registry is `admin` level: the host's master key, never a function key.
                "masterKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-functions-key",
                    "description": "The host's master key (admin routes).",
                },
            },
        },
    }


def _usage_query() -> list[dict[str, Any]]:
    return [
        _query("since", {"type": "string", "format": "date-time"}),
        _query("until", {"type": "string", "format": "date-time"}),
        _query(
            "group_by", {"type": "string", "pattern": GROUP_BY_PATTERN, "default": "deployment"}
        ),
    ]


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _path(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def _job_paths(security: list[dict[str, list[str]]]) -> dict[str, Any]:
    job_id = _path("job_id", "The job's id, as `POST` answered it.")

    def submit(operation_id: str, body: type[BaseModel]) -> dict[str, Any]:
        return {
            "post": {
                "operationId": operation_id,
                "security": security,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(body)}},
                },
                "responses": {
                    "202": _json(SubmitAccepted, "Queued; poll `status_url`."),
                    **_errors(400, 401, 403, 404, 409, 413, 503),
                },
            }
        }

    return {
        "/jobs/embeddings": submit("submitEmbeddingJob", EmbeddingJob),
        "/jobs/classifications": submit("submitClassificationJob", ClassificationJob),
        "/jobs/{job_id}": {
            "get": {
                "operationId": "getJob",
                "security": security,
                "parameters": [
                    job_id,
                    _query(
                        "page_size",
                        {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                    ),
                    _query("continuation", {"type": "string", "maxLength": 8192}),
                ],
                "responses": {
                    "200": _json(JobView, "The job, true counts and one page of results."),
                    **_errors(400, 401, 403, 404),
                },
            }
        },
        "/jobs/{job_id}/cancel": {
            "post": {
                "operationId": "cancelJob",
                "security": security,
                "parameters": [job_id],
                "responses": {
                    "200": _json(JobView, "The job (`cancelled` unless it had already ended)."),
                    **_errors(401, 403, 404),
                },
            }
        },
    }


def _team_paths(security: list[dict[str, list[str]]]) -> dict[str, Any]:
    """The team registry (docs/teams.md)."""
    team_id = _path("team_id", "The team's id.")
    key_id = _path("key_id", "The key's id (8 hex digits).")

    def body(model: type[BaseModel]) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": _ref(model)}}}

    def op(operation_id: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"operationId": operation_id, "security": security, **extra, "responses": responses}

    return {
        "/teams": {
            "post": op(
                "createTeam",
                {
                    "201": _json(TeamCreated, "The team and its first key, shown this once."),
                    **_errors(400, 403, 409, 413),
                },
                requestBody=body(NewTeam),
            ),
            "get": op("listTeams", {"200": _json(TeamList, "Every team."), **_errors(403)}),
        },
        "/teams/{team_id}": {
            "get": op(
                "getTeam",
                {"200": _json(TeamDetail, "The team and its spend so far."), **_errors(403, 404)},
                parameters=[team_id],
            ),
            "patch": op(
                "updateTeam",
                {"200": _json(TeamView, "The team as changed."), **_errors(400, 403, 404, 413)},
                parameters=[team_id],
                requestBody=body(TeamChanges),
            ),
        },
        "/teams/{team_id}/keys": {
            "post": op(
                "newTeamKey",
                {
                    "201": _json(KeyCreated, "The new key, shown this once."),
                    **_errors(403, 404, 409),
                },
                parameters=[team_id],
            )
        },
        "/teams/{team_id}/keys/{key_id}": {
            "delete": op(
                "revokeTeamKey",
                {"204": {"description": "Revoked (kept for audit)."}, **_errors(403, 404)},
                parameters=[team_id, key_id],
            )
        },
    }
