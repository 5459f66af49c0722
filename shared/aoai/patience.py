"""An interactive call's retries: the SDK's policy, but never a longer sleep than a person
should wait (INTERACTIVE_MAX_WAIT_SECONDS).

The openai SDK retries 408, 409, 429, 5xx and connection failures (`x-should-retry` decides
when sent), sleeping the service's `retry-after-ms` / `retry-after` when it is at most two
minutes, else 0.5 s doubling to 8 s with up to 25 % jitter. On a 429 whose retry-after is
half a minute, that holds a person for a minute before they hear anything. `attempts` runs
the same policy over a client without retries, and raises the error at once when the next
sleep would bring the call's time asleep past `max_wait`: the caller then answers 429 with the
service's Retry-After. Jobs keep the SDK's own retries or none (they never sleep on a 429).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import openai

from shared.core.errors import retry_after_seconds

T = TypeVar("T")

INITIAL_DELAY = 0.5  # the SDK's INITIAL_RETRY_DELAY
MAX_DELAY = 8.0  # its MAX_RETRY_DELAY
MAX_RETRY_AFTER = 120.0  # its MAX_RETRY_AFTER_DELAY: a longer retry-after is not waited for
_RETRIED_STATUSES = (408, 409, 429)
# The header the SDK's retries carry (the simulator counts retries by it); an attempt's
# `Target.headers` carry it on ours, which every caller of `Route.send` sends.
RETRY_COUNT = "x-stainless-retry-count"


def retry_wait(error: openai.OpenAIError, retried: int) -> float | None:
    """Seconds the SDK would sleep before retrying after `error` (`retried` retries made so
    far), or None when it would not retry."""
    if isinstance(error, openai.APIConnectionError):  # timeouts included
        return _backoff(retried)
    if not isinstance(error, openai.APIStatusError):
        return None
    headers = error.response.headers
    asked = retry_after_seconds(headers)
    if asked is not None and math.isfinite(asked) and asked > MAX_RETRY_AFTER:
        return None
    should = headers.get("x-should-retry")
    if should == "false":
        return None
    status = error.status_code
    if should != "true" and status not in _RETRIED_STATUSES and status < 500:
        return None
    if asked is not None and 0 < asked <= MAX_RETRY_AFTER:
        return asked
    return _backoff(retried)


def _backoff(retried: int) -> float:
    return min(INITIAL_DELAY * 2.0**retried, MAX_DELAY) * (1 - 0.25 * random.random())  # noqa: S311 - jitter


async def attempts(
    attempt: Callable[[int], Awaitable[T]],
    *,
    retries: int,
    max_wait: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """`attempt(retried)`, retried as the SDK would up to `retries` times while the sleeps add
    up to no more than `max_wait` seconds; the last error is raised as it came. `retried`: the
    retries made before this attempt (the SDK's `x-stainless-retry-count`)."""
    waited = 0.0
    retried = 0
    while True:
        try:
            return await attempt(retried)
        except openai.OpenAIError as error:
            wait = retry_wait(error, retried)
            if wait is None or retried >= retries or waited + wait > max_wait:
                raise
            retried += 1
            waited += wait
            await sleep(wait)
