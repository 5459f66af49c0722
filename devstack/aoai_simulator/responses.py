"""The Responses API routes: create (whole, streamed or in the background), retrieve, delete,
input items and cancel, in Azure's v1 shape (`/openai/v1/responses`) and its preview shape
(`/openai/responses?api-version=...`); both name the deployment in the body's `model`.

The answer is planned as chat's (`responses_plan.py`), so rate limits, faults, content
filtering, prompt caching, reasoning tokens, latency, `/sim/stats` (route `responses`) and
`/sim/inputs` behave as on the chat route.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.responses import Response, StreamingResponse

from . import chat, errors, faults, reasoning, responses_stream
from .chat import ChatPlan
from .config import DeploymentConfig
from .gateway import Call, body_model
from .inference import admit_quota, peer, user_lines
from .paging import page, query_limit
from .responses_plan import (
    chat_body,
    input_items,
    new_id,
    output_items,
    response_body,
    to_messages,
)
from .responses_store import StoredResponse, previous_not_found

_FINISHED = {"completed", "incomplete", "failed", "cancelled"}


def _plan(call: Call, deployment: DeploymentConfig, chat_request: dict[str, Any]) -> ChatPlan:
    """Chat's plan for the request (its prompt filter a 400), counted in the filter stats."""
    try:
        plan = chat.plan_chat(chat_request, deployment, call.config)
    except errors.AzureError as exc:
        error = exc.body.get("error", {})
        if error.get("code") != "content_filter":
            raise
        call.state.stats.record_filter("prompt")
        results = error["innererror"]["content_filter_result"]
        raise errors.responses_prompt_filtered(results) from None
    if plan.choices[0].finish_reason == "content_filter":
        call.state.stats.record_filter("completion")
    plan.cached_tokens = call.state.prompt_cache.cached_tokens(
        deployment, chat_request, call.config.prompt_cache
    )
    return plan


async def create(call: Call) -> Response:
    body = await body_model(call)
    deployment = call.lookup("chat")
    if not call.v1:
        chat.check_api_version(deployment, call.api_version)
    call.state.last_bodies[deployment.name] = body
    items = input_items(body)
    history: list[dict[str, Any]] = []
    previous_id = body.get("previous_response_id")
    if previous_id is not None:
        previous = call.state.responses.find(str(previous_id))
        if previous is None:
            raise previous_not_found(str(previous_id))
        history = previous.conversation()
    messages = [*history, *to_messages(items)]
    request = chat_body(body, messages)
    chat.validate(request)  # a malformed request is a 400 before it is charged
    reasoning.hidden_tokens(request, deployment)
    stored = body.get("store", True) is not False
    if body.get("background") and not stored:
        raise errors.invalid_request("Background mode requires 'store' to be true.", "background")
    decision = admit_quota(call, deployment, chat.rate_limit_estimate(request))
    plan = _plan(call, deployment, request)
    call.record(
        200,
        plan.prompt_tokens,
        plan.completion_tokens,
        cached_tokens=plan.cached_tokens,
        reasoning_tokens=plan.reasoning_tokens,
    )
    call.state.stats.record_inputs(
        user_lines(request), call.request_id, call.retry_count, peer(call)
    )
    output = output_items(plan, body)
    response_id = new_id("resp")
    final = response_body(response_id, body, deployment, plan, output)
    entry = StoredResponse(final, deployment.name, items, messages, to_messages(output))
    latency = call.config.latency
    answer_delay = faults.request_delay(latency, call.state.rng)
    token_delay = faults.token_delay(latency)
    if body.get("background") and not body.get("stream"):  # streamed: answered now
        entry.body = response_body(response_id, body, deployment, plan, [], "queued")
        call.state.responses.put(entry)
        delay = answer_delay + token_delay * plan.completion_tokens
        entry.task = asyncio.create_task(_answer_later(entry, final, delay))
        return call.json(entry.body, decision=decision)
    events = None
    if body.get("stream"):
        fault = call.config.faults.get("responses")
        events = responses_stream.events(final, fault, call.state.rng)
        entry.body = events[-1]["response"]  # `failed`, when the stream fails half way
    if stored:
        call.state.responses.put(entry)
    await faults.sleep(answer_delay)
    if events is not None:
        return StreamingResponse(
            responses_stream.sse(events, token_delay),
            headers=call.headers(decision),
            media_type="text/event-stream; charset=utf-8",
        )
    await faults.sleep(token_delay * plan.completion_tokens)
    return call.json(final, decision=decision)


async def _answer_later(entry: StoredResponse, final: dict[str, Any], delay: float) -> None:
    """A background response: queued, in progress, then answered after `delay` seconds."""
    await asyncio.sleep(0)
    entry.body = {**entry.body, "status": "in_progress"}
    await faults.sleep(delay)
    entry.body = final


async def retrieve(call: Call) -> Response:
    entry = call.state.responses.get(call.request.path_params["response_id"])
    call.record(200)
    return call.json(entry.body)


async def delete(call: Call) -> Response:
    response_id = call.request.path_params["response_id"]
    call.state.responses.delete(response_id)
    call.record(200)
    return call.json({"id": response_id, "object": "response", "deleted": True})


async def list_input_items(call: Call) -> Response:
    entry = call.state.responses.get(call.request.path_params["response_id"])
    order = call.request.query_params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise errors.invalid_request(
            f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.", "order"
        )
    items = entry.input_items if order == "asc" else entry.input_items[::-1]
    limit = query_limit(call.request, 20, 100)
    call.record(200)
    return call.json(page(items, call.request.query_params.get("after"), limit))


async def cancel(call: Call) -> Response:
    response_id = call.request.path_params["response_id"]
    entry = call.state.responses.get(response_id)
    if not entry.body.get("background"):
        raise errors.invalid_request(
            "Only responses created with background mode can be cancelled.", None
        )
    status = entry.body.get("status")
    if status in _FINISHED and status != "cancelled":
        raise errors.invalid_request(f"Cannot cancel a {status} response.", None)
    if entry.task is not None:
        entry.task.cancel()
    entry.body = {**entry.body, "status": "cancelled", "output": [], "usage": None}
    call.record(200)
    return call.json(entry.body)
