"""`python -m soak [--duration 600] [--rate R] [--hosts 3] [--seed 1] [--outage 60]`: run the
soak (see docs/soak.md). Prints a line per fault, then a table and one JSON line; exits 1 if
anything was lost, duplicated or sent upstream twice, or a check failed."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import tempfile
import time
from pathlib import Path

from soak.checks import Figures, check, open_store, queue_depths, unfinished
from soak.faults import LONG_OUTAGE_SECONDS, Faults
from soak.load import Load
from soak.stack import SoakStack, soak_stack

LEASE_SECONDS = 20.0


def say(started: float, text: str) -> None:
    print(f"[{time.monotonic() - started:7.1f}s] {text}", flush=True)


async def soak(stack: SoakStack, duration: float, rate: float, seed: int, outage: float) -> Figures:
    started = time.monotonic()
    load = Load(
        hosts=stack.hosts,
        connection_string=stack.connection_string,
        queues={
            "embedding": stack.environ["EMBEDDING_QUEUE"],
            "classification": stack.environ["CLASSIFICATION_QUEUE"],
        },
        rate=rate,
        rng=random.Random(seed),  # noqa: S311 (a reproducible load, not a secret)
    )
    faults = Faults(stack, started, long_outage=outage)
    say(started, f"load: {rate:g} jobs/s for {duration:.0f}s on {len(stack.hosts)} hosts")
    loading = asyncio.create_task(load.run())
    kinds = await faults.run(duration)
    await asyncio.sleep(max(0.0, started + duration - time.monotonic()))
    load.stop()
    await loading
    accepted = {s.job_id for s in load.submissions if s.accepted}
    say(started, f"load stopped: {len(accepted)} jobs accepted; waiting for them to finish")
    store = open_store(stack)
    try:
        deadline = time.monotonic() + max(300.0, duration)
        left = await unfinished(store, accepted)
        while left and time.monotonic() < deadline:
            await asyncio.sleep(3)
            left = await unfinished(store, accepted)
        say(started, f"{len(accepted) - len(left)} of {len(accepted)} jobs terminal")
        # A leased or delayed message of a finished job still has to run out (and be deleted).
        for _ in range(int(LEASE_SECONDS + 60) // 3):
            if not any((await queue_depths(stack)).values()):
                break
            await asyncio.sleep(3)
        say(started, "queues drained; checking")
        figures = await check(stack, store, load.submissions)
        figures.problems.extend(faults.problems)
        say(started, "checked")
    finally:
        await store.aclose()
    figures.details["fault_kinds"] = sorted(set(kinds))
    figures.details["faults"] = faults.events
    figures.details["seconds"] = round(time.monotonic() - started, 1)
    figures.details["duration"] = duration
    figures.details["hosts"] = len(stack.hosts)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__)
    parser.add_argument("--duration", type=float, default=600, help="seconds of load and faults")
    parser.add_argument(
        "--rate", type=float, default=None, help="jobs per second (default: 1, or 0.6 under 180 s)"
    )
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--outage",
        type=float,
        default=LONG_OUTAGE_SECONDS,
        help="seconds of the long Azure OpenAI and Cosmos DB outages after the fault cycles "
        "(an hour in the soak's compressed time; 0: none)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    rate = args.rate or (0.6 if args.duration < 180 else 1.0)
    with (
        tempfile.TemporaryDirectory(prefix="soak-") as tmp,
        soak_stack(Path(tmp), hosts=args.hosts, lease_seconds=LEASE_SECONDS) as stack,
    ):
        figures = asyncio.run(soak(stack, args.duration, rate, args.seed, args.outage))
        failed = figures.lost or figures.duplicated or figures.sent_twice or figures.problems
        if failed:  # keep the hosts' logs for a look
            keep = Path(tempfile.mkdtemp(prefix="soak-logs-"))
            for i, process in enumerate(stack.hosts):
                (keep / f"host-{i}.log").write_bytes(process.log.read_bytes())
            figures.details["logs"] = str(keep)
    print()
    print(figures.table())
    for problem in figures.problems[:20]:
        print(f"  problem: {problem}")
    print(json.dumps({"soak": figures.as_json()}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
