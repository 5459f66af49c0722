"""The attribute dicts of shared/telemetry/record.py: only names.py's keys, bounded values."""

from __future__ import annotations

import pytest

from shared.core.errors import (
    AppError,
    BudgetExceeded,
    ContentFiltered,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from shared.core.models import Usage
from shared.telemetry import names, record


@pytest.mark.parametrize(
    ("source", "operation", "route", "name"),
    [
        ("chat", "chat", "chat", "chat"),
        ("chat", "chat_stream", "chat", "chat"),
        ("gateway", "chat_stream", "gateway", "chat"),
        ("gateway", "embedding", "gateway", "embeddings"),
        ("gateway", "responses", "responses", "responses"),
        ("gateway", "responses_stream", "responses", "responses"),
        ("job", "classification", "job", "chat"),
        ("batch", "embedding", "batch", "embeddings"),
    ],
)
def test_route_and_operation_follow_the_source_and_the_usage_operation(
    source: str, operation: str, route: str, name: str
) -> None:
    attributes = record.call_attributes(
        operation=operation,
        source=source,
        deployment="gpt-4o-mini",
        backend="east",
        team="team-a",
        outcome="ok",
    )
    assert attributes == {
        names.OPERATION: name,
        names.PROVIDER: names.PROVIDER_NAME,
        names.DEPLOYMENT: "gpt-4o-mini",
        names.BACKEND: "east",
        names.ROUTE: route,
        names.TEAM: "team-a",
        names.OUTCOME: "ok",
    }
    assert attributes[names.ROUTE] in names.ROUTES


def test_no_team_and_an_error_type() -> None:
    attributes = record.call_attributes(
        operation="chat",
        source="chat",
        deployment="d",
        backend=None,
        team=None,
        outcome="throttled",
        error_type="rate_limited",
    )
    assert attributes[names.TEAM] == names.NO_TEAM
    assert attributes[names.ERROR_TYPE] == "rate_limited"
    assert set(attributes) <= set(names.ATTRIBUTES)


@pytest.mark.parametrize(
    ("status", "failure", "expected"),
    [
        ("ok", None, ("ok", None)),
        ("content_filter", None, ("filtered", None)),
        ("cancelled", None, ("error", "cancelled")),
        ("error", None, ("error", "upstream_error")),
        ("cancelled", RateLimited("slow down"), ("throttled", "rate_limited")),
        ("cancelled", BudgetExceeded("spent"), ("throttled", "budget_exceeded")),
        ("cancelled", ContentFiltered("no"), ("filtered", "content_filter")),
        ("error", UpstreamTimeout("late"), ("error", "upstream_timeout")),
        ("error", UpstreamError("broke"), ("error", "upstream_error")),
        ("error", AppError("bug"), ("error", "internal_error")),
    ],
)
def test_outcome_of_a_status_or_a_failure(
    status: str, failure: AppError | None, expected: tuple[str, str | None]
) -> None:
    outcome, error_type = record.outcome_of(status, failure)
    assert (outcome, error_type) == expected
    assert outcome in names.OUTCOMES


def test_input_and_output_always_cached_and_reasoning_when_used() -> None:
    plain = Usage(prompt_tokens=0, completion_tokens=0)
    assert record.token_points(plain) == [(0, "input"), (0, "output")]
    full = Usage(prompt_tokens=30, completion_tokens=20, cached_tokens=10, reasoning_tokens=5)
    points = record.token_points(full)
    assert points == [(30, "input"), (20, "output"), (10, "cached"), (5, "reasoning")]
    assert {kind for _, kind in points} == set(names.TOKEN_TYPES)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [("succeeded", "ok"), ("content_filtered", "filtered"), ("failed", "error")],
)
def test_job_item_attributes(status: str, outcome: str) -> None:
    attributes = record.job_item_attributes(
        kind="embedding", mode="batch", team=None, outcome=record.item_outcome(status)
    )
    assert attributes == {
        names.JOB_KIND: "embedding",
        names.JOB_MODE: "batch",
        names.TEAM: names.NO_TEAM,
        names.OUTCOME: outcome,
    }


def test_limiter_attributes() -> None:
    assert record.limiter_attributes("d", "west") == {
        names.DEPLOYMENT: "d",
        names.BACKEND: "west",
    }
