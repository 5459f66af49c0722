"""Batch mode: a job becomes Batch API jobs (one per file), and what ends them.

`BatchService.start` is called by the worker for a `mode: "batch"` job: it keeps the job's
items in a blob, splits them into files within `BATCH_MAX_LINES` / `BATCH_MAX_FILE_BYTES` and
`BATCH_ENQUEUED_TOKENS` (estimated), stores one `batches` document per file and submits what
the deployment's enqueued-token quota has room for (submit.py); the job moves to `submitted`.
shared/jobs/batch/poller.py drives the rest on a timer.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

import openai

from shared.core.clock import now
from shared.core.models import ErrorDetail
from shared.jobs.batch.files import endpoint_for, input_line, line_tokens, split
from shared.jobs.batch.models import BatchDoc, doc_id
from shared.jobs.batch.submit import Submitter
from shared.jobs.models import EmbeddingJob, Job, JobDoc, JobSpec

log = logging.getLogger(__name__)


def new_owner(role: str) -> str:
    """A lease owner: one per run, so two runs in one process are told apart too."""
    return f"{role}:{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class BatchService(Submitter):
    backend: str | None = None  # its name, for the usage records

    def refusal(self, job: Job) -> ErrorDetail | None:
        """Why batch mode cannot run this job, if it cannot."""
        if isinstance(job, EmbeddingJob) and not self.settings.uses_openai_api:
            return ErrorDetail(
                code="not_supported",
                message="Azure's Batch API does not accept "
                "embeddings (only /chat/completions); submit it with mode "
                "realtime",
            )
        if self.settings.batch_deployment is None and job.model is None:
            return ErrorDetail(
                code="not_supported",
                message="batch mode needs BATCH_DEPLOYMENT "
                "(a global-batch deployment); submit it with mode realtime",
            )
        return None

    async def start(self, job: Job, spec: JobSpec) -> None:
        """Turn a batch-mode job into `batches` documents and submit them. Idempotent: a
        redelivered message finds the documents and submits only what is still waiting."""
        assert job.job_id is not None
        refused = self.refusal(job)
        if refused is not None:
            log.info("job %s: batch mode refused (%s)", job.job_id, refused.message)
            await self.jobs.update(
                job.job_id, status="failed", only_from={"queued", "running"}, error=refused
            )
            return
        owner = new_owner("submit")
        # Always: a redelivery after a crash halfway through planning creates the rest.
        await self._plan(job, spec, owner)
        await self.jobs.update(job.job_id, status="submitted", only_from={"queued", "running"})
        for doc in await self.docs.of_job(job.job_id):
            claimed = await self.docs.claim(doc.id, owner)
            if claimed is None:
                continue
            if claimed.state in ("waiting", "creating"):
                claimed = await self.advance(claimed, owner, cancelled=False)
            await self.docs.release(claimed, owner)
            if claimed.state == "done":
                await self.finish_job(job.job_id)

    async def _plan(self, job: Job, spec: JobSpec, owner: str) -> None:
        assert job.job_id is not None
        blob = f"{job.job_id}/batch-items.json"
        await self.queues.put_payload(blob, job.model_dump_json(exclude_none=True).encode())
        url = endpoint_for(job.kind, openai_api=self.settings.uses_openai_api)
        sizes = [len(input_line(job.job_id, url, spec, item)) for item in job.items]
        tokens = [line_tokens(url, spec, item) for item in job.items]
        parts = split(
            sizes,
            self.settings.batch_max_lines,
            self.settings.batch_max_file_bytes,
            tokens,
            self.settings.batch_enqueued_tokens,
        )
        lease = now() + timedelta(seconds=self.settings.batch_lease_seconds)
        for part, (first, last) in enumerate(parts):
            await self.docs.create(
                BatchDoc(
                    id=doc_id(job.job_id, part),
                    job_id=job.job_id,
                    part=part,
                    deployment=spec.deployment,
                    endpoint=url,
                    items_blob=blob,
                    first=first,
                    last=last,
                    tokens=sum(tokens[first:last]),
                    next_attempt_at=now(),
                    lease_owner=owner,
                    lease_until=lease,
                    created_at=now(),
                    updated_at=now(),
                )
            )
        log.info("job %s: %d items in %d batch file(s)", job.job_id, len(job.items), len(parts))

    async def cancel_job(self, job_id: str) -> int:
        """Cancel the job's running batches (the poller ingests what they finished); how many."""
        cancelled = 0
        for doc in await self.docs.of_job(job_id):
            if doc.state != "submitted" or not doc.batch_id:
                continue
            try:
                await self.client.batches.cancel(doc.batch_id)
                cancelled += 1
            except openai.APIStatusError as error:  # 409: it finished meanwhile
                log.info("batch %s not cancelled: %s", doc.batch_id, error.status_code)
        return cancelled

    async def finish_job(self, job_id: str) -> JobDoc | None:
        """Settle the job once every part is done; a part's own failure becomes the job's
        error (the batch's reason rather than "items failed")."""
        docs = await self.docs.of_job(job_id)
        job = await self.jobs.get(job_id)
        if (
            job is None
            or not docs  # not a batch job (a realtime job `waiting` is the worker's)
            or any(d.state != "done" for d in docs)
            or job.status == "cancelled"
        ):
            return job
        settled = await self.jobs.finish(job_id, job.total)
        reason = next((d.error for d in docs if d.error is not None), None)
        if settled is not None and settled.status != "succeeded" and reason is not None:
            settled = await self.jobs.update(job_id, error=reason)
        return settled
