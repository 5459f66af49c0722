"""The AppMetrics query lint of tests/infra/telemetry_checks.py on small queries: what it
extracts and what it rejects, so a check that passes the real infra is seen to be able to fail."""

from __future__ import annotations

import pytest

from shared.telemetry import names
from tests.infra.bicep import parse
from tests.infra.telemetry_checks import (
    app_metrics_queries,
    attribute_keys,
    balance_problems,
    compared_values,
    expected_prices,
    metric_names,
    price_rows,
    query_problems,
)

GOOD = (
    'AppMetrics | where Name in ("app.job.items", "app.upstream.requests") '
    '| extend t = tostring(Properties["app.team"]) | summarize sum(Sum) by t'
)


def test_names_and_keys_are_extracted_in_every_form() -> None:
    query = (
        'AppMetrics | where Name == "gen_ai.client.token.usage" or Name in ("a.b", "c") '
        "| extend x = tostring(Properties.outcome), y = Properties['app.route']"
    )
    assert metric_names(query) == ["gen_ai.client.token.usage", "a.b", "c"]
    assert attribute_keys(query) == ["app.route", "outcome"]


def test_a_query_of_known_names_passes() -> None:
    assert query_problems(GOOD) == []


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (GOOD.replace('"app.job.items"', '"app.jobs.items"'), "metric 'app.jobs.items'"),
        (GOOD.replace('Properties["app.team"]', 'Properties["team"]'), "attribute 'team'"),
        (GOOD.replace('Properties["app.team"]', "Properties.app.team"), "attribute 'app'"),
        ("AppMetrics | summarize sum(Sum) by Name", "without naming a metric"),
        (GOOD.replace("sum(Sum)", "sum(Sum"), "unclosed '('"),
        (GOOD.replace('"app.job.items"', '"app.job.items'), "unclosed"),
        (GOOD.replace("sum(Sum)", "sum(Sum))"), "unbalanced ')'"),
        (GOOD + ' | where t == "x"', ""),  # app.team has no fixed set of values
        (
            'AppMetrics | where Name == "app.job.items" '
            '| extend o = tostring(Properties["app.outcome"]) | where o in ("ok", "failed")',
            "app.outcome is never 'failed'",
        ),
        (
            'AppMetrics | where Name == "gen_ai.client.token.usage" '
            '| extend k = tostring(Properties["gen_ai.token.type"]) | where k == "prompt"',
            "gen_ai.token.type is never 'prompt'",
        ),
    ],
)
def test_a_wrong_query_is_named(query: str, expected: str) -> None:
    if not expected:
        assert query_problems(query) == []
        return
    assert any(expected in p for p in query_problems(query)), query_problems(query)


def test_compared_values_follow_their_alias() -> None:
    query = (
        'AppMetrics | where Name == "app.upstream.requests" '
        '| extend outcome = tostring(Properties["app.outcome"]), '
        'r = tostring(Properties["app.route"]) '
        '| where r in ("chat", "gateway") | summarize sumif(Sum, outcome == "throttled")'
    )
    assert sorted(compared_values(query)) == [
        ("app.outcome", "throttled"),
        ("app.route", "chat"),
        ("app.route", "gateway"),
    ]


def test_brackets_inside_strings_do_not_count() -> None:
    assert balance_problems('x | where a == "(" and b == "]"') == []


def test_every_query_the_infra_holds_is_checked() -> None:
    queries = app_metrics_queries(parse())
    labels = {label.split(":")[1] for label in queries}
    assert {
        "teamTokensQuery",
        "throttleShareQuery",
        "firstTokenQuery",
        "jobItemsQuery",
        "throttledShareQuery",
    } <= labels
    used = {m for q in queries.values() for m in metric_names(q)}
    assert used == {
        names.TOKEN_USAGE,
        names.UPSTREAM_REQUESTS,
        names.TIME_TO_FIRST_CHUNK,
        names.JOB_ITEMS,
    }


def test_the_price_table_is_the_apps() -> None:
    query = app_metrics_queries(parse())["modules/workbook.bicep:teamTokensQuery"]
    rows = price_rows(query)
    assert rows == expected_prices()
    assert rows["gpt-5.4"] == (2.5, 0.25, 15.0)
