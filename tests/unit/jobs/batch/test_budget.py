"""A batch part's team budget without servers: its worst case is what its lines may use (the
prompt estimate and the `max_completion_tokens` each line sends) at the batch price, what its
ingested lines used is priced as the usage report prices them, and a part refused waits until
JOB_BUDGET_MAX_WAIT after it began waiting, then fails `budget_exceeded`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.core.errors import BudgetExceeded
from shared.core.models import ErrorDetail, Usage
from shared.core.settings import ModelPrice
from shared.jobs.batch.budget import BatchBudget
from shared.jobs.batch.files import LineOutcome, endpoint_for, input_line, line_tokens
from shared.jobs.models import Item, JobSpec
from shared.jobs.results import failed_result
from shared.metering.team_windows import micros

SPEC = JobSpec(deployment="gpt-4o-batch", labels=["billing", "shipping"])
PRICES = {"gpt-4o": ModelPrice(input=2.5, cached_input=1.25, output=10.0)}
CHAT = endpoint_for("classification", openai_api=False)
WHEN = datetime(2026, 12, 7, 10, tzinfo=UTC)


def budget(max_wait: float = 3600) -> BatchBudget:
    # The registry and the limiter are not used by the arithmetic.
    return BatchBudget(None, None, PRICES, 0.5, max_wait)  # type: ignore[arg-type]


def test_a_part_s_worst_case_is_each_line_s_prompt_and_answer_cap_at_the_batch_price() -> None:
    items = [Item(id="t1", text="my invoice is wrong " * 20), Item(id="t2", text="where is it")]
    tokens, usd = budget().worst_case(CHAT, SPEC, items)
    caps = [
        json.loads(input_line("j", CHAT, SPEC, i))["body"]["max_completion_tokens"] for i in items
    ]
    prompts = [line_tokens(CHAT, SPEC, i) for i in items]
    assert tokens == sum(prompts) + sum(caps)
    assert usd == pytest.approx((sum(prompts) * 2.5 + sum(caps) * 10.0) / 1e6 * 0.5)
    # An embedding line has no answer; a deployment without a price costs nothing.
    embed = endpoint_for("embedding", openai_api=True)
    unpriced = SPEC.model_copy(update={"deployment": "unpriced"})
    assert budget().worst_case(embed, unpriced, items) == (
        sum(line_tokens(embed, unpriced, i) for i in items),
        0.0,
    )


def test_what_ingested_lines_used_is_priced_as_the_report_prices_batch_calls() -> None:
    used = Usage(prompt_tokens=2000, completion_tokens=100, total_tokens=2100, cached_tokens=1000)
    result = failed_result("j", "t1", "classification", ErrorDetail(code="x", message="x"), None)
    chunk = [
        LineOutcome("j:t1", "t1", result, "gpt-4o-2024-08-06", used),
        LineOutcome("j:t2", "t2", None),  # expired: never ran
    ]
    usd = (1000 * 2.5 + 1000 * 1.25 + 100 * 10.0) / 1e6 * 0.5
    assert budget().used(chunk, "gpt-4o-batch") == (2100, micros(usd))
    assert budget().used([], "gpt-4o-batch") == (0, 0)


def test_a_refused_part_waits_until_job_budget_max_wait_then_fails_budget_exceeded() -> None:
    refused = BudgetExceeded("team t has spent its 100 tokens for today (UTC)", retry_after=50_000)
    refused.details = {"limit": "day"}
    waits = budget(max_wait=3600)
    why = waits.waiting(refused, WHEN, WHEN + timedelta(seconds=3600))
    assert why is not None
    assert (why.code, why.details) == ("budget_exceeded", {"limit": "day"})
    assert "until 2026-12-07T11:00:00+00:00 (JOB_BUDGET_MAX_WAIT)" in why.message
    # Room returning only at midnight does not end the wait: other bookings may settle lower.
    assert waits.waiting(refused, WHEN, WHEN + timedelta(seconds=3601)) is None
    failed = waits.failure(refused)
    assert (failed.code, failed.details) == ("budget_exceeded", {"limit": "day"})
    assert "JOB_BUDGET_MAX_WAIT" in failed.message
