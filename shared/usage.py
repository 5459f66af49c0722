"""Token usage: one document per upstream call, and the report behind `GET /api/usage`.

The report reads the days in the window (partition `/day`) and groups in Python: neither the
local Cosmos DB server nor portable Cosmos SQL offers GROUP BY across partitions.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta

from shared.errors import InvalidRequest
from shared.models import Mode, Operation, Usage, UsageGroup, UsageQuery, UsageRecord, UsageReport
from shared.settings import ModelPrice
from shared.store import USAGE, Store

MAX_WINDOW = timedelta(days=92)
DEFAULT_WINDOW = timedelta(hours=24)


def build_record(
    *,
    operation: Operation,
    deployment: str,
    model: str | None,
    usage: Usage | None,
    latency_ms: float,
    tags: Mapping[str, str],
    mode: Mode = "realtime",
    status: str = "ok",
    request_id: str | None = None,
    job_id: str | None = None,
    record_id: str | None = None,
    now: datetime | None = None,
) -> UsageRecord:
    """One usage document; `record_id` is deterministic for calls that may be repeated."""
    now = now or datetime.now(UTC)
    usage = usage or Usage()
    return UsageRecord.model_validate(
        {
            "id": record_id or str(uuid.uuid4()),
            "day": now.date().isoformat(),
            "timestamp": now,
            "operation": operation,
            "deployment": deployment,
            "model": model,
            "mode": mode,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "latency_ms": round(latency_ms, 2),
            "status": status,
            "tags": dict(tags),
            "request_id": request_id,
            "job_id": job_id,
        }
    )


def resolve_window(query: UsageQuery, now: datetime | None = None) -> tuple[datetime, datetime]:
    """Apply defaults and bounds; naive times are UTC. Raises InvalidRequest on a bad window."""
    now = now or datetime.now(UTC)
    until = _utc(query.until) if query.until else now
    since = _utc(query.since) if query.since else until - DEFAULT_WINDOW
    if since >= until:
        raise InvalidRequest("since must be before until")
    if until - since > MAX_WINDOW:
        raise InvalidRequest(f"the window may span at most {MAX_WINDOW.days} days")
    return since, until


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _days(since: datetime, until: datetime) -> list[str]:
    first: date = since.date()
    return [(first + timedelta(days=i)).isoformat() for i in range((until.date() - first).days + 1)]


def price_for(model: str | None, prices: Mapping[str, ModelPrice]) -> ModelPrice | None:
    """The price of `model`, matching versioned names the service reports
    (`gpt-4o-2024-08-06` -> `gpt-4o`; the longest matching name wins)."""
    if not model:
        return None
    if model in prices:
        return prices[model]
    matches = [name for name in prices if model.startswith(name + "-")]
    return prices[max(matches, key=len)] if matches else None


def cost_usd(record: UsageRecord, prices: Mapping[str, ModelPrice], batch_discount: float) -> float:
    price = price_for(record.model, prices)
    if price is None:
        return 0.0
    cost = (record.prompt_tokens * price.input + record.completion_tokens * price.output) / 1e6
    return cost * batch_discount if record.mode == "batch" else cost


def group_key(record: UsageRecord, group_by: str) -> str | None:
    if group_by.startswith("tag:"):
        return record.tags.get(group_by[4:])
    value: str | None = getattr(record, group_by)
    return value


def summarise(
    records: Iterable[UsageRecord],
    group_by: str,
    prices: Mapping[str, ModelPrice],
    batch_discount: float,
) -> tuple[list[UsageGroup], UsageGroup, list[str]]:
    """Group records; return the groups (largest cost first), the total and unpriced models."""
    sums: dict[str | None, list[float]] = defaultdict(lambda: [0, 0, 0, 0, 0.0])
    unpriced: set[str] = set()
    for rec in records:
        row = sums[group_key(rec, group_by)]
        row[0] += 1
        row[1] += rec.prompt_tokens
        row[2] += rec.completion_tokens
        row[3] += rec.total_tokens
        row[4] += cost_usd(rec, prices, batch_discount)
        if rec.total_tokens and price_for(rec.model, prices) is None:
            unpriced.add(rec.model or "(unknown)")

    def as_group(key: str | None, row: list[float]) -> UsageGroup:
        return UsageGroup(
            key=key,
            calls=int(row[0]),
            prompt_tokens=int(row[1]),
            completion_tokens=int(row[2]),
            total_tokens=int(row[3]),
            estimated_cost_usd=round(row[4], 6),
        )

    groups = [as_group(k, v) for k, v in sums.items()]
    groups.sort(key=lambda g: (-g.estimated_cost_usd, -g.total_tokens, g.key or ""))
    totals = [sum(v[i] for v in sums.values()) for i in range(5)]
    return groups, as_group(None, totals), sorted(unpriced)


async def usage_report(
    store: Store,
    query: UsageQuery,
    prices: Mapping[str, ModelPrice],
    batch_discount: float,
    now: datetime | None = None,
) -> UsageReport:
    since, until = resolve_window(query, now)
    days = _days(since, until)
    rows = await store.query(
        USAGE,
        "SELECT * FROM c WHERE c.day >= @first AND c.day <= @last",
        {"@first": days[0], "@last": days[-1]},
    )
    records = [UsageRecord.model_validate(r) for r in rows]
    in_window = [r for r in records if since <= _utc(r.timestamp) < until]
    groups, total, unpriced = summarise(in_window, query.group_by, prices, batch_discount)
    return UsageReport(
        since=since,
        until=until,
        group_by=query.group_by,
        groups=groups,
        total=total,
        unpriced_models=unpriced,
    )
