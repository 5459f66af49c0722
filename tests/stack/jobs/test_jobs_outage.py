"""A Cosmos DB outage in the middle of a job loses nothing: the app reaches Cosmos DB through a
fault proxy that is cut (connections refused and reset, as an unreachable account looks) for
several seconds while the job runs, then restored. The data outlives the outage, as on Azure."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from devstack.aoai_simulator import SimulatorConfig
from devstack.aoai_simulator.config import LatencyConfig
from devstack.emulators import EmulatorStack
from devstack.emulators.outage import FaultProxy
from shared.core.store import USAGE, Store
from tests.support.jobs_stack import JobsStack, all_results, items, jobs_stack, submit, wait_job
from tests.support.samples import LABELS


@pytest.fixture(scope="module")
def proxy(emulators: EmulatorStack) -> Iterator[FaultProxy]:
    with FaultProxy(emulators.ports.cosmos) as running:
        yield running


@pytest.fixture(scope="module")
def stack(
    app_environ: dict[str, str],
    emulators: EmulatorStack,
    store: Store,
    proxy: FaultProxy,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[JobsStack]:
    with jobs_stack(
        app_environ,
        emulators.storage_connection_string,
        tmp_path_factory.mktemp("outage"),
        prefix="cut",
        settings={"COSMOS_ENDPOINT": proxy.endpoint(), "CLASSIFY_ITEMS_PER_REQUEST": "2"},
        # Slow enough that the job is still running when the proxy is cut.
        simulator=SimulatorConfig(latency=LatencyConfig(request_ms=250)),
    ) as running:
        yield running


# The fault proxy (this test's own tool, on its own loop in a thread) resets the host's open
# connections when it is cut; their transports can be collected in this process after the
# reset, which pytest reports as an unraisable ResourceWarning. The app runs in the host
# process, not here, so that warning says nothing about the app: it is ignored for this test.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_cosmos_outage_mid_job_loses_nothing(
    http: httpx.AsyncClient, stack: JobsStack, proxy: FaultProxy, store: Store
) -> None:
    job_id = f"outage-{uuid.uuid4().hex[:8]}"
    n = 80
    await submit(http, "classification", {"job_id": job_id, "items": items(n), "labels": LABELS})
    # Cut once some results are in, so the outage lands mid-job.
    for _ in range(200):
        view = (await http.get(f"/jobs/{job_id}")).json()
        if view["counts"]["succeeded"] >= 6:
            break
        await asyncio.sleep(0.1)
    assert view["counts"]["pending"] > 0, "the job finished before the outage"
    proxy.cut()
    await asyncio.sleep(8)
    during = await http.get(f"/jobs/{job_id}")
    proxy.restore()

    assert during.status_code == 503  # the API says so while Cosmos DB is away
    view = await wait_job(http, job_id, within=180)
    assert view["status"] == "succeeded", view
    assert view["counts"]["succeeded"] == n
    results = await all_results(http, job_id)
    assert Counter(r["item_id"] for r in results) == Counter(f"i{i}" for i in range(n))
    log = stack.log()
    assert f"job {job_id}: " in log
    assert "(unavailable, attempt 1)" in log  # the outage was a passing failure, handed on
    usage = await store.query(USAGE, "SELECT c.id FROM c WHERE c.job_id = @j", {"@j": job_id})
    assert len({u["id"] for u in usage}) == len(usage)
