"""A call a person waits for, booked in its deployment's limiter as each attempt goes out, so
the jobs of the process see it at once and leave it room (shared/aoai/priority.py,
docs/jobs.md#interactive-calls-first).

The attempt is never held: the booking only counts it. An attempt the service refused with a
429 was not charged and is taken back; any other failure (a 5xx, a timeout) may have been
charged and stays booked, as a job's does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import openai

from shared.aoai.backends import Target
from shared.aoai.limiters import Limiters

T = TypeVar("T")


def booked(
    limiters: Limiters | None, tokens: int, call: Callable[[Target], Awaitable[T]]
) -> Callable[[Target], Awaitable[T]]:
    """`call`, each of its attempts first booked as `tokens` (what the quota charges: the
    prompt's estimate plus the output cap) in the limiter of the attempt's backend and
    deployment. No limiters (a test's meter): `call` as it is."""
    if limiters is None:
        return call

    async def attempt(target: Target) -> T:
        limiter = limiters.get(target.deployment, backend=target.backend)
        booking = limiter.interactive(tokens)
        try:
            return await call(target)
        except openai.RateLimitError:
            booking.refused()
            raise

    return attempt
