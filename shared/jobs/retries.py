"""The retry policy of a job's continuations: when what a slice left is due again, or that it
must fail instead. The rules: docs/jobs.md#rate-limits-and-retries."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from shared.core.clock import now
from shared.core.settings import Settings
from shared.jobs.runner import SliceOutcome

MIN_CONTINUATION_DELAY = 0.001
MAX_BACKOFF_SECONDS = 300.0
MAX_ATTEMPT = 1000  # the message model's bound; a parked job counts no further


class Plan(NamedTuple):
    """When what a slice left is due again, at which attempt, and whether it is parked."""

    delay: float
    attempt: int
    parked: bool = False


def continuation_plan(
    settings: Settings,
    attempt: int,
    outcome: SliceOutcome,
    *,
    created: datetime | None = None,
    at: datetime | None = None,
) -> Plan | None:
    """When the continuation for what a slice left is due, or None when the rest must fail
    instead: a retry-after past the cap, or passing failures past `JOB_MAX_AGE` from the
    job's creation (`created`; `at` is now).

    A 429 or a finished slice does not use up the budget: only passing failures count. Once
    `JOB_MAX_ATTEMPTS` are spent the rest is parked: due after `JOB_PARK_SECONDS`, never past
    the job's maximum age."""
    if outcome.stop == "slice":
        return Plan(0.0, attempt)
    if outcome.stop == "budget":  # the worker decided the wait (shared/jobs/team_budget.py)
        return Plan(max(MIN_CONTINUATION_DELAY, outcome.retry_after or 1.0), attempt)
    if outcome.stop == "rate_limited":
        wait = outcome.retry_after or 1.0
        if wait > settings.job_retry_after_cap_seconds:
            return None
        return Plan(max(MIN_CONTINUATION_DELAY, wait - outcome.lead), attempt)
    attempt += 1
    if attempt <= settings.job_max_attempts:
        backoff = settings.job_backoff_seconds * 2 ** (attempt - 1)
        return Plan(min(backoff, MAX_BACKOFF_SECONDS), attempt)
    at = at or now()
    left = settings.job_max_age - (at - (created or at)).total_seconds()
    if left <= 0:
        return None
    return Plan(min(settings.job_park_seconds, left), min(attempt, MAX_ATTEMPT), parked=True)
