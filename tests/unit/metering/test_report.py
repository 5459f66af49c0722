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
) -> UsageRecord:
    return build_record(
        operation=operation,  # type: ignore[arg-type]
        deployment=deployment,
        model=model,
        usage=Usage(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
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
