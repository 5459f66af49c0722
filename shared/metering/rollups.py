"""Daily usage roll-ups: what the usage report reads instead of the usage documents.

One roll-up document per day (container `usage_rollups`, partition `/day`, id `rollup`) holds
cells: sums of calls and tokens per hour, deployment, operation, model, mode, principal,
team, backend and tags (`cells`), and the same summed over the whole day (`day_cells`). A report
reads the day sums of the days its window covers whole and the hourly cells of at most two
edge days.

A roll-up is recomputed from that day's usage documents (a projection, never `SELECT *`), so it
is idempotent and redelivery-safe by construction: a usage document written twice is one
document (its id is fixed before it is written), and a recomputation replaces the roll-up
whole. The `roll_up_usage` timer recomputes today and yesterday, plus the days a drained
outbox message marked `dirty` (documents that reached Cosmos DB late). The report reads at
most 93 roll-ups, whatever the number of calls behind them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from pydantic import BaseModel, Field

from shared.core.store import USAGE, USAGE_ROLLUPS, RequestCharge, Store
from shared.metering.models import Mode, Operation

log = logging.getLogger(__name__)

ROLLUP_ID: Final = "rollup"
DIRTY_ID: Final = "dirty"
# A Cosmos DB document holds at most 2 MB, and holds each cell twice (hourly, daily): past
# either bound, new attributions fold into one cell per hour and call kind.
MAX_CELLS_PER_DAY: Final = 2000
MAX_KEY_BYTES_PER_DAY: Final = 400_000
FOLDED_TAG: Final = "_folded"

# Only what a cell needs: the report's cost and latency do not grow with unused fields.
PROJECTION: Final = (
    "SELECT c.timestamp, c.operation, c.deployment, c.model, c.mode, c.prompt_tokens, "
    "c.completion_tokens, c.total_tokens, c.cached_tokens, c.reasoning_tokens, c.estimated, "
    "c.tags, c.principal_id, c.backend, c.team FROM c WHERE c.day = @day"
)


class RollupCell(BaseModel):
    """Calls and tokens of one hour (or, `hour` None, the whole day) with one attribution."""

    hour: int | None = Field(default=None, ge=0, le=23)
    operation: Operation
    deployment: str
    model: str | None = None
    mode: Mode = "realtime"
    principal_id: str | None = None
    backend: str | None = None  # the AOAI_BACKENDS entry (None in documents from before it)
    team: str | None = None  # never folded: a team's sums stay exact past the cell cap
    tags: dict[str, str] = Field(default_factory=dict)
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    # Of prompt_tokens and completion_tokens (0 in roll-ups and documents from before them).
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    estimated_tokens: int = 0  # of total_tokens, those of records marked `estimated`


class UsageRollup(BaseModel):
    id: str = ROLLUP_ID
    day: str
    kind: str = "rollup"
    computed_at: datetime
    records: int
    folded_calls: int = Field(
        default=0, description="Calls whose tags and principal were dropped past the cell cap."
    )
    cells: list[RollupCell] = Field(default_factory=list, description="By the hour.")
    day_cells: list[RollupCell] = Field(default_factory=list, description="By the day.")


class DayCells:
    """The cells of one day, summed row by row (bounded: see MAX_CELLS_PER_DAY)."""

    def __init__(self) -> None:
        self.hourly: dict[str, RollupCell] = {}
        self.records = 0
        self._key_bytes = 0

    def add(self, row: dict[str, Any]) -> None:
        self.records += 1
        hour = _hour_of(row["timestamp"])
        tags = {str(k): str(v) for k, v in (row.get("tags") or {}).items()}
        principal = row.get("principal_id")
        base = (
            hour,
            row["operation"],
            row["deployment"],
            row.get("model"),
            row.get("mode"),
            row.get("backend"),
            row.get("team"),
        )
        key = json.dumps([*base, principal, sorted(tags.items())])
        full = len(self.hourly) >= MAX_CELLS_PER_DAY or self._key_bytes >= MAX_KEY_BYTES_PER_DAY
        if key not in self.hourly and full:
            # Past the cap the attribution goes, the sums stay: totals remain exact.
            tags, principal = {FOLDED_TAG: "true"}, None
            key = json.dumps([*base, principal, sorted(tags.items())])
        cell = self.hourly.get(key)
        if cell is None:
            self._key_bytes += len(key)
            cell = self.hourly[key] = RollupCell(
                hour=hour,
                operation=row["operation"],
                deployment=row["deployment"],
                model=row.get("model"),
                mode=row.get("mode") or "realtime",
                principal_id=principal,
                backend=row.get("backend"),
                team=row.get("team"),
                tags=tags,
            )
        _add(cell, row)

    def daily(self) -> list[RollupCell]:
        """The hourly cells summed over the day (one per attribution)."""
        days: dict[str, RollupCell] = {}
        for cell in self.hourly.values():
            key = json.dumps(
                [
                    cell.operation,
                    cell.deployment,
                    cell.model,
                    cell.mode,
                    cell.backend,
                    cell.team,
                    cell.principal_id,
                    sorted(cell.tags.items()),
                ]
            )
            day = days.get(key)
            if day is None:
                day = days[key] = cell.model_copy(
                    update={
                        "hour": None,
                        "calls": 0,
                        "prompt_tokens": 0,
                        "completion_tokens": 0,
                        "total_tokens": 0,
                        "cached_tokens": 0,
                        "reasoning_tokens": 0,
                        "estimated_tokens": 0,
                        "tags": dict(cell.tags),
                    }
                )
            day.calls += cell.calls
            day.prompt_tokens += cell.prompt_tokens
            day.completion_tokens += cell.completion_tokens
            day.total_tokens += cell.total_tokens
            day.cached_tokens += cell.cached_tokens
            day.reasoning_tokens += cell.reasoning_tokens
            day.estimated_tokens += cell.estimated_tokens
        return list(days.values())

    def rollup(self, day: str, computed_at: datetime) -> UsageRollup:
        return UsageRollup(
            day=day,
            computed_at=computed_at,
            records=self.records,
            folded_calls=sum(c.calls for c in self.hourly.values() if FOLDED_TAG in c.tags),
            cells=list(self.hourly.values()),
            day_cells=self.daily(),
        )


def _add(cell: RollupCell, row: dict[str, Any]) -> None:
    cell.calls += 1
    cell.prompt_tokens += int(row.get("prompt_tokens") or 0)
    cell.completion_tokens += int(row.get("completion_tokens") or 0)
    cell.total_tokens += int(row.get("total_tokens") or 0)
    cell.cached_tokens += int(row.get("cached_tokens") or 0)
    cell.reasoning_tokens += int(row.get("reasoning_tokens") or 0)
    if row.get("estimated"):
        cell.estimated_tokens += int(row.get("total_tokens") or 0)


def _hour_of(timestamp: str | datetime) -> int:
    moment = timestamp if isinstance(timestamp, datetime) else datetime.fromisoformat(timestamp)
    return (moment.astimezone(UTC) if moment.tzinfo else moment).hour


class UsageRollups:
    """Recomputes and reads the daily roll-ups; one per process (shared/runtime.py)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def recompute(
        self, day: str, *, now: datetime | None = None, charge: RequestCharge | None = None
    ) -> UsageRollup:
        """Rebuild one day's roll-up from its usage documents (streamed, never held whole)."""
        cells = DayCells()
        rows: AsyncIterator[dict[str, Any]] = self._store.iterate(
            USAGE, PROJECTION, {"@day": day}, partition_key=day, charge=charge
        )
        async for row in rows:
            cells.add(row)
        rollup = cells.rollup(day, now or datetime.now(UTC))
        await self._store.upsert(USAGE_ROLLUPS, rollup.model_dump(mode="json"))
        return rollup

    async def mark_dirty(self, day: str) -> None:
        """Ask the next run to recompute `day` (a usage document reached it late)."""
        await self._store.upsert(USAGE_ROLLUPS, {"id": DIRTY_ID, "day": day, "kind": "dirty"})

    async def run(self, now: datetime | None = None) -> list[str]:
        """The timer: recompute today, yesterday and every day marked dirty."""
        now = now or datetime.now(UTC)
        today = now.date()
        days = {today.isoformat(), (today - timedelta(days=1)).isoformat()}
        dirty = await self._store.query(
            USAGE_ROLLUPS, "SELECT c.day, c._etag FROM c WHERE c.kind = 'dirty'"
        )
        marked = {d["day"]: d.get("_etag") for d in dirty}
        days |= set(marked)
        for day in sorted(days):
            await self.recompute(day, now=now)
            if day in marked:
                # Only the marker this run saw: one rewritten meanwhile (a later document)
                # keeps its day dirty for the next run.
                await self._store.delete_if_unchanged(USAGE_ROLLUPS, DIRTY_ID, day, marked[day])
        log.info("usage roll-ups recomputed for %s", ",".join(sorted(days)))
        return sorted(days)

    async def read(
        self, first: date, last: date, charge: RequestCharge | None = None
    ) -> list[UsageRollup]:
        """The day sums of the days from `first` to `last` (one small projection per day)."""
        rows = self._store.iterate(
            USAGE_ROLLUPS,
            "SELECT c.day, c.computed_at, c.records, c.folded_calls, c.day_cells FROM c "
            "WHERE c.kind = 'rollup' AND c.day >= @first AND c.day <= @last",
            {"@first": first.isoformat(), "@last": last.isoformat()},
            charge=charge,
        )
        return [UsageRollup.model_validate(r) async for r in rows]

    async def read_hours(
        self, days: list[date], charge: RequestCharge | None = None
    ) -> list[UsageRollup]:
        """The hourly cells of a few days (a window's partial first and last day)."""
        out = []
        for day in days:
            rows = self._store.iterate(
                USAGE_ROLLUPS,
                "SELECT c.day, c.computed_at, c.records, c.folded_calls, c.cells FROM c "
                "WHERE c.kind = 'rollup' AND c.day = @day",
                {"@day": day.isoformat()},
                partition_key=day.isoformat(),
                charge=charge,
            )
            out += [UsageRollup.model_validate(r) async for r in rows]
        return out
