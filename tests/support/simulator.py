"""The Azure OpenAI simulator's control plane, for tests that change its config or quotas."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx

from devstack.aoai_simulator import RunningSimulator, SimulatorConfig, start_simulator


@asynccontextmanager
async def control_plane(sim: RunningSimulator) -> AsyncIterator[httpx.AsyncClient]:
    """A client for `sim`'s `/sim/...` routes; its config and quotas are reset on the way out,
    so the next test starts from the simulator's defaults."""
    async with httpx.AsyncClient(base_url=sim.url) as client:
        yield client
        (await client.post("/sim/reset", json={"config": True})).raise_for_status()


@contextmanager
def two_simulators() -> Iterator[tuple[RunningSimulator, RunningSimulator]]:
    """Two simulators with the default config, on free ports: two backends' accounts."""
    with (
        start_simulator(SimulatorConfig(), port=0) as first,
        start_simulator(SimulatorConfig(), port=0) as second,
    ):
        yield first, second


def backends_setting(*sims: RunningSimulator) -> str:
    """AOAI_BACKENDS for these simulators, first to last in priority, named first, second..."""
    order = ("first", "second", "third", "fourth")
    return json.dumps(
        [
            {"name": order[i], "endpoint": sim.url, "priority": i + 1, "api_key": sim.api_key}
            for i, sim in enumerate(sims)
        ]
    )


# The simulator's own route: the lines of Batch API jobs it works through in its own time,
# including those of batches another test module left running. Not a request anybody sent.
BATCH_LINES_ROUTE = "batch"


def requests_sent(stats: dict[str, Any]) -> int:
    """Requests that reached the simulator from a client, from its `/sim/stats`: the total less
    the Batch API lines it ran itself (a CI run counted one in a test that sent nothing)."""
    batch = stats["routes"].get(BATCH_LINES_ROUTE, {"requests": 0})
    return int(stats["total"]["requests"]) - int(batch["requests"])


async def requests_sent_to(url: str) -> int:
    """`requests_sent` of the simulator at `url`."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as sim:
        return requests_sent((await sim.get("/sim/stats")).json())
