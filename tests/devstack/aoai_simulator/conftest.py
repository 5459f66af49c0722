"""One simulator per test session, on a free port, driven through the real openai SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from openai import AsyncAzureOpenAI, AzureOpenAI, OpenAI

from devstack.aoai_simulator import BatchConfig, RunningSimulator, SimulatorConfig, start_simulator

API_VERSION = "2025-04-01-preview"


class Control:
    """The simulator's control plane (`/sim/...`)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def patch(self, change: dict[str, Any]) -> dict[str, Any]:
        response = httpx.patch(f"{self.url}/sim/config", json=change)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(f"{self.url}/sim/stats").json()
        return result

    def last(self, deployment: str) -> dict[str, Any] | None:
        """The deployment's last request body as it arrived, or None."""
        response = httpx.get(f"{self.url}/sim/requests/{deployment}/last")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def reset(self, config: bool = True) -> None:
        httpx.post(f"{self.url}/sim/reset", json={"config": config}).raise_for_status()


@pytest.fixture(scope="session")
def sim() -> Iterator[RunningSimulator]:
    pace = BatchConfig(
        validating_seconds=0.1,
        in_progress_seconds=0.2,
        finalizing_seconds=0.1,
        cancelling_seconds=0.1,
    )
    with start_simulator(SimulatorConfig(batch=pace), port=0) as running:
        yield running


@pytest.fixture
def control(sim: RunningSimulator) -> Iterator[Control]:
    """The control plane; every test starts from the session's config and empty stats."""
    plane = Control(sim.url)
    plane.reset()
    yield plane
    plane.reset()


@pytest.fixture
def client(sim: RunningSimulator, control: Control) -> Iterator[AzureOpenAI]:
    with AzureOpenAI(azure_endpoint=sim.url, api_key=sim.api_key, api_version=API_VERSION) as c:
        yield c


@pytest.fixture
async def aclient(sim: RunningSimulator, control: Control) -> AsyncIterator[AsyncAzureOpenAI]:
    async with AsyncAzureOpenAI(
        azure_endpoint=sim.url, api_key=sim.api_key, api_version=API_VERSION
    ) as c:
        yield c


@pytest.fixture
def v1(sim: RunningSimulator, control: Control) -> Iterator[OpenAI]:
    """The openai SDK on Azure's v1 shape: `base_url=<resource>/openai/v1`, no api-version."""
    with OpenAI(base_url=f"{sim.url}/openai/v1", api_key=sim.api_key) as c:
        yield c
