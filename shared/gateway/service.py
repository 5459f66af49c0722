"""The Azure OpenAI-compatible routes: forward a caller's own `/chat/completions` or
`/embeddings` body through the client module and pass the service's answer back unchanged.

What the app adds is bookkeeping, never a change to the answer: the call is metered as
`/api/chat`'s is (shared/metering/call.py: one usage document per call, tags from
`x-usage-tags`, the caller's `user` hashed (and, in the body sent upstream, every caller
identifier: shared/gateway/models.py); one content-filter event per filtered prompt or
completion, also mid-stream; the per-caller limit, 429 in Azure's error shape), the request id
goes into logs, and output tokens are held to CHAT_MAX_TOKENS_LIMIT (400). Errors keep the
service's own status, headers that matter to a retrying SDK, and body, so the SDKs raise what
they would against Azure OpenAI. Changes to the request: a body naming no output-token limit
is sent with `max_completion_tokens`: the learned cap (shared/metering/output_caps.py), else
CHAT_MAX_TOKENS_LIMIT; a stream always asks the service
for its usage chunk (the usage document needs it) and drops it again when the caller did not
ask for it; the caller identifiers go as their HMAC, and `data_sources` is refused unless
GATEWAY_ALLOWED_EXTENSIONS names it (shared/gateway/models.py).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.aoai.backends import Target
from shared.aoai.client import resolve_deployment
from shared.core import content_filter
from shared.core.errors import AppError, DeploymentNotFound, InvalidRequest, UnknownModelError
from shared.core.models import ContentFilterInfo, Usage
from shared.core.settings import Settings
from shared.gateway.models import ChatCompletionsBody, EmbeddingsBody
from shared.metering.call import CallMeter, MeteredCall
from shared.metering.callers import (
    Origin,
    cap_completion_tokens,
    chat_estimate,
    choices_of,
    clamp_completion_tokens,
    embedding_estimate,
    names_completion_tokens,
)
from shared.metering.models import Operation
from shared.metering.output_caps import choose_cap

log = logging.getLogger(__name__)

# What a caller's SDK reads from an answer to decide whether and when to retry.
PASSED_HEADERS = (
    "retry-after",
    "retry-after-ms",
    "x-should-retry",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
)
_EVENT_END = re.compile(rb"\r?\n\r?\n")


@dataclass(frozen=True)
class Forwarded:
    """The service's answer, to be sent as it came: a body, or the stream of SSE events."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None
    media_type: str = "application/json"


class _Choice(BaseModel):
    """Just enough of a choice for `content_filter.completion_flag` (extras kept)."""

    model_config = ConfigDict(extra="allow")
    index: int = 0
    finish_reason: str | None = None


def passed_headers(headers: Mapping[str, str] | httpx2.Headers) -> dict[str, str]:
    return {name: value for name in PASSED_HEADERS if (value := headers.get(name)) is not None}


def usage_from(raw: Any) -> Usage | None:
    """The usage of an answer or a chunk as the service sent it (details included); None when
    it sent none, or none we can read."""
    try:
        return Usage.of(raw) if isinstance(raw, Mapping) else None
    except ValidationError:
        return None


def prompt_text(messages: list[dict[str, Any]]) -> str:
    """The text parts of the messages (for a filter event, stored only when opted in)."""
    texts: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(
                str(part.get("text", ""))
                for part in content
                if isinstance(part, Mapping) and part.get("type") == "text"
            )
    return "\n".join(texts)


@dataclass
class SseEvents:
    """Cuts a byte stream into whole SSE events, each with its blank line, bytes unchanged."""

    buffer: bytes = b""

    def feed(self, data: bytes) -> Iterator[bytes]:
        self.buffer += data
        while (end := _EVENT_END.search(self.buffer)) is not None:
            event, self.buffer = self.buffer[: end.end()], self.buffer[end.end() :]
            yield event

    @staticmethod
    def json_of(event: bytes) -> dict[str, Any] | None:
        """The event's `data:` as a JSON object; None for `[DONE]`, comments, non-JSON."""
        data = b"".join(
            line[5:].strip() for line in event.splitlines() if line.startswith(b"data:")
        )
        if not data.startswith(b"{"):
            return None
        try:
            parsed = json.loads(data)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None


@dataclass
class _StreamState:
    """Per choice: the text so far (for a filter event) and whether it was filtered."""

    texts: dict[int, list[str]] = field(default_factory=dict)
    flagged: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class Gateway:
    """The forwarding service, one per process (see shared/runtime.py)."""

    settings: Settings
    meter: CallMeter

    def deployment(self, name: str | None, origin: Origin) -> str:
        """A deployment or model name through the alias table; unknown, or outside the
        caller's team's `models`, is Azure's 404."""
        if name is None:
            raise InvalidRequest("the body must name a model")
        team = origin.caller.team
        try:
            return resolve_deployment(
                self.settings, name, default=name, allowed=team.models if team else ()
            )
        except UnknownModelError as error:
            raise DeploymentNotFound(
                f"The API deployment {name!r} does not exist; known: {', '.join(error.known)}",
                details={"known_models": error.known},
            ) from None

    async def chat(
        self,
        body: ChatCompletionsBody,
        name: str | None,
        origin: Origin,
    ) -> Forwarded:
        deployment = self.deployment(name or body.model, origin)
        stream = bool(body.stream)
        payload = self._upstream(body, deployment)
        team = origin.caller.team
        team_max = team.max_tokens if team is not None else None
        limit = self.settings.chat_max_tokens_limit
        # A body naming no cap gets the learned one (shared/metering/output_caps.py).
        asked = names_completion_tokens(payload)
        learned = None if asked else self.meter.caps.learned(deployment, team.id if team else None)
        max_tokens = cap_completion_tokens(payload, limit, default=learned)
        cap = choose_cap(max_tokens if asked else None, learned, limit, team_max)
        max_tokens = clamp_completion_tokens(payload, max_tokens, team_max)
        if stream:
            payload["stream_options"] = {**payload.get("stream_options", {}), "include_usage": True}
        prompt = prompt_text(body.messages)
        operation: Operation = "chat_stream" if stream else "chat"
        estimate = chat_estimate(prompt, payload, max_tokens)
        call = await self.meter.start(
            operation,
            "gateway",
            deployment,
            origin,
            estimate=estimate,
            prompt=prompt,
            max_tokens=max_tokens,
            n=choices_of(payload),
            cap=cap,
        )
        answer = await self._send(call, "/chat/completions", payload, stream)
        if isinstance(answer, Forwarded):
            return answer
        if stream:
            events = call.relay(
                _events(answer, call, keep_usage=body.wants_usage_chunk()),
                close=answer.aclose,
                error=error_events,
            )
            return Forwarded(
                answer.status_code, call.headers(), stream=events, media_type="text/event-stream"
            )
        data = json_object(answer.content)
        flags: list[tuple[ContentFilterInfo, str | None]] = []
        for raw in data.get("choices") or []:
            if isinstance(raw, dict) and isinstance(raw.get("finish_reason"), str):
                call.note(finish_reason=raw["finish_reason"])
            flagged = _flag(raw)
            if flagged is not None:
                text = (raw.get("message") or {}).get("content")
                flags.append((flagged, text if isinstance(text, str) else None))
        await call.finish(
            model=data.get("model"), usage=usage_from(data.get("usage")), filtered=flags
        )
        return whole(answer, call)

    async def embeddings(
        self,
        body: EmbeddingsBody,
        name: str | None,
        origin: Origin,
    ) -> Forwarded:
        deployment = self.deployment(name or body.model, origin)
        inputs = body.input if isinstance(body.input, list) else [body.input]
        prompt = "\n".join(i for i in inputs if isinstance(i, str))
        estimate = embedding_estimate(body.input)
        payload = self._upstream(body, deployment)
        call = await self.meter.start(
            "embedding", "gateway", deployment, origin, estimate=estimate, prompt=prompt
        )
        answer = await self._send(call, "/embeddings", payload, False)
        if isinstance(answer, Forwarded):
            return answer
        data = json_object(answer.content)
        await call.finish(model=data.get("model"), usage=usage_from(data.get("usage")))
        return whole(answer, call)

    def _upstream(
        self, body: ChatCompletionsBody | EmbeddingsBody, deployment: str
    ) -> dict[str, Any]:
        return body.upstream(
            deployment, self.meter.user_hash, self.settings.gateway_allowed_extensions
        )

    async def _send(
        self, call: MeteredCall, path: str, payload: dict[str, Any], stream: bool
    ) -> httpx2.Response | Forwarded:
        """The service's answer; an error answer as a Forwarded to pass back as it came; a
        transport failure raised as the app's 502/504 (either way recorded by the call)."""

        async def send(target: Target) -> httpx2.Response:
            # The backend's own name for the deployment: the v1 client sends `model` in the
            # body, a dated-version (Azure) client puts it into the URL.
            body = {**payload, "model": target.deployment}
            return await target.client.post(
                path,
                body=body,
                options={"headers": target.headers},
                cast_to=httpx2.Response,
                stream=stream,
            )

        return await sent(call, send)


def log_answer(call: MeteredCall, what: str, status: int) -> None:
    site = call.site
    log.info(
        "gateway %s on %s via %s: %s %s (request %s)",
        site.operation,
        site.deployment,
        site.backend,
        what,
        status,
        site.request_id,
    )


async def sent(
    call: MeteredCall,
    send: Callable[[Target], Awaitable[httpx2.Response]],
    *,
    pinned: str | None = None,
) -> httpx2.Response | Forwarded:
    """`call.send(send)` (to the `pinned` backend only, when named): the service's answer; an
    error answer as a Forwarded to pass back as it came; a transport failure raised as the
    app's 502/504 (either way recorded by the call)."""
    try:
        answer = await call.send(send, pinned=pinned)
    except AppError as failure:
        refused = failure.__cause__
        if not isinstance(refused, openai.APIStatusError):
            raise
        log_answer(call, "upstream HTTP", refused.status_code)
        return whole(refused.response)
    log_answer(call, "HTTP", answer.status_code)
    return answer


def error_events(failure: AppError) -> list[bytes]:
    """How a stream that fails after it started ends: one `error` event, which the openai
    SDK raises as `APIError` (docs/gateway.md)."""
    detail = {"error": {"code": failure.code, "message": failure.message}}
    return [f"data: {json.dumps(detail)}\n\n".encode()]


async def _events(
    upstream: httpx2.Response, call: MeteredCall, *, keep_usage: bool
) -> AsyncGenerator[bytes, None]:
    """The upstream's SSE events as they arrive; the usage-only chunk only if asked for."""
    events, state = SseEvents(), _StreamState()
    async for data in upstream.aiter_bytes():
        for event in events.feed(data):
            chunk = SseEvents.json_of(event)
            wanted = chunk is None or await _observe(chunk, call, state)
            if wanted or keep_usage:
                yield event
    if events.buffer.strip():
        yield events.buffer


async def _observe(chunk: dict[str, Any], call: MeteredCall, state: _StreamState) -> bool:
    """Take what the records need from one chunk. False for the usage-only chunk that the
    app asked for on the caller's behalf."""
    choices = chunk.get("choices") or []
    usage = usage_from(chunk.get("usage"))
    call.note(model=chunk.get("model"), usage=usage)
    if usage is not None and not choices:
        return False
    for raw in choices:
        if not isinstance(raw, dict):
            continue
        index = raw.get("index", 0)
        if isinstance(raw.get("finish_reason"), str):
            call.note(finish_reason=raw["finish_reason"])
        content = (raw.get("delta") or {}).get("content")
        if isinstance(content, str):
            call.note(text=content)
            state.texts.setdefault(index, []).append(content)
        flagged = _flag(raw)
        if flagged is not None and index not in state.flagged:
            state.flagged.add(index)
            await call.filtered(flagged, "".join(state.texts.get(index, [])))
    return True


def _flag(raw: Any) -> ContentFilterInfo | None:
    if not isinstance(raw, dict):
        return None
    try:
        return content_filter.completion_flag(_Choice.model_validate(raw))
    except ValidationError:
        return None


def json_object(content: bytes) -> dict[str, Any]:
    try:
        data = json.loads(content)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def whole(answer: httpx2.Response, call: MeteredCall | None = None) -> Forwarded:
    """The service's answer as it came; the team's room left (`call`'s, when it went
    through) replaces the deployment's."""
    return Forwarded(
        answer.status_code,
        {**passed_headers(answer.headers), **(call.headers() if call is not None else {})},
        body=answer.content,
        media_type=answer.headers.get("content-type", "application/json"),
    )
