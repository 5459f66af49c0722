"""Jobs wait for their team's budget: when the team is out of room, wait until it returns (the
refusal's Retry-After), up to a limit, then give up with the refusal's code.

Two shapes of the same rule. A wait that would end past the limit is not begun: the job fails
now with `budget_exceeded` (or `rate_limited`), not at the limit.

- `budget_wait`: for shared/jobs, whose waits are continuations (the rest of the job sent back
  to its queue with a delay, the job `waiting`): the delay and the job's `error` while it
  waits, or None when its remaining items fail.
- `reserve_or_wait`: for a caller that may wait in process (a timer's run): reserve, sleeping
  out refusals; `on_wait` is called before each sleep with the refusal.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.core.errors import RateLimited
from shared.core.models import ErrorDetail
from shared.metering.team_limits import Booking, TeamLimiter
from shared.metering.teams import Team


async def reserve_or_wait(
    limiter: TeamLimiter,
    team: Team,
    tokens: int,
    usd: float,
    *,
    max_wait: float,
    on_wait: Callable[[RateLimited], Awaitable[None]],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Booking | None:
    """`limiter.reserve`, waiting out refusals for at most `max_wait` seconds in all; the last
    refusal when room does not return by then."""
    deadline = clock() + max_wait
    while True:
        try:
            return await limiter.reserve(team, tokens, usd)
        except RateLimited as refused:
            wait = max(1.0, refused.retry_after or 1.0)
            if clock() + wait > deadline:
                raise
            await on_wait(refused)
            await sleep(wait)


@dataclass(frozen=True)
class BudgetWait:
    """The rest of a job waits `delay` seconds; the job says `why` meanwhile (status
    `waiting`)."""

    delay: float
    why: ErrorDetail


def budget_wait(
    refused: RateLimited, *, waiting_since: datetime | None, at: datetime, max_wait: float
) -> BudgetWait | None:
    """After the team's refusal at `at`: how long the rest waits, or None when room returns
    more than `max_wait` seconds after the job began waiting for it (`waiting_since`; None:
    now) and the remaining items fail with `refused.code`."""
    delay = max(1.0, refused.retry_after or 1.0)
    since = waiting_since or at
    if (at - since).total_seconds() + delay > max_wait:
        return None
    due = at + timedelta(seconds=delay)
    why = ErrorDetail(
        code=refused.code,
        message=f"waits for its team's budget: {refused.message}; "
        f"tried again at {due.isoformat(timespec='seconds')}",
        details=refused.details,
    )
    return BudgetWait(delay, why)
