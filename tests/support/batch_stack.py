"""Helpers for the batch-mode tests: the app's runtime in this process against the simulator,
a job sent through the worker, and the poller run until the job settles."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx

from shared.core.settings import load_settings
from shared.core.store import RESULTS, USAGE
from shared.jobs.batch.models import BatchDoc
from shared.jobs.models import JobDoc
from shared.jobs.worker import Message
from shared.runtime import Runtime, create_runtime
from tests.support.samples import LABELS, new_id

TERMINAL = {"succeeded", "partially_failed", "failed", "cancelled"}

# Fast settings: short backoff before a resubmission, frequent checkpoints.
BATCH_SETTINGS = {"BATCH_RETRY_SECONDS": "0.5", "BATCH_CHECKPOINT_LINES": "4"}


@asynccontextmanager
async def app_runtime(environ: Mapping[str, str], **overrides: str) -> AsyncIterator[Runtime]:
    runtime = create_runtime(load_settings({**environ, **BATCH_SETTINGS, **overrides}))
    try:
        yield runtime
    finally:
        await runtime.aclose()


async def send_job(runtime: Runtime, items: list[dict[str, str]], **fields: Any) -> str:
    """A batch classification job, as the queue trigger hands it to the worker."""
    job_id = fields.pop("job_id", None) or new_id("b")
    body = {"job_id": job_id, "items": items, "labels": LABELS, "mode": "batch", **fields}
    message = Message(
        queue="classification-jobs",
        id=new_id("m"),
        body=httpx.Request("POST", "/", json=body).content,
    )
    await runtime.job_worker.handle("classification", message)
    return job_id


async def poll_until(
    runtime: Runtime,
    job_id: str,
    *,
    done: Callable[[JobDoc], bool] = lambda job: job.status in TERMINAL,
    within: float = 60,
    poll: Callable[[], Awaitable[object]] | None = None,
) -> JobDoc:
    """Run the poller (as the timer would) until `done(job)`; the job then."""
    deadline = asyncio.get_running_loop().time() + within
    run = poll or runtime.batch_poller.poll
    while True:
        await run()
        job = await runtime.job_worker.jobs.get(job_id)
        assert job is not None
        if done(job) and not [d for d in await docs(runtime, job_id) if d.state != "done"]:
            return job
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"job {job_id} did not settle: {job.status}")
        await asyncio.sleep(0.3)


async def docs(runtime: Runtime, job_id: str) -> list[BatchDoc]:
    return await runtime.job_worker.batch_service.docs.of_job(job_id)


async def results(runtime: Runtime, job_id: str) -> list[dict[str, Any]]:
    return await runtime.store.query(
        RESULTS, "SELECT * FROM c WHERE c.job_id = @j", {"@j": job_id}, partition_key=job_id
    )


async def usage(runtime: Runtime, job_id: str) -> list[dict[str, Any]]:
    return await runtime.store.query(USAGE, "SELECT * FROM c WHERE c.job_id = @j", {"@j": job_id})


async def patch(sim: httpx.AsyncClient, config: dict[str, Any]) -> None:
    """Change the simulator's config (`PATCH /sim/config`)."""
    (await sim.patch("/sim/config", json=config)).raise_for_status()


async def upstream(runtime: Runtime, job_id: str) -> list[Any]:
    """The Batch API jobs the simulator holds for `job_id` (by their metadata)."""
    return [
        b
        async for b in runtime.aoai.batches.list(limit=100)
        if (b.metadata or {}).get("job_id") == job_id
    ]


async def files_left(runtime: Runtime) -> int:
    return len((await runtime.aoai.files.list()).data)
