"""Chat completions, answered whole or streamed as Server-Sent Events.

Both paths record one usage document per upstream call and one content-filter event per
filtered prompt or completion. Errors are raised as `shared.core.errors.AppError`; once a stream has
started they become a final `{"type": "error"}` frame instead, since the status line is gone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import BaseModel

from shared.aoai.backends import Backends, Target
from shared.aoai.client import resolve_deployment
from shared.chat.models import (
    AssistantMessage,
    ChatRequest,
    ChatResponse,
    ContentFilterFrame,
    DeltaFrame,
    DoneFrame,
    ErrorFrame,
)
from shared.core import content_filter
from shared.core.errors import AppError, UpstreamError, UpstreamTimeout, translate
from shared.core.models import Usage
from shared.core.settings import Settings
from shared.metering import filter_events
from shared.metering.bookkeeper import Bookkeeper, CallSite, Status, usage_of
from shared.metering.caller_limit import Booking, CallerLimiter
from shared.metering.callers import Caller, caller_key

log = logging.getLogger(__name__)

SSE_DONE = "data: [DONE]\n\n"


def sse(frame: BaseModel) -> str:
    """One Server-Sent Events frame holding a JSON object."""
    return f"data: {frame.model_dump_json()}\n\n"


@dataclass(frozen=True)
class ChatService:
    """What a chat call needs, created once per process (see shared/runtime.py)."""

    settings: Settings
    backends: Backends
    books: Bookkeeper
    limiter: CallerLimiter

    def _site(
        self, request: ChatRequest, request_id: str, caller: Caller, *, stream: bool
    ) -> CallSite:
        deployment = resolve_deployment(self.settings, request.model, self.settings.chat_deployment)
        return CallSite(
            operation="chat_stream" if stream else "chat",
            source="chat",
            deployment=deployment,
            tags=request.tags,
            request_id=request_id,
            client_request_id=caller.client_request_id,
            principal_id=caller.principal.object_id if caller.principal else None,
            user=request.user,
        )

    def _user_hash(self, request: ChatRequest) -> str | None:
        return filter_events.hash_user(
            request.user, self.settings.user_hash_secret.get_secret_value()
        )

    def max_tokens(self, request: ChatRequest) -> int:
        """Always sent: left out, the model's own default (far above the limit) would apply."""
        return request.max_tokens or self.settings.chat_max_tokens_limit

    def _arguments(self, request: ChatRequest, deployment: str) -> dict[str, Any]:
        args: dict[str, Any] = {
            "model": deployment,
            "messages": [m.model_dump() for m in request.messages],
            # Reasoning models (gpt-5.x, o-series: the deployed default) refuse max_tokens.
            "max_completion_tokens": self.max_tokens(request),
        }
        if request.temperature is not None:
            args["temperature"] = request.temperature
        if request.user is not None:
            # Azure abuse monitoring gets a stable id, never the caller's own.
            args["user"] = self._user_hash(request)
        return args

    async def _reserve(self, request: ChatRequest, caller: Caller) -> Booking | None:
        """Book the call against its caller's tokens per minute (429 when spent)."""
        if not self.limiter.enabled:
            return None
        key = caller_key(
            caller.principal, request.tags, self._user_hash(request), self.settings.chat_caller_tag
        )
        estimate = sum(len(m.content) for m in request.messages) // 4 + self.max_tokens(request)
        return await self.limiter.reserve(key, estimate)

    async def complete(
        self, request: ChatRequest, request_id: str, caller: Caller | None = None
    ) -> ChatResponse:
        """One whole answer."""
        caller = caller or Caller()
        site = self._site(request, request_id, caller, stream=False)
        booked = await self._reserve(request, caller)
        started = time.perf_counter()
        route = self.backends.route(site.deployment)

        async def send(target: Target) -> ChatCompletion:
            answer: ChatCompletion = await target.client.chat.completions.create(
                **self._arguments(request, target.deployment)
            )
            return answer

        try:
            async with asyncio.timeout(self.settings.chat_deadline_seconds):
                completion = await route.send(send)
        except TimeoutError:
            await self.limiter.settle(booked, 0)
            site = site.on(route.backend)
            raise await self._upstream_failure(self._deadline(), request, site, started) from None
        except openai.OpenAIError as error:
            await self.limiter.settle(booked, 0)
            site = site.on(route.backend)
            raise await self._upstream_failure(error, request, site, started) from None
        site = site.on(route.backend)
        choice = completion.choices[0]
        content = choice.message.content or ""
        usage = usage_of(completion.usage)
        await self.limiter.settle(booked, usage.total_tokens)
        flagged = content_filter.completion_flag(choice)
        if flagged is not None:
            await self.books.filtered(site, flagged, content)
        await self.books.usage(
            site,
            model=completion.model,
            usage=usage,
            started=started,
            status="content_filter" if flagged else "ok",
        )
        return ChatResponse(
            id=completion.id,
            model=completion.model,
            deployment=site.deployment,
            message=AssistantMessage(content=content),
            finish_reason=choice.finish_reason,
            usage=usage,
            content_filter=flagged,
        )

    async def open_stream(
        self, request: ChatRequest, request_id: str, caller: Caller | None = None
    ) -> AsyncIterator[str]:
        """Start the upstream stream, raising AppError *before* any byte is sent (so 400/429
        keep their status), then return the iterator of SSE frames."""
        caller = caller or Caller()
        site = self._site(request, request_id, caller, stream=True)
        booked = await self._reserve(request, caller)
        started = time.perf_counter()
        route = self.backends.route(site.deployment)

        async def send(target: Target) -> openai.AsyncStream[ChatCompletionChunk]:
            # Returns once the status line is in: a failure before the first byte fails over.
            stream: openai.AsyncStream[
                ChatCompletionChunk
            ] = await target.client.chat.completions.create(
                **self._arguments(request, target.deployment),
                stream=True,
                stream_options={"include_usage": True},
            )
            return stream

        try:
            async with asyncio.timeout(self.settings.chat_deadline_seconds):
                upstream = await route.send(send)
        except TimeoutError:
            await self.limiter.settle(booked, 0)
            site = site.on(route.backend)
            raise await self._upstream_failure(self._deadline(), request, site, started) from None
        except openai.OpenAIError as error:
            await self.limiter.settle(booked, 0)
            site = site.on(route.backend)
            raise await self._upstream_failure(error, request, site, started) from None
        return self._frames(upstream, site.on(route.backend), started, booked)

    async def _frames(
        self,
        upstream: openai.AsyncStream[ChatCompletionChunk],
        site: CallSite,
        started: float,
        booked: Booking | None,
    ) -> AsyncIterator[str]:
        completion_id, model = "", None
        finish_reason: str | None = None
        usage: Usage | None = None
        parts: list[str] = []
        status: Status = "cancelled"  # until the stream reaches an end of its own
        try:
            async for chunk in upstream:
                completion_id = chunk.id or completion_id
                model = chunk.model or model
                if chunk.usage is not None:
                    usage = usage_of(chunk.usage)
                if not chunk.choices:  # prompt_filter_results first, usage last
                    continue
                choice = chunk.choices[0]
                if choice.delta is not None and choice.delta.content:
                    parts.append(choice.delta.content)
                    yield sse(DeltaFrame(content=choice.delta.content))
                if choice.finish_reason is not None:
                    finish_reason = choice.finish_reason
                flagged = content_filter.completion_flag(choice)
                if flagged is not None:
                    await self.books.filtered(site, flagged, "".join(parts))
                    status = "content_filter"
                    yield sse(ContentFilterFrame(stage="completion", categories=flagged.categories))
                    yield SSE_DONE
                    return
            status = "ok"
            yield sse(DoneFrame(id=completion_id, finish_reason=finish_reason, usage=usage))
            yield SSE_DONE
        except (openai.OpenAIError, httpx2.HTTPError) as error:
            status = "error"
            failure = translate(error) or UpstreamError("the Azure OpenAI stream broke off")
            log.warning("chat stream %s failed upstream: %s", site.request_id, failure.code)
            yield sse(ErrorFrame(error=failure.detail()))
            yield SSE_DONE
        except Exception as error:
            # Not the SDK's (say, Cosmos DB failing while a filter event is recorded): the status
            # line is gone, so the caller gets an error frame and the log gets the request id.
            status = "error"
            failure = translate(error) or AppError("internal error; see logs")
            log.exception(
                "chat stream %s failed after it started: %s (%s)",
                site.request_id,
                failure.code,
                type(error).__name__,
            )
            yield sse(ErrorFrame(error=failure.detail()))
            yield SSE_DONE
        finally:
            # Runs on normal end, on error and when the caller hangs up. A hang-up arrives as
            # cancellation of the response's task group, which Starlette's anyio cancels
            # level-triggered: unshielded, every await here would be cancelled too, leaving
            # the upstream stream open and the call unrecorded.
            with anyio.CancelScope(shield=True):
                try:
                    await upstream.close()
                    await self.books.usage(
                        site, model=model, usage=usage, started=started, status=status
                    )
                    if usage is not None:
                        await self.limiter.settle(booked, usage.total_tokens)
                except Exception:
                    # Raising here would drop the connection after the last frame was sent.
                    log.exception("chat stream %s: recording the call failed", site.request_id)

    def _deadline(self) -> UpstreamTimeout:
        return UpstreamTimeout(
            f"Azure OpenAI did not answer within {self.settings.chat_deadline_seconds:g} s "
            "(CHAT_DEADLINE_SECONDS)"
        )

    async def _upstream_failure(
        self, error: Exception, request: ChatRequest, site: CallSite, started: float
    ) -> AppError:
        """Record the failed call and say what the caller sees."""
        prompt = "\n".join(m.content for m in request.messages)
        return await self.books.failed(site, error, started=started, prompt=prompt)
