"""One slice per job at a time: copies of a job's message delivered at once (raw copies on the
queue, or the same body submitted again over HTTP while the job is queued) run one after the
other under the job's lease, so every item goes upstream once, counted on the simulator's
side. And a failure result is written only where no result exists: a stale copy cannot turn
a success into a failure."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import pytest

from devstack.aoai_simulator import SimulatorConfig
from devstack.aoai_simulator.config import LatencyConfig
from shared.core.clock import now
from shared.core.models import ErrorDetail, Usage
from shared.core.queues import create_queues
from shared.core.settings import load_settings
from shared.core.store import JOBS, RESULTS, Store
from shared.jobs.answers import keep_answers
from shared.jobs.intake import job_spec, parse_job
from shared.jobs.lease import Lease
from shared.jobs.models import JobDoc, JobSource, ResultDoc
from shared.jobs.results import failed_result
from shared.jobs.store import JobStore, result_id
from tests.support.jobs_stack import (
    JobsStack,
    all_results,
    send_raw,
    stack_fixture,
    upstream_sends,
    wait_job,
    wait_queue_empty,
)
from tests.support.samples import new_id

ITEMS = 60

stack = stack_fixture(
    "lease",
    # Six requests of ten inputs, one at a time, 150 ms each: copies that start together
    # overlap for the whole job.
    settings={"EMBEDDING_MAX_INPUTS": "10", "JOB_CONCURRENCY": "1", "JOB_LEASE_SECONDS": "10"},
    simulator=SimulatorConfig(latency=LatencyConfig(request_ms=150)),
)


def _body(job_id: str) -> dict[str, Any]:
    # Texts unique to the job: the simulator counts each input across the session.
    return {
        "job_id": job_id,
        "items": [{"id": f"i{i}", "text": f"{job_id} item {i}"} for i in range(ITEMS)],
    }


async def _submit_http(http: httpx.AsyncClient, body: dict[str, Any]) -> None:
    r = await http.post("/jobs/embeddings", json=body)
    assert r.status_code == 202, r.text


@pytest.mark.parametrize("via", ["queue", "http"])
async def test_copies_of_a_job_delivered_at_once_send_each_item_upstream_once(
    http: httpx.AsyncClient, stack: JobsStack, via: str
) -> None:
    job_id = new_id("lease")
    body = _body(job_id)
    if via == "queue":  # three copies, as a redelivery or a double send leaves them
        await asyncio.gather(
            *(send_raw(stack.connection_string, stack.embedding_queue, body) for _ in range(3))
        )
    else:  # submitted, then the same body three more times at once while it is queued
        await asyncio.gather(*(_submit_http(http, body) for _ in range(4)))

    view = await wait_job(http, job_id, within=120)
    await wait_queue_empty(stack.connection_string, stack.embedding_queue)

    assert view["status"] == "succeeded", view
    results = await all_results(http, job_id)
    assert Counter(r["item_id"] for r in results) == Counter(f"i{i}" for i in range(ITEMS))
    sends = await upstream_sends(stack, [item["text"] for item in body["items"]])
    assert {text: n for text, n in sends.items() if n != 1} == {}
    assert sum(sends.values()) == ITEMS


def _success(job_id: str, item_id: str) -> ResultDoc:
    return ResultDoc(
        id=result_id(job_id, item_id),
        job_id=job_id,
        item_id=item_id,
        kind="embedding",
        status="succeeded",
        deployment="text-embedding-3-small",
        embedding=[0.6, 0.8],
        created_at=now(),
    )


def _failure(job_id: str, item_id: str, code: str) -> ResultDoc:
    detail = ErrorDetail(code=code, message=f"{code} for the test")
    return failed_result(job_id, item_id, "embedding", detail, "text-embedding-3-small")


async def test_a_failure_is_written_only_where_no_result_exists(store: Store) -> None:
    jobs = JobStore(store)
    job_id = new_id("stale")
    await jobs.write_results([_success(job_id, "done"), _failure(job_id, "failed", "too_long")])

    # A stale copy that met a long retry-after writes its failures for every item it held.
    await jobs.write_results(
        [
            _failure(job_id, "done", "quota_exhausted"),
            _failure(job_id, "failed", "quota_exhausted"),
            _failure(job_id, "new", "quota_exhausted"),
        ]
    )

    stored = {
        row["item_id"]: row
        for row in await store.query(
            RESULTS, "SELECT * FROM c WHERE c.job_id = @j", {"@j": job_id}, partition_key=job_id
        )
    }
    assert stored["done"]["status"] == "succeeded"
    assert stored["done"]["embedding"] == [0.6, 0.8]
    assert stored["failed"]["error"]["code"] == "too_long"  # the first reason stands
    assert stored["new"]["error"]["code"] == "quota_exhausted"


async def test_a_success_or_a_new_try_replaces_a_poisoned_failure(store: Store) -> None:
    # An operator requeues a poisoned job: its poisoned items run again, and what they end
    # with (a success, or another failure) replaces `poisoned`.
    jobs = JobStore(store)
    job_id = new_id("requeued")
    await jobs.write_results([_failure(job_id, "a", "poisoned"), _failure(job_id, "b", "poisoned")])

    await jobs.write_results([_success(job_id, "a"), _failure(job_id, "b", "too_long")])

    a = await store.read(RESULTS, result_id(job_id, "a"), job_id)
    b = await store.read(RESULTS, result_id(job_id, "b"), job_id)
    assert a is not None
    assert a["status"] == "succeeded"
    assert b is not None
    assert b["error"]["code"] == "too_long"


async def test_a_dead_hosts_lease_is_waited_for_then_taken_over(
    http: httpx.AsyncClient, stack: JobsStack, store: Store
) -> None:
    # A host took the job's lease and died: its lease runs out (3 s here) and the next
    # message takes the job over; until then the message comes back instead of running.
    job_id = new_id("dead")
    body = _body(job_id)
    settings = load_settings(stack.environ)
    job = parse_job("embedding", json.dumps(body).encode(), settings)
    doc = JobDoc.for_job(job, job_spec(job, settings), "running", JobSource(via="queue"))
    until = (now() + timedelta(seconds=3)).isoformat()
    held = {"lease": {"owner": "a-host-that-died", "until": until}}
    assert await store.create(JOBS, {**doc.model_dump(mode="json"), **held}) is not None

    await send_raw(stack.connection_string, stack.embedding_queue, body)
    view = await wait_job(http, job_id, within=60)

    assert view["status"] == "succeeded", view
    assert f"job {job_id}: another slice holds the job until" in stack.log()
    sends = await upstream_sends(stack, [item["text"] for item in body["items"]])
    assert set(sends.values()) == {1}


@pytest.mark.parametrize(("ended", "kept_out"), [(1, True), (14, True), (16, False)])
async def test_a_lapsed_lease_is_left_to_its_holder_for_a_grace_period(
    stack: JobsStack, store: Store, ended: float, kept_out: bool
) -> None:
    # A lease that ended `ended` seconds ago by this host's clock: its holder may still be
    # finishing its last requests, and its clock may run behind. With a 60 s lease the others
    # wait a grace of 15 s past `until`, then take it.
    job_id = new_id("lapsed")
    settings = load_settings(stack.environ)
    job = parse_job("embedding", json.dumps(_body(job_id)).encode(), settings)
    doc = JobDoc.for_job(job, job_spec(job, settings), "running", JobSource(via="queue"))
    until = now() - timedelta(seconds=ended)
    held = {"lease": {"owner": "a-host-whose-lease-lapsed", "until": until.isoformat()}}
    assert await store.create(JOBS, {**doc.model_dump(mode="json"), **held}) is not None

    lease = Lease(JobStore(store), job_id, seconds=60, handed=None)
    held_until = await lease.take()

    stored = await JobStore(store).get(job_id)
    assert stored is not None
    assert stored.lease is not None
    if kept_out:
        assert held_until == until + timedelta(seconds=15)  # comes back then
        assert stored.lease.owner == "a-host-whose-lease-lapsed"
    else:
        assert held_until is None
        assert stored.lease.owner == lease.owner


async def test_answers_a_slice_kept_are_written_by_whichever_message_runs_next(
    http: httpx.AsyncClient, stack: JobsStack
) -> None:
    # A slice got answers for i0..i9, could not store them and put them away; its
    # continuation was never sent (or a copy of the job's message runs first). The copy,
    # which names no answers blob, writes them and sends only the other items upstream.
    job_id = new_id("kept")
    body = _body(job_id)
    kept = [
        ResultDoc(
            id=result_id(job_id, f"i{i}"),
            job_id=job_id,
            item_id=f"i{i}",
            kind="embedding",
            status="succeeded",
            deployment="text-embedding-3-small",
            embedding=[0.5, 0.25],
            usage=Usage(prompt_tokens=3, total_tokens=3),
            created_at=now(),
        )
        for i in range(10)
    ]
    queues = create_queues(load_settings(stack.environ))
    try:
        await keep_answers(queues, job_id, kept)

        await send_raw(stack.connection_string, stack.embedding_queue, body)
        view = await wait_job(http, job_id, within=60)

        assert view["status"] == "succeeded", view
        results = {r["item_id"]: r for r in await all_results(http, job_id)}
        assert len(results) == ITEMS
        assert results["i3"]["embedding"] == [0.5, 0.25]  # the kept answer, not a new one
        texts = [item["text"] for item in body["items"]]
        sends = await upstream_sends(stack, texts)
        assert [sends[t] for t in texts[:10]] == [0] * 10
        assert {sends[t] for t in texts[10:]} == {1}
        assert await queues.payload_names(f"{job_id}/answers-") == []  # removed once written
    finally:
        await queues.aclose()
