"""Fixture apps copied into tmp dirs, with local.settings.json pointing at the test Azurite."""

from __future__ import annotations

import base64
import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.queue.aio import QueueClient

from devstack.emulators import EmulatorStack
from devstack.functions_host import FunctionsHost

HERE = Path(__file__).resolve().parent
FUNCTION_KEY = "test-function-key"
MASTER_KEY = "test-master-key"
FAR_SCHEDULE = "0 0 0 1 1 *"  # once a year: the timer stays quiet unless a test wants it

MakeApp = Callable[..., Path]


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def queue_names() -> dict[str, str]:
    return {
        key: unique(key.split("_")[0].lower())
        for key in ("OUT_QUEUE", "FAIL_QUEUE", "RECORD_QUEUE", "BLOCK_QUEUE", "SLOW_QUEUE")
    }


@pytest.fixture
def make_app(tmp_path: Path, emulators: EmulatorStack, queue_names: dict[str, str]) -> MakeApp:
    """Copy a fixture app and write its local.settings.json; `queues` patches host.json."""

    def make(
        source: str = "classic_app",
        *,
        values: dict[str, str] | None = None,
        queues: dict[str, Any] | None = None,
    ) -> Path:
        app_dir = tmp_path / unique(source)
        shutil.copytree(HERE / source, app_dir)
        all_values = {
            "FUNCTIONS_WORKER_RUNTIME": "python",
            "AzureWebJobsStorage": emulators.storage_connection_string,
            "IdentityStorage__queueServiceUri": emulators.queue_endpoint,
            "LOCAL_FUNCTION_KEY": FUNCTION_KEY,
            "LOCAL_MASTER_KEY": MASTER_KEY,
            "PYTHON_ENABLE_INIT_INDEXING": "1",
            "TICK_SCHEDULE": FAR_SCHEDULE,
            "STARTUP_SCHEDULE": FAR_SCHEDULE,
            "FLAKY_SCHEDULE": FAR_SCHEDULE,
            "MARK_DIR": str(tmp_path),
            "SLOW_SECONDS": "1",
            **queue_names,
            **(values or {}),
        }
        local = {"IsEncrypted": False, "Values": all_values}
        (app_dir / "local.settings.json").write_text(json.dumps(local, indent=2))
        if queues:
            host_json = json.loads((app_dir / "host.json").read_text())
            host_json["extensions"]["queues"].update(queues)
            (app_dir / "host.json").write_text(json.dumps(host_json))
        return app_dir

    return make


@pytest.fixture(autouse=True)
def clean_environ() -> Iterator[None]:
    """Each host puts its app's Values into os.environ; give every test a fresh start."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
async def start_host() -> AsyncIterator[Callable[..., Any]]:
    """Start in-process hosts on free ports; all are stopped at the end of the test."""
    hosts: list[FunctionsHost] = []

    async def start(app_dir: Path, **kwargs: Any) -> FunctionsHost:
        host = FunctionsHost(app_dir, port=0, shutdown_grace=5, **kwargs)
        await host.start()
        hosts.append(host)
        return host

    yield start
    for host in hosts:
        await host.stop()


@pytest.fixture
async def queue_factory(emulators: EmulatorStack) -> AsyncIterator[Callable[[str], QueueClient]]:
    """Async queue clients on the test Azurite (created, closed at the end)."""
    clients: list[QueueClient] = []

    def make(name: str) -> QueueClient:
        client = QueueClient.from_connection_string(emulators.storage_connection_string, name)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
