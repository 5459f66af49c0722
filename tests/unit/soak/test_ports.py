"""`soak/ports.py`: the local ports a process holds, read from /proc, so the soak can tell an
input answered to a host it then killed from one asked twice by a living host."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from soak.ports import local_ports

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux /proc")


def test_a_connection_of_this_process_is_found_by_its_local_port() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        try:
            assert client.getsockname()[1] in local_ports(os.getpid())
        finally:
            client.close()


def _connected_child(port: int) -> tuple[subprocess.Popen[str], int]:
    code = (
        "import socket, time\n"
        f"c = socket.create_connection(('127.0.0.1', {port}))\n"
        "print(c.getsockname()[1], flush=True)\n"
        "time.sleep(30)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    return child, int(child.stdout.readline())


def test_a_childs_connection_counts_as_its_parents_and_not_a_siblings() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        first, first_port = _connected_child(port)
        second, second_port = _connected_child(port)
        try:
            assert {first_port, second_port} <= local_ports(os.getpid())  # both are ours
            assert first_port in local_ports(first.pid)
            assert first_port not in local_ports(second.pid)
        finally:
            for child in (first, second):
                child.kill()
                child.wait()
                if child.stdout is not None:
                    child.stdout.close()
