"""Interactive calls first: chat at a steady rate on the deployment a classification job is
filling, against the same chat with no job, in the same run; with the policy (the defaults of
JOB_HEADROOM_FACTOR and JOB_HEADROOM_MIN_TOKENS) and without it (both 0) as the baseline.

    .venv/bin/python -m bench.chat_under_jobs [--tpm 30000] [--rpm 180] [--chat-share 0.1]
        [--window 6] [--windows 8] [--contenders policy,off,policy_one_host]

The app runs as Flex Consumption scales it (bench/_jobs.py `per_function_scaling`): the chats
on a host of HTTP functions, the job on a host of queue functions, sharing the quota through
the ledger in Cosmos DB (docs/jobs.md). `policy_one_host` runs everything in one host process,
as no Azure plan the infra deploys does: there the job's work shares the chats' event loop.

Per contender the app is started afresh on a reset simulator (compressed time as
bench/_timescale.py explains: a quota "minute" of `--window` seconds on both sides). Streamed
chats (`max_tokens` CHAT_MAX_TOKENS) are sent open-loop, one every so often, so they use
`--chat-share` of the TPM: first with no job for `--windows` windows; then a classification
job of more items than the windows can take is submitted to the same deployment (gpt-4o,
CLASSIFY_DEPLOYMENT = CHAT_DEPLOYMENT), and once it has results the same chat runs for
`--windows` + 2 windows, the job's succeeded count sampled at each window's end (the first and
last window dropped); then the job is cancelled. The host's SDK does not retry
(AOAI_MAX_RETRIES=0), so a chat that met a 429 upstream reaches the bench as a 429.

Figures, per contender:
- `chat_429_share`: chats answered 429 while the job ran, over chats sent then (target <= 0.01);
- `ttfb_p99_ms` with and without the job: from sending to the first `delta` frame, chats
  answered 200 (target: under the job within 1.5x of no job);
- `classify_utilization_under_chat`: the job's quota tokens per minute over what the chat
  left, TPM - the chats' quota tokens per minute (target >= 0.85). Quota tokens are what the
  quota charges on arrival (prompt estimate + max tokens): a labelled item costs the app's
  estimate per item (bench/classify_batching.py), a chat what the simulator charges it.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from dataclasses import dataclass
from typing import Any

import httpx

from bench._jobs import (
    Rig,
    Sampler,
    per_function_scaling,
    print_result,
    reset_sim,
    rig,
    submit,
)
from bench._summary import latencies
from bench._timescale import TimeScale, compressed_quota
from bench.classify_batching import DEPLOYMENT, LABELS, charged_per_item, item
from devstack.aoai_simulator.chat import rate_limit_estimate

CHAT_MAX_TOKENS = 100
ITEMS_PER_REQUEST = 10  # CLASSIFY_ITEMS_PER_REQUEST's default
WARM_CHATS = 10
TARGET_429_SHARE = 0.01
TARGET_TTFB_RATIO = 1.5
TARGET_UTILISATION = 0.85
OFF = {"JOB_HEADROOM_FACTOR": "0", "JOB_HEADROOM_MIN_TOKENS": "0"}
# name: (settings, the per-function layout of Flex Consumption, else one host for everything)
CONTENDERS: dict[str, tuple[dict[str, str], bool]] = {
    "policy": ({}, True),  # the defaults
    "off": (OFF, True),
    "policy_one_host": ({}, False),
    # Not run by default: a wider headroom, to see what it buys (--contenders wide).
    "wide": ({"JOB_HEADROOM_MIN_TOKENS": "3000"}, True),
}


def chat_messages(n: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"question {n}: where is my parcel, it is late again"}]


def chat_charge() -> int:
    """What the quota charges a chat on arrival (the simulator's count, as Azure's)."""
    return rate_limit_estimate(
        {"messages": chat_messages(10_000), "max_completion_tokens": CHAT_MAX_TOKENS}
    )


@dataclass
class Chat:
    sent_at: float
    status: int
    ttfb_ms: float | None  # None: no text came (refused)


async def one_chat(app: httpx.AsyncClient, n: int) -> Chat:
    body = {"messages": chat_messages(n), "max_tokens": CHAT_MAX_TOKENS, "stream": True}
    started = time.perf_counter()
    sent_at = time.monotonic()
    first: float | None = None
    async with app.stream("POST", "/chat", json=body) as response:
        async for line in response.aiter_lines():
            text = first is None and line.startswith("data: {")
            if text and json.loads(line[6:]).get("type") == "delta":
                first = (time.perf_counter() - started) * 1000
    return Chat(sent_at, response.status_code, first if response.status_code == 200 else None)


async def chat_at_rate(
    app: httpx.AsyncClient,
    every: float,
    seconds: float | None = None,
    stop: asyncio.Event | None = None,
) -> list[Chat]:
    """One chat every `every` seconds for `seconds` (or until the event `stop` is set),
    open-loop: a slow answer delays none."""
    tasks = []
    start = time.monotonic()
    n = 0
    while (seconds is None or n < max(1, int(seconds / every))) and not (stop and stop.is_set()):
        await asyncio.sleep(max(0.0, start + n * every - time.monotonic()))
        tasks.append(asyncio.create_task(one_chat(app, n)))
        n += 1
    return list(await asyncio.gather(*tasks))


def chat_figures(chats: list[Chat]) -> dict[str, Any]:
    answered = [c.ttfb_ms for c in chats if c.ttfb_ms is not None]
    refused = sum(1 for c in chats if c.status == 429)
    return {
        "sent": len(chats),
        "answered": len(answered),
        "refused_429": refused,
        "other_errors": sum(1 for c in chats if c.status not in (200, 429)),
        "share_429": round(refused / len(chats), 4) if chats else 0.0,
        "ttfb": latencies(answered) if answered else None,
    }


async def wait_started(app: httpx.AsyncClient, job_id: str, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        view = (await app.get(f"/jobs/{job_id}", params={"page_size": 1})).json()
        if int(view["counts"]["succeeded"]) > 0:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"job {job_id} labelled nothing in {within:.0f}s")


async def measure(rig_: Rig, args: argparse.Namespace) -> dict[str, Any]:
    charge = chat_charge()
    per_item = charged_per_item(ITEMS_PER_REQUEST)
    chats_per_minute = args.chat_share * args.tpm / charge
    every = args.window / chats_per_minute
    allowed = args.tpm / per_item  # items per minute with the whole quota
    async with rig_.app() as app, rig_.sim() as sim:
        await reset_sim(sim)
        await chat_at_rate(app, every, WARM_CHATS * every)
        alone = await chat_at_rate(app, every, args.window * args.windows)
        body = {
            "items": [item(n) for n in range(int(allowed * (args.windows + 6)))],
            "labels": LABELS,
        }
        job_id = await submit(app, "classifications", body)
        # The chat goes on, at the same pace, while the job starts and reaches the quota (a
        # window after its first results), and while it is measured.
        stop = asyncio.Event()
        chatting = asyncio.create_task(chat_at_rate(app, every, stop=stop))
        await wait_started(app, job_id, within=args.window * 10)
        await asyncio.sleep(args.window)
        succeeded: list[int] = []
        stamps: list[float] = []

        async def progress() -> None:
            response = await app.get(f"/jobs/{job_id}", params={"page_size": 1})
            succeeded.append(int(response.json()["counts"]["succeeded"]))
            stamps.append(time.monotonic())

        sampler = Sampler(sim, DEPLOYMENT, args.window, on_sample=progress)
        async with sampler:
            await asyncio.sleep(args.window * (args.windows + 2) + 0.5)
        stop.set()
        chats = await chatting
        (await app.post(f"/jobs/{job_id}/cancel")).raise_for_status()
    # The chats sent while the job was measured: every window, the dropped ones too.
    under = [c for c in chats if stamps[0] <= c.sent_at < stamps[-1]]
    windows = sampler.windows()[1:-1]
    minutes = len(windows)  # each window is one compressed minute
    kept_from, kept_to = stamps[1], stamps[-2]
    labelled = succeeded[-2] - succeeded[1]
    job_per_minute = labelled * per_item / minutes
    chats_kept = sum(1 for c in under if kept_from <= c.sent_at < kept_to and c.status == 200)
    chat_per_minute = chats_kept * charge / minutes
    left = args.tpm - chat_per_minute
    no_job, with_job = chat_figures(alone), chat_figures(under)
    ratio = (
        with_job["ttfb"]["p99_ms"] / no_job["ttfb"]["p99_ms"]
        if with_job["ttfb"] and no_job["ttfb"]
        else None
    )
    return {
        "chat_429_share": with_job["share_429"],
        "ttfb_p99_ratio": round(ratio, 3) if ratio is not None else None,
        "classify_utilization_under_chat": round(job_per_minute / left, 4),
        "quota_utilisation": round((job_per_minute + chat_per_minute) / args.tpm, 4),
        "chat_no_job": no_job,
        "chat_under_job": with_job,
        "chat_quota_tokens_per_minute": round(chat_per_minute),
        "job_quota_tokens_per_minute": round(job_per_minute),
        "job_items_per_minute": round(labelled / minutes, 1),
        "windows_kept": minutes,
        "simulator_share_429": round(
            sum(w["throttled"] for w in windows) / max(1, sum(w["requests"] for w in windows)), 4
        ),
        "per_window_usage_tokens": [w["total_tokens"] for w in windows],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tpm", type=int, default=30_000, help="tokens per minute (quota)")
    parser.add_argument("--rpm", type=int, default=180, help="requests per minute (quota)")
    parser.add_argument("--chat-share", type=float, default=0.1, help="of the TPM, by chats")
    parser.add_argument("--window", type=float, default=6.0, help="a compressed minute, s")
    parser.add_argument("--windows", type=int, default=8, help="windows measured")
    parser.add_argument(
        "--contenders", default="policy,off,policy_one_host", help=",".join(CONTENDERS)
    )
    args = parser.parse_args(argv)
    config, quotas = compressed_quota(DEPLOYMENT, args.tpm, args.rpm, args.window)
    results: dict[str, Any] = {}
    with rig(config, TimeScale(args.window)) as stack:
        for name in args.contenders.split(","):
            own, per_function = CONTENDERS[name]
            settings = {
                "AOAI_QUOTAS": quotas,
                "AOAI_MAX_RETRIES": "0",  # a chat's upstream 429 reaches the bench
                **own,
            }
            layout = per_function_scaling() if per_function else ()
            with stack.host(settings, per_host=layout) as running:
                results[name] = asyncio.run(measure(running, args))
    ours = results.get("policy")
    print_result(
        {
            "benchmark": "chat_under_jobs",
            "tpm": args.tpm,
            "rpm": args.rpm,
            "window_seconds": args.window,
            "chat_share_of_tpm": args.chat_share,
            "chat_quota_tokens": chat_charge(),
            "job_quota_tokens_per_item": round(charged_per_item(ITEMS_PER_REQUEST), 1),
            "cpus": os.cpu_count(),
            **results,
            "targets": {
                "chat_429_share": TARGET_429_SHARE,
                "ttfb_p99_ratio": TARGET_TTFB_RATIO,
                "classify_utilization_under_chat": TARGET_UTILISATION,
            },
            "within_target": bool(
                ours
                and ours["chat_429_share"] <= TARGET_429_SHARE
                and ours["ttfb_p99_ratio"] is not None
                and ours["ttfb_p99_ratio"] <= TARGET_TTFB_RATIO
                and ours["classify_utilization_under_chat"] >= TARGET_UTILISATION
            ),
        }
    )


if __name__ == "__main__":
    main()
