"""The OpenAPI paths of the Azure OpenAI-compatible routes (docs/gateway.md): chat and
embeddings in three shapes, the Responses API in three, and the stored-response routes.

The request schemas are permissive (the service defines these bodies; unknown fields pass
through); answers are the service's own, described, not modelled.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from shared.gateway.models import (
    ChatCompletionsBody,
    EmbeddingsBody,
    ResponsesBody,
    ServiceErrorResponse,
)

GATEWAY_ANSWER = (
    "The service's answer, unchanged: a chat completion, embeddings or response object as "
    "Azure OpenAI defines it, or with `stream: true` its Server-Sent Events (chat: "
    "`data: <chunk>`..., then `data: [DONE]`; responses: `event: response.created`... "
    "`event: response.completed`)."
)
GATEWAY_ERRORS = {
    "400": "the service's 400 (content filter with `innererror`, invalid body), or the app's "
    "invalid_request (bad `x-usage-tags`, a body that is not JSON)",
    "401": "Azure's `401`: no valid team key (none, unknown, revoked, a disabled team's)",
    "403": "forbidden (ENTRA_AUTH: the app role is missing)",
    "404": "DeploymentNotFound: the name is not in the alias table (`details.known_models`); "
    "on the Responses routes also the service's 404 for a response id the team does not hold",
    "429": "the service's, with `retry-after-ms` / `retry-after`, after the app's own retries",
    "502": "upstream_error: the service could not be reached (or its own 5xx, passed through)",
    "504": "upstream_timeout",
}
STORED_ERRORS = ("401", "403", "404", "429", "502", "504")
TAGS = {
    "name": "x-usage-tags",
    "in": "header",
    "required": False,
    "description": "Usage tags: `team=search,feature=qa`.",
    "schema": {"type": "string"},
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _param(name: str, where: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": {"type": "string"},
    }


def _errors(statuses: tuple[str, ...] = tuple(GATEWAY_ERRORS)) -> dict[str, Any]:
    return {
        status: {
            "description": GATEWAY_ERRORS[status],
            "content": {"application/json": {"schema": _ref(ServiceErrorResponse)}},
        }
        for status in statuses
    }


def _answer(stream: bool) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}
    if stream:
        content["text/event-stream"] = {"schema": {"type": "string"}}
    return {"description": GATEWAY_ANSWER, "content": content}


def gateway_paths(security: list[dict[str, list[str]]]) -> dict[str, Any]:
    """Every gateway path, keyed relative to `/api`."""
    deployment = _param("deployment", "path", "A deployment or model name (AOAI_DEPLOYMENTS).")
    api_version = _param("api-version", "query", "Azure's api-version (the preview shapes).")
    response_id = _param("response_id", "path", "A response id this team created.")

    def post(
        operation_id: str, body: type[BaseModel], stream: bool, parameters: list[dict[str, Any]]
    ) -> dict[str, Any]:
        return {
            "post": {
                "operationId": operation_id,
                "security": security,
                "parameters": [*parameters, TAGS],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(body)}},
                },
                "responses": {"200": _answer(stream), **_errors()},
            }
        }

    def stored(operation_id: str, parameters: list[dict[str, Any]], stream: bool) -> dict[str, Any]:
        return {
            "operationId": operation_id,
            "security": security,
            "description": "Sent to the backend that created the response "
            "(docs/gateway.md, 'Stored responses').",
            "parameters": [response_id, *parameters],
            "responses": {"200": _answer(stream), **_errors(STORED_ERRORS)},
        }

    azure = [deployment, api_version]
    paths: dict[str, Any] = {
        "/openai/deployments/{deployment}/chat/completions": post(
            "gatewayChatAzure", ChatCompletionsBody, True, azure
        ),
        "/openai/deployments/{deployment}/embeddings": post(
            "gatewayEmbeddingsAzure", EmbeddingsBody, False, azure
        ),
        "/openai/v1/chat/completions": post("gatewayChatAzureV1", ChatCompletionsBody, True, []),
        "/openai/v1/embeddings": post("gatewayEmbeddingsAzureV1", EmbeddingsBody, False, []),
        "/v1/chat/completions": post("gatewayChatOpenAI", ChatCompletionsBody, True, []),
        "/v1/embeddings": post("gatewayEmbeddingsOpenAI", EmbeddingsBody, False, []),
    }
    shapes = {
        "/openai/v1": ("AzureV1", []),
        "/openai": ("Azure", [api_version]),
        "/v1": ("OpenAI", []),
    }
    for prefix, (shape, query) in shapes.items():
        base = f"{prefix}/responses"
        paths[base] = post(f"gatewayResponses{shape}", ResponsesBody, True, query)
        paths[f"{base}/{{response_id}}"] = {
            "get": stored(f"gatewayGetResponse{shape}", query, True),
            "delete": stored(f"gatewayDeleteResponse{shape}", query, False),
        }
        paths[f"{base}/{{response_id}}/input_items"] = {
            "get": stored(f"gatewayResponseInputItems{shape}", query, False)
        }
        paths[f"{base}/{{response_id}}/cancel"] = {
            "post": stored(f"gatewayCancelResponse{shape}", query, False)
        }
    return paths
