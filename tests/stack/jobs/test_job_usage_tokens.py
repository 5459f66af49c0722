"""Cached and reasoning tokens of jobs, end to end under the local Functions host: realtime
classification requests and Batch API output lines, from the simulator's answers into usage
documents, results, the job's usage and `GET /api/usage`.

A classification request's prompt is the system message (labels, then the job's
`instructions`) and its items, and the schema it sends names the request's item ids, which
the model reads first: a job run again with the same items and a long instruction (4,000
characters, the most a job takes: 1,000 tokens, the system message just over 1,024) repeats
every request's prefix, and the service reports it cached. Before, usage documents had no
such fields: the repeat looked as dear as the first run.

The batch deployment here is a reasoning model (o4-mini, as a `global-batch` deployment) with
a small reasoning spend, so every output line carries reasoning tokens as well.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from devstack.aoai_simulator import SimulatorConfig
from devstack.aoai_simulator.config import BatchConfig, DeploymentConfig, default_deployments
from shared.core.store import USAGE, Store
from tests.support.jobs_stack import JobsStack, all_results, stack_fixture, submit, wait_job
from tests.support.samples import LABELS, new_id, tickets

FAST = BatchConfig(validating_seconds=0.1, in_progress_seconds=0.1, finalizing_seconds=0.1)
# o4-mini reasons at effort medium by default; 16 hidden tokens fit a one-item answer's budget.
REASONING_BATCH = DeploymentConfig(
    name="gpt-4o-batch",
    model="o4-mini",
    kind="chat",
    sku="global-batch",
    model_version="2025-04-16",
    reasoning_tokens=16,
)
ITEMS_PER_REQUEST = 3

stack = stack_fixture(
    "tok",
    settings={
        "BATCH_POLL_SCHEDULE": "*/2 * * * * *",
        "BATCH_RETRY_SECONDS": "1",
        "CLASSIFY_ITEMS_PER_REQUEST": str(ITEMS_PER_REQUEST),
    },
    simulator=SimulatorConfig(
        deployments=[
            *(d for d in default_deployments() if d.name != "gpt-4o-batch"),
            REASONING_BATCH,
        ],
        batch=FAST,
    ),
)


def instructions() -> str:
    """4,000 characters (1,000 tokens to the simulator), unique to the test run."""
    return (uuid.uuid4().hex + " Read each ticket with care. " * 200)[:4000]


async def usage_docs(store: Store, job_id: str) -> list[dict[str, Any]]:
    return await store.query(USAGE, "SELECT * FROM c WHERE c.job_id = @j", {"@j": job_id})


async def run_job(http: httpx.AsyncClient, body: dict[str, Any], tag: str) -> str:
    job_id = new_id("tok")
    await submit(http, "classification", {**body, "job_id": job_id, "tags": {"run": tag}})
    view = await wait_job(http, job_id, within=90)
    assert view["status"] == "succeeded", view
    return job_id


async def report_group(http: httpx.AsyncClient, tag: str, calls: int) -> dict[str, Any]:
    """The `/api/usage` group of `tag:run` = `tag`, once the roll-ups count `calls` calls."""
    group: dict[str, Any] = {}
    for _ in range(300):
        r = await http.get("/usage", params={"group_by": "tag:run"})
        assert r.status_code == 200, r.text
        group = next((g for g in r.json()["groups"] if g["key"] == tag), {})
        if group.get("calls") == calls:
            return group
        await asyncio.sleep(0.1)
    raise AssertionError(f"the report never had {calls} calls for {tag}: {group}")


async def test_a_classification_job_run_again_records_its_cached_tokens(
    http: httpx.AsyncClient, store: Store
) -> None:
    run = uuid.uuid4().hex[:8]
    body = {"items": tickets(6), "labels": LABELS, "instructions": instructions()}
    first = await run_job(http, body, f"{run}-first")
    again = await run_job(http, body, f"{run}-again")

    first_docs, again_docs = await usage_docs(store, first), await usage_docs(store, again)
    assert len(first_docs) == len(again_docs) == 2  # two requests of three items each
    assert [d["cached_tokens"] for d in first_docs] == [0, 0]
    for doc in again_docs:
        assert 1024 <= doc["cached_tokens"] <= doc["prompt_tokens"]
    cached = sum(d["cached_tokens"] for d in again_docs)

    # The results' shares and the job's usage (derived from them) add up to the requests'.
    view = (await http.get(f"/jobs/{again}")).json()
    assert view["usage"]["cached_tokens"] == cached
    results = await all_results(http, again)
    assert sum(r["usage"]["cached_tokens"] for r in results) == cached

    # The report: the same tokens, the cached ones at the cached-input price.
    dear = await report_group(http, f"{run}-first", 2)
    cheap = await report_group(http, f"{run}-again", 2)
    assert cheap["cached_tokens"] == cached
    assert cheap["total_tokens"] == dear["total_tokens"]
    assert cheap["estimated_cost_usd"] < dear["estimated_cost_usd"]


async def test_batch_output_lines_cached_and_reasoning_tokens_are_ingested(
    http: httpx.AsyncClient, stack: JobsStack, store: Store
) -> None:
    run = uuid.uuid4().hex[:8]
    body = {
        "items": tickets(3),
        "labels": LABELS,
        "instructions": instructions(),
        "mode": "batch",
    }
    first = await run_job(http, body, f"{run}-first")
    again = await run_job(http, body, f"{run}-again")

    for job_id in (first, again):
        docs = await usage_docs(store, job_id)
        assert len(docs) == 3
        assert {d["mode"] for d in docs} == {"batch"}
        assert [d["reasoning_tokens"] for d in docs] == [16, 16, 16]
    assert [d["cached_tokens"] for d in await usage_docs(store, first)] == [0, 0, 0]
    again_docs = await usage_docs(store, again)
    for doc in again_docs:
        assert 1024 <= doc["cached_tokens"] <= doc["prompt_tokens"]
    view = (await http.get(f"/jobs/{again}")).json()
    assert view["usage"]["reasoning_tokens"] == 48
    assert view["usage"]["cached_tokens"] == sum(d["cached_tokens"] for d in again_docs)

    # What the simulator billed for the batch lines is what the app recorded.
    async with httpx.AsyncClient(base_url=stack.simulator.url) as sim:
        billed = (await sim.get("/sim/stats")).json()["deployments"]["gpt-4o-batch"]
    docs = [*await usage_docs(store, first), *again_docs]
    assert sum(d["cached_tokens"] for d in docs) == billed["cached_tokens"]
    assert sum(d["reasoning_tokens"] for d in docs) == billed["reasoning_tokens"]

    group = await report_group(http, f"{run}-again", 3)
    assert (group["cached_tokens"], group["reasoning_tokens"]) == (
        view["usage"]["cached_tokens"],
        48,
    )
