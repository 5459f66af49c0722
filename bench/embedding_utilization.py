"""Embedding quota utilisation: tokens per minute achieved over min(TPM, RPM x tokens per
request), ours (embedding jobs through the real app) against a naive one-request-per-item
loop with the openai SDK's defaults (its own retries), in the same run, on the same quota.

    .venv/bin/python -m bench.embedding_utilization [--tpm 30000] [--rpm 180] [--window 6]

The simulator's embedding deployment gets the quota, in compressed time (bench/_timescale.py:
a "minute" is `--window` seconds on both sides; the app's AOAI_QUOTAS is the per-minute
quota as Azure grants it). Each contender starts on a reset simulator. Tokens are counted on
the simulator's side: `GET /sim/stats` for the deployment, sampled at the end of every fixed
window of `--window` seconds; the first and last window are dropped. Nothing lost means every
item of ours has a succeeded result; the naive loop loses an item when its request finally
fails after the SDK's retries. Target: ours >= 0.95 with nothing lost. Prints one JSON object.

Ours is 4 jobs (`--jobs`) sized to outlast the windows at the full quota; the naive loop runs
8 requests at a time (`--naive-concurrency`, the app's JOB_CONCURRENCY) for as many windows.
For diagnosis: `--skip-naive`.

The hosts share the quota through the ledger in Cosmos DB (AOAI_QUOTA_LEDGER, the default);
`ours.ledger` is what it cost them: store round trips and estimated RUs per upstream request
(bench/_ledger.py). `--header-fed` runs ours again with the ledger off, each host pacing on the
rate-limit headers alone (the limiter before the ledger), as the baseline in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import openai
from openai import AsyncAzureOpenAI

from bench._jobs import (
    API_VERSION,
    Rig,
    Sampler,
    job_totals,
    print_result,
    reset_sim,
    rig,
    submit,
    utilisation,
    wait_jobs,
)
from bench._ledger import ledger_cost
from bench._proc import machine
from bench._timescale import TimeScale, compressed_quota

DEPLOYMENT = "text-embedding-3-small"
TARGET = 0.95
WORDS = ("parcel", "invoice", "router", "refund", "latency", "warranty", "billing", "driver")


def item_text(n: int, tokens: int) -> str:
    """About `tokens` tokens (characters / 4, as the quota counts them), distinct per item."""
    words = [f"{WORDS[(n + i) % len(WORDS)]}{n}" for i in range(tokens)]
    return " ".join(words)[: tokens * 4].ljust(tokens * 4, ".")


async def run_ours(rig_: Rig, args: argparse.Namespace) -> dict[str, Any]:
    """Jobs sized to outlast the measured windows at the full quota; windows until they end."""
    items_needed = (args.windows + 1) * args.tpm // args.item_tokens
    per_job = -(-items_needed // args.jobs)
    async with rig_.app() as app, rig_.sim() as sim:
        await reset_sim(sim)
        started, cpu_before = time.monotonic(), rig_.cpu_seconds()
        async with Sampler(sim, DEPLOYMENT, args.window) as sampler:
            job_ids = []
            for j in range(args.jobs):
                body = {
                    "items": [
                        {"id": f"j{j}-{i}", "text": item_text(j * per_job + i, args.item_tokens)}
                        for i in range(per_job)
                    ],
                    "dimensions": args.dimensions,
                }
                job_ids.append(await submit(app, "embeddings", body))
            views = await wait_jobs(app, job_ids, within=args.window * (args.windows + 3) * 4)
        elapsed = time.monotonic() - started
        cpu = rig_.cpu_seconds() - cpu_before
    windows = sampler.windows()
    answered = sum(w["requests"] - w["throttled"] for w in windows)
    tokens = sum(w["total_tokens"] for w in windows)
    totals = job_totals(views)
    measured = utilisation(windows, args.tpm, args.rpm, tokens / max(1, answered))
    tokens_per_item = tokens / max(1, totals["succeeded"])
    items_per_minute = measured["tokens_per_minute"] / max(1.0, tokens_per_item)
    return {
        "hosts": len(rig_.pids),
        "jobs": args.jobs,
        "items": per_job * args.jobs,
        "seconds": round(elapsed, 1),
        **measured,
        # Every request the hosts sent the deployment, refused ones included (the ledger's
        # cost is per upstream request).
        "upstream_requests": int(sampler.samples[-1]["requests"]),
        "tokens_per_request": round(tokens / max(1, answered)),
        "tokens_per_item": round(tokens_per_item, 1),
        **rates(items_per_minute, args.window),
        # One result document per item (job documents come on top): Cosmos DB's write load.
        "cosmos_result_writes_per_second": round(items_per_minute / args.window, 1),
        "host_cpu_share_of_a_core": round(cpu / elapsed / max(1, len(rig_.pids)), 3),
        "host_cpu_ms_per_item": round(cpu * 1000 / max(1, totals["succeeded"]), 3),
        "host_peak_rss_mib": rig_.peak_rss_mib(),
        "items_by_outcome": totals,
    }


def rates(items_per_minute: float, window: float) -> dict[str, float]:
    """Items per (Azure) minute and second; a compressed minute holds an Azure minute's work."""
    return {
        "items_per_minute": round(items_per_minute, 1),
        "items_per_second": round(items_per_minute / 60.0, 2),
        "items_per_real_second": round(items_per_minute / window, 1),
    }


async def run_naive(rig_: Rig, args: argparse.Namespace) -> dict[str, Any]:
    """One request per item, SDK defaults, `--naive-concurrency` at a time, for as many
    windows as ours is measured over; items in flight at the end are waited for."""
    lost = done = 0
    next_item = 0
    async with (
        rig_.sim() as sim,
        AsyncAzureOpenAI(
            azure_endpoint=rig_.sim_url, api_key=rig_.sim_key, api_version=API_VERSION
        ) as client,
    ):
        await reset_sim(sim)
        deadline = time.monotonic() + args.window * (args.windows + 2)

        async def worker() -> None:
            nonlocal lost, done, next_item
            while time.monotonic() < deadline:
                n = next_item
                next_item += 1
                try:
                    await client.embeddings.create(
                        model=DEPLOYMENT,
                        input=item_text(n, args.item_tokens),
                        dimensions=args.dimensions,
                    )
                    done += 1
                except openai.APIError:  # the SDK gave up after its retries: the item is lost
                    lost += 1

        async with Sampler(sim, DEPLOYMENT, args.window) as sampler:
            await asyncio.gather(*(worker() for _ in range(args.naive_concurrency)))
        stats = sampler.samples[-1]
    windows = sampler.windows()
    measured = utilisation(windows, args.tpm, args.rpm, args.item_tokens)
    return {
        "concurrency": args.naive_concurrency,
        "max_retries": client.max_retries,
        **measured,
        # One item per request: items are the requests answered.
        **rates(measured["requests_per_minute"], args.window),
        "tokens_per_request": args.item_tokens,
        "items_by_outcome": {"total": next_item, "succeeded": done, "lost": lost},
        "requests_sent_with_retries": int(stats["requests"]),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tpm", type=int, default=30_000, help="tokens per minute (quota)")
    parser.add_argument("--rpm", type=int, default=180, help="requests per minute (quota)")
    parser.add_argument(
        "--window", type=float, default=6.0, help="seconds of a compressed minute (Azure: 60)"
    )
    parser.add_argument(
        "--windows", type=int, default=11, help="windows measured, first and last included"
    )
    parser.add_argument("--item-tokens", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument(
        "--hosts", type=int, default=1, help="host processes sharing the queues and the database"
    )
    parser.add_argument(
        "--dimensions", type=int, default=16, help="vector size (the local Cosmos DB stores them)"
    )
    parser.add_argument("--naive-concurrency", type=int, default=8)
    parser.add_argument("--skip-naive", action="store_true", help="ours only (diagnosis)")
    parser.add_argument(
        "--header-fed",
        action="store_true",
        help="ours again with AOAI_QUOTA_LEDGER=false (each host on the rate-limit headers "
        "alone), after ours: the baseline of the shared ledger in the same run",
    )
    args = parser.parse_args(argv)
    config, quotas = compressed_quota(DEPLOYMENT, args.tpm, args.rpm, args.window)
    with rig(config, TimeScale(args.window)) as stack:
        with stack.host({"AOAI_QUOTAS": quotas}, hosts=args.hosts) as running:
            ours = asyncio.run(run_ours(running, args))
            naive = None if args.skip_naive else asyncio.run(run_naive(running, args))
        # The hosts log what the ledger cost them as they stop.
        ours["ledger"] = ledger_cost(running.logs, ours["upstream_requests"])
        header_fed = None
        if args.header_fed:
            off = {"AOAI_QUOTAS": quotas, "AOAI_QUOTA_LEDGER": "false"}
            with stack.host(off, hosts=args.hosts) as running:
                header_fed = asyncio.run(run_ours(running, args))
    print_result(
        {
            "benchmark": "embedding_utilization",
            "tokens_counted_by": "simulator /sim/stats per deployment, sampled each window",
            "tpm": args.tpm,
            "rpm": args.rpm,
            "window_seconds": args.window,
            "item_tokens": args.item_tokens,
            "hosts": args.hosts,
            "latency_model": "simulator defaults (no added latency)",
            **machine(),
            "ours": ours,
            **({"naive": naive} if naive else {}),
            **({"header_fed": header_fed} if header_fed else {}),
            "target": TARGET,
            "within_target": ours["utilisation"] >= TARGET
            and ours["items_by_outcome"]["lost"] == 0,
        }
    )


if __name__ == "__main__":
    main()
