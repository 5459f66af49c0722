"""The Responses API's wire, as the gateway reads and writes it: the usage of a response in
the usage document's terms, an output the filter cut, the output's text, the service's
answers for an id it does not hold, the upstream path of a backend's client, and the event
that ends a stream broken after its first byte (shared/gateway/responses.py uses them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from openai import AsyncAzureOpenAI, omit

from shared.aoai.backends import Target
from shared.core.errors import AppError
from shared.core.models import ContentFilterInfo, Usage
from shared.gateway.service import Forwarded

# The events that end a response, each carrying the whole response with its usage.
FINAL_EVENTS = ("response.completed", "response.incomplete", "response.failed")


def usage_of(raw: Any) -> Usage | None:
    """A Responses `usage` object (`input_tokens`, `output_tokens` and their details) in the
    usage document's terms; None when absent or unreadable."""
    if not isinstance(raw, Mapping):
        return None
    inputs, outputs = raw.get("input_tokens"), raw.get("output_tokens")
    if not isinstance(inputs, int) or not isinstance(outputs, int):
        return None
    input_details = raw.get("input_tokens_details") or {}
    output_details = raw.get("output_tokens_details") or {}
    total = raw.get("total_tokens")
    return Usage(
        prompt_tokens=inputs,
        completion_tokens=outputs,
        total_tokens=total if isinstance(total, int) else inputs + outputs,
        cached_tokens=int(input_details.get("cached_tokens") or 0),
        reasoning_tokens=int(output_details.get("reasoning_tokens") or 0),
    )


def filter_flag(response: Mapping[str, Any]) -> ContentFilterInfo | None:
    """A response whose output the content filter cut (`status: incomplete` with
    `incomplete_details.reason: content_filter`) as chat's completion event; else None."""
    details = response.get("incomplete_details")
    if isinstance(details, Mapping) and details.get("reason") == "content_filter":
        return ContentFilterInfo(stage="completion", filtered=True, categories={})
    return None


def output_text(response: Mapping[str, Any]) -> str:
    """The text of the response's output messages (for a filter event)."""
    texts: list[str] = []
    for item in response.get("output") or []:
        if isinstance(item, Mapping) and item.get("type") == "message":
            texts.extend(
                str(part.get("text", ""))
                for part in item.get("content") or []
                if isinstance(part, Mapping) and part.get("type") == "output_text"
            )
    return "".join(texts)


def not_found(response_id: str) -> Forwarded:
    """The service's 404 for a response id it does not hold (Azure's and OpenAI's shape)."""
    body = {
        "error": {
            "message": f"Response with id '{response_id}' not found.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    return Forwarded(404, {}, body=json.dumps(body).encode())


def previous_not_found(response_id: str) -> Forwarded:
    """The service's 400 for a `previous_response_id` it does not hold."""
    body = {
        "error": {
            "message": f"Previous response with id '{response_id}' not found.",
            "type": "invalid_request_error",
            "param": "previous_response_id",
            "code": "previous_response_not_found",
        }
    }
    return Forwarded(400, {}, body=json.dumps(body).encode())


def upstream_path(target: Target, path: str) -> tuple[str, dict[str, object]]:
    """`path` (`/responses...`) on the backend's client, and the query options: Azure's v1
    shape (no api-version) on a dated-version Azure client, the path as is on a plain one
    (Azure's v1 API, the app's default, whose base URL is already `/openai/v1/`; or OpenAI)."""
    if isinstance(target.client, AsyncAzureOpenAI):
        return f"/v1{path}", {"api-version": omit}
    return path, {}


@dataclass
class StreamSeen:
    """What a relayed stream saw: the response object so far, the last sequence number, the
    output text, whether its id is recorded."""

    response: dict[str, Any] = field(default_factory=dict)
    sequence: int = -1
    text: list[str] = field(default_factory=list)
    remembered: bool = False


def failed_events(state: StreamSeen, failure: AppError) -> list[bytes]:
    """How a Responses stream that fails after it started ends, as the service ends one: a
    `response.failed` event carrying the response with `status: failed` and its `error`
    (the openai SDK's stream then ends with that event); an `error` event when no response
    object was seen yet."""
    sequence = state.sequence + 1
    error = {"code": "server_error", "message": f"{failure.code}: {failure.message}"}
    if state.response:
        response = {**state.response, "status": "failed", "error": error}
        event = {"type": "response.failed", "response": response, "sequence_number": sequence}
    else:
        event = {"type": "error", **error, "param": None, "sequence_number": sequence}
    data = json.dumps(event)
    return [f"event: {event['type']}\ndata: {data}\n\n".encode()]
