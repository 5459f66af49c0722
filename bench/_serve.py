"""Run a server as a child process for a benchmark, so it never shares a GIL or an event loop
with the load generator."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

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
