"""Batch mode: a job becomes Batch API jobs (one per file), and what ends them.

`BatchService.start` is called by the worker for a `mode: "batch"` job: it keeps the job's
items in a blob, splits them into files within `BATCH_MAX_LINES` / `BATCH_MAX_FILE_BYTES`,
stores one `batches` document per file and submits each (upload with purpose `batch`, create
with `completion_window: "24h"`); the job moves to `submitted`. shared/jobs/batch/poller.py drives
the rest on a timer. A `token_limit_exceeded` refusal (the deployment's enqueued-token quota)
leaves the document `waiting`, to be submitted again by a later run after a backoff.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import openai
from openai import AsyncOpenAI

from shared.core.clock import now
from shared.core.models import ErrorDetail
from shared.core.queues import JobQueues
from shared.core.settings import Settings
from shared.jobs.batch.files import endpoint_for, input_line, split
from shared.jobs.batch.models import BatchDoc, doc_id
from shared.jobs.batch.store import BatchDocs
from shared.jobs.intake import parse_job
from shared.jobs.models import EmbeddingJob, Item, Job, JobDoc, JobKind, JobSpec
from shared.jobs.results import failed_result
from shared.jobs.store import JobStore

log = logging.getLogger(__name__)

TOKEN_LIMIT = "token_limit_exceeded"  # noqa: S105 (an error code, not a secret)
MAX_RETRY_SECONDS = 3600.0


def new_owner(role: str) -> str:
    """A lease owner: one per run, so two runs in one process are told apart too."""
    return f"{role}:{uuid.uuid4().hex[:12]}"


def error_codes(body: Any) -> list[str]:
    """Codes in a Batch API error body: `{"errors": {"data": [{"code"}]}}` (create's 400 and
    a failed batch's `errors`), or `{"error": {"code"}}`."""
    if not isinstance(body, dict):
        return []
    errors = body.get("errors")
    rows = errors.get("data") if isinstance(errors, dict) else [body.get("error")]
    return [str(r["code"]) for r in rows or [] if isinstance(r, dict) and r.get("code")]


def first_message(body: Any, default: str) -> str:
    if isinstance(body, dict):
        errors = body.get("errors")
        rows = errors.get("data") if isinstance(errors, dict) else [body.get("error")]
        for row in rows or []:
            if isinstance(row, dict) and row.get("message"):
                return str(row["message"])
    return default


@dataclass(frozen=True)
class BatchService:
    settings: Settings
    client: AsyncOpenAI  # AOAI_BATCH_BACKEND's: a batch lives on the account that created it
    jobs: JobStore
    docs: BatchDocs
    queues: JobQueues
    deployments: Mapping[str, str] = field(default_factory=dict)  # its names, if it renames
    backend: str | None = None  # its name, for the usage records

    def on_backend(self, spec: JobSpec) -> JobSpec:
        """The spec with the deployment's name on the batch backend (the lines' `model`)."""
        name = self.deployments.get(spec.deployment, spec.deployment)
        return spec if name == spec.deployment else spec.model_copy(update={"deployment": name})

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
            if claimed is None or claimed.state != "waiting":
                continue
            await self.submit(claimed, owner)
            await self.docs.release(claimed, owner)

    async def _plan(self, job: Job, spec: JobSpec, owner: str) -> None:
        assert job.job_id is not None
        blob = f"{job.job_id}/batch-items.json"
        await self.queues.put_payload(blob, job.model_dump_json(exclude_none=True).encode())
        url = endpoint_for(job.kind, openai_api=self.settings.uses_openai_api)
        sizes = [len(input_line(job.job_id, url, spec, item)) for item in job.items]
        parts = split(sizes, self.settings.batch_max_lines, self.settings.batch_max_file_bytes)
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
                    next_attempt_at=now(),
                    lease_owner=owner,
                    lease_until=lease,
                    created_at=now(),
                    updated_at=now(),
                )
            )
        log.info("job %s: %d items in %d batch file(s)", job.job_id, len(job.items), len(parts))

    async def remaining(self, doc: BatchDoc) -> tuple[JobKind, JobSpec, list[Item]] | None:
        """The part's items that have no result yet (None if the job is gone)."""
        job_doc = await self.jobs.get(doc.job_id)
        if job_doc is None or job_doc.kind is None or job_doc.spec is None:
            return None
        payload = await self.queues.get_payload(doc.items_blob)
        job = parse_job(job_doc.kind, payload, self.settings)
        done = await self.jobs.done_item_ids(doc.job_id)
        rest = [item for item in job.items[doc.first : doc.last] if item.id not in done]
        return job_doc.kind, job_doc.spec, rest

    async def submit(self, doc: BatchDoc, owner: str, **changes: Any) -> BatchDoc:
        """Upload the part's remaining items and create its Batch API job. Raises LeaseLost."""
        found = await self.remaining(doc)
        if found is None or not found[2]:
            return await self.docs.save(doc, owner, state="done", **changes)
        _, spec, items = found
        line_spec = self.on_backend(spec)
        data = b"".join(input_line(doc.job_id, doc.endpoint, line_spec, item) for item in items)
        file_id: str | None = None
        try:
            uploaded = await self.client.files.create(
                file=(f"batch-{doc.part}.jsonl", data, "application/jsonl"), purpose="batch"
            )
            file_id = uploaded.id
            batch = await self.client.batches.create(
                input_file_id=file_id,
                endpoint=doc.endpoint,  # type: ignore[arg-type]
                completion_window="24h",
                metadata={"job_id": doc.job_id[:512], "part": str(doc.part)},
            )
        except openai.APIStatusError as error:
            await self.delete_file(file_id)
            codes = error_codes(error.body)
            message = first_message(error.body, str(error.message))
            if TOKEN_LIMIT in codes:
                return await self.wait(
                    doc, owner, ErrorDetail(code=TOKEN_LIMIT, message=message), **changes
                )
            if error.status_code >= 500 or error.status_code == 429:
                return await self.wait(
                    doc, owner, ErrorDetail(code="upstream_error", message=message), **changes
                )
            detail = ErrorDetail(code=codes[0] if codes else "invalid_request", message=message)
            log.warning(
                "job %s part %d: the Batch API refused it: %s", doc.job_id, doc.part, detail.code
            )
            await self.fail_rest(doc, detail)
            return await self.docs.save(doc, owner, state="done", error=detail, **changes)
        except openai.APIError as error:  # timeouts, connection failures: try again later
            await self.delete_file(file_id)
            detail = ErrorDetail(code="unavailable", message=type(error).__name__)
            return await self.wait(doc, owner, detail, **changes)
        log.info(
            "job %s part %d: batch %s submitted with %d lines",
            doc.job_id,
            doc.part,
            batch.id,
            len(items),
        )
        return await self.docs.save(
            doc,
            owner,
            state="submitted",
            batch_id=batch.id,
            batch_status=batch.status,
            input_file_id=file_id,
            output_file_id=None,
            error_file_id=None,
            lines=len(items),
            submitted_at=now(),
            offsets={},
            ingested_all=False,
            stop=None,
            error=None,
            next_attempt_at=None,
            **changes,
        )

    async def wait(
        self, doc: BatchDoc, owner: str, reason: ErrorDetail, **changes: Any
    ) -> BatchDoc:
        """Back to `waiting`, to be submitted again after a backoff that doubles each time."""
        attempts = doc.attempts + 1
        delay = min(self.settings.batch_retry_seconds * 2 ** (attempts - 1), MAX_RETRY_SECONDS)
        log.warning(
            "job %s part %d: %s; submitting again in %.0fs (attempt %d)",
            doc.job_id,
            doc.part,
            reason.code,
            delay,
            attempts,
        )
        return await self.docs.save(
            doc,
            owner,
            **{
                "state": "waiting",
                "attempts": attempts,
                "error": reason,
                "next_attempt_at": now() + timedelta(seconds=delay),
                "batch_id": None,
                "input_file_id": None,
                "batch_status": None,
                **changes,
            },
        )

    async def fail_rest(self, doc: BatchDoc, error: ErrorDetail) -> int:
        """Fail the part's items that have no result yet, with `error`; how many."""
        found = await self.remaining(doc)
        if found is None:
            return 0
        kind, spec, items = found
        await self.jobs.write_results(
            failed_result(doc.job_id, item.id, kind, error, spec.deployment) for item in items
        )
        return len(items)

    async def delete_file(self, file_id: str | None) -> None:
        """Delete a Batch API file (a resource holds at most 500); a missing one is fine."""
        if not file_id:
            return
        try:
            await self.client.files.delete(file_id)
        except openai.NotFoundError:
            pass
        except openai.APIError as error:
            log.warning("deleting file %s failed (%s); it stays", file_id, type(error).__name__)

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
        if job is None or any(d.state != "done" for d in docs) or job.status == "cancelled":
            return job
        settled = await self.jobs.finish(job_id, job.total)
        reason = next((d.error for d in docs if d.error is not None), None)
        if settled is not None and settled.status != "succeeded" and reason is not None:
            settled = await self.jobs.update(job_id, error=reason)
        return settled
