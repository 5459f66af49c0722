"""Batch mode under the local Functions host: the real function_app.py, its `poll_batches`
timer, and `/api/usage` pricing batch calls at BATCH_DISCOUNT of realtime ones."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from devstack.aoai_simulator import SimulatorConfig
from devstack.aoai_simulator.config import BatchConfig
from tests.support.jobs_stack import JobsStack, all_results, stack_fixture, submit, wait_job
from tests.support.samples import LABELS, tickets

FAST = BatchConfig(validating_seconds=0.1, in_progress_seconds=0.1, finalizing_seconds=0.1)


stack = stack_fixture(
    "bat",
    # One item per realtime request: the same request a batch line sends.
    settings={"BATCH_POLL_SCHEDULE": "*/2 * * * * *", "CLASSIFY_ITEMS_PER_REQUEST": "1"},
    simulator=SimulatorConfig(batch=FAST),
)


async def test_the_timer_runs_a_batch_job_to_the_end(
    http: httpx.AsyncClient, stack: JobsStack
) -> None:
    body = {"items": tickets(3, first=1), "labels": LABELS, "mode": "batch"}
    job_id = await submit(http, "classification", body)
    view = await wait_job(http, job_id, within=90)
    assert (view["status"], view["mode"]) == ("succeeded", "batch")
    labels = {r["item_id"]: r["labels"] for r in await all_results(http, job_id)}
    assert labels == {"t1": ["billing"], "t2": ["shipping"], "t3": ["technical"]}
    assert f"job {job_id} part 0: 3 of 3 lines ingested" in stack.log()


async def test_usage_prices_a_batch_job_at_half_the_realtime_cost(http: httpx.AsyncClient) -> None:
    run = uuid.uuid4().hex[:8]
    jobs = {}
    for mode in ("realtime", "batch"):
        body = {
            "items": tickets(3, first=1),
            "labels": LABELS,
            "mode": mode,
            "tags": {"run": f"{run}-{mode}"},
        }
        jobs[mode] = await submit(http, "classification", body)
    for job_id in jobs.values():
        assert (await wait_job(http, job_id, within=90))["status"] == "succeeded"
    # The report reads roll-ups (USAGE_ROLLUP_SCHEDULE: every 2 s on test hosts).
    keys = (f"{run}-realtime", f"{run}-batch")
    for _ in range(150):
        r = await http.get("/usage", params={"group_by": "tag:run"})
        assert r.status_code == 200, r.text
        groups = {g["key"]: g for g in r.json()["groups"]}
        if all(k in groups and groups[k]["calls"] == 3 for k in keys):
            break
        await asyncio.sleep(0.2)
    realtime, batch = groups[keys[0]], groups[keys[1]]
    assert batch["calls"] == realtime["calls"] == 3
    assert batch["total_tokens"] == realtime["total_tokens"] > 0
    assert realtime["estimated_cost_usd"] > 0
    # The report rounds each cost to the micro-dollar: half of a rounded cost is known to 1e-6.
    half = realtime["estimated_cost_usd"] / 2
    assert batch["estimated_cost_usd"] == pytest.approx(half, abs=1e-6)
    assert batch["estimated_cost_usd"] < 0.75 * realtime["estimated_cost_usd"]
