"""One slice of a job: its requests run concurrently under the deployment's limiter until the
work is done, a request fails in a way that needs waiting, the job is cancelled, or the slice's
time is up. Whatever is left goes back to the queue (see shared/jobs/worker.py).

Inside a queue invocation the waits allowed are short: the limiter's pacing (a wait for room
in the quota), bounded by a third of the quota's minute (20 s on Azure), and a 429 whose
retry-after fits that bound, once per request: the request waits it out in the slice (the
limiter holds the whole process until then) and goes again. A queue round trip costs more
than such a wait, and with several hosts on one quota another host takes the room meanwhile.
A longer retry-after, or a second 429 for the same request, stops new requests, and the
retry-after, less half the pacing bound, becomes the continuation's delay (as does the
limiter's wait when it is past the pacing bound): the slice that picks it up waits the rest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from shared.aoai.quota import DeploymentLimiter, Reservation
from shared.core.errors import AppError, RateLimited, translate
from shared.jobs.models import Item, JobSpec, ResultDoc
from shared.metering.bookkeeper import CallSite

log = logging.getLogger(__name__)

PACING_SHARE_OF_MINUTE = 1 / 3
IN_PROCESS_RETRIES = 1  # 429s of one request waited here before it goes back to the queue
CONTINUATION_LEAD = 0.5  # of the pacing bound: how early a rate-limited continuation is due
CANCEL_CHECK_SECONDS = 2.0

Stop = Literal["done", "rate_limited", "passing", "slice", "cancelled"]
PRIORITY: dict[Stop, int] = {"done": 0, "slice": 1, "rate_limited": 2, "passing": 2, "cancelled": 3}


class JobService(Protocol):
    def plan(self, items: list[Item], token_budget: int | None = None) -> list[list[Item]]: ...

    async def run(
        self, group: list[Item], spec: JobSpec, site: CallSite, reservation: Reservation
    ) -> list[ResultDoc]: ...


@dataclass
class SliceOutcome:
    stop: Stop = "done"
    remaining: list[Item] = field(default_factory=list)
    retry_after: float | None = None
    lead: float = 0.0  # how much earlier than `retry_after` a continuation may be due
    failure: AppError | None = None
    requests: int = 0


async def run_slice(
    groups: list[list[Item]],
    *,
    run: Callable[[list[Item], Reservation], Awaitable[list[ResultDoc]]],
    estimate: Callable[[list[Item]], int],
    write: Callable[[list[ResultDoc]], Awaitable[None]],
    fail: Callable[[list[Item], AppError], list[ResultDoc]],
    limiter: DeploymentLimiter,
    concurrency: int,
    seconds: float,
    cancelled: Callable[[], Awaitable[bool]],
    failover: Callable[[AppError, DeploymentLimiter], DeploymentLimiter | None] | None = None,
) -> SliceOutcome:
    """Run `groups` (one request each) and write their results; stop as the module says.

    `failover(failure, limiter)`: after a 429 or passing failure of the backend behind
    `limiter`, the limiter of another backend to carry on with at once, or None (then the
    slice stops as it would with one backend)."""
    outcome = SliceOutcome()
    lane = [limiter]  # the backend's limiter the slice sends to now; a failover moves it
    pending = list(groups)
    deadline = time.monotonic() + seconds
    stopping = asyncio.Event()
    last_cancel_check = [0.0]

    def stop(reason: Stop, group: list[Item]) -> None:
        # A cancel outranks everything; a 429 or a passing failure outranks the end of the
        # slice (both mean "wait before the rest"); otherwise the first reason stands.
        if PRIORITY[reason] > PRIORITY[outcome.stop]:
            outcome.stop = reason
        stopping.set()
        outcome.remaining.extend(group)

    async def is_cancelled() -> bool:
        if time.monotonic() - last_cancel_check[0] < CANCEL_CHECK_SECONDS:
            return False
        last_cancel_check[0] = time.monotonic()
        return await cancelled()

    refused: dict[int, int] = {}  # 429s per group, by id(): a second one sends it back

    def waits_here(failure: RateLimited, group: list[Item], limiter: DeploymentLimiter) -> bool:
        # A short retry-after is waited in this invocation, as the limiter's pacing is: a
        # queue round trip would cost more than the wait, and other hosts would take the room.
        refused[id(group)] = refused.get(id(group), 0) + 1
        wait = failure.retry_after
        return (
            refused[id(group)] <= IN_PROCESS_RETRIES
            and wait is not None
            and wait <= limiter.minute * PACING_SHARE_OF_MINUTE
            and time.monotonic() + wait < deadline
        )

    async def worker() -> None:
        while pending and not stopping.is_set():
            group = pending.pop(0)
            if time.monotonic() >= deadline:
                stop("slice", group)
                return
            if await is_cancelled():
                stop("cancelled", group)
                return
            tokens = estimate(group)
            limiter = lane[0]
            pacing = limiter.minute * PACING_SHARE_OF_MINUTE
            wait = min(pacing, max(0.0, deadline - time.monotonic()))
            if not await limiter.acquire(tokens, max_wait=wait):
                outcome.retry_after = max(outcome.retry_after or 0.0, limiter.delay_for(tokens))
                stop("rate_limited", group)
                return
            if stopping.is_set():  # stopped while this one waited for room
                limiter.settle(tokens, 0)
                outcome.remaining.extend(group)
                return
            try:
                outcome.requests += 1
                # The service settles the reservation when it answers (or refuses).
                results = await run(group, Reservation(limiter, tokens))
                await write(results)
            except Exception as error:
                failure = translate(error)
                if failure is None:
                    raise
                if isinstance(failure, RateLimited):
                    limiter.throttled(failure.retry_after)
                if (isinstance(failure, RateLimited) or failure.retryable) and failover:
                    other = failover(failure, limiter)
                    if other is not None:
                        lane[0] = other
                        pending.insert(0, group)
                        continue
                if isinstance(failure, RateLimited) and waits_here(failure, group, limiter):
                    pending.insert(0, group)
                    continue
                if isinstance(failure, RateLimited):
                    outcome.retry_after = max(outcome.retry_after or 0.0, failure.retry_after or 1)
                    stop("rate_limited", group)
                elif failure.retryable:
                    outcome.failure = outcome.failure or failure
                    stop("passing", group)
                else:  # no use waiting (auth, missing deployment): these items fail
                    await write(fail(group, failure))
                    continue
                return

    async with asyncio.TaskGroup() as tasks:
        for _ in range(max(1, min(concurrency, len(pending)))):
            tasks.create_task(worker())
    for group in pending:  # never started
        outcome.remaining.extend(group)
    # A continuation is due back a little before the room: the queue's round trip (polling,
    # dequeue, the slice's start) is real time, and the slice waits out the rest in its
    # pacing, so the room is taken when it opens instead of a round trip later. The host that
    # was refused still sends nothing before the retry-after: its limiter is paused.
    outcome.lead = lane[0].minute * PACING_SHARE_OF_MINUTE * CONTINUATION_LEAD
    return outcome
