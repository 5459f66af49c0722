"""Chat completions, answered whole or streamed as Server-Sent Events.

The call is metered by shared/metering/call.py (the caller's limit, one usage document per
upstream call, one content-filter event per filtered prompt or completion); this module is the
wire shape. Errors are raised as `shared.core.errors.AppError`; once a stream has started they
become a final `{"type": "error"}` frame instead, since the status line is gone.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import BaseModel

from shared.aoai.backends import Target
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
from shared.core.errors import AppError
from shared.core.models import Usage
from shared.core.settings import Settings
from shared.metering.call import CallMeter, MeteredCall
from shared.metering.callers import Caller, Origin
from shared.metering.output_caps import OutputCap, choose_cap
from shared.metering.teams import Team

SSE_DONE = "data: [DONE]\n\n"


def sse(frame: BaseModel) -> str:
    """One Server-Sent Events frame holding a JSON object."""
    return f"data: {frame.model_dump_json()}\n\n"


def error_frames(failure: AppError) -> list[str]:
    """How a stream that fails after it started ends: an error frame, then `[DONE]`."""
    return [sse(ErrorFrame(error=failure.detail())), SSE_DONE]


@dataclass(frozen=True)
class ChatService:
    """What a chat call needs, created once per process (see shared/runtime.py)."""

    settings: Settings
    meter: CallMeter

    def output_cap(self, request: ChatRequest, deployment: str, team: Team | None) -> OutputCap:
        """Always sent: left out, the model's own default (far above the limit) would apply.
        The caller's `max_tokens`, else the cap learned from recent answers (a high percentile
        of their lengths: shared/metering/output_caps.py), else CHAT_MAX_TOKENS_LIMIT. The
        caller's team's `max_tokens` clamps it (the answer then ends with `finish_reason:
        length`, as Azure's own cap would): a team's cap is an operator's budget rule, and a
        client sending a fixed max_tokens keeps working."""
        team_id = team.id if team is not None else None
        learned = None if request.max_tokens else self.meter.caps.learned(deployment, team_id)
        return choose_cap(
            request.max_tokens,
            learned,
            self.settings.chat_max_tokens_limit,
            team.max_tokens if team is not None else None,
        )

    def _arguments(self, request: ChatRequest, deployment: str, cap: int) -> dict[str, Any]:
        args: dict[str, Any] = {
            "model": deployment,
            "messages": [m.model_dump() for m in request.messages],
            # Reasoning models (gpt-5.x, o-series: the deployed default) refuse max_tokens.
            "max_completion_tokens": cap,
        }
        if request.temperature is not None:
            args["temperature"] = request.temperature
        if request.user is not None:
            # Azure abuse monitoring gets a stable id, never the caller's own.
            args["user"] = self.meter.user_hash(request.user)
        return args

    async def _start(
        self, request: ChatRequest, request_id: str, caller: Caller | None, *, stream: bool
    ) -> MeteredCall:
        """The metered call, booked at prompt characters / 4 plus its max tokens. A model
        outside the caller's team's `models` is an unknown model (400)."""
        team = caller.team if caller is not None else None
        deployment = resolve_deployment(
            self.settings,
            request.model,
            self.settings.chat_deployment,
            team.models if team is not None else (),
        )
        cap = self.output_cap(request, deployment, team)
        estimate = sum(len(m.content) for m in request.messages) // 4 + cap.tokens
        return await self.meter.start(
            "chat_stream" if stream else "chat",
            "chat",
            deployment,
            Origin(caller or Caller(), request_id, request.tags, request.user),
            estimate=estimate,
            prompt="\n".join(m.content for m in request.messages),
            max_tokens=cap.tokens,
            cap=cap,
        )

    async def complete(
        self, request: ChatRequest, request_id: str, caller: Caller | None = None
    ) -> ChatResponse:
        """One whole answer."""
        answer, _ = await self.answer(request, request_id, caller)
        return answer

    async def answer(
        self, request: ChatRequest, request_id: str, caller: Caller | None = None
    ) -> tuple[ChatResponse, dict[str, str]]:
        """One whole answer, with the headers saying the team's room left."""
        call = await self._start(request, request_id, caller, stream=False)
        cap = call.cap.tokens if call.cap is not None else self.settings.chat_max_tokens_limit

        async def send(target: Target) -> ChatCompletion:
            answer: ChatCompletion = await target.client.chat.completions.create(
                **self._arguments(request, target.deployment, cap), extra_headers=target.headers
            )
            return answer

        completion = await call.send(send, deadline=self.settings.chat_deadline_seconds)
        choice = completion.choices[0]
        content = choice.message.content or ""
        usage = Usage.of(completion.usage)
        flagged = content_filter.completion_flag(choice)
        await call.finish(
            model=completion.model,
            usage=usage,
            filtered=[(flagged, content)] if flagged is not None else [],
            finish_reason=choice.finish_reason,
        )
        return ChatResponse(
            id=completion.id,
            model=completion.model,
            deployment=call.site.deployment,
            message=AssistantMessage(content=content),
            finish_reason=choice.finish_reason,
            usage=usage,
            content_filter=flagged,
        ), call.headers()

    async def open_stream(
        self, request: ChatRequest, request_id: str, caller: Caller | None = None
    ) -> AsyncIterator[str]:
        """Start the upstream stream, raising AppError *before* any byte is sent (so 400/429
        keep their status), then return the iterator of SSE frames."""
        frames, _ = await self.start_stream(request, request_id, caller)
        return frames

    async def start_stream(
        self, request: ChatRequest, request_id: str, caller: Caller | None = None
    ) -> tuple[AsyncIterator[str], dict[str, str]]:
        """`open_stream`, with the headers saying the team's room left."""
        call = await self._start(request, request_id, caller, stream=True)
        cap = call.cap.tokens if call.cap is not None else self.settings.chat_max_tokens_limit

        async def send(target: Target) -> openai.AsyncStream[ChatCompletionChunk]:
            # Returns once the status line is in: a failure before the first byte fails over.
            stream: openai.AsyncStream[
                ChatCompletionChunk
            ] = await target.client.chat.completions.create(
                **self._arguments(request, target.deployment, cap),
                extra_headers=target.headers,
                stream=True,
                stream_options={"include_usage": True},
            )
            return stream

        upstream = await call.send(send, deadline=self.settings.chat_deadline_seconds)
        frames = call.relay(_frames(upstream, call), close=upstream.close, error=error_frames)
        return frames, call.headers()


async def _frames(
    upstream: openai.AsyncStream[ChatCompletionChunk], call: MeteredCall
) -> AsyncGenerator[str, None]:
    """The upstream's chunks as delta frames, then a done frame with the usage; a completion
    filtered mid-way ends with a content-filter frame instead."""
    completion_id = ""
    finish_reason: str | None = None
    parts: list[str] = []
    async for chunk in upstream:
        completion_id = chunk.id or completion_id
        call.note(
            model=chunk.model, usage=Usage.of(chunk.usage) if chunk.usage is not None else None
        )
        if not chunk.choices:  # prompt_filter_results first, usage last
            continue
        choice = chunk.choices[0]
        if choice.delta is not None and choice.delta.content:
            call.note(text=choice.delta.content)
            parts.append(choice.delta.content)
            yield sse(DeltaFrame(content=choice.delta.content))
        if choice.finish_reason is not None:
            finish_reason = choice.finish_reason
            call.note(finish_reason=finish_reason)
        flagged = content_filter.completion_flag(choice)
        if flagged is not None:
            await call.filtered(flagged, "".join(parts))
            call.completed()
            yield sse(ContentFilterFrame(stage="completion", categories=flagged.categories))
            yield SSE_DONE
            return
    call.completed()
    yield sse(DoneFrame(id=completion_id, finish_reason=finish_reason, usage=call.usage))
    yield SSE_DONE
