"""Classification items per request: items per second and tokens per item for several values
of CLASSIFY_ITEMS_PER_REQUEST, through the real pipeline under a TPM/RPM quota on the chat
deployment.

    .venv/bin/python -m bench.classify_batching [--sizes 1,5,10,20,40] [--tpm 30000] [--rpm 180]

For each size the app is started afresh with that setting (it is read once per process) on a
reset simulator, one job of more items than the windows can take is submitted, and the job's
succeeded count and the simulator's counters are sampled at the end of each fixed window of
`--window` seconds (compressed time, as bench/_timescale.py explains); the first and last
window are dropped, then the job is cancelled. Tokens per item are the simulator's usage
tokens over the items labelled in the kept windows; `charged_per_item` is what the quota
counts on arrival (prompt estimate + max_completion_tokens, the app's own estimate), which
decides whether TPM or RPM binds: items per minute allowed = min(TPM / charged per item,
RPM x items per request). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

from bench._jobs import Rig, Sampler, print_result, reset_sim, rig, submit
from bench._timescale import TimeScale, compressed_quota
from shared.jobs.classification import MESSAGE_OVERHEAD_TOKENS, max_answer_tokens, messages
from shared.jobs.embeddings import estimate_tokens
from shared.jobs.models import Item, JobSpec

DEPLOYMENT = "gpt-4o"
LABELS = ["billing", "shipping", "technical", "account", "other"]
TOPICS = (
    "invoice charged twice",
    "parcel arrived late",
    "login error on the app",
    "password reset link",
    "general question",
)


def item(n: int) -> dict[str, str]:
    return {"id": f"t{n}", "text": f"ticket {n}: {TOPICS[n % len(TOPICS)]}, please help soon"}


def charged_per_item(size: int) -> float:
    """What the quota charges per item for requests of `size` items (the app's estimate)."""
    spec = JobSpec(deployment=DEPLOYMENT, labels=LABELS)
    group = [Item(**item(n)) for n in range(size)]
    prompt = sum(
        estimate_tokens(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in messages(spec, group)
    )
    return (prompt + max_answer_tokens(spec, group)) / size


async def measure(rig_: Rig, size: int, args: argparse.Namespace) -> dict[str, Any]:
    charged = charged_per_item(size)
    allowed = min(args.tpm / charged, args.rpm * size)  # items per minute
    n_items = int(allowed * (args.windows + 2)) + size
    async with rig_.app() as app, rig_.sim() as sim:
        await reset_sim(sim)
        succeeded: list[int] = []
        job_id = ""

        async def progress() -> None:
            response = await app.get(f"/jobs/{job_id}", params={"page_size": 1})
            succeeded.append(int(response.json()["counts"]["succeeded"]))

        body = {"items": [item(n) for n in range(n_items)], "labels": LABELS}
        job_id = await submit(app, "classifications", body)
        sampler = Sampler(sim, DEPLOYMENT, args.window, on_sample=progress)
        started = time.monotonic()
        async with sampler:
            await asyncio.sleep(args.window * args.windows + 0.5)
        elapsed = time.monotonic() - started
        (await app.post(f"/jobs/{job_id}/cancel")).raise_for_status()
        view = (await app.get(f"/jobs/{job_id}", params={"page_size": 1})).json()
    windows = sampler.windows()[1:-1]
    labelled = succeeded[-2] - succeeded[1]
    tokens = sum(w["total_tokens"] for w in windows)
    minutes = len(windows)  # each window is one compressed minute
    return {
        "items_per_request": size,
        "items_per_second": round(labelled / minutes / 60, 2),  # per Azure second
        "items_per_minute": round(labelled / minutes, 1),
        "allowed_items_per_minute": round(allowed, 1),
        "utilisation": round(labelled / minutes / allowed, 4),
        "binding_limit": "tpm" if args.tpm / charged <= args.rpm * size else "rpm",
        "usage_tokens_per_item": round(tokens / labelled, 1) if labelled else None,
        "charged_tokens_per_item": round(charged, 1),
        "requests_per_minute": round(
            sum(w["requests"] - w["throttled"] for w in windows) / minutes, 1
        ),
        "share_429": round(
            sum(w["throttled"] for w in windows) / max(1, sum(w["requests"] for w in windows)), 4
        ),
        "seconds": round(elapsed, 1),
        "items_failed": int(view["counts"]["failed"]) + int(view["counts"]["content_filtered"]),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1,5,10,20,40", help="items per request to compare")
    parser.add_argument("--tpm", type=int, default=30_000, help="tokens per minute (quota)")
    parser.add_argument("--rpm", type=int, default=180, help="requests per minute (quota)")
    parser.add_argument(
        "--window", type=float, default=6.0, help="seconds of a compressed minute (Azure: 60)"
    )
    parser.add_argument(
        "--windows", type=int, default=4, help="windows measured per size, first and last included"
    )
    args = parser.parse_args(argv)
    config, quotas = compressed_quota(DEPLOYMENT, args.tpm, args.rpm, args.window)
    results = []
    with rig(config, TimeScale(args.window)) as stack:
        for size in (int(s) for s in args.sizes.split(",")):
            settings = {"AOAI_QUOTAS": quotas, "CLASSIFY_ITEMS_PER_REQUEST": str(size)}
            with stack.host(settings) as running:
                results.append(asyncio.run(measure(running, size, args)))
    print_result(
        {
            "benchmark": "classify_batching",
            "tokens_counted_by": "simulator /sim/stats per deployment, sampled each window",
            "tpm": args.tpm,
            "rpm": args.rpm,
            "window_seconds": args.window,
            "labels": len(LABELS),
            "cpus": os.cpu_count(),
            "sizes": results,
        }
    )


if __name__ == "__main__":
    main()
