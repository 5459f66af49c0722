"""Chats admitted against the quota's bound, with no caller cap: the learned output cap against
the fixed one (CHAT_MAX_TOKENS_LIMIT, 4,096), in the same run.

    .venv/bin/python -m bench.chat_caps [--tpm 80000] [--window 6] [--windows 10]

Starts its own emulators (in memory), the Azure OpenAI simulator and, one after the other, two
hosts of the real function_app.py under the local Functions host: the baseline with
CHAT_CAP_LEARNING=false (every chat sent with max_completion_tokens 4,096, as before) and the
default settings (learned caps). The simulator's answers have realistic lengths
(`answer_length`: median 250, p99 1,500 tokens, lognormal) and its chat deployment the quota
`--tpm` with Azure's 6 RPM per 1,000 TPM; it books prompt + max_tokens on arrival, as Azure
does, and gives nothing back.

Compressed time (bench/_timescale.py): a quota minute lasts `--window` seconds on the
simulator, its TPM and RPM scaled so each window holds a minute's worth; "per minute" below is
per compressed minute. `--callers` callers send chats naming no cap (a prompt of about 50
tokens, different each time) in a closed loop; a 429 (which the app now answers at once) is
retried after `--pause` seconds. Each host first warms up until it has answered
CHAT_CAP_MIN_SAMPLES chats (100 by default, the learning's warm-up), then is measured for
`--windows` windows.

- `chat_admitted_share_of_bound`: chats admitted per minute over min(RPM, TPM / mean real
  tokens per chat), the real tokens being the usage the simulator reported (prompt +
  completion): what the quota could admit if each chat booked only what it used.
- `chat_truncated_share`: of the admitted chats, those that ended `finish_reason: length`,
  cut by a cap the caller did not set (the callers set none).

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench._serve import local_stack
from bench._timescale import TimeScale, host_json, scaled
from devstack.aoai_simulator import SimulatorConfig
from devstack.aoai_simulator.config import AnswerLengthConfig
from devstack.hosted_app import make_app_dir, run_app_host
from devstack.provision import provision
from shared.core.settings import load_settings

DEPLOYMENT = "gpt-4o"
TARGET_SHARE = 0.8
TARGET_TRUNCATED = 0.01
WARM_UP_ANSWERS = 100  # CHAT_CAP_MIN_SAMPLES' default
# About 50 tokens: the arithmetic (~0.07 of the bound at 4,096 for 250-token answers).
TOPIC = "Summarise the main points of the quarterly report for the operations team, briefly."


@dataclass
class Tally:
    admitted: int = 0
    refused: int = 0
    failed: int = 0
    truncated: int = 0
    real_tokens: list[int] = field(default_factory=list)
    completion_tokens: list[int] = field(default_factory=list)


def simulator_config(tpm: int, rpm: int, window: float) -> SimulatorConfig:
    config = SimulatorConfig(answer_length=AnswerLengthConfig(median=250, p99=1500))
    return config.merged(
        {
            "rate_limit": {"window_seconds": window},
            "deployments": {DEPLOYMENT: {"tpm": scaled(tpm, window), "rpm": scaled(rpm, window)}},
        }
    )


async def _load(
    url: str, key: str, tally: Tally, until: float, callers: int, pause: float, prefix: str
) -> None:
    counter = iter(range(10**9))

    async def caller(client: httpx.AsyncClient) -> None:
        while time.monotonic() < until:
            text = f"{prefix} {next(counter)}: {TOPIC}"
            body = {"messages": [{"role": "user", "content": text}]}
            try:
                response = await client.post("/chat", json=body, headers={"api-key": key})
            except httpx.HTTPError:
                tally.failed += 1
                continue
            if response.status_code == 429:
                tally.refused += 1
                await asyncio.sleep(pause)
                continue
            if response.status_code != 200:
                tally.failed += 1
                await asyncio.sleep(pause)
                continue
            answer = response.json()
            tally.admitted += 1
            tally.truncated += answer["finish_reason"] == "length"
            tally.real_tokens.append(answer["usage"]["total_tokens"])
            tally.completion_tokens.append(answer["usage"]["completion_tokens"])

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await asyncio.gather(*(caller(client) for _ in range(callers)))


async def _variant(
    url: str, key: str, args: argparse.Namespace, rpm: int, prefix: str
) -> dict[str, Any]:
    warm = Tally()
    started = time.monotonic()
    while warm.admitted < WARM_UP_ANSWERS:  # the learning's warm-up, not measured
        await _load(
            url, key, warm, time.monotonic() + args.window, args.callers, args.pause, prefix
        )
    warm_seconds = time.monotonic() - started
    tally = Tally()
    began = time.monotonic()
    await _load(
        url,
        key,
        tally,
        began + args.window * args.windows,
        args.callers,
        args.pause,
        prefix + "m",
    )
    minutes = (time.monotonic() - began) / args.window
    mean_real = statistics.fmean(tally.real_tokens) if tally.real_tokens else 0.0
    bound = min(rpm, args.tpm / mean_real) if mean_real else 0.0
    per_minute = tally.admitted / minutes
    return {
        "warm_up_seconds": round(warm_seconds, 1),
        "minutes": round(minutes, 2),
        "admitted": tally.admitted,
        "refused_429": tally.refused,
        "failed": tally.failed,
        "truncated": tally.truncated,
        "admitted_per_minute": round(per_minute, 2),
        "mean_real_tokens_per_chat": round(mean_real, 1),
        "completion_tokens_p50": _quantile(tally.completion_tokens, 0.5),
        "completion_tokens_p99": _quantile(tally.completion_tokens, 0.99),
        "bound_per_minute": round(bound, 2),
        "admitted_share_of_bound": round(per_minute / bound, 4) if bound else None,
        "truncated_share": round(tally.truncated / tally.admitted, 4) if tally.admitted else None,
    }


def _quantile(values: list[int], share: float) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _measure_host(
    stack_environ: dict[str, str],
    folder: Any,
    extra: dict[str, str],
    args: argparse.Namespace,
    rpm: int,
    sim_url: str,
    prefix: str,
) -> dict[str, Any]:
    environ = {**stack_environ, **TimeScale(args.window).app_settings(), **extra}
    app_dir = folder / f"app-{prefix}"
    host_json(app_dir, args.window)
    httpx.post(f"{sim_url}/sim/reset", json={}).raise_for_status()  # empty quota windows
    with run_app_host(make_app_dir(app_dir, environ)) as host:
        result = asyncio.run(_variant(host.url, host.team_key, args, rpm, prefix))
    # The cap the last chat was sent with: the learned one at the end of the run, or 4,096.
    last = httpx.get(f"{sim_url}/sim/requests/{DEPLOYMENT}/last").json()
    result["last_max_completion_tokens"] = last.get("max_completion_tokens")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tpm", type=int, default=80_000, help="the quota, per minute")
    parser.add_argument("--window", type=float, default=6.0, help="seconds of a quota minute")
    parser.add_argument("--windows", type=int, default=20, help="minutes measured per variant")
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--pause", type=float, default=0.2, help="seconds after a 429")
    args = parser.parse_args(argv)
    rpm = max(1, args.tpm * 6 // 1000)  # Azure's 6 RPM per 1,000 TPM
    config = simulator_config(args.tpm, rpm, args.window)
    with local_stack(config) as stack:
        asyncio.run(provision(load_settings(stack.environ)))
        fixed = _measure_host(
            stack.environ, stack.tmp, {"CHAT_CAP_LEARNING": "false"}, args, rpm, stack.sim_url, "f"
        )
        learned = _measure_host(stack.environ, stack.tmp, {}, args, rpm, stack.sim_url, "l")
    share, truncated = learned["admitted_share_of_bound"], learned["truncated_share"]
    print(
        json.dumps(
            {
                "benchmark": "chat_caps",
                "tpm": args.tpm,
                "rpm": rpm,
                "window_seconds": args.window,
                "answer_length": {"median": 250, "p99": 1500},
                "callers": args.callers,
                "cpus": os.cpu_count(),
                "learned": learned,
                "fixed_4096": fixed,
                "chat_admitted_share_of_bound": share,
                "chat_truncated_share": truncated,
                "baseline_admitted_share_of_bound": fixed["admitted_share_of_bound"],
                "baseline_truncated_share": fixed["truncated_share"],
                "target_share": TARGET_SHARE,
                "target_truncated_share": TARGET_TRUNCATED,
                "within_target": bool(
                    share is not None
                    and truncated is not None
                    and share >= TARGET_SHARE
                    and truncated <= TARGET_TRUNCATED
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
