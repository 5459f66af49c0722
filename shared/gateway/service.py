"""The Azure OpenAI-compatible routes: forward a caller's own `/chat/completions` or
`/embeddings` body through the client module and pass the service's answer back unchanged.

What the app adds is bookkeeping, never a change to the answer: one usage document per call
(tags from `x-usage-tags`, the caller's `user` hashed), one content-filter event per filtered
prompt or completion (also mid-stream), the request id in logs; and the token controls of
`/api/chat` (shared/metering/callers.py): output tokens held to CHAT_MAX_TOKENS_LIMIT and the
per-caller limit (400 and 429 in Azure's error shape). Errors keep the service's own status,
headers that matter to a retrying SDK, and body, so the SDKs raise what they would against
Azure OpenAI. Two changes to the request: a body naming no output-token limit is sent with
`max_completion_tokens: CHAT_MAX_TOKENS_LIMIT`, and a stream always asks the service for its
usage chunk (the usage document needs it) and drops it again when the caller did not ask for it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import openai
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.aoai.backends import Backends, Target
from shared.aoai.client import resolve_deployment
from shared.core import content_filter
from shared.core.errors import (
    DeploymentNotFound,
    InvalidRequest,
    UnknownModelError,
    UpstreamError,
    translate,
)
from shared.core.models import ContentFilterInfo, Usage
from shared.core.settings import Settings
from shared.gateway.models import ChatCompletionsBody, EmbeddingsBody
from shared.metering import filter_events
from shared.metering.bookkeeper import Bookkeeper, CallSite, Status
from shared.metering.caller_limit import Booking, CallerLimiter
from shared.metering.callers import (
    Caller,
    caller_key,
    cap_completion_tokens,
    chat_estimate,
    embedding_estimate,
)

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
    try:
        return Usage.model_validate(raw) if isinstance(raw, Mapping) else None
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
    model: str | None = None
    usage: Usage | None = None
    texts: dict[int, list[str]] = field(default_factory=dict)
    flagged: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class Gateway:
    """The forwarding service, one per process (see shared/runtime.py)."""

    settings: Settings
    backends: Backends
    books: Bookkeeper
    limiter: CallerLimiter

    def _user_hash(self, user: str | None) -> str | None:
        return filter_events.hash_user(user, self.settings.user_hash_secret.get_secret_value())

    async def _reserve(
        self, caller: Caller, tags: Mapping[str, str], user: str | None, estimate: int
    ) -> Booking | None:
        """Book the call against its caller's tokens per minute (429 when spent)."""
        if not self.limiter.enabled:
            return None
        key = caller_key(
            caller.principal, tags, self._user_hash(user), self.settings.chat_caller_tag
        )
        return await self.limiter.reserve(key, estimate)

    def deployment(self, name: str | None) -> str:
        """A deployment or model name through the alias table; unknown is Azure's 404."""
        if name is None:
            raise InvalidRequest("the body must name a model")
        try:
            return resolve_deployment(self.settings, name, default=name)
        except UnknownModelError as error:
            raise DeploymentNotFound(
                f"The API deployment {name!r} does not exist; known: {', '.join(error.known)}",
                details={"known_models": error.known},
            ) from None

    async def chat(
        self,
        body: ChatCompletionsBody,
        name: str | None,
        tags: Mapping[str, str],
        request_id: str,
        caller: Caller,
    ) -> Forwarded:
        deployment = self.deployment(name or body.model)
        stream = bool(body.stream)
        site = CallSite(
            operation="chat_stream" if stream else "chat",
            source="gateway",
            deployment=deployment,
            tags=tags,
            request_id=request_id,
            client_request_id=caller.client_request_id,
            principal_id=caller.principal.object_id if caller.principal else None,
            user=body.user,
        )
        payload = body.upstream(deployment, self._user_hash(body.user))
        max_tokens = cap_completion_tokens(payload, self.settings.chat_max_tokens_limit)
        if stream:
            payload["stream_options"] = {**payload.get("stream_options", {}), "include_usage": True}
        prompt = prompt_text(body.messages)
        booking = await self._reserve(
            caller, tags, body.user, chat_estimate(prompt, payload, max_tokens)
        )
        started = time.perf_counter()
        answer, site = await self._send(
            site, "/chat/completions", payload, stream, prompt, started, booking
        )
        if isinstance(answer, Forwarded):
            return answer
        if stream:
            events = self._relay(
                answer, site, started, keep_usage=body.wants_usage_chunk(), booking=booking
            )
            return Forwarded(answer.status_code, {}, stream=events, media_type="text/event-stream")
        data = _json_object(answer.content)
        status: Status = "ok"
        for raw in data.get("choices") or []:
            flagged = _flag(raw)
            if flagged is not None:
                status = "content_filter"
                text = (raw.get("message") or {}).get("content")
                await self.books.filtered(site, flagged, text if isinstance(text, str) else None)
        usage = usage_from(data.get("usage"))
        await self.books.usage(
            site, model=data.get("model"), usage=usage, started=started, status=status
        )
        if usage is not None:
            await self.limiter.settle(booking, usage.total_tokens)
        return _whole(answer)

    async def embeddings(
        self,
        body: EmbeddingsBody,
        name: str | None,
        tags: Mapping[str, str],
        request_id: str,
        caller: Caller,
    ) -> Forwarded:
        deployment = self.deployment(name or body.model)
        site = CallSite(
            operation="embedding",
            source="gateway",
            deployment=deployment,
            tags=tags,
            request_id=request_id,
            client_request_id=caller.client_request_id,
            principal_id=caller.principal.object_id if caller.principal else None,
            user=body.user,
        )
        inputs = body.input if isinstance(body.input, list) else [body.input]
        prompt = "\n".join(i for i in inputs if isinstance(i, str))
        booking = await self._reserve(caller, tags, body.user, embedding_estimate(body.input))
        started = time.perf_counter()
        payload = body.upstream(deployment, self._user_hash(body.user))
        answer, site = await self._send(
            site, "/embeddings", payload, False, prompt, started, booking
        )
        if isinstance(answer, Forwarded):
            return answer
        data = _json_object(answer.content)
        usage = usage_from(data.get("usage"))
        await self.books.usage(site, model=data.get("model"), usage=usage, started=started)
        if usage is not None:
            await self.limiter.settle(booking, usage.total_tokens)
        return _whole(answer)

    async def _send(
        self,
        site: CallSite,
        path: str,
        payload: dict[str, Any],
        stream: bool,
        prompt: str,
        started: float,
        booking: Booking | None = None,
    ) -> tuple[httpx2.Response | Forwarded, CallSite]:
        """The service's answer, and the call site naming the backend that gave it; an error
        answer as a Forwarded (recorded, passed through); a transport failure recorded and
        raised as the app's 502/504. A failed call gives its booking back."""
        route = self.backends.route(site.deployment)

        async def send(target: Target) -> httpx2.Response:
            # The Azure client puts the body's `model` into the URL: the backend's own name.
            body = {**payload, "model": target.deployment}
            return await target.client.post(path, body=body, cast_to=httpx2.Response, stream=stream)

        try:
            answer = await route.send(send)
        except openai.APIStatusError as error:
            await self.limiter.settle(booking, 0)
            site = site.on(route.backend)
            await self.books.failed(site, error, started=started, prompt=prompt)
            log.info(
                "gateway %s on %s via %s: upstream HTTP %s (request %s)",
                site.operation,
                site.deployment,
                site.backend,
                error.status_code,
                site.request_id,
            )
            response = error.response
            forwarded = Forwarded(
                response.status_code,
                passed_headers(response.headers),
                body=response.content,
                media_type=response.headers.get("content-type", "application/json"),
            )
            return forwarded, site
        except openai.OpenAIError as error:
            await self.limiter.settle(booking, 0)
            site = site.on(route.backend)
            raise await self.books.failed(site, error, started=started, prompt=prompt) from None
        site = site.on(route.backend)
        log.info(
            "gateway %s on %s via %s: HTTP %s (request %s)",
            site.operation,
            site.deployment,
            site.backend,
            answer.status_code,
            site.request_id,
        )
        return answer, site

    async def _relay(
        self,
        upstream: httpx2.Response,
        site: CallSite,
        started: float,
        *,
        keep_usage: bool,
        booking: Booking | None = None,
    ) -> AsyncIterator[bytes]:
        """The upstream's SSE events as they arrive, recording usage and filter events."""
        events, state = SseEvents(), _StreamState()
        status: Status = "cancelled"  # until the stream reaches an end of its own
        try:
            async for data in upstream.aiter_bytes():
                for event in events.feed(data):
                    chunk = SseEvents.json_of(event)
                    wanted = chunk is None or await self._observe(chunk, site, state)
                    if wanted or keep_usage:
                        yield event
            if events.buffer.strip():
                yield events.buffer
            status = "content_filter" if state.flagged else "ok"
        except (openai.OpenAIError, httpx2.HTTPError) as error:
            status = "error"
            failure = translate(error) or UpstreamError("the Azure OpenAI stream broke off")
            log.warning("gateway stream %s failed upstream: %s", site.request_id, failure.code)
            # The status line is gone; an `error` event is what the openai SDK raises from.
            detail = {"error": {"code": failure.code, "message": failure.message}}
            yield f"data: {json.dumps(detail)}\n\n".encode()
        finally:
            # As in shared/chat/service.py: a hang-up cancels the response's task group
            # level-triggered; unshielded, the upstream would stay open and the call unrecorded.
            with anyio.CancelScope(shield=True):
                await upstream.aclose()
                await self.books.usage(
                    site, model=state.model, usage=state.usage, started=started, status=status
                )
                if state.usage is not None:
                    await self.limiter.settle(booking, state.usage.total_tokens)

    async def _observe(self, chunk: dict[str, Any], site: CallSite, state: _StreamState) -> bool:
        """Take what the records need from one chunk. False for the usage-only chunk that the
        app asked for on the caller's behalf."""
        state.model = chunk.get("model") or state.model
        choices = chunk.get("choices") or []
        if (usage := usage_from(chunk.get("usage"))) is not None:
            state.usage = usage
            if not choices:
                return False
        for raw in choices:
            if not isinstance(raw, dict):
                continue
            index = raw.get("index", 0)
            content = (raw.get("delta") or {}).get("content")
            if isinstance(content, str):
                state.texts.setdefault(index, []).append(content)
            flagged = _flag(raw)
            if flagged is not None and index not in state.flagged:
                state.flagged.add(index)
                await self.books.filtered(site, flagged, "".join(state.texts.get(index, [])))
        return True


def _flag(raw: Any) -> ContentFilterInfo | None:
    if not isinstance(raw, dict):
        return None
    try:
        return content_filter.completion_flag(_Choice.model_validate(raw))
    except ValidationError:
        return None


def _json_object(content: bytes) -> dict[str, Any]:
    try:
        data = json.loads(content)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _whole(answer: httpx2.Response) -> Forwarded:
    return Forwarded(
        answer.status_code,
        passed_headers(answer.headers),
        body=answer.content,
        media_type=answer.headers.get("content-type", "application/json"),
    )
