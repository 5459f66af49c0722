"""The queue boundary: the twin of shared/http/boundary.py for job messages.

`JobWorker.handle` reads a message into a job (shared/jobs/intake.py), runs one slice of it
(shared/jobs/runner.py), and from what the slice reports decides what follows: the job
finishes, the rest goes back to the queue as a continuation (parked on a long delay once the
passing-failure budget is spent), or the rest fails. A slice runs under the job's lease
(shared/jobs/lease.py): a message that finds another slice running comes back later. A
message that is not a valid job is recorded at once as a failed job and not retried; only
what cannot be settled at all is left to the host's redelivery and the poison sweep. The
rules (retries, delays, limits, redelivery): docs/jobs.md#how-a-job-runs,
docs/jobs.md#one-slice-at-a-time and docs/jobs.md#rate-limits-and-retries.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import azure.functions as func

from shared.aoai.backends import Backends
from shared.aoai.failover import Failover
from shared.aoai.limiters import Limiters
from shared.core.clock import now
from shared.core.errors import translate
from shared.core.models import ErrorDetail
from shared.core.queues import JobQueues
from shared.core.settings import Settings
from shared.jobs.answers import keep_answers, write_kept_answers
from shared.jobs.batch.service import BatchService
from shared.jobs.classification import ClassificationService
from shared.jobs.embeddings import EmbeddingService
from shared.jobs.intake import InvalidJob, enqueue, read_message
from shared.jobs.invalid import record_invalid
from shared.jobs.lease import Lease
from shared.jobs.memory import MemoryBudget
from shared.jobs.models import (
    REQUEUEABLE,
    EmbeddingJob,
    Item,
    Job,
    JobDoc,
    JobKind,
    JobSource,
    JobSpec,
)
from shared.jobs.results import failed_result
from shared.jobs.retries import Plan, continuation_plan
from shared.jobs.runner import SliceOutcome, run_slice
from shared.jobs.store import OPEN, JobStore, is_terminal
from shared.jobs.team_budget import gave_up, team_budget, team_job_spec
from shared.metering.budget_wait import budget_wait
from shared.metering.team_directory import TeamDirectory
from shared.metering.team_limits import TeamLimiter
from shared.telemetry import names, tracing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    """What the worker needs of a queue message (the host's QueueMessage, or a test's)."""

    queue: str
    id: str | None
    body: bytes
    dequeue_count: int = 1


@dataclass(frozen=True)
class JobWorker:
    settings: Settings
    jobs: JobStore
    queues: JobQueues
    limiters: Limiters
    backends: Backends
    embeddings: EmbeddingService
    classification: ClassificationService
    batch_service: BatchService
    memory: MemoryBudget  # the process's, shared by every message it runs (jobs/memory.py)
    # A job's requests book against its team's limits (jobs/team_budget.py).
    teams: TeamDirectory | None = None
    team_limits: TeamLimiter | None = None

    async def on_message(self, kind: JobKind, msg: func.QueueMessage) -> None:
        """The queue trigger's entry point."""
        message = Message(
            queue=self.settings.queue_for(kind),
            id=msg.id,
            body=msg.get_body(),
            dequeue_count=msg.dequeue_count or 1,
        )
        await self.handle(kind, message)

    async def handle(self, kind: JobKind, message: Message) -> None:
        """Process one job message. Raises only when nothing could be settled (then the host
        redelivers it; after maxDequeueCount the poison sweep records it). The message is one
        trace (`process <queue>`), linked to the call that submitted the job."""
        with tracing.message_span(message.queue, **{names.JOB_KIND: kind}):
            await self._handle(kind, message)

    async def _handle(self, kind: JobKind, message: Message) -> None:
        try:
            job, _ = await read_message(kind, message.body, self.queues, self.settings)
            tracing.link_to(job.traceparent)
            spec = await team_job_spec(job, self.settings, self.teams)
            tracing.annotate({names.TEAM: spec.team, names.JOB_MODE: job.mode})
        except InvalidJob as error:
            await self.record_invalid(kind, message, error)
            return
        assert job.job_id is not None
        lease = Lease(self.jobs, job.job_id, self.settings.job_lease_seconds, job.lease)
        try:
            await self._process(job, spec, message, lease)
        except Exception as error:
            failure = translate(error)
            outcome = SliceOutcome(stop="passing", failure=failure)
            created = job.created_at or now()
            if (
                failure is None
                or not failure.retryable
                or continuation_plan(self.settings, job.attempt, outcome, created=created) is None
            ):
                await lease.release()
                raise  # the host redelivers it; once poisoned, the sweep records it
            # Cosmos DB or Storage failed before the slice could settle anything.
            job = job.model_copy(update={"created_at": created})
            await self._continue(job, [*job.items], outcome, message.queue, lease)

    async def _process(self, job: Job, spec: JobSpec, message: Message, lease: Lease) -> None:
        assert job.job_id is not None
        doc, _ = await self.jobs.create(
            JobDoc.for_job(
                job,
                spec,
                "running",
                JobSource(via="queue", queue=message.queue, message_id=message.id),
            )
        )
        if doc.status == "failed" and doc.error is not None and doc.error.code in REQUEUEABLE:
            # An operator requeued it after a fix: it runs again (its poisoned items too).
            log.info(
                "job %s (%s) runs again from message %s", doc.job_id, doc.error.code, message.id
            )
            doc = (
                await self.jobs.update(
                    job.job_id,
                    status="running",
                    only_from={"failed"},
                    kind=job.kind,
                    spec=spec,
                    total=max(doc.total, len(job.items)),
                    error=None,
                    raw_body=None,
                    raw_blob=None,
                )
                or doc
            )
        if is_terminal(doc.status):
            log.info(
                "job %s is %s; message %s has nothing to do", doc.job_id, doc.status, message.id
            )
            return
        if job.mode == "batch":
            await self.batch_service.start(job, spec)
            return
        held_until = await lease.take()
        if held_until is not None:
            await self._come_back(job, message, held_until)
            return
        job = job.model_copy(update={"created_at": job.created_at or doc.created_at})
        # What an earlier slice got and could not store, whichever message it went on with.
        kept = await write_kept_answers(self.queues, self.jobs, doc.job_id)
        if kept:
            log.info("job %s: %d kept answers written", job.job_id, kept)
        job = job.model_copy(update={"answers_blob": None})
        # Read under the lease: what an earlier slice wrote is all there.
        done = await self.jobs.done_item_ids(doc.job_id, redo={"poisoned"})
        remaining = [item for item in job.items if item.id not in done]
        if doc.status in ("queued", "waiting"):
            await self.jobs.update(
                doc.job_id, status="running", only_from={"queued", "waiting"}, error=None
            )
        if remaining:
            async with lease.kept():
                outcome = await self._slice(job, spec, remaining, lease)
            if outcome.stop == "cancelled":
                log.info(
                    "job %s cancelled; %d items left undone", job.job_id, len(outcome.remaining)
                )
                await lease.release()
                return
            if outcome.stop != "done" and (outcome.remaining or outcome.unwritten):
                # Items answered but not stored go on too, their answers with them: a job
                # message needs its items, and the next slice writes the answers first.
                answered = {result.item_id for result in outcome.unwritten}
                rest = [*outcome.remaining, *(i for i in remaining if i.id in answered)]
                if outcome.stop == "budget":
                    if await self._wait_for_budget(job, rest, outcome, message.queue, lease):
                        return
                elif await self._continue(job, rest, outcome, message.queue, lease):
                    return
                await self._give_up(job, spec, outcome)
        await self.jobs.finish(doc.job_id, doc.total)
        await lease.release()

    async def _come_back(self, job: Job, message: Message, held_until: datetime) -> None:
        """Send this very message again, due when the live lease ends: a new message (not a
        redelivery, so it never counts toward poison), and any copy of it is as harmless."""
        delay = max(1, math.ceil((held_until - now()).total_seconds()) + 1)
        await self.queues.send(message.queue, message.body.decode("utf-8"), delay_seconds=delay)
        log.info(
            "job %s: another slice holds the job until %s; message %s comes back in %ds",
            job.job_id,
            held_until.isoformat(timespec="seconds"),
            message.id,
            delay,
        )

    async def _slice(
        self, job: Job, spec: JobSpec, items: list[Item], lease: Lease
    ) -> SliceOutcome:
        """Run one slice of `items` on the job kind's service; its results are written."""
        service: EmbeddingService | ClassificationService = (
            self.embeddings if isinstance(job, EmbeddingJob) else self.classification
        )
        outcome = await run_slice(
            job,
            spec,
            items,
            service=service,
            store=self.jobs,
            failover=Failover(self.backends, self.limiters, spec.deployment),
            concurrency=self.settings.job_concurrency,
            seconds=self.settings.job_slice_seconds,
            memory=self.memory,
            lease=lease,
            budget=await team_budget(
                self.teams, self.team_limits, spec, self.settings.model_prices
            ),
        )
        log.info(
            "job %s: slice of %d requests wrote %d results (%d not succeeded, %d tokens); "
            "%s, %d items left",
            job.job_id,
            outcome.requests,
            outcome.written,
            outcome.failed,
            outcome.usage.total_tokens,
            outcome.stop,
            len(outcome.remaining),
        )
        return outcome

    async def _continue(
        self, job: Job, remaining: list[Item], outcome: SliceOutcome, queue: str, lease: Lease
    ) -> bool:
        """Send `remaining` back to the queue as planned, the job's lease handed to it; False
        when waiting more is not allowed (then the caller fails them)."""
        created = job.created_at or now()
        plan = continuation_plan(self.settings, job.attempt, outcome, created=created)
        if plan is None:
            return False
        reason = outcome.failure.code if outcome.failure else outcome.stop
        answers = job.answers_blob
        if outcome.unwritten:
            assert job.job_id is not None
            answers = await keep_answers(self.queues, job.job_id, outcome.unwritten)
        successor = await lease.hand_over(plan.delay)
        rest = job.model_copy(
            update={
                "items": remaining,
                "attempt": plan.attempt,
                "reason": reason,
                "lease": successor,
                "created_at": created,
                "answers_blob": answers,
                "budget_since": job.budget_since if outcome.stop == "budget" else None,
            }
        )
        await enqueue(self.queues, queue, rest, delay_seconds=plan.delay)
        log.info(
            "job %s: %d items continue in %.1fs (%s, attempt %d)",
            job.job_id,
            len(remaining),
            plan.delay,
            reason,
            plan.attempt,
        )
        if plan.parked:
            await self._park(job, len(remaining), outcome, plan, created)
        return True

    async def _wait_for_budget(
        self, job: Job, rest: list[Item], outcome: SliceOutcome, queue: str, lease: Lease
    ) -> bool:
        """Send the rest back to wait for its team's room, the job `waiting` with the refusal's
        code; False when room returns past JOB_BUDGET_MAX_WAIT from when it began waiting."""
        assert outcome.refusal is not None
        at = now()
        since = job.budget_since if outcome.written == 0 else None
        max_wait = self.settings.job_budget_max_wait
        wait = budget_wait(outcome.refusal, waiting_since=since, at=at, max_wait=max_wait)
        if wait is None:
            return False
        outcome.retry_after = wait.delay
        job = job.model_copy(update={"budget_since": since or at})
        if not await self._continue(job, rest, outcome, queue, lease):
            return False
        job_id = str(job.job_id)
        try:
            await self.jobs.update(job_id, status="waiting", only_from=OPEN, error=wait.why)
        except Exception as error:
            log.warning("job %s: not marked waiting (%s)", job.job_id, type(error).__name__)
        return True

    async def _park(
        self, job: Job, count: int, outcome: SliceOutcome, plan: Plan, created: datetime
    ) -> None:
        """Say on the job that its rest waits, and why (best effort: the store may be what
        is down; the next slice sets it running again)."""
        assert job.job_id is not None
        due = now() + timedelta(seconds=plan.delay)
        deadline = created + timedelta(seconds=self.settings.job_max_age)
        failure = outcome.failure
        why = ErrorDetail(
            code=failure.code if failure else "upstream_error",
            message=f"{count} items wait after {self.settings.job_max_attempts} attempts: "
            + (failure.message if failure else "passing failures")
            + f"; next try at {due.isoformat(timespec='seconds')}, tried until "
            f"{deadline.isoformat(timespec='seconds')} (JOB_MAX_AGE)",
        )
        log.warning(
            "job %s: %d items parked for %.0fs (%s)", job.job_id, count, plan.delay, why.code
        )
        try:
            await self.jobs.update(
                job.job_id, status="waiting", only_from={"queued", "running", "waiting"}, error=why
            )
        except Exception as error:
            log.warning("job %s: not marked waiting (%s)", job.job_id, type(error).__name__)

    async def _give_up(self, job: Job, spec: JobSpec, outcome: SliceOutcome) -> None:
        """Fail the remaining items: waiting more is not allowed."""
        assert job.job_id is not None
        if outcome.stop == "budget" and outcome.refusal is not None:
            error = gave_up(outcome.refusal, self.settings.job_budget_max_wait)
        elif outcome.stop == "rate_limited":
            error = ErrorDetail(
                code="quota_exhausted",
                message=f"Azure OpenAI asked to wait {outcome.retry_after:.0f}s, longer than "
                f"JOB_RETRY_AFTER_CAP_SECONDS ({self.settings.job_retry_after_cap_seconds:.0f}s)",
            )
        else:
            failure = outcome.failure
            error = ErrorDetail(
                code=failure.code if failure else "upstream_error",
                message=f"gave up: the job is older than JOB_MAX_AGE "
                f"({self.settings.job_max_age:.0f}s) and still failing: "
                + (failure.message if failure else "passing failures"),
            )
        await self.jobs.write_results(
            [
                *outcome.unwritten,
                *(
                    failed_result(job.job_id, item.id, job.kind, error, spec.deployment)
                    for item in outcome.remaining
                ),
            ]
        )

    async def record_invalid(
        self,
        kind: JobKind | None,
        message: Message,
        error: InvalidJob,
        *,
        via: Literal["queue", "poison"] = "queue",
        raw_blob: str | None = None,
    ) -> JobDoc:
        """Record a message that is not a valid job, once however often it is delivered
        (shared/jobs/invalid.py)."""
        return await record_invalid(
            self.jobs,
            kind,
            message,
            error,
            raw_body_chars=self.settings.job_raw_body_chars,
            via=via,
            raw_blob=raw_blob,
        )
