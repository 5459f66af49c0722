"""Start and stop Azurite and the Cosmos DB server, with readiness waits.

Starting twice is harmless: a service whose recorded process still runs is reused, and a port
something else already serves is used without being recorded (so `stop` leaves it alone).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from devstack.emulators.processes import (
    free_port,
    is_listening,
    read_pid,
    spawn,
    terminate,
    wait_listening,
)

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
DEFAULT_STATE_DIR = HERE.parents[1] / ".devstack" / "emulators"

# Well-known development credentials published by Microsoft for Azurite and the Cosmos DB
# emulator. They unlock nothing outside this machine.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
COSMOS_EMULATOR_KEY = (
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
)


@dataclass(frozen=True)
class EmulatorPorts:
    blob: int = 10000
    queue: int = 10001
    table: int = 10002
    cosmos: int = 8081

    @classmethod
    def free(cls) -> EmulatorPorts:
        return cls(blob=free_port(), queue=free_port(), table=free_port(), cosmos=free_port())


@dataclass(frozen=True)
class EmulatorStack:
    """Where the running emulators answer, and the settings an app needs to reach them."""

    ports: EmulatorPorts
    state_dir: Path
    started: tuple[str, ...] = field(default=())

    @property
    def blob_endpoint(self) -> str:
        return f"http://{HOST}:{self.ports.blob}/{AZURITE_ACCOUNT}"

    @property
    def queue_endpoint(self) -> str:
        return f"http://{HOST}:{self.ports.queue}/{AZURITE_ACCOUNT}"

    @property
    def table_endpoint(self) -> str:
        return f"http://{HOST}:{self.ports.table}/{AZURITE_ACCOUNT}"

    @property
    def storage_connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={self.blob_endpoint};"
            f"QueueEndpoint={self.queue_endpoint};TableEndpoint={self.table_endpoint};"
        )

    @property
    def cosmos_endpoint(self) -> str:
        return f"https://{HOST}:{self.ports.cosmos}"

    def stop(self) -> None:
        stop_emulators(self.state_dir)


def _node_bin(name: str) -> Path:
    path = HERE / "node_modules" / ".bin" / name
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: run `make setup` (npm ci in devstack/emulators) first"
        )
    return path


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise FileNotFoundError("node is not on PATH: install Node.js 18+ (see README)")
    return node


def _azurite_argv(ports: EmulatorPorts, state_dir: Path, in_memory: bool) -> list[str]:
    argv = [
        str(_node_bin("azurite")),
        "--skipApiVersionCheck",  # current azure-storage SDKs send newer API versions
        "--loose",
        "--disableProductStyleUrl",
        "--blobHost", HOST, "--blobPort", str(ports.blob),
        "--queueHost", HOST, "--queuePort", str(ports.queue),
        "--tableHost", HOST, "--tablePort", str(ports.table),
    ]  # fmt: skip
    if in_memory:
        argv.append("--inMemoryPersistence")
    else:
        data = state_dir / "azurite-data"
        data.mkdir(parents=True, exist_ok=True)
        argv += ["--location", str(data)]
    return argv


def _cosmos_argv(ports: EmulatorPorts) -> list[str]:
    return [_node(), str(HERE / "cosmos-launcher.js"), "--host", HOST, "--port", str(ports.cosmos)]


def _start_one(name: str, argv: list[str], port: int, state_dir: Path, timeout: float) -> bool:
    """Start a service unless it already runs. True if this call started it."""
    if read_pid(state_dir / f"{name}.pid") is not None and is_listening(HOST, port):
        log.info("%s already running on %s:%d", name, HOST, port)
        return False
    if is_listening(HOST, port):
        log.warning("%s:%d is already served by another process; using it as %s", HOST, port, name)
        return False
    pid = spawn(name, argv, state_dir, cwd=HERE)
    wait_listening(name, HOST, port, pid, timeout)
    log.info("%s ready on %s:%d (pid %d)", name, HOST, port, pid)
    return True


def start_emulators(
    ports: EmulatorPorts | None = None,
    state_dir: Path = DEFAULT_STATE_DIR,
    *,
    in_memory: bool = False,
    timeout: float = 60.0,
) -> EmulatorStack:
    """Start Azurite (blob, queue, table) and the Cosmos DB server; wait until both listen."""
    ports = ports or EmulatorPorts()
    state_dir.mkdir(parents=True, exist_ok=True)
    started: list[str] = []
    azurite_argv = _azurite_argv(ports, state_dir, in_memory)
    if _start_one("azurite", azurite_argv, ports.queue, state_dir, timeout):
        started.append("azurite")
    for port in (ports.blob, ports.table):
        if not is_listening(HOST, port):
            raise RuntimeError(f"Azurite is up but nothing listens on {HOST}:{port}")
    if _start_one("cosmos", _cosmos_argv(ports), ports.cosmos, state_dir, timeout):
        started.append("cosmos")
    return EmulatorStack(ports=ports, state_dir=state_dir, started=tuple(started))


def stop_emulators(state_dir: Path = DEFAULT_STATE_DIR, grace: float = 10.0) -> list[str]:
    """Stop what `start_emulators` started with this state dir. Returns the names stopped.

    Azurite waits for idle keep-alive connections before exiting on SIGTERM; in-memory stacks
    (tests) have nothing to save, so they pass a short `grace` before SIGKILL.
    """
    return [name for name in ("cosmos", "azurite") if terminate(name, state_dir, grace)]
