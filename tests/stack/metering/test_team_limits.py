"""Team limits and budgets against the Cosmos DB server (the local one, through the real SDK):
two limiters (two instances) booking at once never pass a budget; refusals name the limit; a
team far under its limits spends a credit without a round trip; settlements reach every
instance; a slow or unreachable store does not hold the caller, and the day and month stay
bounded while it is away."""

from __future__ import annotations

import asyncio
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.core.errors import BudgetExceeded, RateLimited, ServiceUnavailable
from shared.core.settings import load_settings
from shared.core.store import TEAM_SPEND, Store, create_store
from shared.metering.team_limits import Booking, TeamLimiter
from shared.metering.team_windows import Spend, Windows
from shared.metering.teams import Team

WHEN = datetime(2026, 12, 7, tzinfo=UTC)


class Clock:
    """The limiters' clock: fixed unless a test moves it (no window ends mid-test)."""

    def __init__(self) -> None:
        self.now = float(int(time.time() // 60) * 60 + 1)

    def __call__(self) -> float:
        return self.now


def team(**limits: Any) -> Team:
    return Team(id=f"t-{uuid.uuid4().hex[:12]}", created_at=WHEN, updated_at=WHEN, **limits)


async def counters(store: Store, who: Team, clock: Clock) -> Spend:
    return Spend.of(await store.read(TEAM_SPEND, who.id, who.id), Windows.at(clock()))


class CountingStore(Store):
    """The real store, counting the requests the limiter makes."""

    def __init__(self, store: Store) -> None:
        super().__init__(store._client, store.database_name)
        self.requests = 0

    async def read(self, container: str, item_id: str, partition_key: str) -> Any:
        self.requests += 1
        return await super().read(container, item_id, partition_key)

    async def create(self, container: str, document: dict[str, Any]) -> Any:
        self.requests += 1
        return await super().create(container, document)

    async def replace_if_unchanged(self, container: str, document: Any, etag: str) -> Any:
        self.requests += 1
        return await super().replace_if_unchanged(container, document, etag)


async def test_two_instances_booking_at_once_never_pass_a_day_budget(store: Store) -> None:
    """Issue 22: budgets fail under concurrency when spend is read stale. Two limiters (two
    hosts) reserve 40 calls at once against a day budget of about ten: the counters never pass
    the budget, every refusal is `budget_exceeded`, and after settling the real use (within
    10% of the estimate) the spend exceeds the budget by at most the calls' estimate error."""
    clock = Clock()
    # A generous store timeout: on a busy machine no call may fall back to the outage rule.
    hosts = [TeamLimiter(store, clock, timeout=30), TeamLimiter(store, clock, timeout=30)]
    who = team(daily_tokens=1000)
    rng = random.Random(22)

    async def call(limiter: TeamLimiter) -> tuple[Booking | None, RateLimited | None, int]:
        try:
            booking = await limiter.reserve(who, 100, 0.0)
        except RateLimited as refused:
            return None, refused, 0
        await asyncio.sleep(0)  # the call upstream
        used = rng.randint(90, 110)
        await limiter.settle(booking, used, 0.0)
        return booking, None, used

    results = await asyncio.gather(*(call(host) for host in hosts * 20))
    granted = [used for booking, _, used in results if booking is not None]
    refusals = [refused for _, refused, _ in results if refused is not None]
    assert 8 <= len(granted) <= 10
    assert refusals
    assert all(r.code == "budget_exceeded" for r in refusals)
    assert all((r.details or {})["limit"] == "day" for r in refusals)
    assert all(b is not None and not b.offline for b, _, _ in results if b is not None)
    spent = (await counters(store, who, clock)).day_tokens
    overrun = sum(max(0, used - 100) for used in granted)
    assert sum(granted) <= spent <= 1000 + overrun


async def test_a_burst_on_one_instance_holds_one_credit_and_admits_the_whole_budget(
    store: Store,
) -> None:
    """30 calls at once on one instance against a day budget of exactly ten worst cases: the
    calls queued behind the first booking each return the credit the one before took, so the
    instance holds one credit (5% of the budget) at most, not one per queued call, and the
    tenth call fits. (With a credit added per queued call, the instance held 20% of the
    budget and refused the ninth and tenth calls with the budget unspent.)"""
    clock = Clock()
    limiter = TeamLimiter(store, clock, timeout=30)
    who = team(daily_tokens=1000)  # credit 50

    async def call() -> Booking | None:
        try:
            return await limiter.reserve(who, 100, 0.0)
        except BudgetExceeded:
            return None

    bookings = await asyncio.gather(*(call() for _ in range(30)))
    assert sum(b is not None for b in bookings) == 10
    assert (await counters(store, who, clock)).day_tokens == 1000


async def test_a_team_far_under_its_limits_spends_its_credit_without_a_round_trip(
    store: Store,
) -> None:
    counting = CountingStore(store)
    clock = Clock()
    limiter = TeamLimiter(counting, clock)
    who = team(tpm=100_000, daily_tokens=10_000_000, monthly_usd=1000.0)  # credit 5000, 50 USD
    first = await limiter.reserve(who, 500, 0.01)
    assert first is not None
    trips = counting.requests
    for _ in range(9):
        await limiter.settle(await limiter.reserve(who, 500, 0.01), 400, 0.008)
    assert counting.requests == trips  # ten calls, Cosmos DB asked once
    got = await counters(store, who, clock)
    spent = 500 + 9 * 400
    assert spent <= got.minute_tokens <= spent + 5000
    # The answer's headers: what the team has left, at most one credit low.
    booking = await limiter.reserve(who, 500, 0.01)
    assert booking is not None
    assert booking.headers()["x-ratelimit-remaining-tokens"] == str(100_000 - got.minute_tokens)
    assert booking.headers()["x-ratelimit-remaining-tokens-day"] == str(10_000_000 - got.day_tokens)


async def test_a_minute_refusal_is_rate_limited_and_a_settlement_frees_room_everywhere(
    store: Store,
) -> None:
    clock = Clock()
    first, second = TeamLimiter(store, clock), TeamLimiter(store, clock)
    who = team(tpm=1000, daily_tokens=100_000)
    booking = await first.reserve(who, 900, 0.0)  # max_tokens booked, far more than used
    with pytest.raises(RateLimited) as refused:
        await second.reserve(who, 200, 0.0)
    assert type(refused.value) is RateLimited
    assert (refused.value.details or {})["limit"] == "minute"
    assert refused.value.headers["Retry-After"] == "59"  # the clock is 1 s into its minute
    await first.settle(booking, 100, 0.0)
    assert await second.reserve(who, 200, 0.0) is not None


async def test_a_month_budget_counts_usd_and_refuses_until_next_month(store: Store) -> None:
    clock = Clock()
    limiter = TeamLimiter(store, clock)
    who = team(monthly_usd=1.0)
    booking = await limiter.reserve(who, 0, 0.6)
    assert booking is not None
    with pytest.raises(BudgetExceeded) as refused:
        await limiter.reserve(who, 0, 0.6)
    assert (refused.value.details or {})["limit"] == "month"
    await limiter.settle(booking, 0, 0.3)  # the call cost less than its worst case
    assert await limiter.reserve(who, 0, 0.6) is not None
    assert (await counters(store, who, clock)).month_micros == 900_000
    assert (await limiter.spent(who.id)).month_micros == 900_000  # what the admin API shows


async def test_use_beyond_the_worst_case_is_counted_and_a_release_gives_all_back(
    store: Store,
) -> None:
    clock = Clock()
    limiter = TeamLimiter(store, clock)
    who = team(daily_tokens=1000)
    over = await limiter.reserve(who, 100, 0.0)
    await limiter.settle(over, 150, 0.0)
    released = await limiter.reserve(who, 300, 0.0)
    await limiter.release(released)
    # The 150 used, and at most the credit (5% of the day) this instance still holds.
    assert 150 <= (await counters(store, who, clock)).day_tokens <= 150 + 50


async def test_a_credit_left_when_the_minute_ends_goes_back_to_the_day(store: Store) -> None:
    clock = Clock()
    limiter = TeamLimiter(store, clock)
    who = team(tpm=10_000, daily_tokens=1_000_000)  # credit 500
    await limiter.settle(await limiter.reserve(who, 100, 0.0), 100, 0.0)
    assert (await counters(store, who, clock)).day_tokens == 600  # the call and its credit
    clock.now += 60
    await limiter.reserve(who, 100, 0.0)
    got = await counters(store, who, clock)
    # The old minute's unused credit left the day: two calls and the new minute's credit.
    assert (got.minute_tokens, got.day_tokens) == (600, 700)


async def test_an_instance_behind_never_resets_a_newer_minute(store: Store) -> None:
    """Two instances' clocks 2 s apart across a minute's end: the one ahead books in the new
    minute; the one behind must count that minute, not write its old one over it."""
    behind, ahead = Clock(), Clock()
    behind.now, ahead.now = ahead.now - 2, ahead.now + 0  # ahead: 1 s into a minute
    first, second = TeamLimiter(store, ahead), TeamLimiter(store, behind)
    who = team(tpm=1000, daily_tokens=100_000)
    assert await first.reserve(who, 800, 0.0) is not None
    with pytest.raises(RateLimited):
        await second.reserve(who, 300, 0.0)
    got = await counters(store, who, ahead)
    assert (got.minute_tokens, got.day_tokens) == (800, 800)


@pytest.fixture
async def unreachable(app_environ: dict[str, str]) -> AsyncIterator[Store]:
    """A store whose Cosmos DB endpoint refuses connections (a port nobody listens on)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = create_store(
        load_settings({**app_environ, "COSMOS_ENDPOINT": f"https://127.0.0.1:{port}/"})
    )
    yield store
    await store.aclose()


@pytest.fixture
async def hung(app_environ: dict[str, str]) -> AsyncIterator[Store]:
    """A store whose Cosmos DB endpoint accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = create_store(
        load_settings({**app_environ, "COSMOS_ENDPOINT": f"https://127.0.0.1:{port}/"})
    )
    yield store
    await store.aclose()
    for writer in held:
        writer.close()
    server.close()


async def test_a_hung_store_does_not_hold_the_caller(hung: Store) -> None:
    """Before: a hung Cosmos DB held a chat for the SDK's whole retry budget. The reserve
    gives up on the store within its timeout and books in this instance."""
    limiter = TeamLimiter(hung, Clock(), timeout=0.2)
    booking = await asyncio.wait_for(limiter.reserve(team(daily_tokens=100_000), 100, 0.0), 10)
    assert booking is not None
    assert booking.offline


async def test_store_down_the_day_fails_open_within_an_allowance_then_closed(
    unreachable: Store,
) -> None:
    limiter = TeamLimiter(unreachable, Clock())
    who = team(tpm=1000, daily_tokens=10_000)  # 1% of the day: 100 tokens while it is away
    booking = await limiter.reserve(who, 60, 0.0)
    assert booking is not None
    assert booking.offline
    with pytest.raises(ServiceUnavailable):
        await limiter.reserve(who, 60, 0.0)
    minute_only = team(tpm=1000)  # Azure's deployment quota still bounds the minute
    for _ in range(5):
        assert await limiter.reserve(minute_only, 600, 0.0) is not None


class Switch(Store):
    """Cosmos DB that goes away and comes back: the real store, or an unreachable one."""

    def __init__(self, up: Store, down: Store) -> None:
        super().__init__(up._client, up.database_name)
        self.up, self.down, self.away = up, down, False

    def _now(self) -> Store:
        return self.down if self.away else self.up

    async def read(self, container: str, item_id: str, partition_key: str) -> Any:
        return await self._now().read(container, item_id, partition_key)

    async def create(self, container: str, document: dict[str, Any]) -> Any:
        return await self._now().create(container, document)

    async def replace_if_unchanged(self, container: str, document: Any, etag: str) -> Any:
        return await self._now().replace_if_unchanged(container, document, etag)


async def test_spend_while_the_store_was_away_is_written_when_it_answers(
    store: Store, unreachable: Store
) -> None:
    clock = Clock()
    switch = Switch(store, unreachable)
    limiter = TeamLimiter(switch, clock)
    who = team(daily_tokens=100_000)  # past half spent: no credit, every call asks the store
    await limiter.settle(await limiter.reserve(who, 48_000, 0.0), 48_000, 0.0)
    switch.away = True
    offline = await limiter.reserve(who, 800, 0.0)  # within 1% of the day
    assert offline is not None
    assert offline.offline
    await limiter.settle(offline, 700, 0.0)
    switch.away = False
    clock.now += 6  # the store is asked again after OPEN_SECONDS
    await limiter.release(await limiter.reserve(who, 100, 0.0))
    assert (await counters(store, who, clock)).day_tokens == 48_700


async def test_a_booking_without_its_minute_books_the_day_and_month_and_never_the_minute(
    store: Store,
) -> None:
    """A Batch API job's booking (`minute=False`): the minute, full with the team's other
    calls, neither refuses it nor counts it; its settlement, on another instance, moves the
    day and month to what was used; past the day it is `budget_exceeded`."""
    clock = Clock()
    timer, poller = TeamLimiter(store, clock), TeamLimiter(store, clock)
    who = team(tpm=1000, daily_tokens=10_000, monthly_usd=10.0)
    calls = await timer.reserve(who, 1000, 0.0)  # the team's calls fill its minute
    assert calls is not None
    booking = await timer.reserve(who, 6000, 0.5, minute=False)  # more than tpm alone
    assert booking is not None
    assert (booking.tokens, booking.usd_micros, booking.offline) == (6000, 500_000, False)
    got = await counters(store, who, clock)
    assert (got.minute_tokens, got.day_tokens, got.month_micros) == (1000, 7000, 500_000)
    with pytest.raises(BudgetExceeded) as refused:
        await timer.reserve(who, 3500, 0.0, minute=False)
    assert (refused.value.details or {})["limit"] == "day"
    await poller.settle(booking, 2500, 0.2)
    got = await counters(store, who, clock)
    assert (got.minute_tokens, got.day_tokens, got.month_micros) == (1000, 3500, 200_000)
    # A team that limits only its minute has nothing to book.
    assert await timer.reserve(team(tpm=1000), 6000, 0.5, minute=False) is None
