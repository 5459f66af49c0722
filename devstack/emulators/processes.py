"""Background processes recorded by pid file, so a later `stop` stops only what `start` began."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


class StartCancelled(Exception):
    """A start was given up because a stop was asked for meanwhile."""


# Children started by this process. Holding the Popen objects keeps their exit status
# collectable (no zombies) and stops Python warning that they are "still running".
_children: dict[int, subprocess.Popen[bytes]] = {}


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def is_listening(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    """True while the process runs. A zombie (exited, not yet reaped: in containers whose
    PID 1 reaps nothing, orphans stay so) counts as ended."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (macOS): signal 0 is all we can know
    # The state letter follows the parenthesised command name, which may contain spaces.
    return stat[stat.rindex(")") + 2 :].split(" ", 1)[0] != "Z"


def _recorded_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def read_pid(pid_file: Path) -> int | None:
    pid = _recorded_pid(pid_file)
    return pid if pid is not None and pid_alive(pid) else None


def spawn(name: str, argv: Sequence[str], state_dir: Path, cwd: Path) -> int:
    """Start `argv` in its own session with output in `<state_dir>/<name>.log`; record its pid."""
    state_dir.mkdir(parents=True, exist_ok=True)
    log = (state_dir / f"{name}.log").open("ab")
    try:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()
    _children[proc.pid] = proc
    (state_dir / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def wait_listening(
    name: str,
    host: str,
    port: int,
    pid: int | None,
    timeout: float,
    cancelled: Callable[[], bool] | None = None,
) -> None:
    """Wait until `port` accepts connections; fail early if `pid` exits or `cancelled()`."""
    deadline = time.monotonic() + timeout
    while True:
        if is_listening(host, port):
            return
        if pid is not None and not pid_alive(pid):
            raise RuntimeError(f"{name} exited before it listened on {host}:{port}; see its log")
        if cancelled is not None and cancelled():
            raise StartCancelled(f"stopped while waiting for {name} on {host}:{port}")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{name} did not listen on {host}:{port} within {timeout:.0f}s")
        time.sleep(0.1)


def terminate(name: str, state_dir: Path, grace: float = 10.0) -> bool:
    """Stop the process group recorded for `name`. True if something was stopped."""
    pid_file = state_dir / f"{name}.pid"
    pid = _recorded_pid(pid_file)
    pid_file.unlink(missing_ok=True)
    if pid is None:
        return False
    child = _children.pop(pid, None)
    if not pid_alive(pid):
        if child is not None:
            # Exiting already (killed): its thread-group leader can be a zombie while other
            # threads still hold its sockets. Reaping waits for all of them, so the ports are free.
            child.wait()
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
        os.killpg(pid, signal.SIGCONT)  # a paused (SIGSTOP) process handles SIGTERM only then
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if child is not None:
            if child.poll() is not None:
                return True
        elif not pid_alive(pid):
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    if child is not None:
        child.wait()
    return True
