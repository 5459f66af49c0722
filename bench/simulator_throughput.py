"""How many small embedding requests per second the simulator answers, next to a baseline.

    .venv/bin/python -m bench.simulator_throughput [--requests 2000] [--concurrency 32]

Starts the simulator in its own process on a free port and drives it with the async openai
client (`AsyncAzureOpenAI`, concurrency-limited, bounded by count and time). The baseline
is the same load, same client, against a trivial uvicorn + Starlette server answering the
same route with a canned body: the floor set by the HTTP stack and the SDK on this machine.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from openai import AsyncAzureOpenAI

from bench._serve import serve, serve_simulator
from devstack.aoai_simulator import SimulatorConfig
from devstack.emulators.processes import free_port

API_VERSION = "2025-04-01-preview"
MODEL = "text-embedding-3-small"
KEY = "bench-key"


async def _load(url: str, requests: int, concurrency: int, time_limit: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    issued = 0
    async with AsyncAzureOpenAI(
        azure_endpoint=url, api_key=KEY, api_version=API_VERSION, max_retries=0
    ) as client:
        for _ in range(50):  # warm up connections and code paths
            await client.embeddings.create(model=MODEL, input="warm up")
        deadline = time.perf_counter() + time_limit

        async def worker() -> None:
            nonlocal issued, errors
            while issued < requests and time.perf_counter() < deadline:
                issued += 1
                text = f"small input number {issued}"
                start = time.perf_counter()
                try:
                    await client.embeddings.create(model=MODEL, input=text)
                except Exception:  # counted, not fatal, in a benchmark
                    errors += 1
                    continue
                latencies.append((time.perf_counter() - start) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(len(latencies) / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(statistics.median(ordered), 2) if ordered else None,
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2)
        if ordered
        else None,
    }


def _baseline_app() -> Any:
    """A Starlette app answering the embeddings route with a canned one-vector body."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from devstack.aoai_simulator import SimulatorConfig
    from devstack.aoai_simulator.embeddings import create

    config = SimulatorConfig()
    deployment = config.deployment(MODEL)
    assert deployment is not None
    body = json.dumps(create({"input": "canned", "encoding_format": "base64"}, deployment, config))

    async def embeddings(request: Request) -> Response:
        await request.body()
        return Response(body, media_type="application/json")

    async def ready(request: Request) -> Response:
        return Response("ok")

    return Starlette(
        routes=[
            Route("/openai/deployments/{d}/embeddings", embeddings, methods=["POST"]),
            Route("/", ready),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per run, at most")
    parser.add_argument("--baseline-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline_server:
        import uvicorn

        uvicorn.run(
            _baseline_app(), host="127.0.0.1", port=args.baseline_server, log_level="warning"
        )
        return

    config = SimulatorConfig.model_validate(
        {
            "api_keys": [KEY],
            "deployments": [
                {"name": MODEL, "model": MODEL, "kind": "embedding", "tpm": 0, "rpm": 0}
            ],
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        with serve_simulator(config, Path(tmp)) as sim_url:
            simulator = asyncio.run(
                _load(sim_url, args.requests, args.concurrency, args.time_limit)
            )
        base_port = free_port()
        base_url = f"http://127.0.0.1:{base_port}"
        base_args = ["-m", "bench.simulator_throughput", "--baseline-server", str(base_port)]
        with serve(base_args, f"{base_url}/"):
            baseline = asyncio.run(
                _load(base_url, args.requests, args.concurrency, args.time_limit)
            )
    result = {
        "benchmark": "simulator_throughput",
        "workload": f"embeddings, 1 short input, base64 (SDK default), {MODEL} (1536 dims)",
        "requests": args.requests,
        "concurrency": args.concurrency,
        "cpus": os.cpu_count(),
        "simulator": simulator,
        "baseline_canned_starlette": baseline,
        "simulator_vs_baseline": round(simulator["requests_per_s"] / baseline["requests_per_s"], 3)
        if baseline["requests_per_s"]
        else None,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
