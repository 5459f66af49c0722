"""The HTTP side of jobs: submit (validate, record, enqueue), view (true counts and a page of
results) and cancel. The queue side is shared/jobs/worker.py."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shared.core.errors import Conflict, InvalidRequest, NotFound, ServiceUnavailable
from shared.core.models import ErrorDetail
from shared.core.queues import JobQueues
from shared.core.settings import Settings
from shared.jobs.batch.service import BatchService
from shared.jobs.intake import InvalidJob, enqueue, job_spec, parse_job
from shared.jobs.models import Job, JobDoc, JobKind, JobSource, JobView, SubmitAccepted
from shared.jobs.page_tokens import page_key, seal, unseal
from shared.jobs.store import OPEN, JobStore, is_terminal

log = logging.getLogger(__name__)

# The job-level error of a job whose message could not be sent; it is queued when submitted
# again. (Items a worker gives up on fail one by one; the job then says `items_failed`.)
INTAKE_FAILED = "unavailable"


@dataclass(frozen=True)
class JobRequests:
    settings: Settings
    jobs: JobStore
    queues: JobQueues
    batch_service: BatchService

    async def submit(
        self,
        kind: JobKind,
        body: bytes,
        request_id: str,
        *,
        status_url: Callable[[str], str],
        team: str,
        models: Sequence[str] = (),
        principal_id: str | None = None,
    ) -> SubmitAccepted:
        """Validate, store the job record (`queued`), enqueue it (a claim check when it is
        too large for one message). Submitting the same job_id again is answered with the
        job as it stands, not a second job; but a job the first submission recorded and did
        not queue (it answered 503, or its host died in between) is queued now. The job
        belongs to `team` (the caller's, whatever the body says): another team's job_id is a
        404, as an unknown one would be if it did not exist, and the same job_id with another
        body is a 409 that runs nothing. A model outside `models` (the team's list, when it has
        one) is the same 400 as an unknown model.
        `principal_id` is the signed-in caller; a `principal_id` in the body is replaced by it
        (a caller must not bill someone else), and `attempt`, `reason`, `lease`, `created_at`,
        `answers_blob`, `budget_since` and `traceparent` are reset (a caller must not spend
        its job's retries, jump its lease, skip its budget's wait or bring results of its own;
        the message carries this call's own span, and `_body_hash` never sees it)."""
        try:
            job = parse_job(kind, body, self.settings)
            # The signed-in caller, and a first attempt: `attempt` and `reason` belong to
            # continuations, which only the app writes.
            job = job.model_copy(
                update={
                    "principal_id": principal_id,
                    "team": team,
                    "attempt": 0,
                    "reason": None,
                    "lease": None,
                    "created_at": None,
                    "answers_blob": None,
                    "budget_since": None,
                    "traceparent": None,  # enqueue sets this call's own
                }
            )
            spec = job_spec(job, self.settings, models)
        except InvalidJob as error:
            raise InvalidRequest(error.reason, details=error.details) from None
        assert job.job_id is not None
        body_hash = _body_hash(job)
        doc, created = await self.jobs.create(
            JobDoc.for_job(
                job, spec, "queued", JobSource(via="http", request_id=request_id), body_hash
            )
        )
        if not created:
            if not self._owned(doc, team):
                raise NotFound(f"no job {job.job_id!r}")
            if doc.body_hash is not None and doc.body_hash != body_hash:
                raise Conflict(
                    f"job {job.job_id} exists with another body; submit new work under a new "
                    "job_id (the same body again is accepted)"
                )
            if doc.kind != kind:
                raise Conflict(f"job {job.job_id} exists and is a {doc.kind} job")
            if not _unqueued(doc):
                return SubmitAccepted(
                    job_id=doc.job_id, status=doc.status, status_url=status_url(doc.job_id)
                )
            # Maybe never queued. A second message for a queued job is harmless (a redelivery:
            # done items are skipped); a job that never got one would wait forever.
            log.info("job %s submitted again while %s; queueing it", doc.job_id, doc.status)
            if doc.status == "failed":
                await self.jobs.update(
                    job.job_id, status="queued", only_from={"failed"}, error=None
                )
        try:
            await enqueue(self.queues, self.settings.queue_for(kind), job)
        except Exception as error:
            log.warning("job %s could not be queued (%s)", job.job_id, type(error).__name__)
            await self.jobs.update(
                job.job_id,
                status="failed",
                only_from=OPEN,
                error=ErrorDetail(code=INTAKE_FAILED, message="the job could not be queued"),
            )
            raise ServiceUnavailable("the job could not be queued; submit it again") from None
        log.info(
            "job %s queued: %d %s items (request %s)", job.job_id, len(job.items), kind, request_id
        )
        return SubmitAccepted(job_id=job.job_id, status="queued", status_url=status_url(job.job_id))

    async def view(
        self, job_id: str, page_size: int, continuation: str | None, *, team: str
    ) -> JobView:
        doc = await self._job(job_id, team)
        counts, usage = (
            (doc.counts, doc.usage)
            if is_terminal(doc.status) and doc.counts.total
            else await self.jobs.tally(job_id, doc.total)
        )
        key = page_key(self.settings.user_hash_secret.get_secret_value())
        try:
            results, token = await self.jobs.results_page(
                job_id, page_size, unseal(continuation, job_id, key)
            )
        except ValueError:  # not ours for this job, or refused by Cosmos DB
            raise InvalidRequest(
                "the continuation token is not valid for this job; start from the first page"
            ) from None
        return JobView(
            job_id=doc.job_id,
            kind=doc.kind,
            mode=doc.mode,
            status=doc.status,
            counts=counts,
            usage=usage,
            error=doc.error,
            tags=doc.spec.tags if doc.spec else {},
            created_at=doc.created_at,
            updated_at=doc.updated_at,
            results=results,
            continuation=seal(token, job_id, key),
        )

    async def cancel(self, job_id: str, *, team: str) -> JobView:
        doc = await self._job(job_id, team)
        cancelled = await self.jobs.update(job_id, status="cancelled", only_from=OPEN)
        if doc.mode == "batch" and cancelled is not None and cancelled.status == "cancelled":
            # The poller ingests what the batches finished before the cancel took effect.
            await self.batch_service.cancel_job(job_id)
        return await self.view(job_id, 100, None, team=team)

    async def _job(self, job_id: str, team: str) -> JobDoc:
        """`team`'s job: another team's is the same 404 as one that does not exist."""
        doc = await self.jobs.get(job_id)
        if doc is None or not self._owned(doc, team):
            raise NotFound(f"no job {job_id!r}")
        return doc

    def _owned(self, doc: JobDoc, team: str) -> bool:
        """A job from before teams (none recorded) is DEFAULT_TEAM's, as its usage is."""
        return (doc.team or self.settings.default_team) == team


def _body_hash(job: Job) -> str:
    """SHA-256 of the job as the app took it (the caller's team and the app's resets in), its
    keys sorted: the same body again, however its JSON is spaced or ordered, hashes the same."""
    canonical = json.dumps(job.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _unqueued(doc: JobDoc) -> bool:
    """A job that may have no message: still `queued` (recorded by an HTTP submission, not
    picked up yet), or failed at intake because the message could not be sent."""
    if doc.source is None or doc.source.via != "http":
        return False
    if doc.status == "queued":
        return True
    return doc.status == "failed" and doc.error is not None and doc.error.code == INTAKE_FAILED
