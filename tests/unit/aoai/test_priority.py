"""Interactive calls first (shared/aoai/priority.py, shared/aoai/interactive.py): the headroom
jobs leave on a deployment for the calls a person waits for, on a fake clock."""

from __future__ import annotations

import math

import httpx2
import openai
import pytest
from openai import AsyncAzureOpenAI

from shared.aoai.backends import Target
from shared.aoai.interactive import booked
from shared.aoai.limiters import Limiters
from shared.aoai.priority import HeadroomPolicy, InteractiveRate
from shared.aoai.quota import DeploymentLimiter
from shared.core.settings import DeploymentQuota

POLICY = HeadroomPolicy(factor=0.25, floor=1000)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def limiter(clock: Clock, tpm: int = 10_000, policy: HeadroomPolicy = POLICY) -> DeploymentLimiter:
    return DeploymentLimiter(tpm, None, clock=clock, sleep=clock.sleep, headroom=policy)


def job_fill(lim: DeploymentLimiter, tokens: int) -> int:
    """Job requests of `tokens` acquired while they fit now; how many did."""
    count = 0
    while lim.delay_for(tokens, job=True) == 0.0:
        lim._reserve(tokens)
        count += 1
    return count


# --- the policy's arithmetic ------------------------------------------------------------


def test_headroom_is_the_factor_of_recent_use_raised_to_the_floor_capped_at_the_use() -> None:
    assert POLICY.headroom(0.0) == 0
    assert POLICY.headroom(0.5) == 0  # quiet
    assert POLICY.headroom(600.0) == 600  # the floor, but never more than the use itself
    assert POLICY.headroom(2_000.0) == 1_000  # the floor
    assert POLICY.headroom(40_000.0) == 10_000  # the factor
    assert HeadroomPolicy().headroom(40_000.0) == 0  # off


def test_request_headroom_covers_a_window_of_interactive_calls_and_their_spread() -> None:
    assert POLICY.requests(0.5, 4.0) == 0  # quiet
    assert POLICY.requests(2_000.0, 0.0) == 1  # at least one while interactive use is recent
    assert POLICY.requests(2_000.0, 4.0) == 8  # 4 expected, + 2 x sqrt(4)
    assert POLICY.requests(2_000.0, 25.0) == 35
    assert HeadroomPolicy().requests(2_000.0, 4.0) == 0  # off


def test_the_rate_reads_a_steady_use_per_minute_and_decays_when_quiet() -> None:
    rate = InteractiveRate(60.0, 0.0)
    for second in range(600):  # 100 tokens a second for ten minutes: 6,000 a minute
        rate.add(float(second), 100)
    assert rate.per_minute(600.0) == pytest.approx(6_000, rel=0.02)
    assert rate.per_minute(660.0) == pytest.approx(6_000 / math.e, rel=0.02)  # 1/e a minute on


# --- in the limiter ---------------------------------------------------------------------


def test_headroom_grows_with_interactive_use_at_once() -> None:
    clock = Clock()
    lim = limiter(clock)
    seen = [lim.headroom]
    for _ in range(4):
        lim.interactive(2_000)  # each call raises it as it is booked, before any answer
        seen.append(lim.headroom)
    assert seen == [0, 1_000, 1_000, 1_500, 2_000]


async def test_jobs_are_refused_the_room_interactive_calls_get() -> None:
    clock = Clock()
    lim = limiter(clock)
    lim.interactive(2_000)  # recent use 2,000 a minute: headroom 1,000
    assert lim.headroom == 1_000
    # Jobs fill the quota less the interactive use in the window and the headroom...
    assert job_fill(lim, 500) == 14  # 2,000 + 7,000 = 9,000 of 10,000
    assert lim.delay_for(500, job=True) > 0.0
    # ...which interactive calls still have, and a job does not get by waiting briefly.
    assert lim.delay_for(500) == 0.0
    assert lim.delay_for(1_000) == 0.0
    assert not await lim.acquire(500, max_wait=1.0, job=True)
    assert await lim.acquire(500, max_wait=0.0)  # an interactive acquisition fits


def test_jobs_leave_requests_free_in_the_request_window_for_interactive_calls() -> None:
    clock = Clock()
    lim = DeploymentLimiter(100_000, 600, clock=clock, sleep=clock.sleep, headroom=POLICY)
    for _ in range(4):  # 4 calls a minute, decayed: 0.37 in a 10 s window, + 2 x sqrt: 2
        lim.interactive(100)
        clock.now += 15.0
    assert lim.request_headroom == 2
    sent = 0
    for _ in range(200):  # job requests as fast as the request window and its spread allow
        if lim.delay_for(10, job=True) == 0.0:
            lim._reserve(10)
            sent += 1
        clock.now += 0.05
    # 600 RPM is 100 a 10 s window; over these 10 s the jobs kept 2 of them free...
    assert sent == 98
    assert lim.delay_for(10) == 0.0  # ...which an interactive call still finds
    no_policy = DeploymentLimiter(100_000, 600, clock=clock, sleep=clock.sleep)
    for _ in range(200):
        if no_policy.delay_for(10, job=True) == 0.0:
            no_policy._reserve(10)
        clock.now += 0.05
    assert no_policy.delay_for(10) > 0.0  # without it, the jobs filled the request window


def test_without_the_policy_jobs_fill_the_whole_quota() -> None:
    clock = Clock()
    lim = limiter(clock, policy=HeadroomPolicy())
    lim.interactive(2_000)
    assert lim.headroom == 0
    assert job_fill(lim, 500) == 16  # 2,000 + 8,000: nothing left for the next chat


def test_headroom_decays_to_zero_when_quiet_and_jobs_take_the_whole_quota_back() -> None:
    clock = Clock()
    lim = limiter(clock)
    for _ in range(5):
        lim.interactive(2_000)
    assert lim.headroom == 2_500
    clock.now += 61.0  # a quiet minute: the calls left the window, the headroom decays
    assert lim.headroom == 1_000  # 10,000 / e a minute: the floor
    lim._reserve(9_000)  # jobs fill all but the headroom
    assert lim.delay_for(1, job=True) > 0.0
    assert lim.delay_for(1_000) == 0.0
    clock.now += 10 * 60.0  # ten quiet minutes: none left
    assert lim.headroom == 0
    assert job_fill(lim, 500) == 20  # the whole quota


def test_a_refused_interactive_call_is_taken_back() -> None:
    clock = Clock()
    lim = limiter(clock)
    booking = lim.interactive(2_000)
    booking.refused()
    booking.refused()  # once only
    assert lim.headroom == 0
    assert job_fill(lim, 500) == 20


# --- each attempt of a metered call is booked -------------------------------------------


def rate_limited() -> openai.RateLimitError:
    request = httpx2.Request("POST", "http://backend/openai/v1/chat/completions")
    response = httpx2.Response(429, request=request, json={})
    return openai.RateLimitError("refused", response=response, body={})


async def test_an_attempt_is_booked_on_its_backends_limiter_and_a_429_taken_back(
    client: AsyncAzureOpenAI,
) -> None:
    clock = Clock()
    quotas = {"d": DeploymentQuota(tpm=10_000, rpm=100_000)}  # tokens bind
    limiters = Limiters(quotas, clock=clock, sleep=clock.sleep, headroom=POLICY)

    async def answer(target: Target) -> str:
        return target.backend

    async def refuse(target: Target) -> str:
        raise rate_limited()

    assert await booked(limiters, 2_000, answer)(Target("b1", "d", client)) == "b1"
    assert limiters.get("d", backend="b1").headroom == 1_000
    assert limiters.get("d", backend="b2").headroom == 0  # another backend's quota
    with pytest.raises(openai.RateLimitError):
        await booked(limiters, 2_000, refuse)(Target("b2", "d", client))
    assert limiters.get("d", backend="b2").headroom == 0
    assert job_fill(limiters.get("d", backend="b2"), 500) == 20
