"""The data-plane routes: chat completions (whole or streamed) and embeddings, in the
deployment shape and in Azure's v1 shape (`/openai/v1/...`, the deployment as `model`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import Response, StreamingResponse

from . import chat, embeddings, errors, faults, reasoning
from .config import DeploymentConfig
from .gateway import Call, body_model, read_json
from .ratelimit import Decision
from .tokens import message_text

_OPERATION_NAMES = {
    "chat": "ChatCompletions_Create",
    "embeddings": "Embeddings_Create",
    "responses": "Responses_Create",
}


def admit_quota(call: Call, deployment: DeploymentConfig, tokens: int) -> Decision:
    decision = call.state.limiter.check(deployment, tokens, call.config.rate_limit)
    if not decision.allowed:
        exc = errors.rate_limited(
            _OPERATION_NAMES[call.route],
            call.api_version,
            decision.retry_after_ms,
            decision.by_tokens,
        )
        exc.headers.update(call.headers(decision))
        raise exc
    return decision


async def chat_completions(call: Call) -> Response:
    deployment = call.lookup("chat")
    if not call.v1:  # the v1 shape has no api-version to be too old
        chat.check_api_version(deployment, call.api_version)
    body = await read_json(call.request)
    call.state.last_bodies[deployment.name] = body
    chat.validate(body)  # a malformed request is a 400 before it is charged
    reasoning.hidden_tokens(body, deployment)  # so is an effort the model does not take
    decision = admit_quota(call, deployment, chat.rate_limit_estimate(body))
    try:
        plan = chat.plan_chat(body, deployment, call.config)
    except errors.AzureError as exc:
        if exc.body.get("error", {}).get("code") == "content_filter":
            call.state.stats.record_filter("prompt")
        raise
    if any(c.finish_reason == "content_filter" for c in plan.choices):
        call.state.stats.record_filter("completion")
    plan.cached_tokens = call.state.prompt_cache.cached_tokens(
        deployment, body, call.config.prompt_cache
    )
    await faults.sleep(faults.request_delay(call.config.latency, call.state.rng))
    call.record(
        200,
        plan.prompt_tokens,
        plan.completion_tokens,
        cached_tokens=plan.cached_tokens,
        reasoning_tokens=plan.reasoning_tokens,
    )
    call.state.stats.record_inputs(user_lines(body), call.request_id, call.retry_count, peer(call))
    if body.get("stream"):
        options = body.get("stream_options") or {}
        include_usage = bool(isinstance(options, dict) and options.get("include_usage"))
        chunks = chat.stream_chunks(plan, include_usage)
        pace = faults.token_delay(call.config.latency)
        return StreamingResponse(
            _sse(chunks, pace),
            headers=call.headers(decision),
            media_type="text/event-stream; charset=utf-8",
        )
    await faults.sleep(faults.token_delay(call.config.latency) * plan.completion_tokens)
    return call.json(chat.completion_body(plan), decision=decision)


async def _sse(chunks: list[dict[str, Any]], pace: float) -> AsyncIterator[bytes]:
    for chunk in chunks:
        choices = chunk.get("choices") or []
        if pace and choices and choices[0].get("delta", {}).get("content"):
            await faults.sleep(pace)
        yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


async def create_embeddings(call: Call) -> Response:
    deployment = call.lookup("embedding")
    body = await read_json(call.request)
    call.state.last_bodies[deployment.name] = body
    # Validation first: a request over a per-request cap is a 400 whatever the quota says.
    request = embeddings.validate(body, deployment, call.config)
    decision = admit_quota(call, deployment, embeddings.rate_limit_estimate(request))
    result = embeddings.create(body, deployment, call.config)
    await faults.sleep(faults.request_delay(call.config.latency, call.state.rng))
    call.record(200, result["usage"]["prompt_tokens"], inputs=len(request.items))
    call.state.stats.record_inputs(
        (item if isinstance(item, str) else " ".join(map(str, item)) for item in request.items),
        call.request_id,
        call.retry_count,
        peer(call),
    )
    return call.json(result, decision=decision)


def peer(call: Call) -> int | None:
    """The client's port: which process asked (the soak maps a killed host's ports)."""
    client = call.request.client
    return client.port if client else None


def user_lines(body: dict[str, Any]) -> list[str]:
    """The item inputs of a chat request, as `GET /sim/inputs` counts them: each non-empty
    line of its user messages (a job lists several items, one per line)."""
    lines: list[str] = []
    for message in body.get("messages") or []:
        if isinstance(message, dict) and message.get("role") == "user":
            text = message_text(message.get("content"))
            lines.extend(line.strip() for line in text.splitlines() if line.strip())
    return lines


async def v1_chat_completions(call: Call) -> Response:
    """`POST /openai/v1/chat/completions`: the deployment is the body's `model`."""
    await body_model(call)
    return await chat_completions(call)


async def v1_embeddings(call: Call) -> Response:
    """`POST /openai/v1/embeddings`: the deployment is the body's `model`."""
    await body_model(call)
    return await create_embeddings(call)
