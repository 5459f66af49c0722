"""Chat completions, answered whole or streamed as Server-Sent Events.

Both paths record one usage document per upstream call and one content-filter event per
filtered prompt or completion. Errors are raised as `shared.errors.AppError`; once a stream has
started they become a final `{"type": "error"}` frame instead, since the status line is gone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import httpx2
import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import BaseModel

from shared import content_filter
from shared.aoai import UnknownModelError, resolve_deployment
from shared.errors import AppError, ContentFiltered, InvalidRequest, UpstreamError, from_openai
from shared.models import (
    AssistantMessage,
    ChatRequest,
    ChatResponse,
    ContentFilterFrame,
    ContentFilterInfo,
    DeltaFrame,
    DoneFrame,
    ErrorFrame,
    Usage,
)
from shared.settings import Settings
from shared.store import Store
from shared.usage import build_record, record_usage

log = logging.getLogger(__name__)

SSE_DONE = "data: [DONE]\n\n"


def sse(frame: BaseModel) -> str:
    """One Server-Sent Events frame holding a JSON object."""
    return f"data: {frame.model_dump_json()}\n\n"


@dataclass(frozen=True)
class ChatService:
    """What a chat call needs, created once per process (see shared/runtime.py)."""

    settings: Settings
    client: AsyncOpenAI
    store: Store

    def deployment_for(self, request: ChatRequest) -> str:
        try:
            return resolve_deployment(self.settings, request.model, self.settings.chat_deployment)
        except UnknownModelError as error:
            raise InvalidRequest(str(error), details={"known_models": error.known}) from None

    def _arguments(self, request: ChatRequest, deployment: str) -> dict[str, Any]:
        args: dict[str, Any] = {
            "model": deployment,
            "messages": [m.model_dump() for m in request.messages],
        }
        if request.max_tokens is not None:
            args["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            args["temperature"] = request.temperature
        if request.user is not None:
            # Azure abuse monitoring gets a stable id, never the caller's own.
            args["user"] = content_filter.hash_user(request.user)
        return args

    async def complete(self, request: ChatRequest, request_id: str) -> ChatResponse:
        """One whole answer."""
        deployment = self.deployment_for(request)
        started = time.perf_counter()
        try:
            completion: ChatCompletion = await self.client.chat.completions.create(
                **self._arguments(request, deployment)
            )
        except openai.OpenAIError as error:
            raise await self._upstream_failure(
                error, request, deployment, request_id, "chat", started
            ) from None
        latency = (time.perf_counter() - started) * 1000
        choice = completion.choices[0]
        content = choice.message.content or ""
        usage = _usage(completion.usage)
        info = content_filter.completion_filter(choice)
        flagged = info if info is not None and info.filtered else None
        if choice.finish_reason == "content_filter" and flagged is None:
            flagged = ContentFilterInfo(stage="completion", filtered=True, categories={})
        if flagged is not None:
            await self._record_filter(flagged, request, deployment, request_id, content)
        await record_usage(
            self.store,
            build_record(
                operation="chat",
                deployment=deployment,
                model=completion.model,
                usage=usage,
                latency_ms=latency,
                tags=request.tags,
                status="content_filter" if flagged else "ok",
                request_id=request_id,
            ),
        )
        return ChatResponse(
            id=completion.id,
            model=completion.model,
            deployment=deployment,
            message=AssistantMessage(content=content),
            finish_reason=choice.finish_reason,
            usage=usage,
            content_filter=flagged,
        )

    async def open_stream(self, request: ChatRequest, request_id: str) -> AsyncIterator[str]:
        """Start the upstream stream, raising AppError *before* any byte is sent (so 400/429
        keep their status), then return the iterator of SSE frames."""
        deployment = self.deployment_for(request)
        started = time.perf_counter()
        try:
            upstream = await self.client.chat.completions.create(
                **self._arguments(request, deployment),
                stream=True,
                stream_options={"include_usage": True},
            )
        except openai.OpenAIError as error:
            raise await self._upstream_failure(
                error, request, deployment, request_id, "chat_stream", started
            ) from None
        return self._frames(upstream, request, deployment, request_id, started)

    async def _frames(
        self,
        upstream: openai.AsyncStream[ChatCompletionChunk],
        request: ChatRequest,
        deployment: str,
        request_id: str,
        started: float,
    ) -> AsyncIterator[str]:
        completion_id, model = "", None
        finish_reason: str | None = None
        usage: Usage | None = None
        parts: list[str] = []
        status = "cancelled"  # until the stream reaches an end of its own
        try:
            async for chunk in upstream:
                completion_id = chunk.id or completion_id
                model = chunk.model or model
                if chunk.usage is not None:
                    usage = _usage(chunk.usage)
                if not chunk.choices:  # prompt_filter_results first, usage last
                    continue
                choice = chunk.choices[0]
                if choice.delta is not None and choice.delta.content:
                    parts.append(choice.delta.content)
                    yield sse(DeltaFrame(content=choice.delta.content))
                if choice.finish_reason is not None:
                    finish_reason = choice.finish_reason
                if finish_reason == "content_filter":
                    info = content_filter.completion_filter(choice) or ContentFilterInfo(
                        stage="completion", filtered=True, categories={}
                    )
                    await self._record_filter(info, request, deployment, request_id, "".join(parts))
                    status = "content_filter"
                    yield sse(ContentFilterFrame(stage="completion", categories=info.categories))
                    yield SSE_DONE
                    return
            status = "ok"
            yield sse(DoneFrame(id=completion_id, finish_reason=finish_reason, usage=usage))
            yield SSE_DONE
        except (openai.OpenAIError, httpx2.HTTPError) as error:
            # The SDK raises its transport's errors unwrapped while a stream is being read.
            status = "error"
            failure = (
                from_openai(error)
                if isinstance(error, openai.OpenAIError)
                else UpstreamError("the Azure OpenAI stream broke off")
            )
            log.warning("chat stream %s failed upstream: %s", request_id, failure.code)
            yield sse(ErrorFrame(error=failure.detail()))
            yield SSE_DONE
        finally:
            # Runs on normal end, on error and when the caller hangs up. A hang-up arrives as
            # cancellation of the response's task group, which Starlette's anyio cancels
            # level-triggered: unshielded, every await here would be cancelled too, leaving
            # the upstream stream open and the call unrecorded.
            with anyio.CancelScope(shield=True):
                await upstream.close()
                await record_usage(
                    self.store,
                    build_record(
                        operation="chat_stream",
                        deployment=deployment,
                        model=model,
                        usage=usage,
                        latency_ms=(time.perf_counter() - started) * 1000,
                        tags=request.tags,
                        status=status,
                        request_id=request_id,
                    ),
                )

    async def _upstream_failure(
        self,
        error: openai.OpenAIError,
        request: ChatRequest,
        deployment: str,
        request_id: str,
        operation: Literal["chat", "chat_stream"],
        started: float,
    ) -> AppError:
        """Record the failed call (a filter event too, for a filtered prompt) and say what
        the caller sees."""
        failure: AppError
        if isinstance(error, openai.APIStatusError) and content_filter.is_prompt_filtered(error):
            info = content_filter.prompt_filter(error)
            prompt = "\n".join(m.content for m in request.messages)
            await self._record_filter(info, request, deployment, request_id, prompt)
            failure = ContentFiltered(
                "the prompt was filtered by Azure OpenAI's content management policy",
                details={"stage": "prompt", "categories": content_filter.filtered_only(info)},
            )
        else:
            failure = from_openai(error)
            log.warning(
                "chat %s on %s failed upstream: %s (%s)",
                request_id,
                deployment,
                failure.code,
                type(error).__name__,
            )
        await record_usage(
            self.store,
            build_record(
                operation=operation,
                deployment=deployment,
                model=None,
                usage=None,
                latency_ms=(time.perf_counter() - started) * 1000,
                tags=request.tags,
                status="content_filter" if isinstance(failure, ContentFiltered) else "error",
                request_id=request_id,
            ),
        )
        return failure

    async def _record_filter(
        self,
        info: ContentFilterInfo,
        request: ChatRequest,
        deployment: str,
        request_id: str,
        text: str,
    ) -> None:
        event = content_filter.build_event(
            info,
            source="chat",
            deployment=deployment,
            request_id=request_id,
            user=request.user,
            text=text,
            store_text=self.settings.content_filter_store_text,
        )
        await content_filter.record_event(self.store, event)
        log.info(
            "content filter: %s %s on %s (request %s)",
            info.stage,
            ",".join(content_filter.filtered_only(info)) or "unspecified",
            deployment,
            request_id,
        )


def _usage(raw: Any) -> Usage:
    if raw is None:
        return Usage()
    return Usage(
        prompt_tokens=raw.prompt_tokens or 0,
        completion_tokens=raw.completion_tokens or 0,
        total_tokens=raw.total_tokens or 0,
    )
