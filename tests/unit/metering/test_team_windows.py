"""Team limits' arithmetic: windows, when room returns, which limit refuses, a call's worst
case, and jobs waiting for their budget (pure: no store)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.core.errors import BudgetExceeded, InvalidRequest, RateLimited
from shared.core.settings import ModelPrice
from shared.metering.budget_wait import budget_wait, reserve_or_wait
from shared.metering.team_limits import Booking, TeamLimiter, _never_fits
from shared.metering.team_windows import (
    Spend,
    Windows,
    micros,
    refusal,
    seconds_until,
    worst_case_tokens,
    worst_case_usd,
)
from shared.metering.teams import Team

WHEN = datetime(2026, 12, 7, tzinfo=UTC)


def team(**fields: Any) -> Team:
    return Team(id="search", created_at=WHEN, updated_at=WHEN, **fields)


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


def test_windows_are_the_utc_minute_day_and_month() -> None:
    w = Windows.at(at(2026, 12, 31, 23, 59, 30))
    assert (w.day, w.month) == ("2026-12-31", "2026-12")
    assert w.minute == int(at(2026, 12, 31, 23, 59) // 60)


@pytest.mark.parametrize(
    ("kind", "now", "wait"),
    [
        ("minute", at(2026, 12, 7, 10, 0, 15), 45.0),
        ("day", at(2026, 12, 7, 23, 0, 0), 3600.0),
        ("month", at(2026, 12, 31, 23, 0, 0), 3600.0),  # across the year
        ("month", at(2027, 2, 1, 0, 0, 0), 28 * 86400.0),
    ],
)
def test_room_returns_when_the_window_ends(kind: Any, now: float, wait: float) -> None:
    assert seconds_until(kind, now) == pytest.approx(wait)


def test_a_window_past_its_end_counts_zero() -> None:
    then = Windows.at(at(2026, 12, 7, 10, 0))
    doc = Spend(then, 500, 9000, 42).doc("search")
    later = Windows.at(at(2026, 12, 7, 10, 1))  # the next minute, same day and month
    assert Spend.of(doc, later) == Spend(later, 0, 9000, 42)
    next_day = Windows.at(at(2026, 12, 8, 0, 0))
    assert Spend.of(doc, next_day) == Spend(next_day, 0, 0, 42)


def test_windows_never_go_back_behind_a_document_s() -> None:
    behind = Windows.at(at(2026, 12, 31, 23, 59, 59))
    ahead = Windows.at(at(2027, 1, 1, 0, 0, 1))
    doc = Spend(ahead, 800, 800, 5).doc("search")
    assert Spend.of(doc, behind) == Spend(ahead, 800, 800, 5)


def test_a_settlement_changes_only_the_windows_it_was_booked_in() -> None:
    booked = Windows.at(at(2026, 12, 7, 10, 0))
    now = Windows.at(at(2026, 12, 7, 10, 1))
    spend = Spend(now, 100, 1000, 50).plus(-300, -20, since=booked)
    # The minute is another one: only the day and month get the tokens back, never below 0.
    assert spend == Spend(now, 100, 700, 30)
    assert Spend(now, 10, 10, 10).plus(-50, -50) == Spend(now, 0, 0, 0)


def test_a_booking_without_its_minute_counts_in_the_day_and_month_only() -> None:
    """A Batch API job books the day and month (it runs over up to 24 h on its own quota):
    booked or settled in windows without a minute, the minute counter never changes."""
    w = Windows.at(at(2026, 12, 7, 10, 30))
    days = w.without_minute()
    assert (days.day, days.month) == (w.day, w.month)
    assert days.minute != w.minute
    spend = Spend(w, minute_tokens=50, day_tokens=100, month_micros=7)
    booked = spend.plus(400, 2_000, since=days)
    assert (booked.minute_tokens, booked.day_tokens, booked.month_micros) == (50, 500, 2_007)
    settled = booked.plus(-300, -1_500, since=days)
    assert (settled.minute_tokens, settled.day_tokens, settled.month_micros) == (50, 200, 507)
    # A minute spent by the team's other calls does not refuse it; the day does.
    who = team(tpm=40, daily_tokens=450)
    assert booked.over(who) == ["minute", "day"]
    assert booked.over(who, minute=False) == ["day"]
    assert settled.over(who, minute=False) == []


def test_a_worst_case_above_the_minute_alone_fits_a_booking_without_it() -> None:
    _never_fits(team(tpm=100, daily_tokens=1000), 500, 0, minute=False)
    with pytest.raises(InvalidRequest):
        _never_fits(team(tpm=100, daily_tokens=1000), 1001, 0, minute=False)


def test_the_limit_whose_room_returns_last_refuses() -> None:
    t = team(tpm=100, daily_tokens=1000, monthly_usd=1.0)
    now = at(2026, 12, 7, 10, 0, 30)
    w = Windows.at(now)
    assert Spend(w, 101).over(t) == ["minute"]
    minute = refusal(t, ["minute"], now)
    assert type(minute) is RateLimited
    assert minute.code == "rate_limited"
    assert minute.headers["Retry-After"] == "30"
    assert (minute.details or {})["limit"] == "minute"
    day = refusal(t, Spend(w, 101, 1001).over(t), now)
    assert isinstance(day, BudgetExceeded)
    assert day.code == "budget_exceeded"
    assert day.status == 429
    assert (day.details or {})["limit"] == "day"
    assert day.retry_after == pytest.approx(14 * 3600 - 30)
    month = refusal(t, Spend(w, 0, 0, micros(1.0) + 1).over(t), now)
    assert month.code == "budget_exceeded"
    assert (month.details or {})["limit"] == "month"


def test_half_spent_and_remaining() -> None:
    t = team(tpm=100, daily_tokens=1000)
    w = Windows.at(at(2026, 12, 7))
    assert Spend(w, 50, 500).within_half(t)
    assert not Spend(w, 51, 0).within_half(t)
    assert Spend(w, 30, 400).remaining(t) == (70, 600)
    assert Spend(w, 30, 400).remaining(team(monthly_usd=5.0)) == (None, None)


def test_money_rounds_up_to_whole_micro_usd() -> None:
    assert micros(0.0000011) == 2
    assert micros(500.0) == 500_000_000


def test_a_worst_case_is_prompt_plus_output_cap_n_times_and_the_team_caps_output() -> None:
    assert worst_case_tokens(team(), 100, 4096) == 4196
    assert worst_case_tokens(team(max_tokens=500), 100, 4096, n=3) == 1800
    assert worst_case_tokens(team(max_tokens=500), 100, 50, n=2) == 300


def test_a_worst_case_costs_every_prompt_token_uncached_and_every_output_token() -> None:
    price = ModelPrice(input=2.5, cached_input=1.25, output=10.0)
    assert worst_case_usd(team(max_tokens=500), price, 1000, 4096, n=2) == pytest.approx(
        (1000 * 2.5 + 500 * 10.0) / 1e6 * 2
    )
    assert worst_case_usd(team(), None, 1000, 4096) == 0.0


def test_a_worst_case_above_a_whole_limit_is_a_400_not_a_wait_forever() -> None:
    with pytest.raises(InvalidRequest):
        _never_fits(team(daily_tokens=1000), 1001, 0)
    with pytest.raises(InvalidRequest):
        _never_fits(team(monthly_usd=1.0), 0, micros(1.0) + 1)
    _never_fits(team(tpm=1000), 1000, 0)


def test_booking_headers_name_the_minute_as_azure_does_and_the_day_beside_it() -> None:
    w = Windows.at(at(2026, 12, 7))
    assert Booking("search", 10, 0, w, minute_remaining=90, day_remaining=900).headers() == {
        "x-ratelimit-remaining-tokens": "90",
        "x-ratelimit-remaining-tokens-day": "900",
    }
    assert Booking("search", 10, 0, w).headers() == {}


class Refusing(TeamLimiter):
    """A limiter whose team is out of budget for the first `times` calls."""

    def __init__(self, times: int, wait: float) -> None:
        self.times, self.wait, self.calls = times, wait, 0

    async def reserve(
        self, team: Team, tokens: int, usd: float, *, minute: bool = True
    ) -> Booking | None:
        self.calls += 1
        if self.calls <= self.times:
            raise BudgetExceeded("out", retry_after=self.wait)
        return Booking(team.id, tokens, 0, Windows.at(0))


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def test_a_job_waits_until_room_returns_and_says_so() -> None:
    clock, waits = FakeTime(), list[float]()

    async def on_wait(refused: RateLimited) -> None:
        waits.append(refused.retry_after or 0)

    limiter = Refusing(times=2, wait=60)
    got = await reserve_or_wait(
        limiter,
        team(),
        10,
        0.0,
        max_wait=300,
        on_wait=on_wait,
        sleep=clock.sleep,
        clock=clock.clock,
    )
    assert got is not None
    assert waits == [60, 60]
    assert clock.now == 120


async def test_a_job_gives_up_with_budget_exceeded_rather_than_wait_past_its_limit() -> None:
    clock, waits = FakeTime(), list[float]()

    async def on_wait(refused: RateLimited) -> None:
        waits.append(refused.retry_after or 0)

    limiter = Refusing(times=10, wait=3600)  # room returns in an hour; the job waits 10 min
    with pytest.raises(BudgetExceeded):
        await reserve_or_wait(
            limiter,
            team(),
            10,
            0.0,
            max_wait=600,
            on_wait=on_wait,
            sleep=clock.sleep,
            clock=clock.clock,
        )
    assert waits == []
    assert clock.now == 0
    assert limiter.calls == 1


def test_a_job_s_rest_waits_for_the_next_day_and_says_why() -> None:
    at_ = datetime(2026, 12, 7, 23, 0, tzinfo=UTC)
    refused = BudgetExceeded("team search has spent its tokens", retry_after=3600)
    refused.details = {**(refused.details or {}), "limit": "day"}
    wait = budget_wait(refused, waiting_since=None, at=at_, max_wait=86_400)
    assert wait is not None
    assert wait.delay == 3600
    assert wait.why.code == "budget_exceeded"
    assert "2026-12-08T00:00:00+00:00" in wait.why.message


def test_a_job_fails_budget_exceeded_once_room_returns_past_its_limit() -> None:
    at_ = datetime(2026, 12, 7, 23, 0, tzinfo=UTC)
    refused = BudgetExceeded("out", retry_after=3600)
    since = at_ - timedelta(hours=23, minutes=30)  # waiting since yesterday; a day at most
    assert budget_wait(refused, waiting_since=since, at=at_, max_wait=86_400) is None
    assert budget_wait(refused, waiting_since=None, at=at_, max_wait=600) is None
