"""An outage longer than the retry budget does not fail the work for good: once
JOB_MAX_ATTEMPTS passing failures are spent the rest is parked (the job says `waiting`, and
why) and tried again every JOB_PARK_SECONDS until JOB_MAX_AGE, then fails with the reason.
Both for Azure OpenAI answering 503 and for Cosmos DB cut off. Time is compressed: two
attempts of 0.5 s and 1 s, parked for 2 s, a maximum age of 75 s; the host redelivers a
failed message after 1 s (host.json's `visibilityTimeout`, 30 s in the app), so that a
message left to the host's five deliveries would be poisoned within the outage."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.aoai_simulator import SimulatorConfig
from devstack.aoai_simulator.config import LatencyConfig
from devstack.emulators import EmulatorStack
from devstack.emulators.outage import FaultProxy
from shared.core.store import Store
from tests.support.jobs_stack import JobsStack, all_results, jobs_stack, upstream_sends, wait_job
from tests.support.paths import REPO_ROOT
from tests.support.samples import new_id
from tests.support.simulator import control_plane

MAX_AGE = 75
ITEMS = 30


@pytest.fixture(scope="module")
def proxy(emulators: EmulatorStack) -> Iterator[FaultProxy]:
    with FaultProxy(emulators.ports.cosmos) as running:
        yield running


def _quick_redelivery(app_dir: Path) -> None:
    """The app's host.json with failed messages visible again after 1 s."""
    config = json.loads((REPO_ROOT / "host.json").read_text())
    config["extensions"]["queues"]["visibilityTimeout"] = "00:00:01"
    (app_dir / "host.json").write_text(json.dumps(config))


@pytest.fixture(scope="module")
def stack(
    app_environ: dict[str, str],
    emulators: EmulatorStack,
    store: Store,
    proxy: FaultProxy,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[JobsStack]:
    app_dir = tmp_path_factory.mktemp("parked")
    _quick_redelivery(app_dir)
    with jobs_stack(
        app_environ,
        emulators.storage_connection_string,
        app_dir,
        prefix="park",
        settings={
            "COSMOS_ENDPOINT": proxy.endpoint(),
            "JOB_MAX_ATTEMPTS": "2",
            "JOB_BACKOFF_SECONDS": "0.5",
            "JOB_PARK_SECONDS": "2",
            "JOB_MAX_AGE": str(MAX_AGE),
            "JOB_LEASE_SECONDS": "10",
            # Two inputs a request, one request at a time, 200 ms each: the job is running
            # when the outage starts.
            "EMBEDDING_MAX_INPUTS": "2",
            "JOB_CONCURRENCY": "1",
        },
        simulator=SimulatorConfig(latency=LatencyConfig(request_ms=200)),
    ) as running:
        yield running


@pytest.fixture
async def sim(stack: JobsStack) -> AsyncIterator[httpx.AsyncClient]:
    async with control_plane(stack.simulator) as client:
        yield client


def _body(job_id: str) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "items": [{"id": f"i{i}", "text": f"{job_id} item {i}"} for i in range(ITEMS)],
    }


async def _submit(http: httpx.AsyncClient, job_id: str) -> None:
    r = await http.post("/jobs/embeddings", json=_body(job_id))
    assert r.status_code == 202, r.text


async def _until_waiting(http: httpx.AsyncClient, job_id: str) -> dict[str, object]:
    view: dict[str, object] = {}
    for _ in range(120):
        view = (await http.get(f"/jobs/{job_id}", params={"page_size": 1})).json()
        if view["status"] != "running" and view["status"] != "queued":
            return view
        await asyncio.sleep(0.25)
    raise AssertionError(f"job {job_id} never stopped running: {view}")


async def _outage(sim: httpx.AsyncClient, on: bool) -> None:
    fault = {"error_503": 1.0 if on else 0.0}
    (await sim.patch("/sim/config", json={"faults": {"embeddings": fault}})).raise_for_status()


async def test_an_azure_openai_outage_past_the_budget_parks_the_job_then_it_succeeds(
    http: httpx.AsyncClient, stack: JobsStack, sim: httpx.AsyncClient
) -> None:
    job_id = new_id("aoai-park")
    await _outage(sim, True)
    await _submit(http, job_id)

    waiting = await _until_waiting(http, job_id)
    assert waiting["status"] == "waiting", waiting
    error = waiting["error"]
    assert isinstance(error, dict)
    assert error["code"] == "upstream_error"
    assert "JOB_MAX_AGE" in error["message"]
    await asyncio.sleep(6)  # parked again, more than once
    await _outage(sim, False)

    view = await wait_job(http, job_id, within=MAX_AGE)
    assert view["status"] == "succeeded", view
    results = await all_results(http, job_id)
    assert Counter(r["item_id"] for r in results) == Counter(f"i{i}" for i in range(ITEMS))
    assert f"job {job_id}: {ITEMS} items parked for 2s (upstream_error)" in stack.log()


async def test_an_outage_past_the_jobs_max_age_fails_the_rest_with_the_reason(
    http: httpx.AsyncClient, stack: JobsStack, sim: httpx.AsyncClient
) -> None:
    job_id = new_id("aoai-old")
    await _outage(sim, True)
    await _submit(http, job_id)

    view = await wait_job(http, job_id, within=MAX_AGE + 30)
    assert view["status"] == "failed", view
    results = await all_results(http, job_id)
    assert len(results) == ITEMS
    assert {r["error"]["code"] for r in results} == {"upstream_error"}
    assert all(f"older than JOB_MAX_AGE ({MAX_AGE}s)" in r["error"]["message"] for r in results)


# See tests/stack/jobs/test_jobs_outage.py: the proxy's own resets, not the app's.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_cosmos_outage_past_the_budget_is_not_poisoned_and_the_job_succeeds(
    http: httpx.AsyncClient, stack: JobsStack, proxy: FaultProxy
) -> None:
    job_id = new_id("cosmos-park")
    await _submit(http, job_id)
    for _ in range(200):
        view = (await http.get(f"/jobs/{job_id}")).json()
        if view["counts"]["succeeded"] >= 4:
            break
        await asyncio.sleep(0.1)
    assert view["counts"]["pending"] > 0, "the job finished before the outage"
    proxy.cut()
    await asyncio.sleep(30)  # the budget is ~3 s; five deliveries (2 s each, 1 s apart) poison
    proxy.restore()

    view = await wait_job(http, job_id, within=MAX_AGE)
    assert view["status"] == "succeeded", view
    results = await all_results(http, job_id)
    assert Counter(r["item_id"] for r in results) == Counter(f"i{i}" for i in range(ITEMS))
    log = stack.log()
    assert f"job {job_id}: " in log
    assert "items parked for 2s (unavailable)" in log
    assert f"to '{stack.embedding_queue}-poison'" not in log
    # The answers the slice got while Cosmos DB was going went on with the rest (a blob),
    # never asked again: every item went upstream once.
    body = _body(job_id)
    sends = await upstream_sends(stack, [item["text"] for item in body["items"]])
    assert {text: n for text, n in sends.items() if n != 1} == {}
