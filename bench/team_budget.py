"""Team budgets under concurrency through two host processes, and what the team check adds to
a call.

    .venv/bin/python -m bench.team_budget [--runs 5] [--hosts 2] [--callers 60] [--calls 2000]

Starts its own emulators (in memory), the Azure OpenAI simulator (quotas off; 200-400 ms a
call, so the calls overlap) and `hosts` processes of the real function_app.py under the local
Functions host, all on free ports.

- `budget_overshoot_ratio`: each run makes a team (the admin API) whose `daily_tokens` is ten
  calls' worst case and fires `callers` chat calls at once with its key (`api-key`), spread
  evenly over the hosts. Each call is the same: an echo prompt of 300 words and
  `max_tokens` 200, so it uses its whole output cap and its real prompt count is above the
  app's estimate (characters / 4) by the message overheads: real use is the worst case the app
  booked plus the prompt estimate's error, the most a call can use. The ratio is the team's
  recorded spend (the sum of its usage documents in Cosmos DB) over the budget, the worst of
  `runs` runs; `budget_bound_ratio` is 1 plus the estimate error of the admitted calls over
  the budget, what docs/security.md says the spend cannot pass. Each run also reports the
  team's day counter (`GET /api/teams/{id}`: spend plus credits the hosts still hold), the
  answers by status and code, and the requests the simulator got (one per 200).
- The baseline in the same run, computed in this process against the same Cosmos DB server
  (no hosts): the check of the best-known gateways, `callers` callers at once each reading the
  team's spend, calling if it is under the budget, and adding the call's real use (the hosts'
  figure) under ETag after the call, which takes as long as the simulator's.
- `team_check_added_p50_ms`: in this process, a team under half its limits, `calls`
  sequential reserve + settle through `TeamLimiter` on the same Cosmos DB server, p50, minus
  the p50 of the same loop without the check (the timer's own cost).
  `store_round_trips_per_call` says how often the store was asked.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
from azure.cosmos.exceptions import CosmosAccessConditionFailedError

from bench._serve import app_hosts
from devstack.aoai_simulator import LatencyConfig, SimulatorConfig
from devstack.hosted_app import AppHost
from shared.core.settings import load_settings
from shared.core.store import TEAM_SPEND, USAGE, Store, create_store
from shared.metering.callers import chat_estimate
from shared.metering.team_limits import TeamLimiter
from shared.metering.teams import Team

MAX_TOKENS = 200
PROMPT = "echo: " + " ".join(f"w{i:03d}" for i in range(300))  # more words than MAX_TOKENS
BODY = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": MAX_TOKENS}
# What the chat route books for BODY (shared/chat/service.py): prompt characters / 4 + cap.
WORST = chat_estimate(PROMPT, BODY, MAX_TOKENS)
BUDGET = 10 * WORST
UPSTREAM_MS, JITTER_MS = 200.0, 200.0
WHEN = datetime(2031, 1, 1, tzinfo=UTC)


def _team(**limits: Any) -> Team:
    return Team(id=f"b-{uuid.uuid4().hex[:12]}", created_at=WHEN, updated_at=WHEN, **limits)


async def _upstream_requests(sim: httpx.AsyncClient) -> int:
    return int((await sim.get("/sim/stats")).json()["total"]["requests"])


async def _usage_docs(store: Store, team_id: str, count: int) -> list[dict[str, Any]]:
    """The team's usage documents, once there are `count` (written just after each answer)."""
    found: list[dict[str, Any]] = []
    for _ in range(300):
        found = await store.query(USAGE, "SELECT * FROM c WHERE c.team = @t", {"@t": team_id})
        if len(found) >= count:
            break
        await asyncio.sleep(0.1)
    return found


async def _ours(
    hosts: list[AppHost], store: Store, sim: httpx.AsyncClient, callers: int
) -> dict[str, Any]:
    """One run: a new team, `callers` calls at once over the hosts; what was recorded."""
    team_id = f"b-{uuid.uuid4().hex[:12]}"
    async with httpx.AsyncClient(
        base_url=hosts[0].url, headers=hosts[0].admin_headers(), timeout=60
    ) as admin:
        created = await admin.post("/teams", json={"id": team_id, "daily_tokens": BUDGET})
        created.raise_for_status()
        key = created.json()["key"]
        before = await _upstream_requests(sim)
        clients = [
            httpx.AsyncClient(base_url=h.url, headers={"api-key": key}, timeout=120) for h in hosts
        ]
        try:
            answers = await asyncio.gather(
                *(clients[i % len(hosts)].post("/chat", json=BODY) for i in range(callers))
            )
        finally:
            for client in clients:
                await client.aclose()
        upstream = await _upstream_requests(sim) - before
        ok = [a.json()["usage"] for a in answers if a.status_code == 200]
        docs = await _usage_docs(store, team_id, len(ok))
        shown = (await admin.get(f"/teams/{team_id}")).json()["spend"]
    codes = Counter(
        "200" if a.status_code == 200 else f"{a.status_code} {a.json()['error']['code']}"
        for a in answers
    )
    recorded = sum(int(d["total_tokens"]) for d in docs)
    error = sum(max(0, u["total_tokens"] - WORST) for u in ok)
    return {
        "ratio": round(recorded / BUDGET, 4),
        "bound_ratio": round((BUDGET + error) / BUDGET, 4),
        "counter_ratio": round(int(shown["day_tokens"]) / BUDGET, 4),
        "admitted": len(ok),
        "answers": dict(sorted(codes.items())),
        "upstream_requests": upstream,
        "usage_documents": len(docs),
        "real_tokens_per_call": sorted({u["total_tokens"] for u in ok}),
    }


async def _read_then_add(store: Store, callers: int, use: int) -> int:
    """The baseline: admit while the spend read is under the budget; add the use after."""
    team_id, used = f"b-{uuid.uuid4().hex[:12]}", 0
    rng = random.Random(22)

    async def spent() -> int:
        doc = await store.read(TEAM_SPEND, team_id, team_id)
        return int(doc["day_tokens"]) if doc else 0

    async def caller() -> None:
        nonlocal used
        if await spent() >= BUDGET:
            return
        await asyncio.sleep((UPSTREAM_MS + rng.uniform(0, JITTER_MS)) / 1000)  # the call
        used += use
        for _ in range(64):  # add under ETag, so the baseline loses no spend
            doc = await store.read(TEAM_SPEND, team_id, team_id)
            body = {"id": team_id, "day_tokens": (int(doc["day_tokens"]) if doc else 0) + use}
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


async def _run(
    hosts: list[AppHost], environ: dict[str, str], sim_url: str, runs: int, callers: int, calls: int
) -> dict[str, Any]:
    store = create_store(load_settings(environ))
    try:
        async with httpx.AsyncClient(base_url=sim_url, timeout=30) as sim:
            ours = [await _ours(hosts, store, sim, callers) for _ in range(runs)]
        use = max(t for run in ours for t in run["real_tokens_per_call"])
        naive = [await _read_then_add(store, callers, use) / BUDGET for _ in range(runs)]
        return {
            "budget_overshoot_ratio": max(r["ratio"] for r in ours),
            "budget_overshoot_ratios": [r["ratio"] for r in ours],
            "budget_bound_ratio": max(r["bound_ratio"] for r in ours),
            "runs_detail": ours,
            "baseline_overshoot_ratio": round(max(naive), 4),
            "baseline_overshoot_ratios": [round(r, 4) for r in naive],
            **await _added(store, calls),
        }
    finally:
        await store.aclose()


def _simulator_config() -> SimulatorConfig:
    """Quotas off (a 429 from the simulator would measure its limiter, not the budget) and
    every call UPSTREAM_MS to UPSTREAM_MS + JITTER_MS long, so the calls are in flight at once."""
    config = SimulatorConfig(latency=LatencyConfig(request_ms=UPSTREAM_MS, jitter_ms=JITTER_MS))
    for deployment in config.deployments:
        deployment.tpm = 0
        deployment.rpm = 0
    return config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--hosts", type=int, default=2)
    parser.add_argument("--callers", type=int, default=60, help="calls at once per run")
    parser.add_argument("--calls", type=int, default=2000, help="sequential calls of the check")
    args = parser.parse_args(argv)
    with app_hosts(_simulator_config(), args.hosts) as (hosts, stack):
        result = asyncio.run(
            _run(hosts, stack.environ, stack.sim_url, args.runs, args.callers, args.calls)
        )
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
