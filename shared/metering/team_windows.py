"""A team's spend windows and a call's worst case: the pure arithmetic of team limits.

A team's limits (shared/metering/teams.py) count in fixed UTC windows: `tpm` in the minute,
`daily_tokens` in the day, `monthly_usd` in the month. `Spend` is what one team has booked in
the windows of one moment; `Spend.over` says which limit a booking would pass and when room
returns (the start of the next window). Money is counted in micro-USD, integers, so counters
changed under ETag never drift by float rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from shared.core.errors import BudgetExceeded, RateLimited
from shared.core.settings import ModelPrice
from shared.metering.teams import Team

LimitKind = Literal["minute", "day", "month"]
MICROS: int = 1_000_000
# The minute of a booking that spends no minute (a batch's): never a current one.
NO_MINUTE: int = -1


def micros(usd: float) -> int:
    """USD as whole micro-USD, rounded up: a worst case is never booked below its cost."""
    return math.ceil(usd * MICROS - 1e-6)


@dataclass(frozen=True)
class Windows:
    """The minute, UTC day and UTC month of one moment (seconds since the epoch)."""

    minute: int
    day: str
    month: str

    @staticmethod
    def at(now: float) -> Windows:
        moment = datetime.fromtimestamp(now, UTC)
        return Windows(int(now // 60), moment.strftime("%Y-%m-%d"), moment.strftime("%Y-%m"))

    def without_minute(self) -> Windows:
        """These day and month, and a minute no moment has: what is booked or settled in
        them never changes a minute counter (`Spend.plus` skips windows not current)."""
        return replace(self, minute=NO_MINUTE)

    def not_before(self, doc: dict[str, object]) -> Windows:
        """These windows, or the document's where it counts a later one."""
        minute, day, month = doc.get("minute"), doc.get("day"), doc.get("month")
        return Windows(
            max(self.minute, minute) if isinstance(minute, int) else self.minute,
            max(self.day, day) if isinstance(day, str) else self.day,
            max(self.month, month) if isinstance(month, str) else self.month,
        )


def seconds_until(kind: LimitKind, now: float) -> float:
    """Seconds from `now` until the next window of `kind` starts (when its room returns)."""
    if kind == "minute":
        return (int(now // 60) + 1) * 60 - now
    moment = datetime.fromtimestamp(now, UTC)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == "day":
        start = day + timedelta(days=1)
    else:
        start = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
    return (start - moment).total_seconds()


@dataclass(frozen=True)
class Spend:
    """What one team has booked (reserved and settled) in each window of `windows`."""

    windows: Windows
    minute_tokens: int = 0
    day_tokens: int = 0
    month_micros: int = 0

    @staticmethod
    def of(doc: dict[str, object] | None, windows: Windows) -> Spend:
        """The counters of a `team_spend` document, a window past its end counting zero.
        Windows never go back: when the document counts a later window than `windows` (an
        instance whose clock is ahead, or that wrote while this one waited), that one holds,
        so no instance resets a newer window's counter to an older one's."""
        if doc is None:
            return Spend(windows)
        windows = windows.not_before(doc)

        def count(field: str, window: str, current: object) -> int:
            value = doc.get(field, 0)
            return int(value) if doc.get(window) == current and isinstance(value, int) else 0

        return Spend(
            windows,
            count("minute_tokens", "minute", windows.minute),
            count("day_tokens", "day", windows.day),
            count("month_micros", "month", windows.month),
        )

    def plus(self, tokens: int, usd_micros: int, *, since: Windows | None = None) -> Spend:
        """Add (or, negative, take back) tokens and money booked in `since` (default: these
        windows): only the counters of windows still current change, never below zero."""
        since = since or self.windows
        minute = tokens if since.minute == self.windows.minute else 0
        day = tokens if since.day == self.windows.day else 0
        money = usd_micros if since.month == self.windows.month else 0
        return replace(
            self,
            minute_tokens=max(0, self.minute_tokens + minute),
            day_tokens=max(0, self.day_tokens + day),
            month_micros=max(0, self.month_micros + money),
        )

    def doc(self, team_id: str) -> dict[str, object]:
        return {
            "id": team_id,
            "minute": self.windows.minute,
            "minute_tokens": self.minute_tokens,
            "day": self.windows.day,
            "day_tokens": self.day_tokens,
            "month": self.windows.month,
            "month_micros": self.month_micros,
        }

    def over(self, team: Team, *, minute: bool = True) -> list[LimitKind]:
        """The limits of `team` these counters pass (the minute's only with `minute`: a
        booking that spends no minute is not refused for what others spent in it)."""
        passed: list[LimitKind] = []
        if minute and team.tpm is not None and self.minute_tokens > team.tpm:
            passed.append("minute")
        if team.daily_tokens is not None and self.day_tokens > team.daily_tokens:
            passed.append("day")
        if team.monthly_usd is not None and self.month_micros > micros(team.monthly_usd):
            passed.append("month")
        return passed

    def within_half(self, team: Team) -> bool:
        """Every limit of `team` is at most half spent (a credit may be taken)."""
        return (
            (team.tpm is None or 2 * self.minute_tokens <= team.tpm)
            and (team.daily_tokens is None or 2 * self.day_tokens <= team.daily_tokens)
            and (team.monthly_usd is None or 2 * self.month_micros <= micros(team.monthly_usd))
        )

    def remaining(self, team: Team) -> tuple[int | None, int | None]:
        """Tokens left this minute and this day (None: no such limit)."""
        minute = None if team.tpm is None else max(0, team.tpm - self.minute_tokens)
        day = None if team.daily_tokens is None else max(0, team.daily_tokens - self.day_tokens)
        return minute, day


def refusal(team: Team, passed: list[LimitKind], now: float) -> RateLimited:
    """The 429 for the limits passed: the one whose room returns last decides (a call that
    passes the day and the minute waits for the day). Minute: `rate_limited`; day or month:
    `budget_exceeded`. `details.limit` names the limit."""
    kind = max(passed, key=lambda k: seconds_until(k, now))
    wait = seconds_until(kind, now)
    if kind == "minute":
        error: RateLimited = RateLimited(
            f"team {team.id} may use {team.tpm} tokens a minute", retry_after=wait
        )
    elif kind == "day":
        error = BudgetExceeded(
            f"team {team.id} has spent its {team.daily_tokens} tokens for today (UTC)",
            retry_after=wait,
        )
    else:
        error = BudgetExceeded(
            f"team {team.id} has spent its {team.monthly_usd:g} USD for this month (UTC)",
            retry_after=wait,
        )
    error.details = {**(error.details or {}), "limit": kind}
    return error


def _output_cap(team: Team, max_tokens: int) -> int:
    return max(0, max_tokens if team.max_tokens is None else min(max_tokens, team.max_tokens))


def worst_case_tokens(team: Team, prompt_estimate: int, max_tokens: int, n: int = 1) -> int:
    """A call's worst case: its prompt estimate plus its output cap, `n` times. `max_tokens`
    is the request's output cap (the deployment's when the request names none); the team's
    `max_tokens`, when lower, caps it."""
    return (max(0, prompt_estimate) + _output_cap(team, max_tokens)) * max(1, n)


def worst_case_usd(
    team: Team, price: ModelPrice | None, prompt_estimate: int, max_tokens: int, n: int = 1
) -> float:
    """The worst case's cost at `price` (MODEL_PRICES' entry for the model; 0 without one):
    no prompt token cached, every output token used."""
    if price is None:
        return 0.0
    prompt, output = max(0, prompt_estimate), _output_cap(team, max_tokens)
    return (prompt * price.input + output * price.output) / 1e6 * max(1, n)
