"""One metered call: the lifecycle every call made on a caller's behalf goes through (chat and
the Azure OpenAI-compatible routes), whatever its wire shape.

Who (the `CallSite`, the caller's key for CHAT_CALLER_TPM, the hashed `user`), reserve the
call's worst case against its team's minute, day and month (shared/metering/team_limits.py)
and its estimate against the per-caller limit (shared/metering/caller_limit.py), send through
the backends (shared/aoai/backends.py), then settle the bookings with the tokens the service
reported (the team's also with their cost, as the usage report prices it) and record the usage
document and any content-filter events (shared/metering/bookkeeper.py) with its metrics
(shared/telemetry/record.py: tokens, duration, a stream's time to first chunk). A call that fails
before its answer begins gives its bookings back and is recorded as failed. A stream
is relayed by `MeteredCall.relay`, which records it also when the caller hangs up or the stream
fails after its first byte (before the service's usage chunk: with the prompt's estimate and
the output sent so far, marked `estimated`); the route says only how an error looks in its wire
shape. Records on this path are bounded by STORE_ANSWER_TIMEOUT (shared/metering/bookkeeper.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import httpx2
import openai

from shared.aoai.backends import Backends, Cooling, Target
from shared.aoai.interactive import booked
from shared.aoai.limiters import Limiters
from shared.core.errors import AppError, UpstreamError, UpstreamTimeout, translate
from shared.core.models import ContentFilterInfo, Usage
from shared.core.settings import Settings
from shared.metering import filter_events
from shared.metering.bookkeeper import Bookkeeper, CallSite, Status
from shared.metering.caller_limit import Booking, CallerLimiter
from shared.metering.callers import Origin, caller_key
from shared.metering.filter_events import Source
from shared.metering.models import Operation, UsageRecord
from shared.metering.output_caps import OutputCap, OutputCaps
from shared.metering.report import price_for, usage_cost
from shared.metering.team_limits import Booking as TeamBooking
from shared.metering.team_limits import TeamLimiter
from shared.metering.team_windows import worst_case_tokens, worst_case_usd
from shared.telemetry import record as metrics

log = logging.getLogger(__name__)

T = TypeVar("T")
W = TypeVar("W", str, bytes)


@dataclass(frozen=True)
class CallMeter:
    """Starts metered calls; one per process, shared by chat and the gateway routes
    (shared/runtime.py), so both count against the same per-caller minute."""

    settings: Settings
    backends: Backends
    bookkeeper: Bookkeeper
    caller_limiter: CallerLimiter
    team_limits: TeamLimiter | None = None
    # The process's quota limiters, shared with its jobs: each attempt is booked there, so
    # jobs leave interactive calls room (docs/jobs.md#interactive-calls-first).
    limiters: Limiters | None = None
    # What chat calls naming no output cap are sent with (shared/metering/output_caps.py).
    caps: OutputCaps = field(default_factory=OutputCaps)

    def user_hash(self, user: str | None) -> str | None:
        """The caller's `user` as stored and sent upstream: HMAC-SHA256 keyed with
        USER_HASH_SECRET (None for none)."""
        return filter_events.hash_user(user, self.settings.user_hash_secret.get_secret_value())

    async def start(
        self,
        operation: Operation,
        source: Source,
        deployment: str,
        origin: Origin,
        *,
        estimate: int,
        prompt: str,
        max_tokens: int = 0,
        n: int = 1,
        cap: OutputCap | None = None,
    ) -> MeteredCall:
        """Book the call's worst case against the caller's team (its minute, day and month:
        RateLimited or BudgetExceeded, 429, when spent) and `estimate` tokens against the
        caller's tokens per minute (RateLimited), nothing going upstream on a refusal, and
        start the call's clock. `estimate` is the prompt's estimate plus `max_tokens` (the
        output cap sent, already within the team's `max_tokens`) for each of `n` choices.
        `prompt` goes into the filter event of a refused prompt, stored only with
        CONTENT_FILTER_STORE_TEXT. `cap`: a chat call's output cap and who set it, so that an
        answer it cuts is counted and whole answers teach the learned caps."""
        caller = origin.caller
        site = CallSite(
            operation=operation,
            source=source,
            deployment=deployment,
            tags=origin.tags,
            request_id=origin.request_id,
            client_request_id=caller.client_request_id,
            principal_id=caller.principal.object_id if caller.principal else None,
            user=origin.user,
            team=caller.team.id if caller.team else None,
        )
        team_booking: TeamBooking | None = None
        if caller.team is not None and self.team_limits is not None:
            prompt_estimate = max(0, estimate - max_tokens * max(1, n))
            price = price_for(deployment, self.settings.model_prices)
            team_booking = await self.team_limits.reserve(
                caller.team,
                worst_case_tokens(caller.team, prompt_estimate, max_tokens, n),
                worst_case_usd(caller.team, price, prompt_estimate, max_tokens, n),
            )
        booking: Booking | None = None
        if self.caller_limiter.enabled:
            user_hash = self.user_hash(origin.user)
            key = caller_key(
                caller.principal, origin.tags, user_hash, self.settings.chat_caller_tag
            )
            try:
                booking = await self.caller_limiter.reserve(key, estimate)
            except BaseException:
                if self.team_limits is not None:
                    await self.team_limits.release(team_booking)
                raise
        return MeteredCall(
            self,
            site,
            booking,
            prompt,
            time.perf_counter(),
            team_booking=team_booking,
            charge=estimate,
            cap=cap if n == 1 else None,
        )


class MeteredCall:
    """One call from its booking to its records. `site` names the backend once it is sent."""

    def __init__(
        self,
        meter: CallMeter,
        site: CallSite,
        booking: Booking | None,
        prompt: str,
        started: float,
        *,
        team_booking: TeamBooking | None = None,
        charge: int = 0,
        cap: OutputCap | None = None,
    ) -> None:
        self.site = site
        self._charge = charge  # what the quota charges on arrival: the prompt + output cap
        self.cap = cap  # a chat call's output cap (one choice only: lengths are per answer)
        self.finish_reason: str | None = None
        self.model: str | None = None
        self.usage: Usage | None = None
        self.status: Status = "cancelled"  # a stream's, until it reaches an end of its own
        self._meter = meter
        self._booking = booking
        self._team_booking = team_booking
        self._prompt = prompt
        self._started = started
        self._flagged = False
        self._service_failed = False
        self._streamed_chars = 0
        self._first_chunk: float | None = None  # perf_counter() at a stream's first content
        self._failure: AppError | None = None  # what broke a started stream
        self.estimated = False
        self.record: UsageRecord | None = None  # the usage document, once written

    async def send(
        self,
        call: Callable[[Target], Awaitable[T]],
        *,
        deadline: float | None = None,
        pinned: str | None = None,
    ) -> T:
        """`call` through the backends of the call's deployment, within `deadline` seconds
        for all attempts (CHAT_DEADLINE_SECONDS) when given, never sleeping longer than
        INTERACTIVE_MAX_WAIT_SECONDS on a retry-after (a 429 at once instead); what it
        returns. `pinned`: that backend only (a follow-up of a stored response: `Backends.route`).

        On failure the booking is given back, the failed call recorded (with a filter event
        for a refused prompt), and the AppError the caller sees is raised, chained to the
        SDK's error: an `openai.APIStatusError` cause holds the service's own error answer."""
        route = self._meter.backends.route(
            self.site.deployment,
            pinned=pinned,
            operation=metrics.operation_name(self.site.operation),
            max_wait=self._meter.settings.interactive_max_wait_seconds,
        )
        try:
            async with asyncio.timeout(deadline):
                answer = await route.send(booked(self._meter.limiters, self._charge, call))
        except TimeoutError:
            if deadline is None:
                raise
            timeout = UpstreamTimeout(
                f"Azure OpenAI did not answer within {deadline:g} s (CHAT_DEADLINE_SECONDS)"
            )
            raise await self._failed(route.backend, timeout) from None
        except openai.OpenAIError as error:
            raise await self._failed(route.backend, error) from error
        except Cooling as refused:  # every backend cools longer than a person should wait
            raise await self._failed(route.backend, refused) from None
        self.site = self.site.on(route.backend)
        return answer

    @property
    def team_booking(self) -> TeamBooking | None:
        """The team's booking, for a call whose usage is learned later (a background
        response's: shared/metering/held_booking.py); None for a team without limits."""
        return self._team_booking

    def headers(self) -> dict[str, str]:
        """What the answer says of the team's room (`Booking.headers`); none for a team
        without token limits."""
        return self._team_booking.headers() if self._team_booking is not None else {}

    async def _failed(self, backend: str | None, error: Exception) -> AppError:
        await self._meter.caller_limiter.settle(self._booking, 0)
        await self._release_team()
        self.site = self.site.on(backend)
        failure = await self._meter.bookkeeper.failed(
            self.site, error, started=self._started, prompt=self._prompt
        )
        self._metrics(failure)
        return failure

    def note(
        self,
        *,
        model: str | None = None,
        usage: Usage | None = None,
        text: str = "",
        finish_reason: str | None = None,
    ) -> None:
        """What the answer said so far, for the record: its model, the usage it reported, the
        output `text` of a stream's chunk (its estimate if the usage never comes), why it
        ended (`length`, cut at its cap, is kept over any other choice's reason)."""
        self.model = model or self.model
        if finish_reason is not None and self.finish_reason != "length":
            self.finish_reason = finish_reason
        if usage is not None:
            self.usage = usage
        if text:
            self._streamed_chars += len(text)
            if self._first_chunk is None:
                self._first_chunk = time.perf_counter()

    def _estimate(self) -> None:
        """A stream that ended without the service's usage: the prompt's characters / 4 (as
        the booking counts them) and the output sent so far, at least one token per 4
        characters begun. Azure bills what it generated, so 0 would under-count."""
        if self.usage is not None:
            return
        prompt = max(1, len(self._prompt) // 4)
        completion = -(-self._streamed_chars // 4)
        self.usage = Usage(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        )
        self.estimated = True

    async def filtered(self, info: ContentFilterInfo, text: str | None) -> None:
        """Record a filtered completion (the text only with CONTENT_FILTER_STORE_TEXT); the
        call's usage document then has status `content_filter`."""
        await self._meter.bookkeeper.filtered(self.site, info, text)
        self._flagged = True

    def failed_by_service(self) -> None:
        """The service ended the answer as failed in its own wire shape (a Responses stream's
        `response.failed`): recorded as `error` when the stream ends."""
        self._service_failed = True

    def completed(self) -> None:
        """The answer reached its own end: `ok`, `content_filter` after a filter event, or
        `error` when the service said it failed."""
        self.status = (
            "error" if self._service_failed else "content_filter" if self._flagged else "ok"
        )

    async def finish(
        self,
        *,
        model: str | None,
        usage: Usage | None,
        filtered: Iterable[tuple[ContentFilterInfo, str | None]] = (),
        record_id: str | None = None,
        finish_reason: str | None = None,
    ) -> None:
        """A whole answer: record its filter events and usage document (`record_id`: its id,
        for one written again later), and settle the booking with the tokens used (kept at the
        estimate when the service reported none)."""
        self.note(model=model, usage=usage, finish_reason=finish_reason)
        try:
            for info, text in filtered:
                await self.filtered(info, text)
            self.completed()
            await self._record(record_id)
        finally:
            await self._settle()

    async def relay(
        self,
        wire: AsyncGenerator[W, None],
        *,
        close: Callable[[], Awaitable[object]],
        error: Callable[[AppError], Iterable[W]],
    ) -> AsyncGenerator[W, None]:
        """The route's frames of a started stream, as they come; `wire` reads the upstream,
        calling `note` and `filtered` on the way, and `close` closes the upstream.

        A failure after the first byte ends the stream with `error(failure)`, the route's own
        error frames (the status line is gone), and is logged with the request id. On every
        end (done, failed, or the caller hanging up) the upstream is closed, the usage
        document recorded and the booking settled; that never raises, since raising would drop
        the connection after the last frame."""
        source, request_id = self.site.source, self.site.request_id
        try:
            async for frame in wire:
                yield frame
            self.completed()
        except (openai.OpenAIError, httpx2.HTTPError) as broken:
            self.status = "error"
            failure = translate(broken) or UpstreamError("the Azure OpenAI stream broke off")
            self._failure = failure
            log.warning("%s stream %s failed upstream: %s", source, request_id, failure.code)
            for frame in error(failure):
                yield frame
        except Exception as bug:
            # Not the SDK's (say, Cosmos DB failing while a filter event is recorded).
            self.status = "error"
            failure = translate(bug) or AppError("internal error; see logs")
            self._failure = failure
            log.exception(
                "%s stream %s failed after it started: %s (%s)",
                source,
                request_id,
                failure.code,
                type(bug).__name__,
            )
            for frame in error(failure):
                yield frame
        finally:
            # A hang-up arrives as cancellation of the response's task group, which Starlette's
            # anyio cancels level-triggered: unshielded, every await here would be cancelled
            # too, leaving the upstream stream open and the call unrecorded.
            with anyio.CancelScope(shield=True):
                # Each step on its own: a failed record must not keep the booking unsettled.
                self._estimate()
                steps: tuple[tuple[str, Callable[[], Awaitable[None]]], ...] = (
                    ("closing", lambda: self._close(wire, close)),
                    ("recording", self._record),
                    ("settling", self._settle),
                )
                for step, work in steps:
                    try:
                        await work()
                    except Exception:
                        log.exception("%s stream %s: %s the call failed", source, request_id, step)

    @staticmethod
    async def _close(wire: AsyncGenerator[W, None], close: Callable[[], Awaitable[object]]) -> None:
        try:
            await wire.aclose()
        finally:
            await close()

    def _metrics(self, failure: AppError | None = None) -> None:
        """The call's points (shared/telemetry/record.py): tokens, duration, and a stream's
        time to its first content chunk; an estimated usage is recorded as it is."""
        site = self.site
        outcome, error_type = metrics.outcome_of(self.status, failure)
        attributes = metrics.call_attributes(
            operation=site.operation,
            source=site.source,
            deployment=site.deployment,
            backend=site.backend,
            team=site.team,
            outcome=outcome,
            error_type=error_type,
        )
        first = self._first_chunk
        metrics.record_call(
            attributes,
            self.usage,
            duration=time.perf_counter() - self._started,
            first_chunk=None if first is None else first - self._started,
        )

    async def _record(self, record_id: str | None = None) -> None:
        self._metrics(self._failure)
        cut = self.cap if self.finish_reason == "length" else None
        if self.cap is not None and self.usage is not None and not self.estimated:
            # A whole answer teaches the learned caps its length (a cut stream cannot).
            self._meter.caps.answered(
                self.site, self.cap, self.usage.completion_tokens, self.status, cut is not None
            )
        self.record = await self._meter.bookkeeper.usage(
            self.site,
            model=self.model,
            usage=self.usage,
            started=self._started,
            status=self.status,
            record_id=record_id,
            estimated=self.estimated,
            cut_by=None if cut is None else cut.source,
        )

    async def _settle(self) -> None:
        # The caller's minute: reported usage only; with none it stays at what was booked,
        # the prompt and every output token the call could have used. The team's budget is
        # settled like the usage document: a stream the caller hung up on (or that broke) at
        # its estimate, the prompt and the output sent, not at every token it could have used
        # (a team whose users hang up would pay its worst case for each call).
        if self.usage is None:
            return
        if not self.estimated:
            await self._meter.caller_limiter.settle(self._booking, self.usage.total_tokens)
        limiter = self._meter.team_limits
        if limiter is not None and self._team_booking is not None:
            model = self.model or self.site.deployment
            usd = usage_cost(model, self.usage, self._meter.settings.model_prices)
            await limiter.settle(self._team_booking, self.usage.total_tokens, usd)

    async def _release_team(self) -> None:
        if self._meter.team_limits is not None:
            await self._meter.team_limits.release(self._team_booking)
