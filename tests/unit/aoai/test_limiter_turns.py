"""How long a job's request waits for room (shared/aoai/quota.py `acquire`): its turn, while
others take the room as it comes, each turn due within `max_wait`; at once refused when the
room is further off than that."""

from __future__ import annotations

from shared.aoai.quota import DeploymentLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_request_waits_its_turns_while_others_take_the_room_as_it_comes() -> None:
    """A full minute whose room comes back a request a second; the first five times, another
    caller takes it before this request wakes. Six turns, 6.5 s in all, each within 2 s."""
    clock = Clock()
    stolen = 0

    async def sleep(seconds: float) -> None:
        nonlocal stolen
        clock.now += seconds
        if stolen < 5:
            stolen += 1
            limiter.interactive(1_000)  # another caller's, booked as the room came

    limiter = DeploymentLimiter(6_000, None, clock=clock, sleep=sleep)
    for second in range(6):
        clock.now = float(second)
        limiter.interactive(1_000)
    clock.now = 59.0
    assert await limiter.acquire(1_000, max_wait=2.0, within=30.0)
    assert stolen == 5
    assert clock.now - 59.0 > 2.0  # longer than max_wait in all: it waited its turns


async def test_without_within_max_wait_is_the_whole_wait() -> None:
    clock = Clock()

    async def sleep(seconds: float) -> None:
        clock.now += seconds
        limiter.interactive(1_000)  # someone always takes the room first

    limiter = DeploymentLimiter(6_000, None, clock=clock, sleep=sleep)
    for second in range(6):
        clock.now = float(second)
        limiter.interactive(1_000)
    clock.now = 59.0
    assert not await limiter.acquire(1_000, max_wait=2.0)
    assert clock.now - 59.0 <= 2.0


async def test_room_further_off_than_max_wait_is_refused_at_once() -> None:
    clock = Clock()

    async def sleep(seconds: float) -> None:
        clock.now += seconds

    limiter = DeploymentLimiter(40_000, None, clock=clock, sleep=sleep)
    limiter.throttled(30.0)  # a 429 said: nothing for 30 s
    assert not await limiter.acquire(1_000, max_wait=20.0, within=120.0, job=True)
    assert clock.now == 0.0  # no time spent waiting for it
    assert await limiter.acquire(1_000, max_wait=40.0, within=120.0, job=True)
