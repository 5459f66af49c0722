"""Daily usage roll-ups and the bounded usage report, against the real Cosmos DB server.

Each test writes into days of its own (random far-future dates), since the database is
shared by the whole test session."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from shared.core.errors import TooLarge
from shared.core.models import Usage
from shared.core.settings import ModelPrice, load_settings
from shared.core.store import USAGE, USAGE_ROLLUPS, RequestCharge, Store
from shared.metering.models import UsageQuery
from shared.metering.outbox import OutboxMessage
from shared.metering.report import build_record, usage_report
from shared.metering.rollups import DIRTY_ID, FOLDED_TAG, MAX_CELLS_PER_DAY, DayCells, UsageRollups
from shared.runtime import create_runtime

PRICES = {"gpt-4o": ModelPrice(input=2.5, output=10.0)}


def a_day() -> datetime:
    """Noon of a random day no other test (and no real call) writes to."""
    start = date(2200, 1, 1) + timedelta(days=random.randrange(300_000))
    return datetime(start.year, start.month, start.day, 12, tzinfo=UTC)


async def write(store: Store, at: datetime, *, prompt: int = 100, **tags: str) -> dict[str, Any]:
    record = build_record(
        operation="chat",
        deployment="gpt-4o",
        model="gpt-4o",
        usage=Usage(prompt_tokens=prompt, completion_tokens=10, total_tokens=prompt + 10),
        latency_ms=1.0,
        tags=tags,
        now=at,
    )
    document = record.model_dump(mode="json")
    await store.upsert(USAGE, document)
    return document


async def report(rollups: UsageRollups, since: datetime, until: datetime, **kw: Any) -> Any:
    query = UsageQuery(since=since, until=until, group_by=kw.pop("group_by", "tag:team"))
    return await usage_report(
        rollups, query, PRICES, 0.5, max_cells=kw.pop("max_cells", 1000), **kw
    )


async def test_report_reads_roll_ups_not_usage_documents(store: Store) -> None:
    """Finding: the report ran SELECT * over every usage document of its window. Now it
    reads roll-ups only: calls not yet rolled up are not in it; after the roll-up they are,
    and only those inside the window (by the hour)."""
    rollups, team, noon = UsageRollups(store), f"t-{uuid.uuid4().hex[:8]}", a_day()
    for minutes, prompt in ((0, 100), (45, 200), (24 * 60, 400)):  # the last: the next day
        await write(store, noon + timedelta(minutes=minutes), prompt=prompt, team=team)
    window = (noon, noon + timedelta(hours=2))
    assert (await report(rollups, *window)).groups == []
    for day in (noon.date(), noon.date() + timedelta(days=1)):
        await rollups.recompute(day.isoformat())
    done = await report(rollups, *window)
    (group,) = done.groups
    assert (group.key, group.calls, group.prompt_tokens) == (team, 2, 300)
    assert done.as_of is not None
    wide = await report(rollups, noon, noon + timedelta(days=2))
    assert wide.total.calls == 3


async def test_a_document_written_twice_and_rolled_up_twice_counts_once(store: Store) -> None:
    """Redelivery: the outbox or a job may write the same usage document again, and the
    timer may run twice; the roll-up is recomputed whole from documents with fixed ids."""
    rollups, noon = UsageRollups(store), a_day()
    document = await write(store, noon, team="x")
    await store.upsert(USAGE, document)
    await write(store, noon + timedelta(minutes=1), team="x")
    for _ in range(2):
        rolled = await rollups.recompute(noon.date().isoformat())
    assert rolled.records == 2
    assert (await report(rollups, noon, noon + timedelta(hours=1))).total.calls == 2


async def test_report_cost_does_not_grow_with_calls(store: Store) -> None:
    """The report reads one roll-up per day, whether a day had 3 calls or 300."""
    rollups, counts = UsageRollups(store), {}
    for calls in (3, 300):
        noon = a_day()
        for i in range(calls):
            await write(store, noon + timedelta(seconds=i), team="same")
        await rollups.recompute(noon.date().isoformat())
        read = await rollups.read(noon.date(), noon.date())
        counts[calls] = (len(read), sum(len(d.day_cells) for d in read))
        assert (await report(rollups, noon, noon + timedelta(hours=1))).total.calls == calls
    assert counts[3] == counts[300] == (1, 1)


async def test_too_many_cells_is_refused_with_a_clear_error(store: Store) -> None:
    rollups, noon = UsageRollups(store), a_day()
    for team in ("a", "b", "c"):
        await write(store, noon, team=team)
    await rollups.recompute(noon.date().isoformat())
    with pytest.raises(TooLarge, match="at most 2 are read at once") as caught:
        await report(rollups, noon, noon + timedelta(hours=1), max_cells=2)
    assert caught.value.details == {"cells": 3, "max_cells": 2}


async def test_a_late_document_marks_its_day_and_the_timer_rolls_it_up(
    app_environ: dict[str, str], store: Store
) -> None:
    """A document drained from the outbox days later lands in a day the timer no longer
    visits: the drain marks that day, the next run recomputes it and clears the mark."""
    runtime = create_runtime(load_settings(app_environ))
    try:
        noon = a_day()
        late = await write(store, noon, team="late")
        message = OutboxMessage(container="usage", document=late)
        await runtime.outbox.drain(message.model_dump_json())
        day = noon.date().isoformat()
        assert await store.read(USAGE_ROLLUPS, DIRTY_ID, day) is not None
        done = await runtime.usage_rollups.run(now=datetime.now(UTC))
        assert day in done
        assert await store.read(USAGE_ROLLUPS, DIRTY_ID, day) is None
        assert (
            await report(runtime.usage_rollups, noon, noon + timedelta(hours=1))
        ).total.calls == 1
    finally:
        await runtime.aclose()


async def test_request_charge_is_summed_where_the_server_reports_it(store: Store) -> None:
    """Azure Cosmos DB sends `x-ms-request-charge`; the local server may not (then
    `reported` stays False and the benchmark says so)."""
    rollups, noon = UsageRollups(store), a_day()
    await write(store, noon)
    charge = RequestCharge()
    await rollups.recompute(noon.date().isoformat(), charge=charge)
    assert charge.responses >= 1
    assert charge.reported == (charge.request_units > 0)


def row(hour: int, team: str, tokens: int = 2) -> dict[str, Any]:
    return {
        "timestamp": f"2026-01-01T{hour:02d}:10:00+00:00",
        "operation": "chat",
        "deployment": "d",
        "model": "m",
        "mode": "realtime",
        "total_tokens": tokens,
        "tags": {"team": team},
    }


def test_a_day_past_the_cell_cap_folds_attribution_and_keeps_totals() -> None:
    cells = DayCells()
    rows = MAX_CELLS_PER_DAY + 50
    for i in range(rows):
        cells.add(row(10, f"t{i}"))
    assert len(cells.hourly) == MAX_CELLS_PER_DAY + 1
    rollup = cells.rollup("2026-01-01", datetime.now(UTC))
    assert sum(c.calls for c in rollup.cells) == rollup.records == rows
    assert sum(c.total_tokens for c in rollup.day_cells) == 2 * rows
    (folded,) = [c for c in rollup.cells if FOLDED_TAG in c.tags]
    assert folded.calls == rollup.folded_calls == 50


def test_day_cells_sum_the_hours_of_each_attribution() -> None:
    cells = DayCells()
    for hour, team in ((1, "a"), (2, "a"), (2, "b"), (23, "a")):
        cells.add(row(hour, team, tokens=hour))
    daily = {c.tags["team"]: (c.hour, c.calls, c.total_tokens) for c in cells.daily()}
    assert daily == {"a": (None, 3, 26), "b": (None, 1, 2)}
    assert len(cells.hourly) == 4


async def test_a_long_window_reads_day_sums_not_hours(store: Store) -> None:
    """Whole days cost one cell per attribution, not one per hour: a 92-day report of a busy
    tag set stays under the cap."""
    rollups, noon = UsageRollups(store), a_day()
    for hour in range(24):
        await write(store, noon.replace(hour=hour), team="busy")
    await rollups.recompute(noon.date().isoformat())
    start = noon.replace(hour=0)
    done = await report(rollups, start, start + timedelta(days=1), max_cells=1)
    assert done.total.calls == 24
