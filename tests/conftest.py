"""Session fixtures: real local services on free ports, started once and always stopped."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from devstack.aoai_simulator import RunningSimulator, SimulatorConfig, start_simulator
from devstack.emulators import (
    EmulatorPorts,
    EmulatorStack,
    start_emulators,
    stop_emulators,
)
from devstack.hosted_app import stack_environ
from devstack.provision import provision
from shared.core.settings import Settings, load_settings
from shared.core.store import Store, create_store
from tests.support.jobs_stack import JobsStack
from tests.support.simulator import control_plane

ROOT = Path(__file__).resolve().parents[1]
# One folder per test session, so sessions running side by side never stop each other's
# services; `make test` stops whatever is still recorded under .devstack/test even if pytest
# itself was killed.
TEST_STATE_DIR = ROOT / ".devstack" / "test" / f"session-{os.getpid()}"

# The session fixtures below: each starts a server or needs one. A test that asks for one, or
# lives in a folder of such tests, is marked `stack`; tests/unit/conftest.py refuses them.
STACK_FIXTURES = frozenset(
    {"emulators", "simulator", "store", "app_environ", "app_settings", "stack_settings"}
)
STACK_DIRS = tuple(ROOT / "tests" / name for name in ("stack", "cli", "devstack"))


def stack_fixtures_of(item: pytest.Item) -> set[str]:
    """The session fixtures of the local stack that `item` asks for, directly or not."""
    return STACK_FIXTURES & set(getattr(item, "fixturenames", ()))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        in_stack_dir = any(item.path.is_relative_to(folder) for folder in STACK_DIRS)
        if in_stack_dir or stack_fixtures_of(item):
            item.add_marker(pytest.mark.stack)


@pytest.fixture(scope="session")
def emulators() -> Iterator[EmulatorStack]:
    """Azurite (in memory) and the Cosmos DB server on free ports, for the whole session."""
    stack = start_emulators(EmulatorPorts.free(), TEST_STATE_DIR, in_memory=True)
    try:
        yield stack
    finally:
        stop_emulators(TEST_STATE_DIR, grace=1.0)
        shutil.rmtree(TEST_STATE_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def stack_settings(emulators: EmulatorStack) -> Settings:
    return load_settings(stack_environ(emulators))


@pytest.fixture(scope="session")
def simulator() -> Iterator[RunningSimulator]:
    """The Azure OpenAI simulator with its default deployments, on a free port."""
    with start_simulator(SimulatorConfig(), port=0) as sim:
        yield sim


@pytest.fixture(scope="session")
def app_environ(emulators: EmulatorStack, simulator: RunningSimulator) -> dict[str, str]:
    """The app's settings for the whole local stack."""
    return stack_environ(
        emulators,
        AZURE_OPENAI_ENDPOINT=simulator.url,
        AZURE_OPENAI_API_KEY=simulator.api_key,
        BATCH_DEPLOYMENT="gpt-4o-batch",
        AOAI_DEPLOYMENTS='{"default-chat": "gpt-4o"}',
    )


@pytest.fixture(scope="session")
def app_settings(app_environ: dict[str, str]) -> Settings:
    return load_settings(app_environ)


@pytest.fixture(scope="session")
async def store(app_settings: Settings) -> AsyncIterator[Store]:
    """The test database, provisioned once (containers, queues, claim-check container)."""
    await provision(app_settings)
    store = create_store(app_settings)
    yield store
    await store.aclose()


@pytest.fixture
async def sim_control(simulator: RunningSimulator) -> AsyncIterator[httpx.AsyncClient]:
    """The session simulator's control plane; its config and quotas are restored afterwards."""
    async with control_plane(simulator) as client:
        yield client


@pytest.fixture
async def http(stack: JobsStack) -> AsyncIterator[httpx.AsyncClient]:
    """The API of the host of the module's `stack` fixture (tests/support/jobs_stack.py), with
    its key; modules with another kind of host define their own `http`."""
    async with stack.client() as client:
        yield client
