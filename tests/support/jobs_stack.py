"""Helpers for the end-to-end job tests: a host with its own queues and simulator, submitting,
waiting and reading results over HTTP, and dropping raw messages with azure-storage-queue."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.storage.queue import TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

from devstack.aoai_simulator import RunningSimulator, SimulatorConfig, start_simulator
from devstack.aoai_simulator.stats import input_key
from devstack.emulators import EmulatorStack
from devstack.hosted_app import AppHost, fresh_queues
from shared.core.store import Store
from tests.support.hosts import HOST_SETTINGS, app_host

queue_names = fresh_queues  # the name other tests import

TERMINAL = {"succeeded", "partially_failed", "failed", "cancelled"}

# Fast feedback: short backoff, poison sweep every 2 s, small slices.
JOB_SETTINGS = {
    **HOST_SETTINGS,
    "JOB_BACKOFF_SECONDS": "1",
    "POISON_SWEEP_SCHEDULE": "*/2 * * * * *",
}


@dataclass(frozen=True)
class JobsStack:
    host: AppHost
    simulator: RunningSimulator
    environ: dict[str, str]
    connection_string: str

    @property
    def embedding_queue(self) -> str:
        return self.environ["EMBEDDING_QUEUE"]

    @property
    def classification_queue(self) -> str:
        return self.environ["CLASSIFICATION_QUEUE"]

    def log(self) -> str:
        return self.host.log.read_text(errors="replace")

    def client(self) -> httpx.AsyncClient:
        """An HTTP client for the host's API, with the function key (`async with` it)."""
        return httpx.AsyncClient(base_url=self.host.url, headers=self.host.headers(), timeout=30)


@contextmanager
def jobs_stack(
    app_environ: Mapping[str, str],
    connection_string: str,
    app_dir: Path,
    *,
    prefix: str,
    settings: Mapping[str, str] | None = None,
    simulator: SimulatorConfig | None = None,
) -> Iterator[JobsStack]:
    """A simulator and a host of our own, listening on queues of our own."""
    with start_simulator(simulator or SimulatorConfig(), port=0) as sim:
        environ = {
            **app_environ,
            **JOB_SETTINGS,
            **fresh_queues(prefix),
            "AZURE_OPENAI_ENDPOINT": sim.url,
            "AZURE_OPENAI_API_KEY": sim.api_key,
            **(settings or {}),
        }
        with app_host(environ, app_dir) as host:
            yield JobsStack(host, sim, environ, connection_string)


def stack_fixture(
    prefix: str,
    *,
    settings: Mapping[str, str] | None = None,
    simulator: SimulatorConfig | None = None,
) -> Any:
    """A test module's `stack` fixture: `jobs_stack` once per module, with queues named after
    `prefix` (the `http` fixture in conftest.py talks to its host)."""

    @pytest.fixture(scope="module")
    def stack(
        app_environ: dict[str, str],
        emulators: EmulatorStack,
        store: Store,  # the database, provisioned
        tmp_path_factory: pytest.TempPathFactory,
    ) -> Iterator[JobsStack]:
        with jobs_stack(
            app_environ,
            emulators.storage_connection_string,
            tmp_path_factory.mktemp(prefix),
            prefix=prefix,
            settings=settings,
            simulator=simulator,
        ) as running:
            yield running

    return stack


def items(
    n: int, text: str = "item number {i} about shipping and delivery"
) -> list[dict[str, str]]:
    return [{"id": f"i{i}", "text": text.format(i=i)} for i in range(n)]


async def submit(http: httpx.AsyncClient, kind: str, body: dict[str, Any]) -> str:
    route = "embeddings" if kind == "embedding" else "classifications"
    r = await http.post(f"/jobs/{route}", json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["job_id"])


async def wait_job(http: httpx.AsyncClient, job_id: str, within: float = 60) -> dict[str, Any]:
    """Poll until the job is terminal; its view."""
    deadline = asyncio.get_running_loop().time() + within
    view: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        r = await http.get(f"/jobs/{job_id}", params={"page_size": 1})
        if r.status_code == 200:
            view = r.json()
            if view["status"] in TERMINAL:
                return view
        await asyncio.sleep(0.5)
    raise AssertionError(f"job {job_id} not finished in {within}s: {view}")


async def all_results(http: httpx.AsyncClient, job_id: str, page_size: int = 500) -> list[Any]:
    results: list[Any] = []
    token: str | None = None
    while True:
        params: dict[str, Any] = {"page_size": page_size}
        if token:
            params["continuation"] = token
        r = await http.get(f"/jobs/{job_id}", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        results.extend(body["results"])
        token = body["continuation"]
        if not token:
            return results


async def send_raw(
    connection_string: str, queue: str, payload: str | dict[str, Any], *, base64: bool = True
) -> None:
    """Drop a message the way another system would, with azure-storage-queue."""
    text = payload if isinstance(payload, str) else json.dumps(payload)
    client = QueueClient.from_connection_string(
        connection_string,
        queue,
        message_encode_policy=TextBase64EncodePolicy() if base64 else None,
    )
    async with client:
        await client.send_message(text)


async def wait_for_job_doc(http: httpx.AsyncClient, job_id: str, within: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        if (await http.get(f"/jobs/{job_id}")).status_code == 200:
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"no job {job_id}")


async def wait_queue_empty(connection_string: str, queue: str, within: float = 90) -> None:
    """Poll until `queue` holds no message, visible or not (delayed and leased ones count)."""
    client = QueueClient.from_connection_string(connection_string, queue)
    async with client:
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            props = await client.get_queue_properties()
            if not props.approximate_message_count:
                return
            await asyncio.sleep(0.5)
    raise AssertionError(f"queue {queue} not empty in {within}s")


async def upstream_sends(stack: JobsStack, texts: list[str]) -> dict[str, int]:
    """How many answered requests carried each of `texts`, counted by the simulator."""
    keys = {input_key(text): text for text in texts}
    async with httpx.AsyncClient(base_url=stack.simulator.url) as sim:
        r = await sim.post("/sim/inputs", json={"keys": list(keys)})
        r.raise_for_status()
    return {keys[key]: n for key, n in r.json()["counts"].items()}
