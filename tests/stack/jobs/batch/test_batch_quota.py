"""Batch mode against the deployment's enqueued-token quota (issue 21, item 7): parts are cut
to fit `BATCH_ENQUEUED_TOKENS`, submitted as room frees, and a part that cannot get in fails
with the reason instead of staying `submitted` for good. The simulator enforces the quota as
Azure does (devstack/aoai_simulator/batch_quota.py), with the same limit as the app's."""

from __future__ import annotations

import asyncio

import httpx

from tests.support.batch_stack import (
    app_runtime,
    docs,
    files_left,
    patch,
    poll_until,
    results,
    send_job,
    upstream,
    usage,
)
from tests.support.samples import tickets

# A ticket line is about 55 tokens (system prompt, labels, the item): 200 hold three lines.
LIMIT = 200


async def quota(sim: httpx.AsyncClient, tokens: int) -> None:
    await patch(sim, {"deployments": {"gpt-4o-batch": {"enqueued_token_limit": tokens}}})


async def test_a_job_over_the_quota_runs_in_parts_as_room_frees(
    environ: dict[str, str], sim: httpx.AsyncClient
) -> None:
    await quota(sim, LIMIT)
    async with app_runtime(environ, BATCH_ENQUEUED_TOKENS=str(LIMIT)) as runtime:
        job_id = await send_job(runtime, tickets(12))
        job = await poll_until(runtime, job_id, within=40)
        assert job.status == "succeeded"
        assert len(await results(runtime, job_id)) == 12
        parts = await docs(runtime, job_id)
        assert len(parts) >= 4  # no part over the quota
        assert all(0 < d.tokens <= LIMIT for d in parts)
        # Never refused: the app never put more than the quota in the deployment's queue.
        assert [d.refusals for d in parts] == [0] * len(parts)
        assert sorted(b.metadata["part"] for b in await upstream(runtime, job_id)) == sorted(
            str(d.part) for d in parts
        )
        assert len(await usage(runtime, job_id)) == 12
        assert await files_left(runtime) == 0


async def test_two_pollers_at_once_never_put_more_than_the_quota_in_the_queue(
    environ: dict[str, str], sim: httpx.AsyncClient
) -> None:
    await quota(sim, LIMIT)
    settings = {"BATCH_ENQUEUED_TOKENS": str(LIMIT)}
    async with app_runtime(environ, **settings) as one, app_runtime(environ, **settings) as two:
        # Three jobs of one part each; any two together are over the quota.
        jobs = [await send_job(one, tickets(3)) for _ in range(3)]

        async def both() -> None:
            await asyncio.gather(one.batch_poller.poll(), two.batch_poller.poll())

        for job_id in jobs:
            assert (await poll_until(one, job_id, within=40, poll=both)).status == "succeeded"
        parts = [d for job_id in jobs for d in await docs(one, job_id)]
        assert [(d.refusals, d.attempts) for d in parts] == [(0, 0)] * 3
        assert all(LIMIT / 2 < d.tokens <= LIMIT for d in parts)


async def test_a_part_the_deployment_never_takes_fails_after_max_wait(
    environ: dict[str, str], sim: httpx.AsyncClient
) -> None:
    # The app is told of more room than the deployment has (or someone else fills it).
    await quota(sim, 100)
    settings = {"BATCH_ENQUEUED_TOKENS": "1000", "BATCH_MAX_WAIT": "3"}
    async with app_runtime(environ, **settings) as runtime:
        job_id = await send_job(runtime, tickets(5))
        job = await poll_until(runtime, job_id, within=30)
        assert job.status == "failed"
        assert job.error is not None
        assert job.error.code == "token_limit_exceeded"
        assert "BATCH_MAX_WAIT" in job.error.message
        assert "enqueued tokens has surpassed the configured limit" in job.error.message
        rows = await results(runtime, job_id)
        assert {(r["status"], r["error"]["code"]) for r in rows} == {
            ("failed", "token_limit_exceeded")
        }
        assert len(rows) == 5
        assert await files_left(runtime) == 0


async def test_an_item_larger_than_the_quota_fails_alone_at_once(
    environ: dict[str, str], sim: httpx.AsyncClient
) -> None:
    await quota(sim, LIMIT)
    big = {"id": "big", "text": "billing " * 150}  # about 300 tokens
    async with app_runtime(environ, BATCH_ENQUEUED_TOKENS=str(LIMIT)) as runtime:
        job_id = await send_job(runtime, [*tickets(3), big])
        job = await poll_until(runtime, job_id, within=30)
        assert job.status == "partially_failed"
        rows = {r["item_id"]: r for r in await results(runtime, job_id)}
        assert {k: r["status"] for k, r in rows.items()} == {
            "t0": "succeeded",
            "t1": "succeeded",
            "t2": "succeeded",
            "big": "failed",
        }
        assert rows["big"]["error"]["code"] == "token_limit_exceeded"
        assert "BATCH_ENQUEUED_TOKENS" in rows["big"]["error"]["message"]
        assert len(await upstream(runtime, job_id)) == 1  # the big one never went up


async def test_a_part_that_keeps_failing_fails_after_max_attempts(
    environ: dict[str, str], sim: httpx.AsyncClient
) -> None:
    await patch(sim, {"faults": {"batches": {"error_503": 1.0}}})
    async with app_runtime(environ, BATCH_MAX_ATTEMPTS="2") as runtime:
        job_id = await send_job(runtime, tickets(3))
        job = await poll_until(runtime, job_id, within=30)
        assert job.status == "failed"
        assert job.error is not None
        assert job.error.code == "upstream_error"
        assert "BATCH_MAX_ATTEMPTS" in job.error.message
        (doc,) = await docs(runtime, job_id)
        assert (doc.state, doc.attempts) == ("done", 2)
        rows = await results(runtime, job_id)
        assert {r["error"]["code"] for r in rows} == {"upstream_error"}
        assert await files_left(runtime) == 0
