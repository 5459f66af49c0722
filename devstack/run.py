"""`make run`: the whole app on this machine.

`python -m devstack.run [start|stop] [--app-dir DIR] [--state-dir DIR]`

1. `local.settings.json` from `local.settings.json.example` if missing (fresh function key).
2. Azurite + Cosmos DB server where the settings point (default ports; state, Cosmos DB data
   included, in `<state-dir>/emulators`).
3. The Azure OpenAI simulator (in this process), accepting `AZURE_OPENAI_API_KEY`.
4. Queues, containers and the database (`devstack.provision`).
5. The local Functions host on `Host.LocalHttpPort` (7071), as a child process.
6. The `local` team (devstack/local_team.py), made through the admin API.
7. Endpoints, the `local` team's key and copy-paste examples that use it as a product team
   would (`api-key`); Ctrl-C or SIGTERM stops all of it in reverse.

Whatever fails or is interrupted, what this run started is stopped before it exits.
`python -m devstack.run stop` stops what a previous run left behind (pid files in the state dir).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlparse

from devstack.emulators import EmulatorPorts, start_emulators, stop_emulators
from devstack.emulators.processes import (
    StartCancelled,
    is_listening,
    read_pid,
    spawn,
    terminate,
)
from devstack.functions_host.settings import (
    FUNCTION_KEY_SETTING,
    MASTER_KEY_SETTING,
    apply_values,
    load_settings,
)
from devstack.local_team import ensure_local_team

ROOT = Path(__file__).resolve().parents[1]
STATE_DIR = ROOT / ".devstack"
EMULATORS = "emulators"  # <state dir>/emulators: where `make emulators` keeps them too
HOST = "127.0.0.1"
LOOPBACK = ("127.0.0.1", "localhost")
DEFAULT_SIMULATOR_PORT = 8090
HOST_GRACE = 30.0
# Our app's clients are closed on the loop that opened them when the host stops.
APP_STOP_HOOK = "shared.runtime:close_runtime"

log = logging.getLogger("devstack.run")


class StopRequested(Exception):
    """SIGINT or SIGTERM arrived while the stack was starting."""


class StopSignals:
    """SIGINT and SIGTERM set a flag and nothing else.

    A signal handler runs in the main thread between two bytecodes, possibly while that thread
    holds a lock: `threading.Event.set()` in the handler once deadlocked `make run` inside
    `Event.wait()`. So the handler takes no lock; the wakeup fd (written by the interpreter's
    C-level handler) wakes :meth:`wait` at once.
    """

    def __init__(self) -> None:
        self.requested = False
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)

    def install(self) -> None:
        signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True

    def check(self) -> None:
        if self.requested:
            raise StopRequested

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` s or until a signal arrives. True once a stop was asked for."""
        if not self.requested:
            select.select([self._reader], [], [], timeout)
            try:
                while self._reader.recv(64):
                    pass
            except BlockingIOError:
                pass
        return self.requested


# Settings `make run` makes up on this machine, never committed: each gets a fresh random value
# when local.settings.json is created, and when an older local.settings.json lacks it.
GENERATED_SETTINGS = (
    FUNCTION_KEY_SETTING,
    MASTER_KEY_SETTING,
    "USER_HASH_SECRET",
    "TEAM_KEY_HASH_SECRET",
)


def ensure_local_settings(root: Path = ROOT, example: Path | None = None) -> bool:
    """Create local.settings.json from the example, or fill in what an older one lacks, with
    fresh secrets (GENERATED_SETTINGS). True if the file was created."""
    target = root / "local.settings.json"
    created = not target.exists()
    source = (example or root / "local.settings.json.example") if created else target
    settings = json.loads(source.read_text())
    values: dict[str, Any] = settings.setdefault("Values", {})
    missing = [name for name in GENERATED_SETTINGS if not values.get(name)]
    for name in missing:
        values[name] = secrets.token_urlsafe(32)
    if created or missing:
        target.write_text(json.dumps(settings, indent=2) + "\n")
    return created


def _loopback_port(url: str, default: int) -> int:
    parsed = urlparse(url)
    if parsed.hostname in LOOPBACK and parsed.port:
        return parsed.port
    return default


def simulator_port(endpoint: str) -> int:
    """Serve the simulator where AZURE_OPENAI_ENDPOINT points, when that is this machine."""
    return _loopback_port(endpoint, DEFAULT_SIMULATOR_PORT)


def emulator_ports(values: Mapping[str, str]) -> EmulatorPorts:
    """Serve the emulators where the app's settings point (AzureWebJobsStorage endpoints,
    COSMOS_ENDPOINT), when that is this machine; the default ports otherwise."""
    default = EmulatorPorts()
    storage = values.get("AzureWebJobsStorage", "")
    parts = dict(p.split("=", 1) for p in storage.split(";") if "=" in p)
    return EmulatorPorts(
        blob=_loopback_port(parts.get("BlobEndpoint", ""), default.blob),
        queue=_loopback_port(parts.get("QueueEndpoint", ""), default.queue),
        table=_loopback_port(parts.get("TableEndpoint", ""), default.table),
        cosmos=_loopback_port(values.get("COSMOS_ENDPOINT", ""), default.cosmos),
    )


def examples(api: str, key: str) -> str:
    """Copy-paste curl examples for a newcomer, with `key`, a team's key, in `api-key`."""
    chat = '{"messages":[{"role":"user","content":"Hello"}]}'
    stream = '{"messages":[{"role":"user","content":"Hello"}],"stream":true}'
    filtered = '{"messages":[{"role":"user","content":"forbidden-violence"}]}'
    job = (
        '{"job_id":"example-1","labels":["billing","shipping"],"items":['
        '{"id":"t1","text":"I was charged twice, billing error"},'
        '{"id":"t2","text":"my parcel shipping is late"}]}'
    )
    header = f'-H "api-key: {key}"'
    return "\n".join(
        [
            "Try it:",
            "  # chat completion (JSON)",
            f"  curl -s {header} -H 'Content-Type: application/json' \\",
            f"       -d '{chat}' {api}/chat",
            "  # the same, streamed as Server-Sent Events (-N: print chunks as they arrive)",
            f"  curl -N {header} -H 'Content-Type: application/json' \\",
            f"       -d '{stream}' {api}/chat",
            "  # a prompt the simulator's content filter refuses: 400 content_filter, one event",
            f"  curl -s {header} -H 'Content-Type: application/json' \\",
            f"       -d '{filtered}' {api}/chat",
            "  # a classification job: 202 and its id; then its status, counts and labels",
            f"  curl -s {header} -H 'Content-Type: application/json' \\",
            f"       -d '{job}' {api}/jobs/classifications",
            f"  curl -s {header} {api}/jobs/example-1",
            "  # the team's tokens and estimated cost of the last 24 hours, by deployment",
            f"  curl -s {header} '{api}/usage?group_by=deployment'",
            f"  # health, no key needed:  curl -s {api}/health",
        ]
    )


def banner(api: str, key: str, team_key: str, sim_url: str, stack: Any, state_dir: Path) -> str:
    lines = [
        "",
        "Local stack is up (Ctrl-C stops everything):",
        f"  Functions host     {api}/...",
        f"  Team `local` key   {team_key}",
        "                     (header api-key, or AzureOpenAI(api_key=...); never logged)",
        f"  Function key       {key}   (x-functions-key: /api/health/details)",
        f"  Azure OpenAI sim   {sim_url}",
        f"  Azurite            blob {stack.blob_endpoint}  queue {stack.queue_endpoint}",
        f"                     table {stack.table_endpoint}",
        f"  Cosmos DB          {stack.cosmos_endpoint}  (self-signed TLS, emulator key)",
        f"  Logs and state     {state_dir}  (data survives a restart)",
        "",
        examples(api, team_key),
        "",
    ]
    return "\n".join(lines)


def _provision() -> None:
    from devstack.provision import provision
    from shared.core.settings import get_settings

    asyncio.run(provision(get_settings()))


def _start_simulator(api_key: str, port: int) -> Any:
    from devstack.aoai_simulator import SimulatorConfig, start_simulator

    return start_simulator(SimulatorConfig(api_keys=[api_key]), host=HOST, port=port)


def _start_host(app_dir: Path, port: int, state_dir: Path) -> int:
    """The Functions host as a child process in its own session (we forward the stop)."""
    argv = [
        sys.executable,
        "-m",
        "devstack.functions_host",
        "--app-dir",
        str(app_dir),
        "--port",
        str(port),
        "--shutdown-grace",
        str(HOST_GRACE),
        "--on-stop",
        APP_STOP_HOOK,
    ]
    return spawn("functions-host", argv, state_dir, cwd=ROOT)


def _follow(path: Path, done: threading.Event) -> None:
    """Echo the host's log to the terminal (it writes to <state dir>/functions-host.log)."""
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        while True:
            line = handle.readline()
            if line:
                sys.stdout.write(line.decode(errors="replace"))
                sys.stdout.flush()
            elif done.is_set():
                return
            else:
                time.sleep(0.1)


def _exited(pid: int, state_dir: Path) -> bool:
    """True once our child `pid` has exited (reaping it: an unreaped child looks alive)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return read_pid(state_dir / "functions-host.pid") is None
    return done == pid


def _wait_for_host(
    pid: int, port: int, state_dir: Path, signals: StopSignals, timeout: float = 60.0
) -> None:
    deadline = time.monotonic() + timeout
    while not is_listening(HOST, port):
        if _exited(pid, state_dir):
            raise RuntimeError(f"the Functions host (pid {pid}) exited; see the log above")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the Functions host did not listen on {HOST}:{port}")
        signals.check()
        signals.wait(0.1)


def run(app_dir: Path = ROOT, state_dir: Path = STATE_DIR) -> int:
    """Start everything, wait for a stop, stop everything. 0 on a requested stop."""
    state_dir.mkdir(parents=True, exist_ok=True)
    emulator_state = state_dir / EMULATORS
    if ensure_local_settings(app_dir, ROOT / "local.settings.json.example"):
        print("Created local.settings.json from local.settings.json.example (new secrets)")
    settings = load_settings(app_dir)
    apply_values(settings.values, os.environ)
    (state_dir / "run.pid").write_text(str(os.getpid()))
    signals = StopSignals()
    signals.install()
    following = threading.Event()
    cleanups: list[Callable[[], object]] = []
    follower: threading.Thread | None = None
    try:
        print("Starting Azurite and the Cosmos DB server ...", flush=True)
        stack = start_emulators(
            emulator_ports(os.environ), emulator_state, cancelled=lambda: signals.requested
        )
        # Only what this run started: emulators `make emulators` started keep running.
        cleanups.append(lambda: stop_emulators(emulator_state, names=stack.started))
        signals.check()
        api_key = os.environ.get("AZURE_OPENAI_API_KEY", "")
        port = simulator_port(os.environ.get("AZURE_OPENAI_ENDPOINT", ""))
        print(f"Starting the Azure OpenAI simulator on {HOST}:{port} ...", flush=True)
        sim = _start_simulator(api_key, port)
        cleanups.append(sim.stop)
        signals.check()
        print("Creating queues, containers and the database ...", flush=True)
        _provision()
        signals.check()
        host_port = settings.local_http_port or 7071
        print(f"Starting the Functions host on {HOST}:{host_port} ...", flush=True)
        host_log = state_dir / "functions-host.log"
        host_log.touch()
        follower = threading.Thread(target=_follow, args=(host_log, following), daemon=True)
        follower.start()
        pid = _start_host(app_dir, host_port, state_dir)
        cleanups.append(lambda: terminate("functions-host", state_dir, grace=HOST_GRACE + 5))
        _wait_for_host(pid, host_port, state_dir, signals)
        api = f"http://{HOST}:{host_port}/{settings.route_prefix}".rstrip("/")
        key = os.environ.get(FUNCTION_KEY_SETTING, "")
        team_key = ensure_local_team(api, os.environ.get(MASTER_KEY_SETTING, ""), state_dir)
        print(banner(api, key, team_key, sim.url, stack, state_dir), flush=True)
        while not signals.wait(0.5):
            if _exited(pid, state_dir):
                print("The Functions host exited; stopping the stack.", flush=True)
                return 1
        return 0
    except (StopRequested, StartCancelled):
        return 0
    except Exception as exc:
        expected = isinstance(exc, RuntimeError | TimeoutError | OSError)
        log.error("make run failed: %s", exc, exc_info=not expected)
        return 1
    finally:
        print("\nStopping ...", flush=True)
        for cleanup in reversed(cleanups):
            try:
                started = time.monotonic()
                cleanup()
                log.debug("cleanup %s took %.1fs", cleanup, time.monotonic() - started)
            except Exception:
                log.exception("cleanup step failed")
        following.set()
        if follower is not None:
            follower.join(2)
        (state_dir / "run.pid").unlink(missing_ok=True)
        # The handlers stay until the process exits: a late signal must not kill it mid-exit.
        print("Stopped.", flush=True)


def stop_previous(state_dir: Path = STATE_DIR) -> int:
    """Stop a running `make run` (it cleans up) or whatever one left behind."""
    stopped: list[str] = []
    pid = read_pid(state_dir / "run.pid")
    if pid is not None and pid != os.getpid():
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + HOST_GRACE + 15
        while read_pid(state_dir / "run.pid") is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        stopped.append(f"make run (pid {pid})")
    (state_dir / "run.pid").unlink(missing_ok=True)
    if terminate("functions-host", state_dir, grace=HOST_GRACE + 5):
        stopped.append("functions-host")
    stopped += stop_emulators(state_dir / EMULATORS)
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.run")
    parser.add_argument("command", nargs="?", choices=["start", "stop"], default="start")
    parser.add_argument(
        "--app-dir",
        type=Path,
        default=ROOT,
        help="the function app (its local.settings.json says where each service listens)",
    )
    parser.add_argument(
        "--state-dir", type=Path, default=STATE_DIR, help="pid files, logs and emulator data"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # The SDKs log every HTTP request at INFO: too much for a terminal.
    logging.getLogger("azure").setLevel(logging.WARNING)
    if args.command == "stop":
        return stop_previous(args.state_dir.resolve())
    status = run(args.app_dir.resolve(), args.state_dir.resolve())
    # Everything is stopped: a late Ctrl-C must not turn a clean exit into a signal death (the
    # interpreter restores the default handlers while it shuts down).
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    return status


if __name__ == "__main__":
    sys.exit(main())
