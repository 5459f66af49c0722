"""Graceful shutdown of `python -m devstack.functions_host`: SIGTERM loses no message."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from azure.storage.queue.aio import QueueClient

from tests.devstack.functions_host.conftest import MakeApp, b64
from tests.devstack.functions_host.helpers import wait_until

ROOT = Path(__file__).resolve().parents[3]
QueueFactory = Callable[[str], QueueClient]


@pytest.fixture
def run_host(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def run(app_dir: Path, grace: float) -> subprocess.Popen[bytes]:
        log = (tmp_path / "host.log").open("wb")
        argv = [
            sys.executable,
            "-m",
            "devstack.functions_host",
            "--app-dir",
            str(app_dir),
            "--port",
            "0",
            "--shutdown-grace",
            str(grace),
            "--on-stop",
            "function_app:close_things",
        ]
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        procs.append(proc)
        return proc

    yield run
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def _sigterm_mid_invocation(
    make_app: MakeApp,
    run_host: Callable[..., subprocess.Popen[bytes]],
    queue: QueueClient,
    tmp_path: Path,
    slow_seconds: float,
    grace: float,
) -> int:
    await queue.create_queue()
    await queue.send_message(b64("precious"))
    proc = run_host(make_app(values={"SLOW_SECONDS": str(slow_seconds)}), grace)
    await wait_until(lambda: (tmp_path / "started").exists(), 60, what="invocation started")
    proc.send_signal(signal.SIGTERM)
    await wait_until(lambda: proc.poll() is not None, 60, what="host exited")
    return proc.returncode


async def test_sigterm_lets_the_running_invocation_finish_then_deletes_its_message(
    make_app: MakeApp,
    run_host: Callable[..., subprocess.Popen[bytes]],
    queue_factory: QueueFactory,
    queue_names: dict[str, str],
    tmp_path: Path,
) -> None:
    queue = queue_factory(queue_names["SLOW_QUEUE"])
    code = await _sigterm_mid_invocation(make_app, run_host, queue, tmp_path, 1.5, grace=30)

    assert code == 0, (tmp_path / "host.log").read_text()
    assert (tmp_path / "done").read_text() == "precious"
    assert (tmp_path / "closed").read_text() == "closed"  # the on-stop hook ran after draining
    props = await queue.get_queue_properties()
    assert props.approximate_message_count == 0


async def test_sigterm_past_the_grace_period_leaves_the_message_visible_again(
    make_app: MakeApp,
    run_host: Callable[..., subprocess.Popen[bytes]],
    queue_factory: QueueFactory,
    queue_names: dict[str, str],
    tmp_path: Path,
) -> None:
    queue = queue_factory(queue_names["SLOW_QUEUE"])
    code = await _sigterm_mid_invocation(make_app, run_host, queue, tmp_path, 120, grace=0.5)

    assert code == 0, (tmp_path / "host.log").read_text()
    assert not (tmp_path / "done").exists()
    [message] = list(await queue.peek_messages())  # visible at once, not after a 10 min lease
    assert message.content == b64("precious")
    assert message.dequeue_count == 1
