"""The Batch API tests' simulator (fast batch phases, one per test module) and the app's
settings pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from devstack.aoai_simulator import RunningSimulator, SimulatorConfig, start_simulator
from devstack.aoai_simulator.config import BatchConfig
from shared.core.store import Store
from tests.support.simulator import control_plane

FAST = BatchConfig(
    validating_seconds=0.1, in_progress_seconds=0.1, finalizing_seconds=0.1, cancelling_seconds=0.1
)


@pytest.fixture(scope="module")
def batch_sim() -> Iterator[RunningSimulator]:
    with start_simulator(SimulatorConfig(batch=FAST), port=0) as sim:
        yield sim


@pytest.fixture
async def sim(batch_sim: RunningSimulator) -> AsyncIterator[httpx.AsyncClient]:
    """The control plane; config and quota restored after each test."""
    async with control_plane(batch_sim) as client:
        yield client


@pytest.fixture
def environ(
    app_environ: dict[str, str], batch_sim: RunningSimulator, store: Store
) -> dict[str, str]:
    return {
        **app_environ,
        "AZURE_OPENAI_ENDPOINT": batch_sim.url,
        "AZURE_OPENAI_API_KEY": batch_sim.api_key,
    }
