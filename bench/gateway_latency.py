"""What the Azure OpenAI-compatible routes add: the same requests sent through the app (both
route shapes) and straight to the Azure OpenAI simulator, in the same run, to the same
simulator; chat completions, embeddings and the Responses API.

    .venv/bin/python -m bench.gateway_latency [--requests 200] [--warmup 20]

Starts its own emulators, the simulator (quotas off, no added latency) and the real app under
the local Functions host, each in its own process on free ports. Three measures, each over
`--requests` rounds after `--warmup` rounds; a round sends one request down each of the three
paths in turn, so drift on the machine affects all of them alike:

- `chat_json`: a non-streamed chat completion, from sending to the whole body read;
- `embeddings`: an embeddings call over two inputs, the same;
- `chat_stream_ttfb`: a streamed chat completion, from sending to the first body byte (the
  first SSE event: the service's prompt-filter chunk, which the app passes on as it comes);
- `responses_json`: a non-streamed (stored) response of the Responses API, as `chat_json`;
- `responses_stream_first_event`: a streamed response, from sending to the first body byte
  (the `response.created` event).

The paths: `direct` (the simulator), `azure` (`/api/openai/deployments/{d}/...`; for the
Responses API Azure's v1 shape, `/api/openai/v1/responses`, the simulator's
`/openai/v1/responses` direct) and `openai` (`/api/v1/...`). Raw HTTP (httpx) on one
keep-alive connection per path, so the client's own cost is the same on every path and the
difference is the app's: the host's proxy to its worker, key check, validation, the client
module's call, and the usage document written to the Cosmos DB server before a JSON answer is
sent. Prints one JSON object; added = route minus direct, at p50 and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from bench._serve import app_host
from bench._summary import latencies
from devstack.aoai_simulator import SimulatorConfig

API_VERSION = "2025-04-01-preview"
CHAT, EMBEDDING = "gpt-4o", "text-embedding-3-small"
CHAT_BODY = {"messages": [{"role": "user", "content": "echo: " + " ".join(["word"] * 20)}]}
# base64, as the openai SDK asks for it unless told otherwise.
EMBEDDING_BODY = {
    "input": ["the first text to embed", "the second text to embed"],
    "encoding_format": "base64",
}
RESPONSES_BODY = {"input": "echo: " + " ".join(["word"] * 20)}
PATHS = ("direct", "azure", "openai")
MEASURES = (
    "chat_json",
    "embeddings",
    "chat_stream_ttfb",
    "responses_json",
    "responses_stream_first_event",
)

Timed = Callable[[], Awaitable[float]]


class Target:
    """One path to the service: its client, and the URL and body of each operation."""

    def __init__(self, name: str, client: httpx.AsyncClient, deployment_in_url: bool) -> None:
        self.name = name
        self.client = client
        self.deployment_in_url = deployment_in_url

    def _request(self, operation: str, deployment: str, body: dict[str, Any]) -> tuple[str, Any]:
        if operation == "responses":  # the model in the body on every path
            prefix = "openai/v1" if self.deployment_in_url else "v1"
            return f"{prefix}/responses", {**body, "model": deployment}
        if self.deployment_in_url:
            url = f"openai/deployments/{deployment}/{operation}?api-version={API_VERSION}"
            return url, body
        return f"v1/{operation}", {**body, "model": deployment}

    async def whole(self, operation: str, deployment: str, body: dict[str, Any]) -> float:
        url, payload = self._request(operation, deployment, body)
        started = time.perf_counter()
        response = await self.client.post(url, json=payload)
        response.raise_for_status()
        return (time.perf_counter() - started) * 1000

    async def first_byte(self, operation: str, body: dict[str, Any]) -> float:
        url, payload = self._request(operation, CHAT, {**body, "stream": True})
        started = time.perf_counter()
        async with self.client.stream("POST", url, json=payload) as response:
            response.raise_for_status()
            first: float | None = None
            async for data in response.aiter_bytes():
                if first is None and data:
                    first = (time.perf_counter() - started) * 1000
            if first is None:
                raise RuntimeError(f"an empty stream on {self.name}")
            return first


def _operations(path: Target) -> dict[str, Timed]:
    return {
        "chat_json": lambda: path.whole("chat/completions", CHAT, CHAT_BODY),
        "embeddings": lambda: path.whole("embeddings", EMBEDDING, EMBEDDING_BODY),
        "chat_stream_ttfb": lambda: path.first_byte("chat/completions", CHAT_BODY),
        "responses_json": lambda: path.whole("responses", CHAT, RESPONSES_BODY),
        "responses_stream_first_event": lambda: path.first_byte("responses", RESPONSES_BODY),
    }


async def _measure(
    app_url: str, key: str, sim_url: str, sim_key: str, rounds: int, warmup: int
) -> dict[str, Any]:
    app_headers = {"api-key": key, "x-usage-tags": "feature=bench"}
    async with (
        httpx.AsyncClient(base_url=f"{sim_url}/", headers={"api-key": sim_key}, timeout=30) as sim,
        httpx.AsyncClient(base_url=f"{app_url}/", headers=app_headers, timeout=30) as app_a,
        httpx.AsyncClient(base_url=f"{app_url}/", headers=app_headers, timeout=30) as app_o,
    ):
        paths = [
            Target("direct", sim, True),
            Target("azure", app_a, True),
            Target("openai", app_o, False),
        ]
        samples: dict[str, dict[str, list[float]]] = {
            m: {p.name: [] for p in paths} for m in MEASURES
        }
        operations = {p.name: _operations(p) for p in paths}
        for measure in MEASURES:
            for i in range(warmup + rounds):
                for path in paths:
                    elapsed = await operations[path.name][measure]()
                    if i >= warmup:
                        samples[measure][path.name].append(elapsed)
    result: dict[str, Any] = {}
    for measure, by_path in samples.items():
        summaries = {name: latencies(values) for name, values in by_path.items()}
        direct = summaries["direct"]
        result[measure] = {
            **summaries,
            "added": {
                name: {
                    "p50_ms": round(summaries[name]["p50_ms"] - direct["p50_ms"], 3),
                    "p99_ms": round(summaries[name]["p99_ms"] - direct["p99_ms"], 3),
                }
                for name in ("azure", "openai")
            },
        }
    return result


def _simulator_config() -> SimulatorConfig:
    """The defaults with every quota off: a 429 would measure the limiter, not the routes."""
    config = SimulatorConfig()
    for deployment in config.deployments:
        deployment.tpm = 0
        deployment.rpm = 0
    return config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200, help="rounds per measure")
    parser.add_argument("--warmup", type=int, default=20, help="rounds not counted")
    args = parser.parse_args(argv)
    with app_host(_simulator_config()) as (host, stack):
        result = asyncio.run(
            _measure(
                host.url, host.team_key, stack.sim_url, stack.sim_key, args.requests, args.warmup
            )
        )
    print(
        json.dumps(
            {
                "benchmark": "gateway_latency",
                "requests_each": args.requests,
                "cpus": os.cpu_count(),
                **result,
            }
        )
    )


if __name__ == "__main__":
    main()
