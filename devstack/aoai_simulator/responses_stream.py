"""A streamed Response: the server-sent events the service writes, in its order.

`response.created`, `response.in_progress`, then per output item `response.output_item.added`
... `response.output_item.done` (a message: `response.content_part.added`, one
`response.output_text.delta` per token, `response.output_text.done`,
`response.content_part.done`; a function call: `response.function_call_arguments.delta` and
`.done`), and last `response.completed` (or `response.incomplete`) with the usage. Every event
carries `type` and a `sequence_number` counting from 0, under an `event:` line naming it.

A stream that fails after its first events (the route's `stream_failure` fault) ends as the
service ends one: `response.failed` with the error, and no usage.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from typing import Any

from . import faults
from .config import FaultConfig
from .tokens import split_tokens

_SERVER_ERROR = {
    "code": "server_error",
    "message": "The server had an error processing your request. Sorry about that! You can "
    "retry your request, or contact us through an Azure support request if the error persists.",
}


def _pieces(text: str, structured: bool) -> list[str]:
    if structured:  # JSON: four characters a token, as chat streams it
        return [text[i : i + 4] for i in range(0, len(text), 4)]
    return split_tokens(text)


def _item_events(index: int, item: dict[str, Any], structured: bool) -> list[dict[str, Any]]:
    where = {"item_id": item["id"], "output_index": index}
    kind = item["type"]
    if kind == "message":
        part = item["content"][0]
        empty = {**part, "text": ""}
        events: list[dict[str, Any]] = [
            {
                "type": "response.output_item.added",
                "output_index": index,
                "item": {**item, "status": "in_progress", "content": []},
            },
            {"type": "response.content_part.added", **where, "content_index": 0, "part": empty},
        ]
        for piece in _pieces(part["text"], structured):
            events.append(
                {
                    "type": "response.output_text.delta",
                    **where,
                    "content_index": 0,
                    "delta": piece,
                    "logprobs": [],
                }
            )
        events += [
            {
                "type": "response.output_text.done",
                **where,
                "content_index": 0,
                "text": part["text"],
                "logprobs": [],
            },
            {"type": "response.content_part.done", **where, "content_index": 0, "part": part},
        ]
    elif kind == "function_call":
        events = [
            {
                "type": "response.output_item.added",
                "output_index": index,
                "item": {**item, "status": "in_progress", "arguments": ""},
            },
            {"type": "response.function_call_arguments.delta", **where, "delta": item["arguments"]},
            {
                "type": "response.function_call_arguments.done",
                **where,
                "name": item["name"],
                "arguments": item["arguments"],
            },
        ]
    else:
        events = [{"type": "response.output_item.added", "output_index": index, "item": item}]
    events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    return events


def events(
    final: dict[str, Any], fault: FaultConfig | None, rng: random.Random
) -> list[dict[str, Any]]:
    """Every event of the stream of `final` (a whole `response` object), numbered."""
    fmt = (final.get("text") or {}).get("format") or {}
    structured = fmt.get("type") in ("json_schema", "json_object")
    started = {**final, "status": "in_progress", "output": [], "usage": None}
    started["incomplete_details"] = None
    out: list[dict[str, Any]] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
    ]
    body: list[dict[str, Any]] = []
    for index, item in enumerate(final["output"]):
        body += _item_events(index, item, structured)
    if fault is not None and fault.stream_failure > 0 and rng.random() < fault.stream_failure:
        cut = body[: max(1, len(body) // 2)]
        failed = {**started, "status": "failed", "error": _SERVER_ERROR}
        out += [*cut, {"type": "response.failed", "response": failed}]
    else:
        kind = "response.completed" if final["status"] == "completed" else "response.incomplete"
        out += [*body, {"type": kind, "response": final}]
    return [{**event, "sequence_number": number} for number, event in enumerate(out)]


async def sse(stream: list[dict[str, Any]], pace: float) -> AsyncIterator[bytes]:
    """The events as server-sent events, a text delta every `pace` seconds."""
    for event in stream:
        if pace and event["type"] == "response.output_text.delta":
            await faults.sleep(pace)
        payload = json.dumps(event)
        yield f"event: {event['type']}\ndata: {payload}\n\n".encode()
