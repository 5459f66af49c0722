"""Streaming overhead: time to the first content token through `/api/chat` against the same
request sent straight to the Azure OpenAI simulator, in the same run.

    .venv/bin/python -m bench.chat_ttfb [--requests 200] [--per-token-ms 0]

Starts its own emulators, the simulator and the real app under the local Functions host, each
in its own process on free ports. Requests alternate between the two paths so drift on
the machine affects both alike. The clock runs from sending the request to reading the first
frame that carries text: the first `delta` frame of `/api/chat`, the first chunk with
`choices[0].delta.content` from the simulator (its empty prompt-filter chunk comes earlier and
is not text). Prints one JSON object; the target is under 5 ms added at p50.

The simulator's chat deployment runs without a quota here: `/api/chat` always sends
`max_completion_tokens` (CHAT_MAX_TOKENS_LIMIT, 4096), which Azure charges on arrival, so the
default 1M TPM admits about 240 app requests a minute; the next one got a 429 with a
retry-after near a minute, which the SDK waits out before the stream's first byte. That is
quota, not streaming overhead, and it is what stalled `--requests 300`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

import httpx

from bench._serve import app_host
from bench._summary import latencies
from devstack.aoai_simulator import LatencyConfig, SimulatorConfig

API_VERSION = "2025-04-01-preview"
PROMPT = "echo: " + " ".join(f"token{i}" for i in range(20))
TARGET_ADDED_P50_MS = 5.0
CHAT_DEPLOYMENT = "gpt-4o"


def simulator_config(per_token_ms: float) -> SimulatorConfig:
    """The simulator for this benchmark: the chat deployment without TPM or RPM limits."""
    config = SimulatorConfig(latency=LatencyConfig(per_token_ms=per_token_ms))
    return config.merged({"deployments": {CHAT_DEPLOYMENT: {"tpm": 0, "rpm": 0}}})


async def _first_text(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str], is_text: Any
) -> float:
    started = time.perf_counter()
    async with client.stream("POST", url, json=body, headers=headers) as response:
        response.raise_for_status()
        first: float | None = None
        async for line in response.aiter_lines():
            if first is None and line.startswith("data: {") and is_text(json.loads(line[6:])):
                first = (time.perf_counter() - started) * 1000
        if first is None:
            raise RuntimeError(f"no text frame from {url}")
        return first


def _app_text(frame: dict[str, Any]) -> bool:
    return frame.get("type") == "delta"


def _direct_text(chunk: dict[str, Any]) -> bool:
    choices = chunk.get("choices") or []
    return bool(choices and (choices[0].get("delta") or {}).get("content"))


async def _measure(app_url: str, key: str, sim_url: str, sim_key: str, n: int) -> dict[str, Any]:
    app_body = {"messages": [{"role": "user", "content": PROMPT}], "stream": True}
    direct_body = {**app_body, "stream_options": {"include_usage": True}}
    direct_url = (
        f"{sim_url}/openai/deployments/{CHAT_DEPLOYMENT}/chat/completions?api-version={API_VERSION}"
    )
    app_samples: list[float] = []
    direct_samples: list[float] = []
    async with httpx.AsyncClient(timeout=30) as client:
        for i in range(n + 20):  # the first 20 of each warm connections and code paths
            app = await _first_text(
                client, f"{app_url}/chat", app_body, {"api-key": key}, _app_text
            )
            direct = await _first_text(
                client, direct_url, direct_body, {"api-key": sim_key}, _direct_text
            )
            if i >= 20:
                app_samples.append(app)
                direct_samples.append(direct)
    via_app, straight = latencies(app_samples), latencies(direct_samples)
    added_p50 = round(via_app["p50_ms"] - straight["p50_ms"], 3)
    return {
        "via_api_chat": via_app,
        "straight_to_simulator": straight,
        "added_p50_ms": added_p50,
        "added_p99_ms": round(via_app["p99_ms"] - straight["p99_ms"], 3),
        "target_added_p50_ms": TARGET_ADDED_P50_MS,
        "within_target": added_p50 < TARGET_ADDED_P50_MS,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument(
        "--per-token-ms",
        type=float,
        default=0.0,
        help="simulator stream pace (0: as fast as it can)",
    )
    args = parser.parse_args(argv)
    with app_host(simulator_config(args.per_token_ms)) as (host, stack):
        result = asyncio.run(
            _measure(host.url, host.team_key, stack.sim_url, stack.sim_key, args.requests)
        )
    print(
        json.dumps(
            {
                "benchmark": "chat_ttfb",
                "requests_each": args.requests,
                "per_token_ms": args.per_token_ms,
                "cpus": os.cpu_count(),
                **result,
            }
        )
    )


if __name__ == "__main__":
    main()
