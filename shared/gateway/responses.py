"""The Responses API through the gateway: `POST /responses` and the stored-response routes
(`GET`/`DELETE /responses/{id}`, `GET .../input_items`, `POST .../cancel`), the service's
answers passed back unchanged.

A create is metered as a chat call is (shared/metering/call.py): the team's and the caller's
bookings, one usage document (operation `responses` or `responses_stream`; the usage of the
answer or of `response.completed`, its cached and reasoning tokens included), a content-filter
event for a refused input (the service's 400) or an output cut by the filter
(`incomplete_details.reason: content_filter`), `cancelled` when the caller hangs up. The output
cap is `max_output_tokens`, held to CHAT_MAX_TOKENS_LIMIT (set to it when absent) and clamped
to the team's `max_tokens`.

A response lives on the account that created it: each id the gateway passes back is recorded
with its backend and team (shared/gateway/affinity.py), and every follow-up goes to that
backend only (`Backends.route(pinned=...)`). An id the team did not create through the gateway
(another team's, an expired one, a made-up one) is answered as the service answers an unknown
id (404; as `previous_response_id` its 400 `previous_response_not_found`), without a call
upstream.

Upstream, the calls use Azure's v1 shape (`/openai/v1/responses`, no api-version) with the
backend's client: the Responses API is GA there, whatever AZURE_OPENAI_API_VERSION the app's
own chat calls use.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx2
import openai

from shared.aoai.backends import Target
from shared.core.errors import AppError, translate
from shared.core.models import Usage
from shared.gateway.affinity import ResponseHome, ResponseHomes
from shared.gateway.models import ResponsesBody
from shared.gateway.responses_wire import (
    FINAL_EVENTS,
    StreamSeen,
    failed_events,
    filter_flag,
    not_found,
    output_text,
    previous_not_found,
    upstream_path,
    usage_of,
)
from shared.gateway.service import (
    Forwarded,
    Gateway,
    SseEvents,
    json_object,
    passed_headers,
    sent,
    whole,
)
from shared.metering.bookkeeper import Status
from shared.metering.call import MeteredCall
from shared.metering.callers import (
    RESPONSES_MAX_TOKEN_FIELDS,
    Origin,
    cap_completion_tokens,
    clamp_completion_tokens,
)
from shared.metering.held_booking import HeldBooking
from shared.metering.models import Operation, UsageRecord
from shared.metering.report import usage_cost

# A background response's final statuses, and its usage document's status for each.
FINISHED: dict[str, Status] = {
    "completed": "ok",
    "incomplete": "ok",
    "failed": "error",
    "cancelled": "cancelled",
}
# Query parameters of the stored-response routes that go upstream (`api-version` does not:
# the upstream call has its own shape).
PASSED_QUERY = (
    "include",
    "include[]",
    "stream",
    "starting_after",
    "after",
    "before",
    "limit",
    "order",
)


@dataclass(frozen=True)
class ResponsesGateway:
    """The Responses routes' service, one per process (shared/runtime.py)."""

    gateway: Gateway
    homes: ResponseHomes

    async def create(self, body: ResponsesBody, origin: Origin) -> Forwarded:
        team = origin.caller.team
        team_id = team.id if team is not None else ""
        home: ResponseHome | None = None
        if body.previous_response_id is not None:
            home = await self.homes.find(body.previous_response_id, team_id)
            if home is None:
                return previous_not_found(body.previous_response_id)
        deployment = self.gateway.deployment(body.model, origin)
        settings = self.gateway.settings
        payload = body.upstream(
            deployment, self.gateway.meter.user_hash, settings.gateway_allowed_extensions
        )
        fields = RESPONSES_MAX_TOKEN_FIELDS
        max_tokens = cap_completion_tokens(payload, settings.chat_max_tokens_limit, fields)
        max_tokens = clamp_completion_tokens(
            payload, max_tokens, team.max_tokens if team is not None else None, fields
        )
        stream = bool(body.stream)
        prompt = body.prompt_text()
        operation: Operation = "responses_stream" if stream else "responses"
        call = await self.gateway.meter.start(
            operation,
            "gateway",
            deployment,
            origin,
            estimate=len(prompt) // 4 + max_tokens,
            prompt=prompt,
            max_tokens=max_tokens,
        )

        async def send(target: Target) -> httpx2.Response:
            path, query = upstream_path(target, "/responses")
            return await target.client.post(
                path,
                body={**payload, "model": target.deployment},
                options={"params": query, "headers": target.headers},
                cast_to=httpx2.Response,
                stream=stream,
            )

        answer = await sent(call, send, pinned=home.backend if home is not None else None)
        if isinstance(answer, Forwarded):
            return answer
        keep = body.store is not False
        if stream:
            state = StreamSeen()
            events = call.relay(
                self._events(answer, call, state, team_id, keep=keep),
                close=answer.aclose,
                error=lambda failure: failed_events(state, failure),
            )
            return Forwarded(
                answer.status_code, call.headers(), stream=events, media_type="text/event-stream"
            )
        data = json_object(answer.content)
        response_id = data.get("id") if isinstance(data.get("id"), str) else None
        # A background response answers `queued`, its tokens unknown: its usage document gets
        # the response's id, and is written again when a poll finds it done.
        background = bool(body.background) and response_id is not None
        if keep and response_id is not None and not background:
            await self._remember(response_id, team_id, call)
        flag = filter_flag(data)
        await call.finish(
            model=data.get("model"),
            usage=usage_of(data.get("usage")),
            filtered=[(flag, output_text(data))] if flag is not None else [],
            record_id=f"response:{response_id}" if background else None,
        )
        if background and response_id is not None:
            await self._remember(response_id, team_id, call, pending=call.record)
        return whole(answer, call)

    async def _remember(
        self, response_id: str, team: str, call: MeteredCall, pending: UsageRecord | None = None
    ) -> None:
        """Record where the response lives; a background one (`pending`: its usage document
        without tokens) keeps its team's booking beside it, for the poll that settles it."""
        backend = call.site.backend
        if backend is None:
            return
        held = call.team_booking if pending is not None else None
        await self.homes.remember(
            response_id,
            team,
            backend,
            call.site.deployment,
            pending,
            HeldBooking.of(held) if held is not None else None,
        )

    async def _settle_background(self, home: ResponseHome, data: Mapping[str, Any]) -> None:
        """A background response a poll (or a cancel) found done: its usage document written
        again with the tokens, model and outcome the service now reports."""
        pending = home.pending_usage
        status = data.get("status")
        if pending is None or status not in FINISHED:
            return
        usage = usage_of(data.get("usage")) or Usage()
        outcome = FINISHED[status]
        if filter_flag(data) is not None:
            outcome = "content_filter"
        model = data.get("model")
        record = pending.model_copy(
            update={
                **usage.model_dump(),
                "model": model if isinstance(model, str) else pending.model,
                "status": outcome,
            }
        )
        meter = self.gateway.meter
        await meter.bookkeeper.amend(record)  # the same document again: harmless if repeated
        # Once, whichever poll on whichever instance clears the record first: the team's
        # booking, at the call's worst case until now, settled to what the response used.
        if not await self.homes.settled(home) or home.pending_booking is None:
            return
        if meter.team_limits is not None:
            usd = usage_cost(record.model or home.deployment, usage, meter.settings.model_prices)
            await meter.team_limits.settle(home.pending_booking.booking(), usage.total_tokens, usd)

    async def _events(
        self,
        upstream: httpx2.Response,
        call: MeteredCall,
        state: StreamSeen,
        team: str,
        *,
        keep: bool,
    ) -> AsyncGenerator[bytes, None]:
        """The upstream's events as they arrive, each read on the way."""
        events = SseEvents()
        async for data in upstream.aiter_bytes():
            for event in events.feed(data):
                parsed = SseEvents.json_of(event)
                if parsed is not None:
                    await self._observe(parsed, call, state, team, keep=keep)
                yield event
        if events.buffer.strip():
            yield events.buffer

    async def _observe(
        self, event: dict[str, Any], call: MeteredCall, state: StreamSeen, team: str, *, keep: bool
    ) -> None:
        sequence = event.get("sequence_number")
        if isinstance(sequence, int):
            state.sequence = max(state.sequence, sequence)
        kind = event.get("type")
        response = event.get("response")
        if isinstance(response, dict):
            state.response = response
            call.note(model=response.get("model"))
            if keep and not state.remembered and isinstance(response.get("id"), str):
                state.remembered = True
                await self._remember(response["id"], team, call)
        if kind == "response.output_text.delta" and isinstance(event.get("delta"), str):
            call.note(text=event["delta"])
            state.text.append(event["delta"])
        if kind in ("response.failed", "error"):
            call.failed_by_service()
        if kind in FINAL_EVENTS and isinstance(response, dict):
            call.note(usage=usage_of(response.get("usage")))
            flag = filter_flag(response)
            if flag is not None:
                await call.filtered(flag, "".join(state.text))

    async def follow_up(
        self,
        method: str,
        response_id: str,
        suffix: str,
        query: Mapping[str, str],
        origin: Origin,
    ) -> Forwarded:
        """`GET`/`DELETE /responses/{id}`, `GET .../input_items`, `POST .../cancel`: sent to
        the backend that created the response (`suffix` is `""`, `/input_items` or
        `/cancel`); a stream (`GET ...?stream=true` of a background response) passes through
        as it comes."""
        team = origin.caller.team
        home = await self.homes.find(response_id, team.id if team is not None else "")
        if home is None:
            return not_found(response_id)
        params = {name: value for name, value in query.items() if name in PASSED_QUERY}
        stream = params.get("stream") == "true"
        route = self.gateway.meter.backends.route(
            home.deployment,
            pinned=home.backend,
            max_wait=self.gateway.settings.interactive_max_wait_seconds,
        )

        async def send(target: Target) -> httpx2.Response:
            path, extra = upstream_path(target, f"/responses/{response_id}{suffix}")
            options: Any = {"params": {**params, **extra}, "headers": target.headers}
            client = target.client
            if method == "GET":
                return await client.get(
                    path, options=options, cast_to=httpx2.Response, stream=stream
                )
            if method == "DELETE":
                return await client.delete(path, options=options, cast_to=httpx2.Response)
            return await client.post(path, options=options, cast_to=httpx2.Response)

        try:
            answer = await route.send(send)
        except openai.APIStatusError as refused:
            return whole(refused.response)
        except openai.OpenAIError as error:
            raise translate(error) or AppError("the Azure OpenAI call failed") from error
        if stream:
            return Forwarded(
                answer.status_code,
                passed_headers(answer.headers),
                stream=_raw(answer),
                media_type="text/event-stream",
            )
        if home.pending_usage is not None and suffix in ("", "/cancel") and method != "DELETE":
            await self._settle_background(home, json_object(answer.content))
        return whole(answer)


async def _raw(answer: httpx2.Response) -> AsyncGenerator[bytes, None]:
    try:
        async for data in answer.aiter_bytes():
            yield data
    finally:
        await answer.aclose()
