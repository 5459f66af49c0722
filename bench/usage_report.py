"""What `GET /api/usage` costs, by the number of usage records behind its window.

    .venv/bin/python -m bench.usage_report [--records 10000] [--synthetic 1000000]

Against the local Cosmos DB server (started on free ports, in memory):

- `records` real usage documents are written over 7 days, 20 teams; then the former report
  (`SELECT *` over the window's days, every document into memory) is timed beside the
  roll-up timer's work (one projected query per day) and the new report (roll-ups only).
- `synthetic`: a million documents do not fit the local server in a benchmark's time, so the
  roll-ups of that many records are built by the timer's own code (`DayCells`) from generated
  rows, stored, and the new report is timed on them. The former report is not run at that
  size; its cost grows with the records (the 10k figures show by how much per record).

Request units come from Cosmos DB's `x-ms-request-charge` response header. The local server
sends a fixed 1.0 per response, not a real charge: locally the figure counts responses (query
pages), and real request units need a run against Azure Cosmos DB. Prints one JSON object.
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
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from devstack.emulators import EmulatorPorts, start_emulators, stop_emulators
from devstack.hosted_app import stack_environ
from devstack.provision import provision
from shared.core.models import Usage
from shared.core.settings import DEFAULT_PRICES, load_settings
from shared.core.store import USAGE, USAGE_ROLLUPS, RequestCharge, Store, create_store
from shared.metering.models import UsageQuery
from shared.metering.report import build_record, usage_report
from shared.metering.rollups import DayCells, UsageRollups

DAYS = 7
TEAMS = 20
REPEATS = 5
START = datetime(2031, 1, 1, tzinfo=UTC)


def _record(i: int, day: datetime) -> dict[str, Any]:
    prompt = 50 + i % 400
    return build_record(
        operation="chat" if i % 3 else "embedding",
        deployment="gpt-4o" if i % 3 else "text-embedding-3-small",
        model="gpt-5.1-2025-11-13" if i % 3 else "text-embedding-3-small",
        usage=Usage(prompt_tokens=prompt, completion_tokens=i % 200, total_tokens=prompt + i % 200),
        latency_ms=100.0,
        tags={"team": f"team-{i % TEAMS}"},
        now=day + timedelta(seconds=(i * 37) % 86_400),
    ).model_dump(mode="json")


async def _write(store: Store, records: int) -> float:
    started = time.perf_counter()
    queue = [(i, START + timedelta(days=i % DAYS)) for i in range(records)]

    async def writer(part: list[tuple[int, datetime]]) -> None:
        for i, day in part:
            await store.upsert(USAGE, _record(i, day))

    await asyncio.gather(*(writer(queue[k::16]) for k in range(16)))
    return time.perf_counter() - started


async def _timed(run: Callable[[RequestCharge], Awaitable[Any]]) -> dict[str, Any]:
    times, charge, result = [], RequestCharge(), None
    for _ in range(REPEATS):
        charge = RequestCharge()
        started = time.perf_counter()
        result = await run(charge)
        times.append((time.perf_counter() - started) * 1000)
    out: dict[str, Any] = {
        "p50_ms": round(statistics.median(times), 1),
        "max_ms": round(max(times), 1),
        "responses": charge.responses,
        "request_units": round(charge.request_units, 2) if charge.reported else None,
    }
    if isinstance(result, int):
        out["documents_read"] = result
    return out


async def _former_report(store: Store, charge: RequestCharge) -> int:
    """The report before issue 14: every document of the window, whole, into memory."""
    last = (START + timedelta(days=DAYS - 1)).date().isoformat()
    rows = [
        row
        async for row in store.iterate(
            USAGE,
            "SELECT * FROM c WHERE c.day >= @first AND c.day <= @last",
            {"@first": START.date().isoformat(), "@last": last},
            charge=charge,
        )
    ]
    return len(rows)


def _query() -> UsageQuery:
    return UsageQuery(since=START, until=START + timedelta(days=DAYS), group_by="tag:team")


async def _report(rollups: UsageRollups, charge: RequestCharge) -> None:
    await usage_report(rollups, _query(), DEFAULT_PRICES, 0.5, max_cells=50_000, charge=charge)


async def _calls_and_rollups(rollups: UsageRollups, query: UsageQuery) -> dict[str, int]:
    report = await usage_report(rollups, query, DEFAULT_PRICES, 0.5, max_cells=50_000)
    assert query.since is not None
    assert query.until is not None
    days = await rollups.read(query.since.date(), query.until.date())
    return {
        "calls_counted": report.total.calls,
        "rollup_documents_read": len(days),
        "day_cells_read": sum(len(d.day_cells) for d in days),
    }


async def _measured(store: Store, records: int) -> dict[str, Any]:
    rollups = UsageRollups(store)
    write_s = await _write(store, records)
    former = await _timed(lambda c: _former_report(store, c))
    charge = RequestCharge()
    started = time.perf_counter()
    for d in range(DAYS):
        await rollups.recompute((START + timedelta(days=d)).date().isoformat(), charge=charge)
    rollup_ms = (time.perf_counter() - started) * 1000
    new = await _timed(lambda c: _report(rollups, c))
    counted = await _calls_and_rollups(rollups, _query())
    assert counted["calls_counted"] == records, (counted, records)
    return {
        "records": records,
        "write_seconds": round(write_s, 1),
        "former_report": former,
        "rollup_timer_all_days": {
            "ms": round(rollup_ms, 1),
            "responses": charge.responses,
            "request_units": round(charge.request_units, 2) if charge.reported else None,
        },
        "report": {**new, **counted},
        "request_units_reported": charge.reported,
    }


async def _synthetic(store: Store, records: int) -> dict[str, Any]:
    """Roll-ups of `records` generated rows (the timer's code, without the documents)."""
    store_start = START + timedelta(days=400)  # days of their own
    rng = random.Random(14)
    started = time.perf_counter()
    per_day = records // DAYS
    for d in range(DAYS):
        day = store_start + timedelta(days=d)
        cells = DayCells()
        for i in range(per_day):
            cells.add(
                {
                    "timestamp": (day + timedelta(seconds=rng.randrange(86_400))).isoformat(),
                    "operation": "chat",
                    "deployment": "gpt-4o",
                    "model": "gpt-5.1-2025-11-13",
                    "mode": "realtime",
                    "prompt_tokens": 100,
                    "completion_tokens": 50,
                    "total_tokens": 150,
                    "tags": {"team": f"team-{i % TEAMS}"},
                }
            )
        rollup = cells.rollup(day.date().isoformat(), datetime.now(UTC))
        await store.upsert(USAGE_ROLLUPS, rollup.model_dump(mode="json"))
    build_s = time.perf_counter() - started
    rollups = UsageRollups(store)

    query = UsageQuery(
        since=store_start, until=store_start + timedelta(days=DAYS), group_by="tag:team"
    )

    async def report(charge: RequestCharge) -> None:
        await usage_report(rollups, query, DEFAULT_PRICES, 0.5, max_cells=50_000, charge=charge)

    measured = await _timed(report)
    return {
        "records": per_day * DAYS,
        "rollups_built_in_python_seconds": round(build_s, 1),
        "report": {**measured, **await _calls_and_rollups(rollups, query)},
    }


async def _run(environ: dict[str, str], records: int, synthetic: int) -> dict[str, Any]:
    settings = load_settings(environ)
    await provision(settings)
    store = create_store(settings)
    try:
        return {
            "measured": await _measured(store, records),
            "synthetic": await _synthetic(store, synthetic),
        }
    finally:
        await store.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--synthetic", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "emulators"
        stack = start_emulators(EmulatorPorts.free(), state, in_memory=True)
        try:
            result = asyncio.run(_run(stack_environ(stack), args.records, args.synthetic))
        finally:
            stop_emulators(state, grace=1.0)
    print(
        json.dumps(
            {
                "benchmark": "usage_report",
                "days": DAYS,
                "teams": TEAMS,
                "cpus": os.cpu_count(),
                "server": "local Cosmos DB server: x-ms-request-charge is a fixed 1.0 per response",
                **result,
            }
        )
    )


if __name__ == "__main__":
    main()
