"""The emulator launcher: idempotent start, stop only what it started, Cosmos 404 and 413
fixes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from azure.cosmos import PartitionKey
from azure.cosmos.aio import CosmosClient
from azure.cosmos.exceptions import CosmosHttpResponseError, CosmosResourceNotFoundError

from devstack.emulators import COSMOS_EMULATOR_KEY, EmulatorStack, start_emulators
from devstack.emulators.__main__ import reap_sessions
from devstack.emulators.processes import (
    StartCancelled,
    free_port,
    is_listening,
    pid_alive,
    read_pid,
    terminate,
)
from devstack.emulators.stack import HOST, ServiceSpec, start_services, stop_emulators

# A stand-in service: `PORT:DELAY ...` listens on each port DELAY seconds after start (a
# negative delay: never), then idles until stopped.
LATE_LISTENER = """
import socket, sys, time
start, held = time.monotonic(), []
for port, delay in (arg.split(":") for arg in sys.argv[1:]):
    if float(delay) < 0:
        continue
    time.sleep(max(0.0, start + float(delay) - time.monotonic()))
    sock = socket.socket()
    sock.bind(("127.0.0.1", int(port)))
    sock.listen()
    held.append(sock)
time.sleep(3600)
"""


def _listener(name: str, *ports: tuple[int, float]) -> ServiceSpec:
    argv = (sys.executable, "-c", LATE_LISTENER, *(f"{p}:{d}" for p, d in ports))
    return ServiceSpec(name, argv, tuple(p for p, _ in ports))


def test_starting_again_reuses_the_running_services(emulators: EmulatorStack) -> None:
    again = start_emulators(emulators.ports, emulators.state_dir, in_memory=True)
    assert again.started == ()
    assert read_pid(emulators.state_dir / "azurite.pid") is not None


def test_stop_leaves_services_another_state_dir_started(
    emulators: EmulatorStack, tmp_path: Path
) -> None:
    other = start_emulators(emulators.ports, tmp_path, in_memory=True)
    assert other.started == ()  # already served: used, not recorded
    assert stop_emulators(tmp_path) == []
    assert is_listening(HOST, emulators.ports.queue)
    assert is_listening(HOST, emulators.ports.cosmos)


async def test_missing_cosmos_item_answers_404(emulators: EmulatorStack) -> None:
    async with CosmosClient(
        emulators.cosmos_endpoint, COSMOS_EMULATOR_KEY, connection_verify=False
    ) as client:
        db = await client.create_database_if_not_exists("launcher-test")
        container = await db.create_container_if_not_exists("c", PartitionKey("/pk"))
        with pytest.raises(CosmosResourceNotFoundError) as caught:
            await container.read_item("missing", partition_key="p")
        assert caught.value.status_code == 404
        await container.upsert_item({"id": "present", "pk": "p"})
        found = await container.read_item("present", partition_key="p")
        assert found["id"] == "present"


def test_reap_stops_only_sessions_whose_owner_has_ended(tmp_path: Path) -> None:
    ended = subprocess.Popen(["true"])
    ended.wait()
    orphan = subprocess.Popen(["sleep", "60"], start_new_session=True)
    (tmp_path / f"session-{ended.pid}").mkdir()
    (tmp_path / f"session-{ended.pid}" / "azurite.pid").write_text(str(orphan.pid))
    (tmp_path / f"session-{os.getpid()}").mkdir()  # this session: alive, left alone
    try:
        assert reap_sessions(tmp_path) == [f"session-{ended.pid}"]
        assert orphan.wait(timeout=5) is not None
        assert [p.name for p in tmp_path.iterdir()] == [f"session-{os.getpid()}"]
    finally:
        orphan.kill()
        orphan.wait()


def test_a_zombie_counts_as_ended() -> None:
    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 5
    while pid_alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.05)  # exited but not reaped until wait(): a zombie
    try:
        assert not pid_alive(child.pid)
        assert pid_alive(os.getpid())
    finally:
        child.wait()


def test_a_port_that_listens_late_is_waited_for(tmp_path: Path) -> None:
    # Azurite's shape: queue first, table seconds later (as under load).
    first, queue, table = free_port(), free_port(), free_port()
    specs = [_listener("first", (first, 0)), _listener("late", (queue, 0), (table, 2.0))]
    try:
        started = start_services(specs, tmp_path, timeout=60)
        assert started == ("first", "late")
        assert is_listening(HOST, table)
    finally:
        terminate("first", tmp_path, grace=2)
        terminate("late", tmp_path, grace=2)


@pytest.mark.slow
def test_a_port_that_never_listens_stops_everything_started(tmp_path: Path) -> None:
    first, queue, table = free_port(), free_port(), free_port()
    specs = [_listener("first", (first, 0)), _listener("late", (queue, 0), (table, -1))]
    with pytest.raises(TimeoutError, match=f"late did not listen on {HOST}:{table}"):
        start_services(specs, tmp_path, timeout=8)
    for name in ("first", "late"):
        assert read_pid(tmp_path / f"{name}.pid") is None
        assert not (tmp_path / f"{name}.pid").exists()
    assert not is_listening(HOST, first)
    assert not is_listening(HOST, queue)


def test_a_start_cancelled_while_waiting_stops_what_it_started(tmp_path: Path) -> None:
    first, late = free_port(), free_port()
    specs = [_listener("first", (first, 0)), _listener("late", (late, -1))]
    with pytest.raises(StartCancelled):
        # Cancelled as soon as the first service is up, as a Ctrl-C during `make run` is.
        start_services(specs, tmp_path, cancelled=lambda: is_listening(HOST, first))
    assert read_pid(tmp_path / "first.pid") is None
    assert not is_listening(HOST, first)


# The SDK sends the 2 MB body as bytes, which aiohttp warns may block the loop: it may here.
@pytest.mark.filterwarnings("ignore:Sending a large body:ResourceWarning")
async def test_a_cosmos_item_over_2_mb_answers_413(emulators: EmulatorStack) -> None:
    """Cosmos DB refuses an item over its 2 MB limit; the server stored any size."""
    async with CosmosClient(
        emulators.cosmos_endpoint, COSMOS_EMULATOR_KEY, connection_verify=False
    ) as client:
        db = await client.create_database_if_not_exists("launcher-test")
        container = await db.create_container_if_not_exists("c", PartitionKey("/pk"))
        big = {"id": "big", "pk": "p", "text": "x" * (2 * 1024 * 1024)}
        for write in (container.upsert_item, container.create_item):
            with pytest.raises(CosmosHttpResponseError) as caught:
                await write(big)
            assert caught.value.status_code == 413
        with pytest.raises(CosmosResourceNotFoundError):
            await container.read_item("big", partition_key="p")
        fits = {"id": "fits", "pk": "p", "text": "x" * (2 * 1024 * 1024 - 1024)}
        await container.upsert_item(fits)
