"""Classification on a reasoning deployment (o-series, gpt-5): the model spends hidden tokens
out of `max_completion_tokens` before it writes (the simulator does as Azure does). Before,
the answer budget was sized for the JSON alone, so the reasoning used it up: every answer
came back `length` and empty, and every item failed as `invalid_answer`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from devstack.aoai_simulator import SimulatorConfig
from devstack.aoai_simulator.config import DeploymentConfig, default_deployments
from shared.core.store import USAGE, Store
from tests.support.jobs_stack import JobsStack, all_results, stack_fixture, submit, wait_job
from tests.support.samples import LABELS, TICKET_TEXTS, new_id, tickets
from tests.support.simulator import control_plane

O4_MINI = DeploymentConfig(name="o4-mini", model="o4-mini", kind="chat", model_version="2025-04-16")
ITEMS_PER_REQUEST = 4

stack = stack_fixture(
    "reason",
    settings={
        "CLASSIFY_DEPLOYMENT": "o4-mini",
        "CLASSIFY_ITEMS_PER_REQUEST": str(ITEMS_PER_REQUEST),
    },
    simulator=SimulatorConfig(deployments=[*default_deployments(), O4_MINI]),
)

# The simulator picks the label sharing a word with the text (tests/support/samples.py).
EXPECTED = ["billing", "shipping", "technical", "billing", "shipping"]


@pytest.fixture
async def sim(stack: JobsStack) -> AsyncIterator[httpx.AsyncClient]:
    async with control_plane(stack.simulator) as client:
        yield client


async def usage_docs(store: Store, job_id: str) -> list[dict[str, Any]]:
    return await store.query(USAGE, "SELECT * FROM c WHERE c.job_id = @j", {"@j": job_id})


async def classify(http: httpx.AsyncClient, n: int) -> str:
    job_id = new_id("reason")
    await submit(http, "classification", {"job_id": job_id, "items": tickets(n), "labels": LABELS})
    view = await wait_job(http, job_id, within=90)
    results = await all_results(http, job_id)
    assert [r.get("error") for r in results if r["status"] != "succeeded"] == []
    assert view["status"] == "succeeded", view
    labels = {r["item_id"]: r["labels"] for r in results}
    assert labels == {f"t{i}": [EXPECTED[i % len(TICKET_TEXTS)]] for i in range(n)}
    return job_id


async def test_a_classification_job_on_a_reasoning_deployment_succeeds(
    http: httpx.AsyncClient, sim: httpx.AsyncClient, store: Store
) -> None:
    job_id = await classify(http, 12)
    stats = (await sim.get("/sim/stats")).json()["deployments"]["o4-mini"]
    # Three requests of four items; each sent before the host knew the deployment reasons
    # (the first, and any sent beside it) was cut short by its reasoning and sent once more.
    assert 3 < stats["requests"] <= 6
    # Every call is counted, the cut ones too: their reasoning is billed.
    docs = await usage_docs(store, job_id)
    assert len(docs) == stats["requests"]
    assert sum(d["completion_tokens"] for d in docs) == stats["completion_tokens"]
    # The hidden tokens among them are recorded as such: every document, the job's usage.
    assert all(d["reasoning_tokens"] > 0 for d in docs)
    assert sum(d["reasoning_tokens"] for d in docs) == stats["reasoning_tokens"]

    # Known now: the next job's requests leave room from the start, none is sent twice.
    (await sim.post("/sim/reset")).raise_for_status()
    await classify(http, 12)
    stats = (await sim.get("/sim/stats")).json()["deployments"]["o4-mini"]
    assert stats["requests"] == 3
