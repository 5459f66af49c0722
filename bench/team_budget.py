"""Team budgets under concurrency, and what the team check adds to a call.

    .venv/bin/python -m bench.team_budget [--runs 5] [--hosts 3] [--callers 60] [--calls 2000]

Against the local Cosmos DB server (started on free ports, in memory), through the real SDK:

- `budget_overshoot_ratio`: `hosts` TeamLimiter instances (one per host) and `callers`
  concurrent callers spread over them call until refused, against a day budget of about ten
  worst cases. A call reserves its worst case (prompt + output cap) and uses 50-100% of it, as
  Azure bills at most the cap. The ratio is what was really used over the budget, the worst of
  `runs` runs. The baseline in the same run is the check of the best-known gateways: read the
  spend, admit while it is under the budget, add the real use after the call.
- `team_check_added_p50_ms`: a team under half its limits, `calls` sequential calls of
  reserve + settle, p50, minus the p50 of the same loop without the check (the timer's own
  cost). `store_round_trips_per_call` says how often the store was asked.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from azure.cosmos.exceptions import CosmosAccessConditionFailedError

from devstack.emulators import EmulatorPorts, start_emulators, stop_emulators
from devstack.hosted_app import stack_environ
from devstack.provision import provision
from shared.core.errors import RateLimited
from shared.core.settings import load_settings
from shared.core.store import TEAM_SPEND, Store, create_store
from shared.metering.team_limits import TeamLimiter
from shared.metering.teams import Team

WORST = 1000  # tokens: a 200-token prompt and an output cap of 800
BUDGET = 10 * WORST
WHEN = datetime(2031, 1, 1, tzinfo=UTC)


def _team(**limits: Any) -> Team:
    return Team(id=f"b-{uuid.uuid4().hex[:12]}", created_at=WHEN, updated_at=WHEN, **limits)


async def _call(rng: random.Random) -> int:
    await asyncio.sleep(rng.uniform(0.005, 0.02))  # the call upstream
    return rng.randint(WORST // 2, WORST)


async def _ours(store: Store, hosts: int, callers: int, rng: random.Random) -> int:
    limiters = [TeamLimiter(store, timeout=30) for _ in range(hosts)]
    team, used = _team(daily_tokens=BUDGET), 0

    async def caller(limiter: TeamLimiter) -> None:
        nonlocal used
        while True:
            try:
                booking = await limiter.reserve(team, WORST, 0.0)
            except RateLimited:
                return
            real = await _call(rng)
            used += real
            await limiter.settle(booking, real, 0.0)

    await asyncio.gather(*(caller(limiters[i % hosts]) for i in range(callers)))
    return used


async def _read_then_add(store: Store, callers: int, rng: random.Random) -> int:
    """The baseline: admit while the spend read is under the budget; add the use after."""
    team_id, used = f"b-{uuid.uuid4().hex[:12]}", 0

    async def spent() -> int:
        doc = await store.read(TEAM_SPEND, team_id, team_id)
        return int(doc["day_tokens"]) if doc else 0

    async def caller() -> None:
        nonlocal used
        while await spent() < BUDGET:
            real = await _call(rng)
            used += real
            for _ in range(64):  # add under ETag, so the baseline loses no spend
                doc = await store.read(TEAM_SPEND, team_id, team_id)
                body = {"id": team_id, "day_tokens": (int(doc["day_tokens"]) if doc else 0) + real}
                if doc is None:
                    if await store.create(TEAM_SPEND, body) is not None:
                        break
                    continue
                try:
                    await store.replace_if_unchanged(TEAM_SPEND, body, doc["_etag"])
                    break
                except CosmosAccessConditionFailedError:  # a lost race: read again
                    continue

    await asyncio.gather(*(caller() for _ in range(callers)))
    return used


class _Counting(Store):
    def __init__(self, store: Store) -> None:
        super().__init__(store._client, store.database_name)
        self.requests = 0

    async def read(self, container: str, item_id: str, partition_key: str) -> Any:
        self.requests += 1
        return await super().read(container, item_id, partition_key)

    async def create(self, container: str, document: dict[str, Any]) -> Any:
        self.requests += 1
        return await super().create(container, document)

    async def replace_if_unchanged(self, container: str, document: Any, etag: str) -> Any:
        self.requests += 1
        return await super().replace_if_unchanged(container, document, etag)


async def _added(store: Store, calls: int) -> dict[str, float]:
    counting = _Counting(store)
    limiter = TeamLimiter(counting)
    team = _team(tpm=10_000_000, daily_tokens=10**9, monthly_usd=100_000.0)
    checked, bare = [], []
    for _ in range(calls):
        started = time.perf_counter()
        booking = await limiter.reserve(team, WORST, 0.01)
        await limiter.settle(booking, WORST // 2, 0.005)
        checked.append(time.perf_counter() - started)
        started = time.perf_counter()
        await asyncio.sleep(0)
        bare.append(time.perf_counter() - started)
    p50, base = statistics.median(checked) * 1000, statistics.median(bare) * 1000
    return {
        "team_check_p50_ms": round(p50, 4),
        "baseline_p50_ms": round(base, 4),
        "team_check_added_p50_ms": round(max(0.0, p50 - base), 4),
        "team_check_p99_ms": round(statistics.quantiles(checked, n=100)[98] * 1000, 3),
        "store_round_trips_per_call": round(counting.requests / calls, 4),
    }


async def _run(environ: dict[str, str], runs: int, hosts: int, callers: int, calls: int) -> Any:
    settings = load_settings(environ)
    await provision(settings)
    store = create_store(settings)
    try:
        rng = random.Random(22)
        ours = [await _ours(store, hosts, callers, rng) / BUDGET for _ in range(runs)]
        naive = [await _read_then_add(store, callers, rng) / BUDGET for _ in range(runs)]
        return {
            "budget_overshoot_ratio": round(max(ours), 4),
            "budget_overshoot_ratios": [round(r, 4) for r in ours],
            "baseline_overshoot_ratio": round(max(naive), 4),
            "baseline_overshoot_ratios": [round(r, 4) for r in naive],
            **await _added(store, calls),
        }
    finally:
        await store.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--callers", type=int, default=60)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "emulators"
        stack = start_emulators(EmulatorPorts.free(), state, in_memory=True)
        try:
            result = asyncio.run(
                _run(stack_environ(stack), args.runs, args.hosts, args.callers, args.calls)
            )
        finally:
            stop_emulators(state, grace=1.0)
    print(
        json.dumps(
            {
                "benchmark": "team_budget",
                "budget_tokens": BUDGET,
                "worst_case_tokens": WORST,
                "hosts": args.hosts,
                "callers": args.callers,
                "cpus": os.cpu_count(),
                **result,
            }
        )
    )


if __name__ == "__main__":
    main()
