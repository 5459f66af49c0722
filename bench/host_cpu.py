"""Host CPU per chat request: the host process's CPU time (utime + stime from /proc) over a
run of non-streamed `/api/chat` requests, divided by the requests; then the same load again
under cProfile inside the host to show where the time goes, by owner of the code.

    .venv/bin/python -m bench.host_cpu [--requests 300] [--concurrency 4]

The simulator answers at once (no added latency) and has quota to spare, so nothing waits on
a quota. Everything runs on this machine: the CPU figure holds the local Functions host
(uvicorn, starlette, devstack.functions_host), which on Azure is the .NET host and the
worker's gRPC; `app_cpu_ms_per_request` leaves out the stand-ins' share measured by the
profile. The profile slows what it measures; its shares, not its seconds, are the figure.
CPU per embedded item comes from bench/embedding_utilization.py (`host_cpu_ms_per_item`).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import _profile
from bench._jobs import Rig, print_result, rig
from bench._proc import cpu_seconds, machine, peak_rss_mib
from bench._timescale import TimeScale
from devstack.aoai_simulator import SimulatorConfig

PROMPT = "echo: " + " ".join(f"token{i}" for i in range(20))
WARM_UP = 20


async def load(rig_: Rig, requests: int, concurrency: int) -> float:
    """Send `requests` non-streamed chats, `concurrency` at a time; seconds it took."""
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16}
    left = list(range(requests))
    async with rig_.app() as app:

        async def worker() -> None:
            while left:
                left.pop()
                response = await app.post("/chat", json=body)
                response.raise_for_status()

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.monotonic() - started


def measure(rig_: Rig, args: argparse.Namespace) -> dict[str, Any]:
    (pid,) = rig_.pids
    asyncio.run(load(rig_, WARM_UP, 1))  # connections opened, code paths warm
    before = cpu_seconds(pid)
    seconds = asyncio.run(load(rig_, args.requests, args.concurrency))
    cpu = cpu_seconds(pid) - before
    return {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "seconds": round(seconds, 2),
        "requests_per_second": round(args.requests / seconds, 1),
        "host_cpu_ms_per_request": round(cpu * 1000 / args.requests, 2),
        "host_cpu_share_of_a_core": round(cpu / seconds, 3),
        "host_peak_rss_mib": peak_rss_mib(pid),
    }


def profile(rig_: Rig, args: argparse.Namespace, target: Path) -> dict[str, Any]:
    (pid,) = rig_.pids
    _profile.start(pid)
    asyncio.run(load(rig_, args.requests, args.concurrency))
    _profile.stop(pid)
    deadline = time.monotonic() + 30
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return _profile.summarise(target)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    config = SimulatorConfig.model_validate({})
    with tempfile.TemporaryDirectory() as tmp, rig(config, TimeScale(60.0)) as stack:
        target = Path(tmp) / "host.pstats"
        with stack.host({}, process_env=_profile.environment(target)) as running:
            measured = measure(running, args)
            where = profile(running, args, target)
    stand_ins = where["cpu_share_by_owner"].get("local host (stand-in)", 0.0)
    per_request = measured["host_cpu_ms_per_request"]
    print_result(
        {
            "benchmark": "host_cpu",
            "workload": "non-streamed /api/chat, 20-token prompt, max_tokens 16, simulator at once",
            **machine(),
            **measured,
            "app_cpu_ms_per_request": round(per_request * (1 - stand_ins), 2),
            "profile": where,
        }
    )


if __name__ == "__main__":
    main()
