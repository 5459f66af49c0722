"""Token usage: one document per upstream call, and the report behind `GET /api/usage`.

The report reads the daily roll-ups of its window (`shared/metering/rollups.py`), never the usage
documents: its cost is at most one roll-up per day, however many calls there were. It groups
in Python: neither the local Cosmos DB server nor portable Cosmos SQL offers GROUP BY. Roll-ups
count by the hour, so the window is widened to whole hours.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from shared.core.errors import InvalidRequest, TooLarge
from shared.core.models import Usage
from shared.core.settings import ModelPrice
from shared.core.store import RequestCharge
from shared.metering.models import Mode, Operation, UsageGroup, UsageQuery, UsageRecord, UsageReport
from shared.metering.rollups import RollupCell, UsageRollups

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
    client_request_id: str | None = None,
    principal_id: str | None = None,
    job_id: str | None = None,
    record_id: str | None = None,
    backend: str | None = None,
    estimated: bool = False,
    team: str | None = None,
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
            "cached_tokens": usage.cached_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
            "latency_ms": round(latency_ms, 2),
            "status": status,
            "tags": dict(tags),
            "request_id": request_id,
            "client_request_id": client_request_id,
            "principal_id": principal_id,
            "job_id": job_id,
            "backend": backend,
            "estimated": estimated,
            "team": team,
        }
    )


# Far enough from datetime's own edges (years 1 and 9999) that defaults, hour rounding and
# time-zone shifts can never overflow.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def resolve_window(query: UsageQuery, now: datetime | None = None) -> tuple[datetime, datetime]:
    """Apply defaults and bounds; naive times are UTC; widen to whole hours. Raises
    InvalidRequest on a bad window (never OverflowError: the edges are checked first)."""
    now = now or datetime.now(UTC)
    try:
        until = _utc(query.until) if query.until else now
        since = _utc(query.since) if query.since else None
    except OverflowError:
        raise InvalidRequest(_range_message()) from None
    for moment in (until, since):
        if moment is not None and not EARLIEST <= moment <= LATEST:
            raise InvalidRequest(_range_message())
    since = since if since is not None else until - DEFAULT_WINDOW
    if since >= until:
        raise InvalidRequest("since must be before until")
    if until - since > MAX_WINDOW:
        raise InvalidRequest(f"the window may span at most {MAX_WINDOW.days} days")
    floor = since.replace(minute=0, second=0, microsecond=0)
    ceil = until.replace(minute=0, second=0, microsecond=0)
    if ceil < until:
        ceil += timedelta(hours=1)
    return floor, ceil


def _range_message() -> str:
    return f"since and until must lie between {EARLIEST.date()} and {LATEST.date()}"


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def price_for(model: str | None, prices: Mapping[str, ModelPrice]) -> ModelPrice | None:
    """The price of `model`, matching versioned names the service reports
    (`gpt-4o-2024-08-06` -> `gpt-4o`; the longest matching name wins)."""
    if not model:
        return None
    if model in prices:
        return prices[model]
    matches = [name for name in prices if model.startswith(name + "-")]
    return prices[max(matches, key=len)] if matches else None


class Tokens(Protocol):
    """The tokens a cost is computed from: a `Usage`, a usage record, a roll-up cell."""

    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def cached_tokens(self) -> int: ...


class Counted(Protocol):
    """A usage record or a roll-up cell: what the report sums."""

    @property
    def model(self) -> str | None: ...
    @property
    def mode(self) -> Mode: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def total_tokens(self) -> int: ...
    @property
    def cached_tokens(self) -> int: ...
    @property
    def tags(self) -> dict[str, str]: ...


def cell_of(record: UsageRecord) -> RollupCell:
    """One record as the hourly roll-up cell it would be summed into."""
    return RollupCell(
        hour=_utc(record.timestamp).hour,
        calls=1,
        estimated_tokens=record.total_tokens if record.estimated else 0,
        **record.model_dump(
            include={
                "operation",
                "deployment",
                "model",
                "mode",
                "principal_id",
                "backend",
                "team",
                "tags",
                "prompt_tokens",
                "completion_tokens",
                "total_tokens",
                "cached_tokens",
                "reasoning_tokens",
            }
        ),
    )


def cost_usd(record: Counted, prices: Mapping[str, ModelPrice], batch_discount: float) -> float:
    """USD: uncached prompt tokens at the input price, cached ones at the cached-input price
    (the input price when the model has none), completion tokens (reasoning included) at the
    output price; a batch call at `batch_discount` of all of it, as Azure bills Batch."""
    cost = usage_cost(record.model, record, prices)
    return cost * batch_discount if record.mode == "batch" else cost


def usage_cost(model: str | None, usage: Tokens, prices: Mapping[str, ModelPrice]) -> float:
    """USD of one realtime call's (or record's) tokens at `model`'s price, as `cost_usd`
    prices them; what a team's budget is settled with (shared/metering/call.py, jobs)."""
    price = price_for(model, prices)
    if price is None:
        return 0.0
    cached_price = price.input if price.cached_input is None else price.cached_input
    return (
        (usage.prompt_tokens - usage.cached_tokens) * price.input
        + usage.cached_tokens * cached_price
        + usage.completion_tokens * price.output
    ) / 1e6


def group_key(record: Counted, group_by: str) -> str | None:
    if group_by.startswith("tag:"):
        return record.tags.get(group_by[4:])
    value: str | None = getattr(record, group_by)
    return value


def summarise(
    records: Iterable[RollupCell],
    group_by: str,
    prices: Mapping[str, ModelPrice],
    batch_discount: float,
) -> tuple[list[UsageGroup], UsageGroup, list[str]]:
    """Group records; return the groups (largest cost first), the total and unpriced models."""
    sums: dict[str | None, list[float]] = defaultdict(lambda: [0, 0, 0, 0, 0.0, 0, 0, 0])
    unpriced: set[str] = set()
    for rec in records:
        row = sums[group_key(rec, group_by)]
        row[0] += rec.calls
        row[1] += rec.prompt_tokens
        row[2] += rec.completion_tokens
        row[3] += rec.total_tokens
        row[4] += cost_usd(rec, prices, batch_discount)
        row[5] += rec.estimated_tokens
        row[6] += rec.cached_tokens
        row[7] += rec.reasoning_tokens
        if rec.total_tokens and price_for(rec.model, prices) is None:
            unpriced.add(rec.model or "(unknown)")

    def as_group(key: str | None, row: list[float]) -> UsageGroup:
        return UsageGroup(
            key=key,
            calls=int(row[0]),
            prompt_tokens=int(row[1]),
            completion_tokens=int(row[2]),
            total_tokens=int(row[3]),
            cached_tokens=int(row[6]),
            reasoning_tokens=int(row[7]),
            estimated_cost_usd=round(row[4], 6),
            estimated_tokens=int(row[5]),
        )

    groups = [as_group(k, v) for k, v in sums.items()]
    groups.sort(key=lambda g: (-g.estimated_cost_usd, -g.total_tokens, g.key or ""))
    totals = [sum(v[i] for v in sums.values()) for i in range(8)]
    return groups, as_group(None, totals), sorted(unpriced)


async def usage_report(
    rollups: UsageRollups,
    query: UsageQuery,
    prices: Mapping[str, ModelPrice],
    batch_discount: float,
    *,
    max_cells: int,
    team: str | None = None,
    now: datetime | None = None,
    charge: RequestCharge | None = None,
) -> UsageReport:
    """Sum the roll-ups of the window: the day sums of the days it covers whole, the hourly
    cells of its partial first and last day; only `team`'s when given (a team's own view),
    every team's when None (the platform's). More than `max_cells` cells (many distinct tags
    over a long window) is refused with 413 rather than summed."""
    since, until = resolve_window(query, now)
    first, last = since.date(), (until - timedelta(microseconds=1)).date()
    whole = [d for d in _dates(first, last) if since <= _start(d) and _start(d) + DAY <= until]
    partial = [d for d in (first, last) if d not in whole]
    days = await rollups.read(whole[0], whole[-1], charge) if whole else []
    hours = await rollups.read_hours(sorted(set(partial)), charge)
    cells = [c for d in days for c in d.day_cells] + [
        c
        for d in hours
        for c in d.cells
        if c.hour is not None and since <= _start(date.fromisoformat(d.day)) + c.hour * HOUR < until
    ]
    if team is not None:
        cells = [c for c in cells if c.team == team]
    if len(cells) > max_cells:
        raise TooLarge(
            f"the window holds {len(cells)} usage cells; at most {max_cells} are read at once: "
            "ask for a shorter window",
            details={"cells": len(cells), "max_cells": max_cells},
        )
    groups, total, unpriced = summarise(cells, query.group_by, prices, batch_discount)
    return UsageReport(
        since=since,
        until=until,
        group_by=query.group_by,
        groups=groups,
        total=total,
        unpriced_models=unpriced,
        as_of=min((d.computed_at for d in [*days, *hours]), default=None),
    )


DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def _dates(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
