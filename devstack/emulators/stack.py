"""Start and stop Azurite and the Cosmos DB server, with readiness waits.

Starting twice is harmless: a service whose recorded process still runs is reused, and a port
something else already serves is used without being recorded (so `stop` leaves it alone).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
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
COSMOS_DATA_FILE = "cosmos-data.jsonl"
COSMOS_SAVE_INTERVAL = 2.0  # seconds between saves of a changed Cosmos DB store, at least
STOP_ON_FAILURE_GRACE = 5.0

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
    in_memory: bool = False

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
        raise FileNotFoundError("node is not on PATH: install Node.js 20+ (see README)")
    return node


def _azurite_argv(ports: EmulatorPorts, state_dir: Path, in_memory: bool) -> list[str]:
    argv = [
        str(_node_bin("azurite")),
        "--skipApiVersionCheck",  # current azure-storage SDKs send newer API versions
        "--loose",
        "--disableProductStyleUrl",
        "--blobHost",
        HOST,
        "--blobPort",
        str(ports.blob),
        "--queueHost",
        HOST,
        "--queuePort",
        str(ports.queue),
        "--tableHost",
        HOST,
        "--tablePort",
        str(ports.table),
    ]
    if in_memory:
        argv.append("--inMemoryPersistence")
    else:
        data = state_dir / "azurite-data"
        data.mkdir(parents=True, exist_ok=True)
        argv += ["--location", str(data)]
    return argv


@dataclass(frozen=True)
class ServiceSpec:
    """One background service: it is ready once every port in `ports` accepts connections."""

    name: str
    argv: tuple[str, ...]
    ports: tuple[int, ...]


def azurite_spec(ports: EmulatorPorts, state_dir: Path, *, in_memory: bool) -> ServiceSpec:
    argv = _azurite_argv(ports, state_dir, in_memory)
    return ServiceSpec("azurite", tuple(argv), (ports.queue, ports.blob, ports.table))


def cosmos_spec(
    ports: EmulatorPorts, state_dir: Path, *, in_memory: bool, fresh: bool | None = None
) -> ServiceSpec:
    """The Cosmos DB server, its data kept in `<state_dir>/cosmos-data.jsonl`.

    Persistent (the default): loaded at start, saved a few seconds after each change and on
    SIGTERM. In memory (tests): started empty (`fresh`) and saved only on SIGTERM, so that
    :func:`devstack.emulators.outage.restart_cosmos` (which passes `fresh=False`) keeps it.
    """
    argv = [
        _node(),
        str(HERE / "cosmos-launcher.js"),
        "--host",
        HOST,
        "--port",
        str(ports.cosmos),
        "--data-file",
        str(state_dir / COSMOS_DATA_FILE),
        "--save-interval",
        "0" if in_memory else str(COSMOS_SAVE_INTERVAL),
    ]
    start_empty = in_memory if fresh is None else fresh
    if start_empty:
        argv.append("--fresh")
    return ServiceSpec("cosmos", tuple(argv), (ports.cosmos,))


def _remaining(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.0)


def start_service(
    spec: ServiceSpec,
    state_dir: Path,
    *,
    timeout: float = 60.0,
    cancelled: Callable[[], bool] | None = None,
) -> bool:
    """Start a service unless it already runs, and wait for all its ports. True if started.

    A service this call starts is stopped again if any of its ports does not come up.
    """
    deadline = time.monotonic() + timeout
    first = spec.ports[0]
    recorded = read_pid(state_dir / f"{spec.name}.pid")
    if is_listening(HOST, first):
        if recorded is not None:
            log.info("%s already running on %s:%d", spec.name, HOST, first)
        else:
            log.warning(
                "%s:%d is already served by another process; using it as %s", HOST, first, spec.name
            )
        for port in spec.ports:
            wait_listening(spec.name, HOST, port, recorded, _remaining(deadline), cancelled)
        return False
    pid = spawn(spec.name, spec.argv, state_dir, cwd=HERE)
    try:
        for port in spec.ports:
            wait_listening(spec.name, HOST, port, pid, _remaining(deadline), cancelled)
    except BaseException as exc:
        terminate(spec.name, state_dir, grace=STOP_ON_FAILURE_GRACE)
        if isinstance(exc, RuntimeError | TimeoutError):
            exc.add_note(f"{spec.name} log: {state_dir / (spec.name + '.log')}")
        raise
    log.info(
        "%s ready on %s (pid %d)", spec.name, ", ".join(f"{HOST}:{p}" for p in spec.ports), pid
    )
    return True


def start_services(
    specs: Sequence[ServiceSpec],
    state_dir: Path,
    *,
    timeout: float = 60.0,
    cancelled: Callable[[], bool] | None = None,
) -> tuple[str, ...]:
    """Start `specs` in order; the names this call started. On any failure (or `cancelled`)
    the services it started are stopped before the error propagates."""
    state_dir.mkdir(parents=True, exist_ok=True)
    started: list[str] = []
    try:
        for spec in specs:
            if start_service(spec, state_dir, timeout=timeout, cancelled=cancelled):
                started.append(spec.name)
    except BaseException:
        for name in reversed(started):
            terminate(name, state_dir, grace=STOP_ON_FAILURE_GRACE)
        raise
    return tuple(started)


def start_emulators(
    ports: EmulatorPorts | None = None,
    state_dir: Path = DEFAULT_STATE_DIR,
    *,
    in_memory: bool = False,
    timeout: float = 60.0,
    cancelled: Callable[[], bool] | None = None,
) -> EmulatorStack:
    """Start Azurite (blob, queue, table) and the Cosmos DB server; wait until all listen.

    If anything fails (or `cancelled()` turns true while waiting), what this call started is
    stopped before the error propagates.
    """
    ports = ports or EmulatorPorts()
    specs = [
        azurite_spec(ports, state_dir, in_memory=in_memory),
        cosmos_spec(ports, state_dir, in_memory=in_memory),
    ]
    started = start_services(specs, state_dir, timeout=timeout, cancelled=cancelled)
    return EmulatorStack(ports=ports, state_dir=state_dir, started=started, in_memory=in_memory)


def stop_emulators(
    state_dir: Path = DEFAULT_STATE_DIR,
    grace: float = 10.0,
    names: Iterable[str] = ("cosmos", "azurite"),
) -> list[str]:
    """Stop what `start_emulators` started with this state dir. Returns the names stopped.

    Azurite waits for idle keep-alive connections before exiting on SIGTERM, and the Cosmos DB
    server saves its store; in-memory stacks (tests) need neither, so they pass a short `grace`
    before SIGKILL.
    """
    return [name for name in names if terminate(name, state_dir, grace)]
