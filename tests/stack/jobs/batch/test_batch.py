"""Batch mode end to end in this process: the worker submits, the poller (as the timer runs
it) ingests, against the simulator's Batch API (fast progression), Azurite and the Cosmos DB
server through the real SDKs. Each case of issue 10's "Done when" is its own test."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from shared.core.store import CONTENT_FILTER_EVENTS, Store
from shared.jobs.batch.models import BatchDoc
from shared.jobs.batch.poller import BatchPoller
from shared.jobs.worker import Message
from shared.runtime import Runtime
from tests.stack.jobs.batch.conftest import FAST
from tests.support.batch_stack import app_runtime, docs, patch, poll_until, results, send_job, usage
from tests.support.samples import new_id, tickets


@pytest.fixture
async def runtime(environ: dict[str, str]) -> AsyncIterator[Runtime]:
    async with app_runtime(environ) as running:
        yield running


async def gone(runtime: Runtime, file_id: str | None) -> bool:
    if not file_id:
        return True
    try:
        await runtime.aoai.files.retrieve(file_id)
    except openai.NotFoundError:
        return True
    return False


def by_item(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["item_id"]: r for r in rows}


# --- runs ------------------------------------------------------------------------------------


async def test_a_full_run_labels_every_item_once_and_cleans_up(
    runtime: Runtime, sim: httpx.AsyncClient
) -> None:
    await patch(sim, {"batch": {"empty_error_file": True}})  # an empty error file is fine
    # As an HTTP submit by a signed-in caller enqueues it: its usage names the caller.
    job_id = await send_job(runtime, tickets(), tags={"team": "support"}, principal_id="oid-7")
    assert (await runtime.job_worker.jobs.get(job_id)).status == "submitted"  # type: ignore[union-attr]
    (submitted,) = await docs(runtime, job_id)
    assert submitted.state == "submitted"
    job = await poll_until(runtime, job_id)
    assert job.status == "succeeded"
    rows = by_item(await results(runtime, job_id))
    assert {k: r["labels"] for k, r in rows.items()} == {
        "t0": ["billing"],
        "t1": ["shipping"],
        "t2": ["technical"],
        "t3": ["billing"],
        "t4": ["shipping"],
    }
    (doc,) = await docs(runtime, job_id)
    assert (doc.state, doc.batch_status, doc.ingested) == ("done", "completed", 5)
    records = await usage(runtime, job_id)
    assert sorted(r["id"] for r in records) == sorted(
        f"{doc.batch_id}:{job_id}:t{i}" for i in range(5)
    )
    assert {(r["mode"], r["operation"], r["tags"]["team"], r["principal_id"]) for r in records} == {
        ("batch", "classification", "support", "oid-7")
    }
    assert job.usage.prompt_tokens == sum(r["prompt_tokens"] for r in records) > 0
    for file_id in (doc.input_file_id, doc.output_file_id, doc.error_file_id):
        assert await gone(runtime, file_id)


async def test_partial_line_errors_fail_those_items_with_their_reason(
    runtime: Runtime, sim: httpx.AsyncClient
) -> None:
    await patch(sim, {"batch": {"fail_lines_containing": "log in"}})
    job_id = await send_job(runtime, tickets())
    job = await poll_until(runtime, job_id)
    assert job.status == "partially_failed"
    assert (job.counts.succeeded, job.counts.failed) == (4, 1)
    failed = by_item(await results(runtime, job_id))["t2"]
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "internal_error"
    assert "error processing this request" in failed["error"]["message"]


async def test_a_filtered_line_is_content_filtered_with_an_event(
    runtime: Runtime, sim: httpx.AsyncClient, store: Store
) -> None:
    items = [*tickets(3), {"id": "bad", "text": "forbidden-violence in a ticket"}]
    job_id = await send_job(runtime, items)
    job = await poll_until(runtime, job_id)
    assert job.status == "partially_failed"
    bad = by_item(await results(runtime, job_id))["bad"]
    assert bad["status"] == "content_filtered"
    assert bad["categories"]["violence"]["filtered"] is True
    events = await store.query(
        CONTENT_FILTER_EVENTS, "SELECT * FROM c WHERE c.job_id = @j", {"@j": job_id}
    )
    assert [(e["source"], e["stage"], e["item_id"], e["id"]) for e in events] == [
        ("batch", "prompt", "bad", f"{job_id}:bad")
    ]
    assert job.counts.succeeded == 3


async def test_all_lines_failed_means_no_output_file_and_a_failed_job(
    runtime: Runtime, sim: httpx.AsyncClient
) -> None:
    await patch(sim, {"batch": {"empty_file_ids": True}})  # "" rather than null, as seen
    items = [{"id": f"x{i}", "text": f"forbidden-hate number {i}"} for i in range(3)]
    job_id = await send_job(runtime, items)
    job = await poll_until(runtime, job_id)
    assert job.status == "failed"
    assert job.counts.content_filtered == 3
    (doc,) = await docs(runtime, job_id)
    assert doc.output_file_id is None  # answered as "", read as absent
    assert doc.offsets == {"error": 3}


# --- the enqueued-token quota ----------------------------------------------------------------


async def test_token_quota_exceeded_at_create_waits_and_submits_later(
    runtime: Runtime, sim: httpx.AsyncClient
) -> None:
    # A slow batch holds the deployment's enqueued tokens; then the limit drops under them.
    await patch(sim, {"batch": {"in_progress_seconds": 60}})
    holder = await send_job(runtime, tickets(1))
    await patch(
        sim,
        {"batch": FAST.model_dump(), "deployments": {"gpt-4o-batch": {"enqueued_token_limit": 1}}},
    )
    job_id = await send_job(runtime, tickets())
    (doc,) = await docs(runtime, job_id)
    # A quota refusal waits for room: it is not a failed attempt (BATCH_MAX_ATTEMPTS).
    assert (doc.state, doc.refusals, doc.attempts, doc.batch_id) == ("waiting", 1, 0, None)
    assert doc.error is not None
    assert doc.error.code == "token_limit_exceeded"
    assert (await runtime.job_worker.jobs.get(job_id)).status == "submitted"  # type: ignore[union-attr]
    await patch(sim, {"deployments": {"gpt-4o-batch": {"enqueued_token_limit": 0}}})
    job = await poll_until(runtime, job_id, within=30)
    assert job.status == "succeeded"
    (doc,) = await docs(runtime, job_id)
    assert doc.error is None
    await runtime.job_requests.cancel(holder, team=runtime.settings.default_team)
    await poll_until(runtime, holder)


async def test_token_quota_exceeded_after_validating_waits_and_submits_later(
    runtime: Runtime, sim: httpx.AsyncClient
) -> None:
    await patch(sim, {"deployments": {"gpt-4o-batch": {"enqueued_token_limit": 1}}})
    job_id = await send_job(runtime, tickets())
    (doc,) = await docs(runtime, job_id)
    assert doc.state == "submitted"  # accepted at create: it fails while validating

    async def refused(_: object) -> bool:
        (current,) = await docs(runtime, job_id)
        return current.state == "waiting"

    deadline = asyncio.get_running_loop().time() + 20
    while not await refused(None):
        assert asyncio.get_running_loop().time() < deadline
        await runtime.batch_poller.poll()
        await asyncio.sleep(0.2)
    (doc,) = await docs(runtime, job_id)
    assert doc.error is not None
    assert (doc.error.code, doc.refusals, doc.attempts, doc.batch_status) == (
        "token_limit_exceeded",
        1,
        0,
        None,
    )
    await patch(sim, {"deployments": {"gpt-4o-batch": {"enqueued_token_limit": 0}}})
    job = await poll_until(runtime, job_id, within=30)
    assert job.status == "succeeded"
    assert len(await results(runtime, job_id)) == 5


# --- age, cancel, split ----------------------------------------------------------------------


async def test_max_age_cancels_keeps_the_partial_output_and_resubmits_the_rest(
    environ: dict[str, str], sim: httpx.AsyncClient
) -> None:
    await patch(sim, {"batch": {"in_progress_seconds": 8}})
    async with app_runtime(environ, BATCH_MAX_AGE="2") as runtime:
        job_id = await send_job(runtime, tickets(20))
        await asyncio.sleep(3)  # older than BATCH_MAX_AGE, about a quarter of its lines done
        await runtime.batch_poller.poll()  # cancels it
        (doc,) = await docs(runtime, job_id)
        assert doc.stop == "max_age"
        first_batch = doc.batch_id
        await patch(sim, {"batch": FAST.model_dump()})
        job = await poll_until(runtime, job_id)
        assert job.status == "succeeded"
        assert Counter(r["item_id"] for r in await results(runtime, job_id)) == Counter(
            f"t{i}" for i in range(20)
        )
        (doc,) = await docs(runtime, job_id)
        assert doc.resubmitted
        assert doc.batch_id != first_batch
        batches = Counter(r["id"].split(":")[0] for r in await usage(runtime, job_id))
        assert set(batches) == {first_batch, doc.batch_id}
        assert sum(batches.values()) == 20
        assert 0 < batches[first_batch] < 20


async def test_cancel_stops_the_batches_and_keeps_what_finished(
    runtime: Runtime, sim: httpx.AsyncClient
) -> None:
    await patch(sim, {"batch": {"in_progress_seconds": 6}})
    job_id = await send_job(runtime, tickets(20))
    await asyncio.sleep(2.5)
    view = await runtime.job_requests.cancel(job_id, team=runtime.settings.default_team)
    assert view.status == "cancelled"
    job = await poll_until(runtime, job_id)
    assert job.status == "cancelled"
    (doc,) = await docs(runtime, job_id)
    assert doc.batch_status == "cancelled"
    rows = await results(runtime, job_id)
    assert 0 < len(rows) < 20  # what finished before the cancel, nothing failed for it
    assert {r["status"] for r in rows} == {"succeeded"}
    view = await runtime.job_requests.view(job_id, 1, None, team=runtime.settings.default_team)
    counts = view.counts
    assert counts.pending == 20 - len(rows)


async def test_a_job_over_the_line_limit_is_split_across_files(
    environ: dict[str, str], sim: httpx.AsyncClient
) -> None:
    async with app_runtime(environ, BATCH_MAX_LINES="3") as runtime:
        job_id = await send_job(runtime, tickets(7))
        parts = await docs(runtime, job_id)
        assert [(d.first, d.last) for d in parts] == [(0, 3), (3, 6), (6, 7)]
        assert len({d.batch_id for d in parts}) == 3
        job = await poll_until(runtime, job_id)
        assert job.status == "succeeded"
        assert len(await results(runtime, job_id)) == 7
        assert [d.ingested for d in await docs(runtime, job_id)] == [3, 3, 1]


async def test_an_expired_batch_keeps_its_output_and_resubmits_the_rest_once(
    runtime: Runtime, sim: httpx.AsyncClient
) -> None:
    # The OpenAI API's expiry: unanswered lines come back as `batch_expired` error lines.
    await patch(sim, {"batch": {"in_progress_seconds": 4, "expire_after_seconds": 1.5}})
    job_id = await send_job(runtime, tickets(20))
    await asyncio.sleep(2)
    await patch(sim, {"batch": {**FAST.model_dump(), "expire_after_seconds": None}})
    job = await poll_until(runtime, job_id)
    assert job.status == "succeeded"
    assert len(await results(runtime, job_id)) == 20
    (doc,) = await docs(runtime, job_id)
    assert doc.resubmitted
    assert len(await usage(runtime, job_id)) == 20  # expired lines cost nothing


async def test_a_failed_batch_ends_the_job_with_its_reason(
    runtime: Runtime, sim: httpx.AsyncClient
) -> None:
    await patch(sim, {"batch": {"max_requests_per_file": 2}})
    job_id = await send_job(runtime, tickets())
    job = await poll_until(runtime, job_id)
    assert job.status == "failed"
    assert job.error is not None
    assert job.error.code == "batch_failed"
    rows = await results(runtime, job_id)
    assert {(r["status"], r["error"]["code"]) for r in rows} == {("failed", "batch_failed")}
    assert len(rows) == 5
    (doc,) = await docs(runtime, job_id)
    assert await gone(runtime, doc.input_file_id)


# --- exactly once ----------------------------------------------------------------------------


class Killed(BaseException):
    """The process dies: nothing is released, nothing cleaned up."""


async def completed(runtime: Runtime, job_id: str) -> BatchDoc:
    """Wait until the job's one batch has finished on the service (not yet ingested)."""
    (doc,) = await docs(runtime, job_id)
    for _ in range(100):
        assert doc.batch_id is not None
        if (await runtime.aoai.batches.retrieve(doc.batch_id)).status == "completed":
            return doc
        await asyncio.sleep(0.1)
    raise AssertionError("the batch did not complete")


async def test_a_poller_killed_mid_ingestion_then_run_again_gives_each_result_once(
    environ: dict[str, str], sim: httpx.AsyncClient
) -> None:
    async with app_runtime(environ, BATCH_LEASE_SECONDS="1", BATCH_CHECKPOINT_LINES="3") as rt:
        job_id = await send_job(rt, tickets(12))
        await completed(rt, job_id)

        async def die(doc: BatchDoc) -> None:
            raise Killed

        killed = BatchPoller(
            rt.settings, rt.job_worker.batch_service, rt.bookkeeper, on_checkpoint=die
        )
        with pytest.raises(Killed):
            await killed.poll()
        (doc,) = await docs(rt, job_id)
        assert (doc.offsets, doc.ingested, doc.state) == ({"output": 3}, 3, "submitted")
        assert doc.lease_owner is not None  # still held by the dead run
        assert (await rt.batch_poller.poll()).skipped == 1  # until the lease expires
        await asyncio.sleep(1.2)
        report = await rt.batch_poller.poll()
        assert report.ingested == 9  # the rest, not the first three again
        job = await rt.job_worker.jobs.get(job_id)
        assert job is not None
        assert job.status == "succeeded"
        assert Counter(r["item_id"] for r in await results(rt, job_id)) == Counter(
            f"t{i}" for i in range(12)
        )
        records = await usage(rt, job_id)
        assert len(records) == len({r["id"] for r in records}) == 12


async def test_a_job_left_submitted_with_every_part_done_is_settled_by_the_next_run(
    runtime: Runtime, sim: httpx.AsyncClient
) -> None:
    # Found by the soak: Cosmos DB cut off right after a part was marked done, so settling its
    # job failed, and no later run looked at the job again (its part was no longer open).
    job_id = await send_job(runtime, tickets(4))
    job = await poll_until(runtime, job_id)
    assert job.status == "succeeded"
    await runtime.job_worker.jobs.update(job_id, status="submitted")  # as the failed run left it
    assert [d.state for d in await docs(runtime, job_id)] == ["done"]

    await runtime.batch_poller.poll()
    job_after = await runtime.job_worker.jobs.get(job_id)
    assert job_after is not None
    assert job_after.status == "succeeded"
    assert job_after.counts.succeeded == 4


async def test_two_pollers_at_once_never_ingest_twice(
    environ: dict[str, str], sim: httpx.AsyncClient
) -> None:
    async with app_runtime(environ) as one, app_runtime(environ) as two:
        job_id = await send_job(one, tickets(12))
        await completed(one, job_id)
        reports = await asyncio.gather(one.batch_poller.poll(), two.batch_poller.poll())
        assert sum(r.ingested for r in reports) == 12
        assert sorted(r.claimed for r in reports) == [0, 1]
        assert len(await results(one, job_id)) == 12
        assert len(await usage(one, job_id)) == 12
        (doc,) = await docs(one, job_id)
        assert (doc.state, doc.ingested) == ("done", 12)


# --- refused ---------------------------------------------------------------------------------


async def test_a_batch_embedding_job_is_refused_on_azure_with_its_reason(runtime: Runtime) -> None:
    job_id = new_id("emb")
    body = {"job_id": job_id, "items": tickets(2), "mode": "batch"}
    await runtime.job_worker.handle(
        "embedding",
        Message(queue="embedding-jobs", id="m", body=httpx.Request("POST", "/", json=body).content),
    )
    job = await runtime.job_worker.jobs.get(job_id)
    assert job is not None
    assert job.status == "failed"
    assert job.error is not None
    assert job.error.code == "not_supported"
    assert "Batch API does not accept embeddings" in job.error.message
    assert await docs(runtime, job_id) == []
