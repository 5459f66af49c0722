"""Daily usage roll-ups: what the usage report reads instead of the usage documents.

One roll-up document per day (container `usage_rollups`, partition `/day`, id `rollup`) holds
cells: sums of calls and tokens per hour, deployment, operation, model, mode, principal and
tags. It is recomputed from that day's usage documents (a projection, never `SELECT *`), so it
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

from shared.models import Mode, Operation
from shared.store import USAGE, USAGE_ROLLUPS, RequestCharge, Store

log = logging.getLogger(__name__)

ROLLUP_ID: Final = "rollup"
DIRTY_ID: Final = "dirty"
# A Cosmos DB document holds at most 2 MB; a cell is about 300 bytes.
MAX_CELLS_PER_DAY: Final = 4000
FOLDED_TAG: Final = "_folded"

# Only what a cell needs: the report's cost and latency do not grow with unused fields.
PROJECTION: Final = (
    "SELECT c.timestamp, c.operation, c.deployment, c.model, c.mode, c.prompt_tokens, "
    "c.completion_tokens, c.total_tokens, c.tags, c.principal_id FROM c WHERE c.day = @day"
)


class RollupCell(BaseModel):
    """Calls and tokens of one hour of one day with the same attribution."""

    hour: int = Field(ge=0, le=23)
    operation: Operation
    deployment: str
    model: str | None = None
    mode: Mode = "realtime"
    principal_id: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class UsageRollup(BaseModel):
    id: str = ROLLUP_ID
    day: str
    kind: str = "rollup"
    computed_at: datetime
    records: int
    folded_calls: int = Field(
        default=0, description="Calls whose tags and principal were dropped past the cell cap."
    )
    cells: list[RollupCell]


def add_row(cells: dict[str, RollupCell], row: dict[str, Any]) -> None:
    hour = _hour_of(row["timestamp"])
    tags = {str(k): str(v) for k, v in (row.get("tags") or {}).items()}
    principal = row.get("principal_id")
    base = (hour, row["operation"], row["deployment"], row.get("model"), row.get("mode"))
    key = json.dumps([*base, principal, sorted(tags.items())])
    if key not in cells and len(cells) >= MAX_CELLS_PER_DAY:
        # Past the cap the attribution goes, the sums stay: totals remain exact.
        tags, principal = {FOLDED_TAG: "true"}, None
        key = json.dumps([*base, principal, sorted(tags.items())])
    cell = cells.get(key)
    if cell is None:
        cell = cells[key] = RollupCell(
            hour=hour,
            operation=row["operation"],
            deployment=row["deployment"],
            model=row.get("model"),
            mode=row.get("mode") or "realtime",
            principal_id=principal,
            tags=tags,
        )
    cell.calls += 1
    cell.prompt_tokens += int(row.get("prompt_tokens") or 0)
    cell.completion_tokens += int(row.get("completion_tokens") or 0)
    cell.total_tokens += int(row.get("total_tokens") or 0)


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
        cells: dict[str, RollupCell] = {}
        records = 0
        rows: AsyncIterator[dict[str, Any]] = self._store.iterate(
            USAGE, PROJECTION, {"@day": day}, partition_key=day, charge=charge
        )
        async for row in rows:
            records += 1
            add_row(cells, row)
        folded = sum(c.calls for c in cells.values() if c.tags.get(FOLDED_TAG))
        rollup = UsageRollup(
            day=day,
            computed_at=now or datetime.now(UTC),
            records=records,
            folded_calls=folded,
            cells=list(cells.values()),
        )
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
        """The roll-ups of the days from `first` to `last` (at most one document per day)."""
        rows = self._store.iterate(
            USAGE_ROLLUPS,
            "SELECT * FROM c WHERE c.kind = 'rollup' AND c.day >= @first AND c.day <= @last",
            {"@first": first.isoformat(), "@last": last.isoformat()},
            charge=charge,
        )
        return [UsageRollup.model_validate(r) async for r in rows]
