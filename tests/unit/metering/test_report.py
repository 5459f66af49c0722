"""Usage aggregation and cost estimates (pure logic), and the report against real Cosmos."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.core.errors import InvalidRequest
from shared.core.models import Usage
from shared.core.settings import DEFAULT_PRICES, ModelPrice
from shared.metering.models import UsageGroup, UsageQuery, UsageRecord
from shared.metering.report import build_record, cell_of, cost_usd, price_for, resolve_window
from shared.metering.report import summarise as summarise_cells
from shared.metering.rollups import MAX_CELLS_PER_DAY, DayCells, RollupCell

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def summarise(
    records: list[UsageRecord], group_by: str, prices: dict[str, ModelPrice], discount: float
) -> tuple[list[UsageGroup], UsageGroup, list[str]]:
    """The report's grouping over records, each as the roll-up cell it is summed into."""
    return summarise_cells([cell_of(r) for r in records], group_by, prices, discount)


PRICES = {"gpt-4o": ModelPrice(input=2.5, output=10.0), "emb": ModelPrice(input=0.02)}


def rec(
    *,
    deployment: str = "gpt-4o",
    model: str | None = "gpt-4o",
    prompt: int = 1000,
    completion: int = 100,
    mode: str = "realtime",
    tags: dict[str, str] | None = None,
    operation: str = "chat",
    at: datetime = NOW,
    cached: int = 0,
    reasoning: int = 0,
) -> UsageRecord:
    return build_record(
        operation=operation,  # type: ignore[arg-type]
        deployment=deployment,
        model=model,
        usage=Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            cached_tokens=cached,
            reasoning_tokens=reasoning,
        ),
        latency_ms=12.345,
        tags=tags or {},
        mode=mode,  # type: ignore[arg-type]
        now=at,
    )


def test_cost_is_per_million_tokens_and_batch_is_discounted() -> None:
    realtime = rec(prompt=1_000_000, completion=1_000_000)
    assert cost_usd(realtime, PRICES, 0.5) == pytest.approx(12.5)
    batch = rec(prompt=1_000_000, completion=1_000_000, mode="batch")
    assert cost_usd(batch, PRICES, 0.5) == pytest.approx(6.25)
    assert cost_usd(rec(model="unknown"), PRICES, 0.5) == 0.0


def test_group_by_deployment_sums_tokens_calls_and_cost() -> None:
    records = [
        rec(deployment="a", prompt=1000, completion=0),
        rec(deployment="a", prompt=3000, completion=1000),
        rec(deployment="b", model="emb", prompt=500, completion=0),
    ]
    groups, total, unpriced = summarise(records, "deployment", PRICES, 0.5)
    assert [(g.key, g.calls, g.prompt_tokens, g.completion_tokens) for g in groups] == [
        ("a", 2, 4000, 1000),
        ("b", 1, 500, 0),
    ]
    assert groups[0].estimated_cost_usd == pytest.approx((4000 * 2.5 + 1000 * 10) / 1e6)
    assert total.calls == 3
    assert total.total_tokens == 5500
    assert unpriced == []


def test_group_by_tag_puts_untagged_calls_under_null() -> None:
    records = [
        rec(tags={"team": "search"}),
        rec(tags={"team": "search"}),
        rec(tags={"team": "support"}, prompt=10_000),
        rec(),
    ]
    groups, _, _ = summarise(records, "tag:team", PRICES, 0.5)
    by_key = {g.key: g.calls for g in groups}
    assert by_key == {"search": 2, "support": 1, None: 1}
    assert groups[0].key == "support"  # most expensive first


def test_group_by_backend_names_the_account_that_served_each_call() -> None:
    records = [
        rec().model_copy(update={"backend": "ptu"}),
        rec().model_copy(update={"backend": "paygo"}),
        rec(prompt=5000).model_copy(update={"backend": "paygo"}),
        rec(),  # a record from before AOAI_BACKENDS
    ]
    groups, _, _ = summarise(records, "backend", PRICES, 0.5)
    assert {g.key: g.calls for g in groups} == {"paygo": 2, "ptu": 1, None: 1}
    assert UsageQuery.model_validate({"group_by": "backend"}).group_by == "backend"


def test_versioned_model_names_find_their_price() -> None:
    prices = {**PRICES, "gpt-4o-mini": ModelPrice(input=0.15, output=0.6)}
    assert price_for("gpt-4o-2024-08-06", prices) == PRICES["gpt-4o"]
    assert price_for("gpt-4o-mini-2024-07-18", prices) == prices["gpt-4o-mini"]
    assert price_for("gpt-4", prices) is None
    assert price_for(None, prices) is None


def test_unpriced_models_are_reported() -> None:
    failed_call = rec(model=None, prompt=0, completion=0)  # no tokens: nothing to price
    _, _, unpriced = summarise([rec(model="mystery"), failed_call], "model", PRICES, 0.5)
    assert unpriced == ["mystery"]


def test_default_window_is_the_last_day() -> None:
    since, until = resolve_window(UsageQuery(), now=NOW)
    assert (since, until) == (NOW - timedelta(hours=24), NOW)


def test_the_window_widens_to_whole_hours() -> None:
    """Roll-ups count by the hour: the window says which hours it really covers."""
    query = UsageQuery(since=NOW + timedelta(minutes=5), until=NOW + timedelta(minutes=70))
    assert resolve_window(query, now=NOW) == (NOW, NOW + timedelta(hours=2))


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        (NOW, NOW - timedelta(hours=1), "since must be before until"),
        (NOW - timedelta(days=100), NOW, "at most 92 days"),
    ],
)
def test_bad_windows_are_refused(since: datetime, until: datetime, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        resolve_window(UsageQuery(since=since, until=until), now=NOW)


def test_group_by_must_be_known() -> None:
    with pytest.raises(ValueError, match="group_by"):
        UsageQuery.model_validate({"group_by": "colour"})


def test_default_prices_cover_the_default_deployments() -> None:
    assert {"gpt-4o", "text-embedding-3-small"} <= set(DEFAULT_PRICES)


# --- date edges (the review's fuzzers missed `until=0001-01-01`: an OverflowError, a 500) ---

EDGES = [
    datetime.min,
    datetime.max,
    datetime.min.replace(tzinfo=UTC),
    datetime.max.replace(tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),
    datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-14))),
    datetime(1999, 12, 31, 23, 59, tzinfo=UTC),
    datetime(9000, 1, 1, 0, 1, tzinfo=UTC),
]


@pytest.mark.parametrize("edge", EDGES, ids=str)
@pytest.mark.parametrize("field", ["since", "until"])
def test_date_edges_are_a_400_not_an_overflow(edge: datetime, field: str) -> None:
    with pytest.raises(InvalidRequest, match="must lie between"):
        resolve_window(UsageQuery.model_validate({field: edge}), now=NOW)


def test_until_0001_01_01_as_the_query_string_gives_it() -> None:
    with pytest.raises(InvalidRequest):
        resolve_window(UsageQuery.model_validate({"until": "0001-01-01"}), now=NOW)


ANY_MOMENT = st.datetimes(
    min_value=datetime.min,
    max_value=datetime.max,
    timezones=st.one_of(
        st.none(),
        st.timezones(),
        st.builds(
            timezone,
            st.timedeltas(
                min_value=timedelta(hours=-23, minutes=-59),
                max_value=timedelta(hours=23, minutes=59),
            ),
        ),
    ),
).filter(lambda d: d.utcoffset() is None or abs(d.utcoffset() or timedelta()) < timedelta(days=1))
# Hypothesis favours the bounds of a range, so datetime.min/max are tried on every run.


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(since=st.one_of(st.none(), ANY_MOMENT), until=st.one_of(st.none(), ANY_MOMENT))
def test_any_window_is_answered_or_refused_never_crashes(
    since: datetime | None, until: datetime | None
) -> None:
    try:
        first, last = resolve_window(UsageQuery(since=since, until=until), now=NOW)
    except InvalidRequest:
        return
    assert first < last
    assert last - first <= timedelta(days=92, hours=2)


def test_estimated_tokens_count_in_the_totals_and_apart() -> None:
    """A stream cut before its usage chunk is recorded with estimated tokens: they are billed
    like any others, and the report says how many of them were estimated."""
    cut = rec(prompt=40, completion=10, tags={"team": "a"}).model_copy(update={"estimated": True})
    whole = rec(prompt=100, completion=20, tags={"team": "a"})
    groups, total, _ = summarise([cut, whole], "tag:team", PRICES, 0.5)
    (group,) = groups
    assert (group.total_tokens, group.estimated_tokens) == (170, 50)
    assert (total.total_tokens, total.estimated_tokens) == (170, 50)
    assert group.estimated_cost_usd == pytest.approx((140 * 2.5 + 30 * 10.0) / 1e6)


# --- cached and reasoning tokens (issue #22, item 6) ---

CACHED = {"gpt-5.4": ModelPrice(input=2.5, cached_input=0.25, output=15.0)}


def test_cached_input_is_priced_at_the_cached_price() -> None:
    """A repeated long prompt: 1,920 of its 2,008 prompt tokens cached. Before, every prompt
    token cost the input price, so the repeat cost as much as the first call."""
    first = rec(model="gpt-5.4-2026-03-05", prompt=2008, completion=100)
    again = rec(model="gpt-5.4-2026-03-05", prompt=2008, completion=100, cached=1920)
    assert cost_usd(first, CACHED, 0.5) == pytest.approx((2008 * 2.5 + 100 * 15) / 1e6)
    assert cost_usd(again, CACHED, 0.5) == pytest.approx((88 * 2.5 + 1920 * 0.25 + 100 * 15) / 1e6)
    assert cost_usd(again, CACHED, 0.5) < cost_usd(first, CACHED, 0.5)
    # Azure's Batch is 50% of global standard, cached input included.
    batch = again.model_copy(update={"mode": "batch"})
    assert cost_usd(batch, CACHED, 0.5) == pytest.approx(cost_usd(again, CACHED, 0.5) / 2)


def test_without_a_cached_price_cached_input_costs_the_input_price() -> None:
    plain = rec(prompt=2008, completion=100)
    cached = rec(prompt=2008, completion=100, cached=1920)
    assert PRICES["gpt-4o"].cached_input is None
    assert cost_usd(cached, PRICES, 0.5) == pytest.approx(cost_usd(plain, PRICES, 0.5))


def test_reasoning_tokens_are_output_tokens_shown_apart() -> None:
    """Reasoning tokens are among the completion tokens: billed as output, no price of their
    own, and the report says how many there were."""
    reasoned = rec(model="gpt-5.4", prompt=100, completion=700, reasoning=600, tags={"t": "a"})
    plain = rec(model="gpt-5.4", prompt=100, completion=700, tags={"t": "a"})
    assert cost_usd(reasoned, CACHED, 0.5) == pytest.approx(cost_usd(plain, CACHED, 0.5))
    cached = rec(model="gpt-5.4", prompt=2008, completion=10, cached=1920, tags={"t": "a"})
    (group,), total, _ = summarise([reasoned, plain, cached], "tag:t", CACHED, 0.5)
    assert (group.prompt_tokens, group.cached_tokens) == (2208, 1920)
    assert (group.completion_tokens, group.reasoning_tokens) == (1410, 600)
    assert (total.cached_tokens, total.reasoning_tokens) == (1920, 600)
    expected = sum(cost_usd(r, CACHED, 0.5) for r in (reasoned, plain, cached))
    assert group.estimated_cost_usd == pytest.approx(expected, abs=1e-6)


def test_roll_ups_sum_cached_and_reasoning_tokens_by_hour_and_day() -> None:
    cells = DayCells()
    for hour, cached, reasoning in ((9, 1024, 0), (9, 1920, 600), (10, 0, 64)):
        record = rec(prompt=2008, completion=700, cached=cached, reasoning=reasoning)
        row = record.model_dump(mode="json") | {"timestamp": f"2026-11-26T{hour:02}:00:00+00:00"}
        cells.add(row)
    rollup = cells.rollup("2026-11-26", NOW)
    hourly = {c.hour: (c.cached_tokens, c.reasoning_tokens) for c in rollup.cells}
    assert hourly == {9: (2944, 600), 10: (0, 64)}
    (day,) = rollup.day_cells
    assert (day.cached_tokens, day.reasoning_tokens) == (2944, 664)


def test_documents_and_roll_ups_from_before_read_as_zero() -> None:
    """Usage documents and roll-up cells stored before these fields stay readable (0), and a
    day recomputed from such documents counts them as 0."""
    old = rec().model_dump(mode="json")
    for field in ("cached_tokens", "reasoning_tokens"):
        old.pop(field, None)
    record = UsageRecord.model_validate(old)
    assert (record.cached_tokens, record.reasoning_tokens) == (0, 0)
    cells = DayCells()
    cells.add(old)
    (cell,) = cells.rollup("2026-11-26", NOW).cells
    assert (cell.cached_tokens, cell.reasoning_tokens) == (0, 0)
    stored = cell.model_dump(mode="json", exclude={"cached_tokens", "reasoning_tokens"})
    assert RollupCell.model_validate(stored).cached_tokens == 0


def test_a_full_roll_up_with_every_count_stays_under_cosmos_dbs_2_mb() -> None:
    """Each cell carries two more counts: a day past both caps (cells and key bytes), with
    long attributions and ten-digit counts, still fits one Cosmos DB document."""
    cells = DayCells()
    for i in range(3 * MAX_CELLS_PER_DAY):
        cells.add(
            {
                "timestamp": f"2026-11-26T{i % 24:02}:00:00+00:00",
                "operation": "classification",
                "deployment": "a-long-deployment-name-01",
                "model": "gpt-5.4-2026-03-05",
                "mode": "realtime",
                "backend": "ptu-swedencentral-01",
                "team": f"a-team-of-forty-characters-{i % 7:013}",
                "principal_id": f"00000000-0000-0000-0000-{i:012}",
                "tags": {"team": f"team-{i:06}", "feature": "a-feature-name-0123"},
                **dict.fromkeys(
                    ("prompt_tokens", "completion_tokens", "total_tokens"), 9_999_999_999
                ),
                **dict.fromkeys(("cached_tokens", "reasoning_tokens"), 9_999_999_999),
            }
        )
    document = cells.rollup("2026-11-26", NOW).model_dump_json()
    # The key-byte cap stops it first (its team, never folded, makes each key longer).
    assert len(cells.hourly) > MAX_CELLS_PER_DAY * 0.8
    assert len(document.encode()) < 2 * 1024 * 1024
