"""One slice of a job: its requests run concurrently until the work is done, a request is
refused in a way that needs waiting, the job is cancelled, or the slice's time is up.

`run_slice` packs the items into requests (the job's service: shared/jobs/embeddings.py or
shared/jobs/classification.py), paces each under its backend's limiter
(shared/aoai/quota.py), sends it through the service, writes its results as soon as it
returns (shared/jobs/store.py), and moves to the next backend when one refuses
(shared/aoai/failover.py). With the job's team's budget (shared/jobs/team_budget.py) each
request first books its worst case against the team, and a refusal stops the slice
(`budget`). It returns what happened, a `SliceOutcome`: the worker
(shared/jobs/worker.py) decides from it whether the rest continues, fails, or the job
finishes. What a slice waits for itself and what goes back to the queue:
docs/jobs.md#rate-limits-and-retries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from shared.aoai.failover import Failover, Lane
from shared.aoai.reservation import Reservation
from shared.core.errors import AppError, InvalidRequest, RateLimited, translate
from shared.core.models import Usage
from shared.jobs.memory import MemoryBudget
from shared.jobs.models import Item, Job, JobDoc, JobSpec, ResultDoc
from shared.jobs.results import PartlyAnswered, failed_result
from shared.jobs.team_budget import TeamBudget
from shared.metering.bookkeeper import CallSite
from shared.metering.team_limits import Booking
from shared.telemetry import record as metrics

PACING_SHARE_OF_MINUTE = 1 / 3  # the longest wait for room in a slice, of the quota's minute
IN_PROCESS_RETRIES = 1  # 429s of one request waited here before it goes back to the queue
CONTINUATION_LEAD = 0.5  # of the pacing bound: how early a rate-limited continuation is due
CANCEL_CHECK_SECONDS = 2.0
REQUEST_SHARE_OF_QUOTA = 10  # a request of at most 1/10 of the TPM keeps the flow steady

Stop = Literal["done", "rate_limited", "passing", "slice", "budget", "cancelled"]
PRIORITY: dict[Stop, int] = {
    "done": 0,
    "slice": 1,
    "rate_limited": 2,
    "passing": 2,
    "budget": 2,
    "cancelled": 3,
}


class JobService(Protocol):
    """What a job kind does with its items (EmbeddingService, ClassificationService)."""

    def plan(
        self, items: list[Item], token_budget: int | None = None, spec: JobSpec | None = None
    ) -> list[list[Item]]: ...

    def estimate(self, group: list[Item], spec: JobSpec) -> int: ...

    def answer_bytes(self, group: list[Item], spec: JobSpec) -> int: ...

    async def run(
        self, group: list[Item], spec: JobSpec, site: CallSite, reservation: Reservation
    ) -> list[ResultDoc]: ...


class Held(Protocol):
    """The job's lease (shared/jobs/lease.py): once lost, no new request starts."""

    @property
    def lost(self) -> bool: ...


class ResultStore(Protocol):
    """Where results go, and the job's status (JobStore)."""

    async def get(self, job_id: str) -> JobDoc | None: ...

    async def write_results(self, results: Iterable[ResultDoc]) -> list[ResultDoc]: ...


@dataclass
class SliceOutcome:
    """What one slice did: why it stopped, what it left, and what it wrote."""

    stop: Stop = "done"
    remaining: list[Item] = field(default_factory=list)
    retry_after: float | None = None
    lead: float = 0.0  # how much earlier than `retry_after` a continuation may be due
    failure: AppError | None = None  # the first passing failure, when it stopped the slice
    refusal: RateLimited | None = None  # the team's, when its budget stopped the slice
    unwritten: list[ResultDoc] = field(default_factory=list)  # answered, the store failed
    requests: int = 0
    written: int = 0  # result documents written, failed and filtered items included
    failed: int = 0  # of them, items that did not succeed
    usage: Usage = field(default_factory=Usage)  # the written results' usage


async def run_slice(
    job: Job,
    spec: JobSpec,
    items: list[Item],
    *,
    service: JobService,
    store: ResultStore,
    failover: Failover,
    concurrency: int,
    seconds: float,
    memory: MemoryBudget | None = None,
    lease: Held | None = None,
    budget: TeamBudget | None = None,
) -> SliceOutcome:
    """Run `items` of `job` as requests, `concurrency` at a time, for at most `seconds`,
    starting on `failover.current`; write each request's results as it returns. Each request
    holds its estimated answer size in `memory` (the process's budget, shared/jobs/memory.py)
    until its results are written. Items that fail for good (auth, a missing deployment) are
    written as failed results; the rest of a stopped slice is in `remaining`. Raises what it
    cannot settle: an error `translate` cannot name (a bug), or a failed write of items that
    failed for good. A `lease` that is lost ends the slice as if its time were up. With a
    team `budget`, each request books against it first; a refusal stops the slice (`budget`,
    the refusal in `refusal`)."""
    return await _Slice(job, spec, service, store, failover, seconds, memory, lease, budget).run(
        items, concurrency
    )


class _Slice:
    def __init__(
        self,
        job: Job,
        spec: JobSpec,
        service: JobService,
        store: ResultStore,
        failover: Failover,
        seconds: float,
        memory: MemoryBudget | None = None,
        lease: Held | None = None,
        budget: TeamBudget | None = None,
    ) -> None:
        assert job.job_id is not None
        self.job = job
        self.job_id = job.job_id
        self.spec = spec
        self.service = service
        self.store = store
        self.failover = failover
        self.site = CallSite(
            operation=job.kind,
            source="job",
            deployment=spec.deployment,
            tags=spec.tags,
            job_id=job.job_id,
            principal_id=spec.principal_id,
            team=spec.team,
        )
        self.seconds = seconds
        self.lease = lease
        self.outcome = SliceOutcome()
        self.pending: list[list[Item]] = []
        self.deadline = 0.0
        self.stopping = asyncio.Event()
        self.last_cancel_check = 0.0
        self.refused: dict[int, int] = {}  # 429s per group, by id(): a second one sends it back
        self.memory = memory  # the process's, shared by every slice it runs
        self.budget = budget

    async def run(self, items: list[Item], concurrency: int) -> SliceOutcome:
        limit = self.failover.current.limiter.token_limit
        budget = limit // REQUEST_SHARE_OF_QUOTA if limit else None
        team_cap = self.budget.token_cap() if self.budget is not None else None
        if team_cap is not None:
            budget = min(budget, team_cap) if budget is not None else team_cap
        self.pending = self.service.plan(items, budget, spec=self.spec)
        self.deadline = time.monotonic() + self.seconds
        async with asyncio.TaskGroup() as tasks:
            for _ in range(max(1, min(concurrency, len(self.pending)))):
                tasks.create_task(self._requests())
        for group in self.pending:  # never started
            self.outcome.remaining.extend(group)
        # A continuation is due back a little before the room: the queue's round trip is real
        # time, and the slice that picks it up waits out the rest in its pacing. The host that
        # was refused still sends nothing before the retry-after: its limiter is paused.
        minute = self.failover.current.limiter.minute
        self.outcome.lead = minute * PACING_SHARE_OF_MINUTE * CONTINUATION_LEAD
        return self.outcome

    async def _requests(self) -> None:
        """Take groups off `pending` and send them, one at a time, until none is left or the
        slice stops."""
        while self.pending and not self.stopping.is_set():
            group = self.pending.pop(0)
            if time.monotonic() >= self.deadline or (self.lease and self.lease.lost):
                self._stop("slice", group)
                return
            if await self._cancelled():
                self._stop("cancelled", group)
                return
            # Room for the answer first (it waits on other requests of this process, not on
            # the quota), then room in the quota.
            size = self.service.answer_bytes(group, self.spec)
            if not await self._hold(size):
                self._stop("slice", group)
                return
            try:
                if not await self._send(group):
                    return
            finally:
                if self.memory is not None:
                    self.memory.release(size)

    async def _hold(self, size: int) -> bool:
        """Hold `size` bytes of the process's memory budget; False when the slice ends first."""
        if self.memory is None or size <= 0:
            return True
        return await self.memory.acquire(size, max_wait=self.deadline - time.monotonic())

    async def _send(self, group: list[Item]) -> bool:
        """Pace `group` under the limiter, send it and write its results; True when the
        slice goes on."""
        outcome = self.outcome
        tokens = self.service.estimate(group, self.spec)
        booked = await self._book(group, tokens)
        if booked is False:
            return not self.stopping.is_set()
        booking = booked if isinstance(booked, Booking) else None
        lane = self.failover.current
        pacing = lane.limiter.minute * PACING_SHARE_OF_MINUTE
        left = max(0.0, self.deadline - time.monotonic())
        wait = min(pacing, left)  # a turn's; under the quota less the interactive headroom
        if not await lane.limiter.acquire(tokens, max_wait=wait, within=left, job=True):
            await self._release(booking)
            delay = lane.limiter.delay_for(tokens, job=True)
            outcome.retry_after = max(outcome.retry_after or 0.0, delay)
            self._stop("rate_limited", group)
            return False
        if self.stopping.is_set():  # stopped while this one waited for room
            await self._release(booking)
            lane.limiter.settle(tokens, 0)
            outcome.remaining.extend(group)
            return False
        try:
            outcome.requests += 1
            # The service settles the reservation when it answers (or refuses).
            site = self.site.on(lane.backend)
            reservation = Reservation(lane.limiter, tokens)
            results = await self.service.run(group, self.spec, site, reservation)
        except PartlyAnswered as partial:
            await self._settle(booking, partial.results)
            # Keep the parts answered; only the rest is refused.
            answered = {result.item_id for result in partial.results}
            rest = [item for item in group if item.id not in answered]
            if not await self._kept(partial.results, lane.backend):
                outcome.remaining.extend(rest)
                return False
            return await self._refused(rest, lane, partial.failure)
        except Exception as error:
            await self._release(booking)
            failure = translate(error)
            if failure is None:
                raise
            return await self._refused(group, lane, failure)
        await self._settle(booking, results)
        return await self._kept(results, lane.backend)

    async def _book(self, group: list[Item], tokens: int) -> Booking | bool:
        """Book `group`'s worst case against the job's team: the booking (True: nothing to
        book), or False when it was refused and the group is settled (the slice stopped for
        the team's budget or a passing failure; or the group failed, larger than the team's
        limit could ever allow, and the slice goes on)."""
        if self.budget is None:
            return True
        try:
            booking = await self.budget.reserve(tokens)
        except RateLimited as refused:
            self.outcome.refusal = self.outcome.refusal or refused
            self._stop("budget", group)
            return False
        except InvalidRequest as never:
            await self._write(
                [
                    failed_result(
                        self.job_id, i.id, self.job.kind, never.detail(), self.spec.deployment
                    )
                    for i in group
                ]
            )
            return False
        except Exception as error:
            failure = translate(error)
            if failure is None:
                raise
            self.outcome.failure = self.outcome.failure or failure
            self._stop("passing", group)
            return False
        return booking if booking is not None else True

    async def _settle(self, booking: Booking | None, results: list[ResultDoc]) -> None:
        if self.budget is not None and booking is not None:
            await self._guard(self.budget.settle(booking, results))

    async def _release(self, booking: Booking | None) -> None:
        if self.budget is not None and booking is not None:
            await self._guard(self.budget.release(booking))

    @staticmethod
    async def _guard(work: Awaitable[None]) -> None:
        # The limiter keeps what it could not write and writes it later; a settlement
        # failing here must not lose the answers it was for.
        try:
            await work
        except Exception as error:
            if translate(error) is None:
                raise

    async def _kept(self, results: list[ResultDoc], backend: str) -> bool:
        """Write a request's results; False (the slice stops) when the store fails. The
        answers are paid for: they go on with the rest (`unwritten`), never asked again."""
        try:
            await self._write(results, backend)
        except Exception as error:
            failure = translate(error)
            if failure is None:
                raise
            self.outcome.unwritten.extend(results)
            self.outcome.failure = self.outcome.failure or failure
            self._stop("passing", [])
            return False
        return True

    async def _refused(self, group: list[Item], lane: Lane, failure: AppError) -> bool:
        """Settle a request that failed; True when the slice goes on."""
        if isinstance(failure, RateLimited):
            lane.limiter.throttled(failure.retry_after)
        if self.failover.next(lane, failure) is not None:
            self.pending.insert(0, group)  # the refused request goes first, elsewhere
            return True
        if isinstance(failure, RateLimited) and self._waits_here(failure, group, lane):
            self.pending.insert(0, group)
            return True
        if isinstance(failure, RateLimited):
            wait = failure.retry_after or 1
            self.outcome.retry_after = max(self.outcome.retry_after or 0.0, wait)
            self._stop("rate_limited", group)
            return False
        if failure.retryable:
            self.outcome.failure = self.outcome.failure or failure
            self._stop("passing", group)
            return False
        # No use waiting (auth, missing deployment): these items fail.
        await self._write(
            [
                failed_result(
                    self.job_id, i.id, self.job.kind, failure.detail(), self.spec.deployment
                )
                for i in group
            ]
        )
        return True

    def _waits_here(self, failure: RateLimited, group: list[Item], lane: Lane) -> bool:
        # A short retry-after is waited in this invocation, as the limiter's pacing is: a
        # queue round trip would cost more than the wait, and other hosts would take the room.
        self.refused[id(group)] = self.refused.get(id(group), 0) + 1
        wait = failure.retry_after
        return (
            self.refused[id(group)] <= IN_PROCESS_RETRIES
            and wait is not None
            and wait <= lane.limiter.minute * PACING_SHARE_OF_MINUTE
            and time.monotonic() + wait < self.deadline
        )

    def _stop(self, reason: Stop, group: list[Item]) -> None:
        # A cancel outranks everything; a 429 or a passing failure outranks the end of the
        # slice (both mean "wait before the rest"); otherwise the first reason stands.
        if PRIORITY[reason] > PRIORITY[self.outcome.stop]:
            self.outcome.stop = reason
        self.stopping.set()
        self.outcome.remaining.extend(group)

    async def _cancelled(self) -> bool:
        if time.monotonic() - self.last_cancel_check < CANCEL_CHECK_SECONDS:
            return False
        self.last_cancel_check = time.monotonic()
        try:
            current = await self.store.get(self.job_id)
        except Exception as error:
            if translate(error) is None:
                raise
            return False  # the store is away: a write will stop the slice, its answers kept
        return current is None or current.status == "cancelled"

    async def _write(self, results: list[ResultDoc], backend: str | None = None) -> None:
        first = await self.store.write_results(results)
        site = self.site
        metrics.record_job_items(
            ((r.kind, r.status, r.usage) for r in first),
            mode=site.mode,
            deployment=site.deployment,
            backend=backend,
            team=site.team,
        )
        outcome = self.outcome
        outcome.written += len(results)
        outcome.failed += sum(1 for r in results if r.status != "succeeded")
        for result in results:
            outcome.usage = outcome.usage.plus(result.usage)
