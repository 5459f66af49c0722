"""Batch mode under the local Functions host: the real function_app.py, its `poll_batches`
timer, `/api/usage` pricing batch calls at BATCH_DISCOUNT of realtime ones, and a create
whose answer is lost still making one batch whose usage is reported."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from openai import AsyncAzureOpenAI

from devstack.aoai_simulator import SimulatorConfig
from devstack.aoai_simulator.config import BatchConfig
from shared.core.store import TEAM_SPEND, Store
from shared.metering.team_windows import Spend, Windows
from tests.support.jobs_stack import JobsStack, all_results, stack_fixture, submit, wait_job
from tests.support.samples import LABELS, tickets
from tests.support.simulator import control_plane

# The test's own client, straight to the simulator: any api-version it serves.
SIM_API_VERSION = "2025-04-01-preview"
FAST = BatchConfig(validating_seconds=0.1, in_progress_seconds=0.1, finalizing_seconds=0.1)


stack = stack_fixture(
    "bat",
    # One item per realtime request: the same request a batch line sends.
    settings={
        "BATCH_POLL_SCHEDULE": "*/2 * * * * *",
        "BATCH_RETRY_SECONDS": "1",
        "CLASSIFY_ITEMS_PER_REQUEST": "1",
    },
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


async def usage_calls(http: httpx.AsyncClient, tag: str) -> int:
    """Calls `/api/usage` reports for `tag:run` = `tag` (0 until the roll-up has it)."""
    r = await http.get("/usage", params={"group_by": "tag:run"})
    assert r.status_code == 200, r.text
    groups = {g["key"]: g for g in r.json()["groups"]}
    return int(groups[tag]["calls"]) if tag in groups else 0


async def test_a_lost_create_makes_one_batch_whose_usage_is_reported(
    http: httpx.AsyncClient, stack: JobsStack
) -> None:
    aoai = AsyncAzureOpenAI(
        azure_endpoint=stack.simulator.url,
        api_key=stack.simulator.api_key,
        api_version=SIM_API_VERSION,
    )

    async def upstream(job_id: str) -> list[str]:
        batches = aoai.batches.list(limit=100)
        return [b.id async for b in batches if (b.metadata or {}).get("job_id") == job_id]

    run = uuid.uuid4().hex[:8]
    body = {"items": tickets(3), "labels": LABELS, "mode": "batch", "tags": {"run": run}}
    async with aoai, control_plane(stack.simulator) as sim:
        # Every create is carried out and its answer cut off, until the first one is made.
        (
            await sim.patch("/sim/config", json={"faults": {"batches": {"lost": 1.0}}})
        ).raise_for_status()
        job_id = await submit(http, "classification", body)
        for _ in range(150):
            if await upstream(job_id):
                break
            await asyncio.sleep(0.2)
        (
            await sim.patch("/sim/config", json={"faults": {"batches": {"lost": 0.0}}})
        ).raise_for_status()
        view = await wait_job(http, job_id, within=90)
        assert view["status"] == "succeeded"
        assert len(await upstream(job_id)) == 1
        assert "was made by an earlier attempt that lost its answer" in stack.log()
        for _ in range(150):  # the roll-up (every 2 s on test hosts)
            if await usage_calls(http, run) == 3:
                break
            await asyncio.sleep(0.2)
        assert await usage_calls(http, run) == 3
        assert (await aoai.files.list()).data == []  # input, output and error files deleted


async def test_a_team_s_batch_job_books_its_day_and_one_of_a_spent_day_waits_sending_nothing(
    stack: JobsStack, store: Store
) -> None:
    """#22 item 4 through the host: a team's batch job books its day (never its minute) and
    `GET /api/teams/{id}` shows what it used once the timer settles it; the batch job of a
    team whose day is spent is `waiting` (`budget_exceeded`) while the timer keeps trying,
    with no batch made."""
    if (86_400 - time.time() % 86_400) < 300:
        pytest.skip("too close to UTC midnight: the spent team's day would return")
    async with httpx.AsyncClient(
        base_url=stack.host.url, headers=stack.host.admin_headers(), timeout=30
    ) as admin:
        teams = {}
        for name, limits in (("spent", {"daily_tokens": 100_000}), ("ok", {"tpm": 10})):
            team_id = f"bat-{name}-{uuid.uuid4().hex[:8]}"
            made = await admin.post(
                "/teams", json={"id": team_id, "daily_tokens": 1_000_000, **limits}
            )
            assert made.status_code == 201, made.text
            teams[name] = (team_id, made.json()["key"])
        spent_id = teams["spent"][0]
        day = Spend(Windows.at(time.time()), day_tokens=100_000)
        await store.create(TEAM_SPEND, day.doc(spent_id))
        body = {"items": tickets(3, first=1), "labels": LABELS, "mode": "batch"}
        job_ids = {}
        for name, (_, key) in teams.items():
            async with httpx.AsyncClient(
                base_url=stack.host.url, headers={"api-key": key}, timeout=30
            ) as team:
                job_ids[name] = await submit(team, "classification", body)

        ok_id, ok_key = teams["ok"]
        async with httpx.AsyncClient(
            base_url=stack.host.url, headers={"api-key": ok_key}, timeout=30
        ) as team:
            view = await wait_job(team, job_ids["ok"], within=90)
        assert view["status"] == "succeeded", view
        shown = (await admin.get(f"/teams/{ok_id}")).json()["spend"]
        assert shown["day_tokens"] == view["usage"]["total_tokens"] > 0
        assert shown["minute_tokens"] == 0

        spent_job = job_ids["spent"]
        tries = f"job {spent_job} part 0: waits for its team's budget"
        for _ in range(300):  # the timer (every 2 s) tries again
            if stack.log().count(tries) >= 3:
                break
            await asyncio.sleep(0.1)
        assert stack.log().count(tries) >= 3
        async with httpx.AsyncClient(
            base_url=stack.host.url, headers={"api-key": teams["spent"][1]}, timeout=30
        ) as team:
            waiting = (await team.get(f"/jobs/{spent_job}")).json()
        assert waiting["status"] == "waiting", waiting
        assert waiting["error"]["code"] == "budget_exceeded"
        assert waiting["error"]["details"]["limit"] == "day"
        assert waiting["counts"]["pending"] == 3
        async with AsyncAzureOpenAI(
            azure_endpoint=stack.simulator.url,
            api_key=stack.simulator.api_key,
            api_version=SIM_API_VERSION,
        ) as aoai:
            made = [
                b.id
                async for b in aoai.batches.list(limit=100)
                if (b.metadata or {}).get("job_id") == spent_job
            ]
        assert made == []
        spend = Spend.of(await store.read(TEAM_SPEND, spent_id, spent_id), Windows.at(time.time()))
        assert spend.day_tokens == 100_000
