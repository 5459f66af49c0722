"""The `jobs` and `results` containers: job records, one result per item, derived counts.

Counts and usage are always derived from the result documents (one per item, deterministic id
`{job_id}:{item_id}`), never incremented, so a redelivered message cannot count twice. A
success is upserted; a failure is created only where no result exists (or over a `poisoned`
one, which a requeue runs again), so a stale copy never turns a success into a failure. Status
changes are read-modify-write under the document's ETag, so a cancel and a worker finishing at
the same moment cannot overwrite each other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable
from typing import Any

from azure.cosmos.exceptions import CosmosAccessConditionFailedError, CosmosHttpResponseError

from shared.core.clock import now
from shared.core.models import ErrorDetail, Usage
from shared.core.store import JOBS, RESULTS, Store
from shared.jobs.models import TERMINAL, Counts, JobDoc, JobStatus, ResultDoc

log = logging.getLogger(__name__)

WRITE_CONCURRENCY = 16
ETAG_RETRIES = 10
OPEN: frozenset[str] = frozenset({"queued", "running", "waiting", "submitted"})
# A failure with one of these codes is no answer yet: a new result may replace it.
REPLACEABLE: frozenset[str] = frozenset({"poisoned"})


def result_id(job_id: str, item_id: str) -> str:
    return f"{job_id}:{item_id}"


class JobStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, job_id: str) -> JobDoc | None:
        found = await self._store.read(JOBS, job_id, job_id)
        return JobDoc.model_validate(found) if found is not None else None

    async def create(self, job: JobDoc) -> tuple[JobDoc, bool]:
        """Insert the job unless one with its id exists; (the stored job, created?)."""
        stored = await self._store.create(JOBS, _doc(job))
        if stored is not None:
            return JobDoc.model_validate(stored), True
        existing = await self.get(job.job_id)
        if existing is None:  # deleted in between: insert ours after all
            return JobDoc.model_validate(await self._store.upsert(JOBS, _doc(job))), True
        return existing, False

    async def update(
        self,
        job_id: str,
        *,
        status: JobStatus | None = None,
        only_from: Collection[str] | None = None,
        **fields: Any,
    ) -> JobDoc | None:
        """Change a job under its ETag, retrying on a lost race. With `only_from`, a job whose
        status is not in it is returned unchanged. None if the job does not exist."""
        for _ in range(ETAG_RETRIES):
            raw = await self._store.read(JOBS, job_id, job_id)
            if raw is None:
                return None
            job = JobDoc.model_validate(raw)
            if only_from is not None and job.status not in only_from:
                return job
            changed = job.model_copy(update={**fields, "updated_at": now()})
            if status is not None:
                changed.status = status
            try:
                stored = await self._store.replace_if_unchanged(JOBS, _doc(changed), raw["_etag"])
            except CosmosAccessConditionFailedError:
                continue
            return JobDoc.model_validate(stored)
        raise RuntimeError(f"job {job_id} kept changing under {ETAG_RETRIES} updates")

    async def change(
        self, job_id: str, decide: Callable[[JobDoc], dict[str, Any] | None]
    ) -> tuple[JobDoc | None, bool]:
        """Read the job, ask `decide` what to change (the fields, or None for nothing) and
        write that under the ETag read, deciding again on a lost race. (the job as stored,
        changed?); (None, False) if the job does not exist."""
        for _ in range(ETAG_RETRIES):
            raw = await self._store.read(JOBS, job_id, job_id)
            if raw is None:
                return None, False
            job = JobDoc.model_validate(raw)
            fields = decide(job)
            if fields is None:
                return job, False
            changed = job.model_copy(update={**fields, "updated_at": now()})
            try:
                stored = await self._store.replace_if_unchanged(JOBS, _doc(changed), raw["_etag"])
            except CosmosAccessConditionFailedError:
                continue
            return JobDoc.model_validate(stored), True
        raise RuntimeError(f"job {job_id} kept changing under {ETAG_RETRIES} updates")

    async def ids_with_status(self, status: JobStatus) -> list[str]:
        """The ids of every job in `status` (a cross-partition query)."""
        rows = await self._store.query(
            JOBS, "SELECT c.id FROM c WHERE c.status = @status", {"@status": status}
        )
        return [str(row["id"]) for row in rows]

    async def done_item_ids(self, job_id: str, redo: Collection[str] = ()) -> set[str]:
        """Items that already have their one result (skipped on redelivery); a failed result
        whose error code is in `redo` does not count (it is to be done again)."""
        rows = await self._store.query(
            RESULTS,
            "SELECT c.item_id, c.error FROM c WHERE c.job_id = @job_id",
            {"@job_id": job_id},
            partition_key=job_id,
        )
        return {
            row["item_id"] for row in rows if ((row.get("error") or {}).get("code")) not in redo
        }

    async def write_results(self, results: Iterable[ResultDoc]) -> list[ResultDoc]:
        """Write each result (deterministic ids: writing one twice keeps one); those stored
        for the first time (what app.job.items counts, so a redelivery counts none twice).
        A success is created, or upserted over what is there; a failure or a filtered item
        only where no result exists yet."""
        gate = asyncio.Semaphore(WRITE_CONCURRENCY)
        first: list[ResultDoc] = []

        async def write(result: ResultDoc) -> None:
            document = result.model_dump(mode="json", exclude_none=True)
            async with gate:
                if await self._store.create(RESULTS, document) is not None:
                    first.append(result)
                elif result.status == "succeeded":
                    await self._store.upsert(RESULTS, document)
                else:
                    await self._replace_placeholder(document)

        async with asyncio.TaskGroup() as group:
            for result in results:
                group.create_task(write(result))
        return first

    async def _replace_placeholder(self, document: dict[str, Any]) -> None:
        """Put a failure over a stored failure that stood in for an answer (`poisoned`), under
        its ETag; any other stored result stands."""
        stored = await self._store.read(RESULTS, document["id"], document["job_id"])
        if stored is None or (stored.get("error") or {}).get("code") not in REPLACEABLE:
            return
        try:
            await self._store.replace_if_unchanged(RESULTS, document, stored["_etag"])
        except CosmosAccessConditionFailedError:
            log.info("result %s changed while it was being replaced; kept", document["id"])

    async def tally(self, job_id: str, total: int) -> tuple[Counts, Usage]:
        """Counts and usage, derived from the job's results."""
        rows = await self._store.query(
            RESULTS,
            "SELECT c.status, c.usage FROM c WHERE c.job_id = @job_id",
            {"@job_id": job_id},
            partition_key=job_id,
        )
        counts = Counts(total=total)
        usage = Usage()
        for row in rows:
            status = row.get("status")
            if status in ("succeeded", "failed", "content_filtered"):
                setattr(counts, status, getattr(counts, status) + 1)
            # Results written before cached and reasoning tokens were recorded count 0 of them.
            usage = usage.plus(Usage.model_validate(row.get("usage") or {}))
        done = counts.succeeded + counts.failed + counts.content_filtered
        counts.pending = max(0, total - done)
        return counts, usage

    async def finish(self, job_id: str, total: int) -> JobDoc | None:
        """Settle an open job whose items all have results: succeeded, partially_failed
        (some items failed or were filtered) or failed (none succeeded)."""
        counts, usage = await self.tally(job_id, total)
        if counts.pending:
            return await self.get(job_id)
        status: JobStatus
        if counts.succeeded == total:
            status = "succeeded"
        elif counts.succeeded == 0:
            status = "failed"
        else:
            status = "partially_failed"
        error = (
            None
            if status == "succeeded"
            else ErrorDetail(
                code="items_failed",
                message=f"{counts.failed + counts.content_filtered} of {total} items did not "
                "succeed; see their results",
            )
        )
        return await self.update(
            job_id, status=status, only_from=OPEN, counts=counts, usage=usage, error=error
        )

    async def results_page(
        self, job_id: str, page_size: int, continuation: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the job's results and Cosmos DB's token of the next. Raises ValueError
        when Cosmos DB refuses `continuation` (Azure: 400, "malformed")."""
        try:
            rows, token = await self._store.query_page(
                RESULTS,
                "SELECT * FROM c WHERE c.job_id = @job_id",
                {"@job_id": job_id},
                partition_key=job_id,
                page_size=page_size,
                continuation=continuation,
            )
        except CosmosHttpResponseError as error:
            if continuation is None or error.status_code != 400:
                raise
            raise ValueError("Cosmos DB refused the continuation token") from None
        return [_public(row) for row in rows], token


def is_terminal(status: str) -> bool:
    return status in TERMINAL


def _doc(job: JobDoc) -> dict[str, Any]:
    return job.model_dump(mode="json", exclude={"etag"})


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """A stored document without Cosmos DB's system properties."""
    return {k: v for k, v in row.items() if not k.startswith("_")}
