"""`make run`: the whole app on this machine. `python -m devstack.run [stop]`.

1. `local.settings.json` from `local.settings.json.example` if missing (fresh function key).
2. Azurite + Cosmos DB server (default ports, state in `.devstack/emulators`).
3. The Azure OpenAI simulator (in this process), accepting `AZURE_OPENAI_API_KEY`.
4. Queues, containers and the database (`devstack.provision`).
5. The local Functions host on `Host.LocalHttpPort` (7071), as a child process.
6. Endpoints, the key and copy-paste examples; Ctrl-C or SIGTERM stops all of it in reverse.

`python -m devstack.run stop` stops what a previous run left behind (pid files in `.devstack/`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from devstack.emulators import start_emulators, stop_emulators
from devstack.emulators.processes import is_listening, read_pid, spawn, terminate
from devstack.emulators.stack import DEFAULT_STATE_DIR
from devstack.functions_host.settings import FUNCTION_KEY_SETTING, apply_values, load_settings

ROOT = Path(__file__).resolve().parents[1]
STATE_DIR = ROOT / ".devstack"
EMULATOR_STATE = DEFAULT_STATE_DIR  # where `make emulators` keeps them too
HOST = "127.0.0.1"
DEFAULT_SIMULATOR_PORT = 8090
HOST_GRACE = 30.0
# Our app's clients are closed on the loop that opened them when the host stops.
APP_STOP_HOOK = "shared.runtime:close_runtime"

log = logging.getLogger("devstack.run")


def ensure_local_settings(root: Path = ROOT) -> bool:
    """Create local.settings.json from the example with a fresh function key. True if created."""
    target = root / "local.settings.json"
    if target.exists():
        return False
    example = json.loads((root / "local.settings.json.example").read_text())
    values: dict[str, Any] = example.setdefault("Values", {})
    if not values.get(FUNCTION_KEY_SETTING):
        values[FUNCTION_KEY_SETTING] = secrets.token_urlsafe(32)
    target.write_text(json.dumps(example, indent=2) + "\n")
    return True


def simulator_port(endpoint: str) -> int:
    """Serve the simulator where AZURE_OPENAI_ENDPOINT points, when that is this machine."""
    parsed = urlparse(endpoint)
    if parsed.hostname in ("127.0.0.1", "localhost") and parsed.port:
        return parsed.port
    return DEFAULT_SIMULATOR_PORT


def examples(api: str, key: str) -> str:
    """Copy-paste curl examples for a newcomer."""
    chat = '{"messages":[{"role":"user","content":"Hello"}]}'
    stream = '{"messages":[{"role":"user","content":"Hello"}],"stream":true}'
    filtered = '{"messages":[{"role":"user","content":"forbidden-violence"}]}'
    job = (
        '{"job_id":"example-1","labels":["billing","shipping"],"items":['
        '{"id":"t1","text":"I was charged twice, billing error"},'
        '{"id":"t2","text":"my parcel shipping is late"}]}'
    )
    header = f'-H "x-functions-key: {key}"'
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
            "  # tokens and estimated cost of the last 24 hours, by deployment",
            f"  curl -s {header} '{api}/usage?group_by=deployment'",
            f"  # health, no key needed:  curl -s {api}/health",
        ]
    )


def banner(api: str, key: str, sim_url: str, stack: Any) -> str:
    lines = [
        "",
        "Local stack is up (Ctrl-C stops everything):",
        f"  Functions host     {api}/...",
        f"  Function key       {key}   (header x-functions-key or ?code=)",
        f"  Azure OpenAI sim   {sim_url}",
        f"  Azurite            blob {stack.blob_endpoint}  queue {stack.queue_endpoint}",
        f"  Cosmos DB          {stack.cosmos_endpoint}  (self-signed TLS, emulator key)",
        f"  Logs and state     {STATE_DIR}",
        "",
        examples(api, key),
        "",
    ]
    return "\n".join(lines)


def _provision() -> None:
    from devstack.provision import provision
    from shared.settings import get_settings

    asyncio.run(provision(get_settings()))


def _start_simulator(api_key: str, port: int) -> Any:
    from devstack.aoai_simulator import SimulatorConfig, start_simulator

    return start_simulator(SimulatorConfig(api_keys=[api_key]), host=HOST, port=port)


def _start_host(port: int) -> int:
    """The Functions host as a child process in its own session (we forward the stop)."""
    argv = [sys.executable, "-m", "devstack.functions_host", "--app-dir", str(ROOT),
            "--port", str(port), "--shutdown-grace", str(HOST_GRACE),
            "--on-stop", APP_STOP_HOOK]  # fmt: skip
    return spawn("functions-host", argv, STATE_DIR, cwd=ROOT)


def _follow(path: Path, done: threading.Event) -> None:
    """Echo the host's log to the terminal (it writes to .devstack/functions-host.log)."""
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


def _exited(pid: int) -> bool:
    """True once our child `pid` has exited (reaping it: an unreaped child looks alive)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return read_pid(STATE_DIR / "functions-host.pid") is None
    return done == pid


def _wait_for_host(pid: int, port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not is_listening(HOST, port):
        if _exited(pid):
            raise RuntimeError(f"the Functions host (pid {pid}) exited; see the log above")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the Functions host did not listen on {HOST}:{port}")
        time.sleep(0.1)


def run() -> int:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    if ensure_local_settings():
        print("Created local.settings.json from local.settings.json.example (new function key)")
    settings = load_settings(ROOT)
    apply_values(settings.values, os.environ)
    (STATE_DIR / "run.pid").write_text(str(os.getpid()))
    stop = threading.Event()
    following = threading.Event()
    cleanups: list[Callable[[], object]] = []
    follower: threading.Thread | None = None

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    def check() -> None:
        if stop.is_set():
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        print("Starting Azurite and the Cosmos DB server ...", flush=True)
        stack = start_emulators(state_dir=EMULATOR_STATE)
        cleanups.append(lambda: stop_emulators(EMULATOR_STATE) if stack.started else None)
        check()
        api_key = os.environ.get("AZURE_OPENAI_API_KEY", "")
        port = simulator_port(os.environ.get("AZURE_OPENAI_ENDPOINT", ""))
        print(f"Starting the Azure OpenAI simulator on {HOST}:{port} ...", flush=True)
        sim = _start_simulator(api_key, port)
        cleanups.append(sim.stop)
        check()
        print("Creating queues, containers and the database ...", flush=True)
        _provision()
        check()
        host_port = settings.local_http_port or 7071
        print(f"Starting the Functions host on {HOST}:{host_port} ...", flush=True)
        (STATE_DIR / "functions-host.log").touch()
        follower = threading.Thread(
            target=_follow, args=(STATE_DIR / "functions-host.log", following), daemon=True
        )
        follower.start()
        pid = _start_host(host_port)
        cleanups.append(lambda: terminate("functions-host", STATE_DIR, grace=HOST_GRACE + 5))
        _wait_for_host(pid, host_port)
        check()
        api = f"http://{HOST}:{host_port}/{settings.route_prefix}".rstrip("/")
        key = os.environ.get(FUNCTION_KEY_SETTING, "")
        print(banner(api, key, sim.url, stack), flush=True)
        while not stop.wait(0.5):
            if _exited(pid):
                print("The Functions host exited; stopping the stack.", flush=True)
                return 1
        return 0
    finally:
        print("\nStopping ...", flush=True)
        stop.set()
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
        (STATE_DIR / "run.pid").unlink(missing_ok=True)
        print("Stopped.", flush=True)


def stop_previous() -> int:
    """Stop a running `make run` (it cleans up) or whatever one left behind."""
    stopped: list[str] = []
    pid = read_pid(STATE_DIR / "run.pid")
    if pid is not None and pid != os.getpid():
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + HOST_GRACE + 15
        while read_pid(STATE_DIR / "run.pid") is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        stopped.append(f"make run (pid {pid})")
    (STATE_DIR / "run.pid").unlink(missing_ok=True)
    if terminate("functions-host", STATE_DIR, grace=HOST_GRACE + 5):
        stopped.append("functions-host")
    stopped += stop_emulators(EMULATOR_STATE)
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.run")
    parser.add_argument("command", nargs="?", choices=["start", "stop"], default="start")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # The SDKs log every HTTP request at INFO: too much for a terminal.
    logging.getLogger("azure").setLevel(logging.WARNING)
    if args.command == "stop":
        return stop_previous()
    return run()


if __name__ == "__main__":
    sys.exit(main())
