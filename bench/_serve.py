"""Run servers as child processes for a benchmark, so they never share a GIL or an event loop
with the load generator: any server (`serve`), the Azure OpenAI simulator (`serve_simulator`),
the emulators with the simulator (`local_stack`), and the app under one local Functions host
on all of them (`app_host`) or under several (`app_hosts`, processes sharing one stack)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from devstack.aoai_simulator import SimulatorConfig
from devstack.emulators import EmulatorPorts, start_emulators, stop_emulators
from devstack.emulators.processes import free_port
from devstack.hosted_app import AppHost, make_app_dir, run_app_host, stack_environ
from devstack.provision import provision
from shared.core.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def serve(args: list[str], ready_url: str, timeout: float = 30.0) -> Iterator[None]:
    """`python <args>` from the repository root, until `ready_url` answers; stopped after."""
    process = subprocess.Popen([sys.executable, *args], cwd=ROOT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                httpx.get(ready_url, timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start: {args}") from None
                time.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def serve_simulator(
    config: SimulatorConfig, folder: Path, *, log_level: str = "warning"
) -> Iterator[str]:
    """The simulator with `config` (written into `folder`) on a free port; yields its URL."""
    config_file = folder / "simulator.json"
    config_file.write_text(config.model_dump_json())
    port = free_port()
    args = ["-m", "devstack.aoai_simulator", "--port", str(port), "--config", str(config_file)]
    url = f"http://127.0.0.1:{port}"
    with serve([*args, "--log-level", log_level], f"{url}/sim/stats"):
        yield url


@dataclass(frozen=True)
class LocalStack:
    """Emulators and the simulator, running; `environ` is the app's settings on them."""

    tmp: Path
    environ: dict[str, str]
    sim_url: str
    sim_key: str


@contextmanager
def local_stack(config: SimulatorConfig) -> Iterator[LocalStack]:
    """Azurite and the Cosmos DB server (in memory) and the simulator with `config`, in a
    temporary folder; all stopped after."""
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "emulators"
        emulators = start_emulators(EmulatorPorts.free(), state, in_memory=True)
        try:
            with serve_simulator(config, Path(tmp)) as sim_url:
                sim_key = config.api_keys[0]
                environ = stack_environ(
                    emulators, AZURE_OPENAI_ENDPOINT=sim_url, AZURE_OPENAI_API_KEY=sim_key
                )
                yield LocalStack(Path(tmp), environ, sim_url, sim_key)
        finally:
            stop_emulators(state, grace=1.0)


@contextmanager
def app_host(config: SimulatorConfig) -> Iterator[tuple[AppHost, LocalStack]]:
    """The app, provisioned, under one local Functions host on a `local_stack(config)`."""
    with local_stack(config) as stack:
        asyncio.run(provision(load_settings(stack.environ)))
        with run_app_host(make_app_dir(stack.tmp / "app", stack.environ)) as host:
            yield host, stack


@contextmanager
def app_hosts(config: SimulatorConfig, count: int) -> Iterator[tuple[list[AppHost], LocalStack]]:
    """The app, provisioned, under `count` local Functions hosts (one process each, as
    instances of one app) on one `local_stack(config)`."""
    with local_stack(config) as stack, ExitStack() as running:
        asyncio.run(provision(load_settings(stack.environ)))
        hosts = [
            running.enter_context(run_app_host(make_app_dir(stack.tmp / f"app-{i}", stack.environ)))
            for i in range(count)
        ]
        yield hosts, stack
