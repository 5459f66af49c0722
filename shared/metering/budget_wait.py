"""Jobs wait for their team's budget: reserve, and when the team is out of room, wait until it
returns (the refusal's Retry-After), up to a limit, then give up with the refusal.

For a job runner (shared/jobs): `on_wait` is called before each wait with the refusal, so the
job's status can say it is waiting and until when; the refusal raised at the end
(`budget_exceeded`, or `rate_limited` for the minute) is what its remaining items fail with.
A wait that would end past the limit is not begun: the job fails now, not at the limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from shared.core.errors import RateLimited
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
