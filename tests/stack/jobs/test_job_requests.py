"""What an embedding job sends upstream, counted on the simulator's side: requests packed
under the memory cap (inputs x dimensions), and a request-wide 400 sent once, not split
into 2n-1 calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from devstack.aoai_simulator import SimulatorConfig
from devstack.aoai_simulator.config import DeploymentConfig, default_deployments
from shared.core.store import USAGE, Store
from tests.support.jobs_stack import JobsStack, all_results, items, stack_fixture, submit, wait_job
from tests.support.simulator import control_plane

LARGE = "text-embedding-3-large"  # 3,072 floats a vector
SMALL = "text-embedding-3-small"  # 1,536
ADA = "text-embedding-ada-002"  # takes no `dimensions`
PER_REQUEST = 64  # inputs of 3,072 floats under the test's cap

stack = stack_fixture(
    "reqs",
    settings={
        "AOAI_DEPLOYMENTS": f'{{"default-chat": "gpt-4o", "large": "{LARGE}", "ada": "{ADA}"}}',
        # A small cap, so a small job shows its packing: 64 vectors of 3,072 floats.
        "EMBEDDING_MAX_FLOATS_PER_REQUEST": str(PER_REQUEST * 3072),
    },
    simulator=SimulatorConfig(
        deployments=[
            *default_deployments(),
            DeploymentConfig(name=LARGE, model=LARGE, kind="embedding"),
            DeploymentConfig(name=ADA, model=ADA, kind="embedding"),
        ]
    ),
)


@pytest.fixture
async def sim(stack: JobsStack) -> AsyncIterator[httpx.AsyncClient]:
    async with control_plane(stack.simulator) as client:
        (await client.post("/sim/reset", json={})).raise_for_status()  # counters from zero
        yield client


async def deployment_stats(sim: httpx.AsyncClient, deployment: str) -> dict[str, Any]:
    stats: dict[str, Any] = (await sim.get("/sim/stats")).json()["deployments"][deployment]
    return stats


async def test_a_3072_dimension_job_is_packed_under_the_float_cap(
    http: httpx.AsyncClient, sim: httpx.AsyncClient
) -> None:
    job_id = await submit(http, "embedding", {"items": items(160), "model": "large"})
    view = await wait_job(http, job_id)
    assert view["status"] == "succeeded", view
    results = await all_results(http, job_id)
    assert len(results) == 160
    assert all(len(r["embedding"]) == 3072 for r in results)
    stats = await deployment_stats(sim, LARGE)
    # Before the cap: one request of 160 inputs (2,048 allowed), 491,520 floats in one answer.
    assert stats["max_inputs"] == PER_REQUEST
    assert (stats["requests"], stats["inputs"]) == (3, 160)


async def test_a_request_wide_400_fails_the_items_at_once_with_the_services_message(
    http: httpx.AsyncClient, sim: httpx.AsyncClient, store: Store
) -> None:
    # The job model allows up to 3,072 dimensions; this deployment makes 1,536 at most, so
    # Azure refuses the request whatever its inputs. Splitting it made 127 calls.
    body = {"items": items(64, "short {i}"), "model": SMALL, "dimensions": 3072}
    job_id = await submit(http, "embedding", body)
    view = await wait_job(http, job_id)
    assert view["status"] == "failed"
    assert view["counts"]["failed"] == 64
    stats = await deployment_stats(sim, SMALL)
    assert (stats["requests"], stats["errors"]) == (1, 1)
    errors = {str(r["error"]["message"]) for r in await all_results(http, job_id)}
    assert errors == {"Invalid value for 'dimensions' = 3072. Must be between 1 and 1536."}
    records = await store.query(USAGE, "SELECT * FROM c WHERE c.job_id = @j", {"@j": job_id})
    assert [r["status"] for r in records] == ["error"]


async def test_a_400_naming_no_param_is_tried_on_one_item_before_failing_them_all(
    http: httpx.AsyncClient, sim: httpx.AsyncClient
) -> None:
    # Azure names no param when a model takes no `dimensions`: one item alone, refused the
    # same way, tells the request's 400 from an item's. Splitting made 127 calls.
    body = {"items": items(64, "short {i}"), "model": "ada", "dimensions": 256}
    job_id = await submit(http, "embedding", body)
    view = await wait_job(http, job_id)
    assert (view["status"], view["counts"]["failed"]) == ("failed", 64)
    stats = await deployment_stats(sim, ADA)
    assert (stats["requests"], stats["errors"]) == (2, 2)
    errors = {str(r["error"]["message"]) for r in await all_results(http, job_id)}
    assert errors == {"This model does not support specifying dimensions."}


async def test_a_classification_job_on_an_embedding_deployment_fails_without_splitting(
    http: httpx.AsyncClient, sim: httpx.AsyncClient
) -> None:
    # Azure's 400 OperationNotSupported is the request's: one call per group of 10 items,
    # not 11 (each item alone after the group).
    body = {"items": items(20), "labels": ["billing", "shipping"], "model": SMALL}
    job_id = await submit(http, "classification", body)
    view = await wait_job(http, job_id)
    assert (view["status"], view["counts"]["failed"]) == ("failed", 20)
    stats = await deployment_stats(sim, SMALL)
    assert (stats["requests"], stats["errors"]) == (2, 2)
    (message,) = {str(r["error"]["message"]) for r in await all_results(http, job_id)}
    assert message.startswith("The chatCompletion operation does not work with the specified")
