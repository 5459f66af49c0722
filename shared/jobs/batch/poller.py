"""The `poll_batches` timer: drives every open `batches` document one step.

Each run pages through the open documents and claims each with an ETag lease (shared/
batch_store.py), so overlapping runs, two instances or a run killed halfway never ingest the
same lines twice. Per document:

- `waiting` (new, waiting for room in the enqueued-token quota, or after a failure):
  submitted once its backoff passed and the deployment has room; failed past BATCH_MAX_WAIT;
- `creating` (an attempt that may have made a batch without saving its id): the batch is
  looked up by its metadata and adopted, or the part submitted afresh;
- running: progress logged; cancelled when its job was cancelled, or when it is older than
  `BATCH_MAX_AGE` (Azure never expires a slow batch);
- `completed`, `cancelled`, `expired`: the output and error files are streamed line by line
  (never whole), each line mapped by `custom_id` to its item and written as the same result
  document realtime mode writes, with a usage record `{batch_id}:{custom_id}` (`mode: batch`)
  and a filter event for a filtered line; the line offset is checkpointed every
  `BATCH_CHECKPOINT_LINES`. Then the files are deleted, and what the batch left undone is
  resubmitted once (expired or too old), failed with the reason, or left pending (the job was
  cancelled);
- `failed`: `token_limit_exceeded` waits for room and tries again; anything else fails the
  items with the batch's reason.

A part is marked `done` before its job is settled (settling needs every part done). A run that
dies or loses Cosmos DB between the two would leave the job `submitted` for good, its parts no
longer open: so every run also settles the `submitted` jobs none of whose parts is open.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import openai

from shared.core.clock import now
from shared.core.models import ErrorDetail
from shared.core.settings import Settings
from shared.jobs.batch.errors import error_codes, first_message
from shared.jobs.batch.files import LineOutcome, read_line
from shared.jobs.batch.models import FINISHED, BatchDoc, FileKind
from shared.jobs.batch.service import BatchService, new_owner
from shared.jobs.batch.store import LeaseLost
from shared.jobs.batch.submit import TOKEN_LIMIT
from shared.jobs.models import JobDoc
from shared.metering.bookkeeper import Bookkeeper, CallSite
from shared.telemetry import record as metrics

log = logging.getLogger(__name__)

WRITE_CONCURRENCY = 16
Checkpointed = Callable[[BatchDoc], Awaitable[None]]


@dataclass
class PollReport:
    """What one run did: documents claimed, held by others, and lines ingested."""

    claimed: int = 0
    skipped: int = 0
    ingested: int = 0


class BatchPoller:
    def __init__(
        self,
        settings: Settings,
        service: BatchService,
        books: Bookkeeper,
        *,
        on_checkpoint: Checkpointed | None = None,
    ) -> None:
        self._settings = settings
        self._service = service
        self._books = books
        self._docs = service.docs
        self._client = service.client
        # Called after each checkpoint: progress for tests and the benchmark.
        self._on_checkpoint = on_checkpoint

    async def poll(self) -> PollReport:
        """One timer run over every open document."""
        owner = new_owner("poll")
        report = PollReport()
        ids = [doc_id async for doc_id in self._docs.open_ids()]
        for doc_id in ids:
            doc = await self._docs.claim(doc_id, owner)
            if doc is None:
                report.skipped += 1
                continue
            report.claimed += 1
            try:
                doc = await self._step(doc, owner, report)
            except LeaseLost as lost:
                log.warning("batch document %s: lease lost (%s); left to its holder", doc_id, lost)
                continue
            except Exception:
                log.exception(
                    "batch document %s: this run failed; the next one tries again", doc_id
                )
            await self._docs.release(doc, owner)
        await self._settle_stranded({doc_id.rsplit(":", 1)[0] for doc_id in ids})
        if ids:
            log.info(
                "poll_batches: %d open, %d claimed, %d held elsewhere, %d lines ingested",
                len(ids),
                report.claimed,
                report.skipped,
                report.ingested,
            )
        return report

    async def _settle_stranded(self, open_jobs: set[str]) -> None:
        """Settle the `submitted` jobs whose parts are all done (found by the soak: Cosmos DB
        cut off just after a part was marked done left its job `submitted`)."""
        jobs = self._service.jobs
        # `waiting`: a batch job whose part waited for its team's budget, then failed.
        waiting = await jobs.ids_with_status("waiting")
        for job_id in [*await jobs.ids_with_status("submitted"), *waiting]:
            if job_id in open_jobs:
                continue
            try:
                settled = await self._service.finish_job(job_id)
            except Exception:
                log.exception("job %s: settling it failed; the next run tries again", job_id)
                continue
            if settled is not None and settled.status != "submitted":
                log.warning(
                    "job %s: its batches were done but it was still submitted; now %s",
                    job_id,
                    settled.status,
                )

    async def _step(self, doc: BatchDoc, owner: str, report: PollReport) -> BatchDoc:
        job = await self._service.jobs.get(doc.job_id)
        if job is None:
            doc = await self._service.unbook(doc, owner)
            return await self._docs.save(doc, owner, state="done")
        cancelled = job.status == "cancelled"
        if doc.state in ("waiting", "creating"):
            if cancelled or doc.next_attempt_at is None or doc.next_attempt_at <= now():
                doc = await self._service.advance(doc, owner, cancelled=cancelled)
            if doc.state == "done":
                await self._service.finish_job(doc.job_id)
            return doc
        assert doc.batch_id is not None
        batch = await self._client.batches.retrieve(doc.batch_id)
        if batch.status not in FINISHED:
            return await self._running(doc, owner, job, batch.status, batch.request_counts)
        if batch.status == "failed":  # it ran nothing: its team's booking is given back
            doc = await self._service.unbook(doc, owner)
            body = {"errors": batch.errors.model_dump()} if batch.errors is not None else None
            await self._service.delete_file(doc.input_file_id)
            message = first_message(body, "the batch failed")
            if TOKEN_LIMIT in error_codes(body):  # the quota: wait for room, not a failure
                return await self._service.retry(
                    doc, owner, ErrorDetail(code=TOKEN_LIMIT, message=message), quota=True
                )
            reason = ErrorDetail(code="batch_failed", message=message)
            log.warning(
                "job %s part %d: batch %s failed: %s", doc.job_id, doc.part, doc.batch_id, message
            )
            await self._service.fail_rest(doc, reason)
            doc = await self._docs.save(
                doc, owner, state="done", batch_status="failed", error=reason
            )
            await self._service.finish_job(doc.job_id)
            return doc
        doc = await self._docs.save(
            doc,
            owner,
            batch_status=batch.status,
            # An absent file is null, or "" as the service sometimes writes it.
            output_file_id=batch.output_file_id or None,
            error_file_id=batch.error_file_id or None,
        )
        if not doc.ingested_all:
            doc = await self._ingest(doc, owner, job, report)
        # Settled to what its lines used before what it left undone is resubmitted.
        doc = await self._service.unbook(doc, owner)
        return await self._settle(doc, owner, batch.status, cancelled)

    async def _running(
        self, doc: BatchDoc, owner: str, job: JobDoc, status: str, counts: object
    ) -> BatchDoc:
        stop = doc.stop
        age = now() - (doc.submitted_at or now())
        if stop is None and job.status == "cancelled":
            stop = "cancel"
        elif stop is None and age > timedelta(seconds=self._settings.batch_max_age):
            stop = "max_age"
        if stop != doc.stop:
            log.info(
                "job %s part %d: cancelling batch %s (%s)",
                doc.job_id,
                doc.part,
                doc.batch_id,
                "job cancelled" if stop == "cancel" else "BATCH_MAX_AGE",
            )
            try:
                await self._client.batches.cancel(doc.batch_id or "")
            except openai.APIStatusError as error:  # 409: it finished in between
                log.info("batch %s not cancelled: %s", doc.batch_id, error.status_code)
        done = getattr(counts, "completed", 0) + getattr(counts, "failed", 0)
        log.info(
            "job %s part %d: batch %s %s, %d of %d lines done",
            doc.job_id,
            doc.part,
            doc.batch_id,
            status,
            done,
            doc.lines,
        )
        return await self._docs.save(doc, owner, batch_status=status, stop=stop)

    async def _ingest(self, doc: BatchDoc, owner: str, job: JobDoc, report: PollReport) -> BatchDoc:
        assert job.kind is not None
        assert job.spec is not None
        site = CallSite(
            operation=job.kind,
            source="batch",
            deployment=doc.deployment,
            tags=job.spec.tags,
            mode="batch",
            job_id=doc.job_id,
            principal_id=job.spec.principal_id,
            team=job.spec.team or job.team,
            backend=self._service.backend,
        )
        files: list[tuple[FileKind, str | None]] = [
            ("output", doc.output_file_id),
            ("error", doc.error_file_id),
        ]
        for kind, file_id in files:
            if not file_id:
                continue
            skip = doc.offsets.get(kind, 0)  # lines a previous run ingested
            index = mark = 0
            chunk: list[LineOutcome] = []
            async with self._client.files.with_streaming_response.content(file_id) as response:
                async for text in response.iter_lines():
                    index += 1
                    if index <= skip:
                        continue
                    outcome = read_line(text, doc.job_id, job.kind, job.spec)
                    if outcome is not None:
                        chunk.append(outcome)
                    if index - max(mark, skip) >= self._settings.batch_checkpoint_lines:
                        doc = await self._checkpoint(doc, owner, site, kind, index, chunk, report)
                        mark, chunk = index, []
            doc = await self._checkpoint(doc, owner, site, kind, max(index, skip), chunk, report)
        return await self._docs.save(doc, owner, ingested_all=True)

    async def _checkpoint(
        self,
        doc: BatchDoc,
        owner: str,
        site: CallSite,
        kind: FileKind,
        offset: int,
        chunk: list[LineOutcome],
        report: PollReport,
    ) -> BatchDoc:
        """Write a chunk's results, usage and events, then record the offset (writes first:
        a run killed in between writes the same ids again, never a second copy)."""
        results = [o.result for o in chunk if o.result is not None]
        first = await self._service.jobs.write_results(results)
        metrics.record_job_items(
            ((r.kind, r.status, r.usage) for r in first),
            mode="batch",
            deployment=site.deployment,
            backend=site.backend,
            team=site.team,
        )
        gate = asyncio.Semaphore(WRITE_CONCURRENCY)

        async def book(outcome: LineOutcome) -> None:
            if outcome.result is None:  # never run (expired): nothing was spent
                return
            async with gate:
                await self._books.usage(
                    site,
                    model=outcome.model,
                    usage=outcome.usage,
                    started=time.perf_counter(),
                    status=outcome.status,
                    record_id=f"{doc.batch_id}:{outcome.line_id}",
                )
                if outcome.filtered is not None:
                    await self._books.filtered(
                        site, outcome.filtered, None, item_id=outcome.item_id
                    )

        async with asyncio.TaskGroup() as group:
            for outcome in chunk:
                group.create_task(book(outcome))
        ingested = doc.ingested + len(results)
        # What the lines used, for its team's budget: counted once, with their offset.
        used = (
            (0, 0)
            if self._service.budget is None
            else self._service.budget.used(chunk, doc.deployment)
        )
        doc = await self._docs.save(
            doc,
            owner,
            offsets={**doc.offsets, kind: offset},
            ingested=ingested,
            used_tokens=doc.used_tokens + used[0],
            used_micros=doc.used_micros + used[1],
        )
        report.ingested += len(chunk)
        log.info(
            "job %s part %d: %d of %d lines ingested (batch %s)",
            doc.job_id,
            doc.part,
            ingested,
            doc.lines,
            doc.batch_id,
        )
        if self._on_checkpoint is not None:
            await self._on_checkpoint(doc)
        return doc

    async def _settle(self, doc: BatchDoc, owner: str, status: str, cancelled: bool) -> BatchDoc:
        """After ingestion: delete the files, then resubmit, fail or leave what is undone."""
        for file_id in (doc.output_file_id, doc.error_file_id, doc.input_file_id):
            await self._service.delete_file(file_id)
        error: ErrorDetail | None = None
        if status == "completed":
            await self._service.fail_rest(
                doc, ErrorDetail(code="missing_answer", message="the batch returned no line for it")
            )
        elif cancelled:
            pass  # the job was cancelled: what the batch did not do stays pending
        elif status == "expired" or doc.stop == "max_age":
            if not doc.resubmitted:
                log.info(
                    "job %s part %d: batch %s %s; resubmitting what it left undone",
                    doc.job_id,
                    doc.part,
                    doc.batch_id,
                    status,
                )
                doc = await self._service.submit(doc, owner, resubmitted=True, ingested=0)
                if doc.state != "done":
                    return doc
            else:
                error = ErrorDetail(
                    code="batch_too_old",
                    message=f"the batch was {status} "
                    "twice (BATCH_MAX_AGE or the completion window)",
                )
                await self._service.fail_rest(doc, error)
        else:
            error = ErrorDetail(
                code="batch_cancelled", message="the batch was cancelled outside the app"
            )
            await self._service.fail_rest(doc, error)
        if doc.state != "done":
            doc = await self._docs.save(doc, owner, state="done", error=error or doc.error)
        await self._service.finish_job(doc.job_id)
        return doc
