"""Cosmos DB outages and restarts keep the data: persistence, fault proxy, pause, restart.

Each test runs its own Cosmos DB server (the session's one is shared by every other test).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from azure.core.exceptions import ServiceRequestError
from azure.cosmos import PartitionKey
from azure.cosmos.aio import ContainerProxy, CosmosClient
from azure.cosmos.exceptions import CosmosResourceNotFoundError
from azure.storage.queue.aio import QueueClient

from devstack.emulators import COSMOS_EMULATOR_KEY, EmulatorPorts, EmulatorStack
from devstack.emulators.outage import (
    FaultMode,
    FaultProxy,
    cosmos_paused,
    restart_azurite,
    restart_cosmos,
)
from devstack.emulators.processes import read_pid, terminate
from devstack.emulators.stack import (
    COSMOS_DATA_FILE,
    HOST,
    azurite_spec,
    cosmos_spec,
    start_service,
)
from tests.devstack.functions_host.helpers import wait_until

StartCosmos = Callable[..., EmulatorStack]


@pytest.fixture
def start_cosmos(tmp_path: Path) -> Iterator[StartCosmos]:
    """Start a Cosmos DB server alone, as start_emulators would; stopped at the end."""
    stacks: list[EmulatorStack] = []

    def start(*, in_memory: bool) -> EmulatorStack:
        ports = stacks[0].ports if stacks else EmulatorPorts.free()
        stack = EmulatorStack(ports=ports, state_dir=tmp_path, in_memory=in_memory)
        start_service(cosmos_spec(ports, tmp_path, in_memory=in_memory), tmp_path, timeout=60)
        stacks.append(stack)
        return stack

    yield start
    terminate("cosmos", tmp_path, grace=2)


def _client(endpoint: str) -> CosmosClient:
    return CosmosClient(endpoint, COSMOS_EMULATOR_KEY, connection_verify=False)


async def _write(endpoint: str, count: int) -> None:
    async with _client(endpoint) as client:
        db = await client.create_database_if_not_exists("outage-test")
        container = await db.create_container_if_not_exists("items", PartitionKey("/pk"))
        for i in range(count):
            await container.upsert_item({"id": f"item-{i}", "pk": "p", "n": i})


async def _read_all(endpoint: str) -> list[int]:
    async with _client(endpoint) as client:
        container = client.get_database_client("outage-test").get_container_client("items")
        return sorted([item["n"] async for item in container.query_items("SELECT * FROM c")])


def _crash(stack: EmulatorStack) -> None:
    """SIGKILL: only what was saved before survives."""
    pid = read_pid(stack.state_dir / "cosmos.pid")
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    terminate("cosmos", stack.state_dir, grace=5)


async def test_a_persistent_server_keeps_items_across_a_restart(
    start_cosmos: StartCosmos,
) -> None:
    stack = start_cosmos(in_memory=False)
    await _write(stack.cosmos_endpoint, 5)
    terminate("cosmos", stack.state_dir)  # what `make stop` and Ctrl-C on `make run` do

    start_cosmos(in_memory=False)

    assert await _read_all(stack.cosmos_endpoint) == [0, 1, 2, 3, 4]
    # Resource ids continue after the restored ones: new items never collide with old ones.
    async with _client(stack.cosmos_endpoint) as client:
        container = client.get_database_client("outage-test").get_container_client("items")
        await container.create_item({"id": "new", "pk": "p", "n": 99})
        assert (await container.read_item("item-0", partition_key="p"))["n"] == 0
        assert len([i async for i in container.query_items("SELECT * FROM c")]) == 6


async def test_a_persistent_server_saves_changes_while_it_runs(
    start_cosmos: StartCosmos,
) -> None:
    stack = start_cosmos(in_memory=False)
    await _write(stack.cosmos_endpoint, 3)
    data = stack.state_dir / COSMOS_DATA_FILE
    await wait_until(
        lambda: data.exists() and '"id":"item-2"' in data.read_text(), 30, what="a save"
    )
    _crash(stack)

    start_cosmos(in_memory=False)

    assert await _read_all(stack.cosmos_endpoint) == [0, 1, 2]


async def test_in_memory_starts_empty_but_restart_cosmos_keeps_the_data(
    start_cosmos: StartCosmos,
) -> None:
    stack = start_cosmos(in_memory=True)
    await _write(stack.cosmos_endpoint, 4)

    restart_cosmos(stack)
    assert await _read_all(stack.cosmos_endpoint) == [0, 1, 2, 3]

    terminate("cosmos", stack.state_dir)
    start_cosmos(in_memory=True)  # a new test session: nothing from the last one
    with pytest.raises(CosmosResourceNotFoundError):
        await _read_all(stack.cosmos_endpoint)


@pytest.fixture
async def proxied(start_cosmos: StartCosmos) -> AsyncIterator[tuple[FaultProxy, ContainerProxy]]:
    stack = start_cosmos(in_memory=True)
    with FaultProxy(stack.ports.cosmos) as proxy:
        await _write(proxy.endpoint(), 2)
        async with _client(proxy.endpoint()) as client:
            db = client.get_database_client("outage-test")
            yield proxy, db.get_container_client("items")


def _connect(port: int) -> socket.socket:
    return socket.create_connection((HOST, port), timeout=5)


def _exchange(port: int) -> bytes:
    with _connect(port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        return sock.recv(1)


async def test_a_cut_proxy_refuses_then_restore_brings_the_data_back(
    proxied: tuple[FaultProxy, ContainerProxy],
) -> None:
    proxy, container = proxied
    proxy.cut()
    assert proxy.mode is FaultMode.REFUSE
    with pytest.raises(ConnectionRefusedError):
        _connect(proxy.port)
    # The client keeps going through the proxy after its first call (the account document
    # names the proxy), so the outage reaches it.
    with pytest.raises(ServiceRequestError):
        await container.read_item("item-0", partition_key="p")

    proxy.restore()

    assert proxy.mode is None
    assert (await container.read_item("item-1", partition_key="p"))["n"] == 1


async def test_a_reset_proxy_accepts_and_resets(
    proxied: tuple[FaultProxy, ContainerProxy],
) -> None:
    proxy, container = proxied
    proxy.cut(FaultMode.RESET)
    with pytest.raises(ConnectionResetError):  # not an orderly close, not a refusal
        _exchange(proxy.port)
    with pytest.raises(ServiceRequestError):
        await container.read_item("item-0", partition_key="p")

    proxy.restore()

    assert (await container.read_item("item-0", partition_key="p"))["n"] == 0


async def test_a_hung_proxy_answers_nothing_until_restored(
    proxied: tuple[FaultProxy, ContainerProxy],
) -> None:
    proxy, container = proxied
    proxy.cut(FaultMode.HANG)
    pending = asyncio.ensure_future(container.read_item("item-1", partition_key="p"))
    done, _ = await asyncio.wait({pending}, timeout=2)
    assert not done  # no refusal, no answer: a timeout for a client that sets one

    proxy.restore()

    item = await asyncio.wait_for(pending, 60)
    assert item["n"] == 1


async def test_a_paused_server_answers_after_resume(start_cosmos: StartCosmos) -> None:
    stack = start_cosmos(in_memory=True)
    await _write(stack.cosmos_endpoint, 2)
    async with httpx.AsyncClient(verify=False) as http:  # noqa: S501 - the emulator's own cert
        with cosmos_paused(stack):
            with _connect(stack.ports.cosmos):
                pass  # the kernel still accepts connections: not refused
            with pytest.raises(httpx.TimeoutException):
                await http.get(stack.cosmos_endpoint, timeout=2)
        answer = await http.get(stack.cosmos_endpoint, timeout=30)
    assert answer.status_code in (200, 401)
    assert await _read_all(stack.cosmos_endpoint) == [0, 1]


def test_an_unreadable_store_fails_the_start_and_is_kept(
    start_cosmos: StartCosmos, tmp_path: Path
) -> None:
    data = tmp_path / COSMOS_DATA_FILE
    data.write_text("{not json\n")
    with pytest.raises(RuntimeError, match="cosmos exited before it listened"):
        start_cosmos(in_memory=False)
    assert data.read_text() == "{not json\n"  # never replaced by an empty store
    assert "move it away to start empty" in (tmp_path / "cosmos.log").read_text()


async def test_restart_azurite_keeps_queued_messages_when_persistent(tmp_path: Path) -> None:
    ports = EmulatorPorts.free()
    stack = EmulatorStack(ports=ports, state_dir=tmp_path, in_memory=False)
    start_service(azurite_spec(ports, tmp_path, in_memory=False), tmp_path, timeout=60)
    try:
        queue = QueueClient.from_connection_string(stack.storage_connection_string, "kept")
        async with queue:
            await queue.create_queue()
            await queue.send_message("one")
            await queue.send_message("two")
        restart_azurite(stack)
        queue = QueueClient.from_connection_string(stack.storage_connection_string, "kept")
        async with queue:
            assert sorted([m.content async for m in queue.receive_messages()]) == ["one", "two"]
    finally:
        terminate("azurite", tmp_path, grace=5)


def test_restart_azurite_refuses_an_in_memory_stack(tmp_path: Path) -> None:
    stack = EmulatorStack(ports=EmulatorPorts.free(), state_dir=tmp_path, in_memory=True)
    with pytest.raises(RuntimeError, match="in-memory"):
        restart_azurite(stack)
