"""`make run` as a user runs it (`python -m devstack.run`), on free ports and a temp state dir:
signals in quick succession, at any moment, stop everything it started, and it exits."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.emulators import EmulatorPorts, EmulatorStack
from devstack.emulators.processes import free_port, is_listening, pid_alive, read_pid
from devstack.hosted_app import make_app_dir, stack_environ

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
STORM = [signal.SIGTERM, signal.SIGINT] * 10


class MakeRun:
    def __init__(self, tmp_path: Path) -> None:
        self.state = tmp_path / "state"
        self.ports = EmulatorPorts.free()
        self.sim_port = free_port()
        self.host_port = free_port()
        environ = stack_environ(
            EmulatorStack(ports=self.ports, state_dir=self.state),
            AZURE_OPENAI_ENDPOINT=f"http://{HOST}:{self.sim_port}",
            BATCH_DEPLOYMENT="gpt-4o-batch",
            AOAI_DEPLOYMENTS='{"default-chat": "gpt-4o"}',
        )
        self.app = make_app_dir(tmp_path / "app", environ)
        settings = self.app / "local.settings.json"
        local = json.loads(settings.read_text())
        local["Host"] = {"LocalHttpPort": self.host_port}
        settings.write_text(json.dumps(local))
        self.log = tmp_path / "run.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        assert self._proc is not None, "start() first"
        return self._proc

    def start(self) -> subprocess.Popen[bytes]:
        # The developer's environment must not point the run elsewhere (it wins over the file).
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE", "COSMOS_"))}
        env["PYTHONPATH"] = str(ROOT)
        with self.log.open("wb") as out:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "devstack.run",
                    "--app-dir",
                    str(self.app),
                    "--state-dir",
                    str(self.state),
                ],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self._proc

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.proc.poll() is not None:
                raise AssertionError(f"make run exited early:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} within {timeout:.0f}s:\n{self.output()}")
            time.sleep(0.1)

    def pids(self) -> dict[str, int]:
        files = {
            "azurite": self.state / "emulators" / "azurite.pid",
            "cosmos": self.state / "emulators" / "cosmos.pid",
            "functions-host": self.state / "functions-host.pid",
        }
        found = {name: read_pid(path) for name, path in files.items()}
        return {name: pid for name, pid in found.items() if pid is not None}

    def storm(self) -> None:
        """SIGTERM, SIGINT, SIGTERM, ... a few milliseconds apart, while it stops."""
        for signum in STORM:
            if self.proc.poll() is not None:
                return
            self.proc.send_signal(signum)
            time.sleep(0.02)

    def ports_in_use(self) -> list[int]:
        ports = [*self.ports.__dict__.values(), self.sim_port, self.host_port]
        return [port for port in ports if is_listening(HOST, port)]

    def kill_leftovers(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        subprocess.run(
            [sys.executable, "-m", "devstack.run", "stop", "--state-dir", str(self.state)],
            cwd=ROOT,
            check=False,
            capture_output=True,
            timeout=120,
        )


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[MakeRun]:
    run = MakeRun(tmp_path)
    try:
        yield run
    finally:
        run.kill_leftovers()


def _assert_all_stopped(run: MakeRun, pids: dict[str, int]) -> None:
    assert run.proc.wait(timeout=120) == 0, run.output()
    assert "Stopped." in run.output()
    assert [name for name, pid in pids.items() if pid_alive(pid)] == []
    assert run.pids() == {}  # nor anything started after the signals
    assert run.ports_in_use() == []


@pytest.mark.slow
def test_a_signal_storm_after_start_up_stops_everything(make_run: MakeRun) -> None:
    make_run.start()
    make_run.wait_for("Local stack is up")
    pids = make_run.pids()
    assert set(pids) == {"azurite", "cosmos", "functions-host"}

    make_run.storm()

    _assert_all_stopped(make_run, pids)


@pytest.mark.slow
def test_a_signal_storm_during_start_up_stops_what_was_started(make_run: MakeRun) -> None:
    make_run.start()
    make_run.wait_for("Starting Azurite and the Cosmos DB server")
    deadline = time.monotonic() + 60
    while "azurite" not in make_run.pids() and time.monotonic() < deadline:
        time.sleep(0.05)  # Azurite spawned, probably not listening yet: mid-start
    pids = make_run.pids()
    assert "azurite" in pids

    make_run.storm()

    _assert_all_stopped(make_run, pids)
    assert "Local stack is up" not in make_run.output()


@pytest.mark.slow
def test_a_failed_start_stops_what_was_started(make_run: MakeRun) -> None:
    # The simulator's port is taken: the emulators are up by then and must be stopped again.
    with socket.socket() as taken:
        taken.bind((HOST, make_run.sim_port))
        taken.listen()
        make_run.start()
        assert make_run.proc.wait(timeout=180) == 1, make_run.output()

    # The pid files are gone by now: the start-up log names the processes.
    started = re.findall(r"(\w+) ready on .* \(pid (\d+)\)", make_run.output())
    emulators = {name: int(pid) for name, pid in started}
    assert set(emulators) == {"azurite", "cosmos"}, make_run.output()

    assert "make run failed" in make_run.output()
    assert [name for name, pid in emulators.items() if pid_alive(pid)] == []
    assert make_run.pids() == {}
    assert make_run.ports_in_use() == []


@pytest.mark.slow
def test_make_run_prints_the_local_team_s_key_and_examples_that_use_it(
    make_run: MakeRun,
) -> None:
    """#22 item 7: `make run` makes the `local` team through the admin API and prints its
    key; the examples send it as `api-key`, as a product team would, and it opens the API."""
    make_run.start()
    make_run.wait_for("health, no key needed")
    output = make_run.output()
    found = re.search(r"Team `local` key\s+(tk_local_\S+)", output)
    assert found is not None, output
    key = found.group(1)
    assert f'-H "api-key: {key}"' in output
    # The examples only: the host's own start-up log (which names the function key's header)
    # shares the terminal and can land after them.
    examples = output.split("Try it:")[1].split("health, no key needed")[0]
    assert "curl" in examples
    assert "x-functions-key" not in examples
    api = f"http://{HOST}:{make_run.host_port}/api"
    answer = httpx.get(f"{api}/usage", headers={"api-key": key}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert (make_run.state / "local-team.key").read_text().strip() == key
    pids = make_run.pids()
    make_run.proc.send_signal(signal.SIGTERM)
    _assert_all_stopped(make_run, pids)
