"""Team limits and budgets, shared by every instance and never overspent under concurrency.

Before a call, `TeamLimiter.reserve(team, worst_case_tokens, worst_case_usd)` books the call's
worst case (shared/metering/team_windows.py) against the team's minute (`tpm`), UTC day
(`daily_tokens`) and UTC month (`monthly_usd`), or raises the 429 that names the limit
(`rate_limited` for the minute, `budget_exceeded` for the day or month) with a Retry-After to
when its window ends. After the call `settle(booking, tokens, usd)` replaces the booking by the
real spend; a call that failed settles to zero (`release`).

One Cosmos DB document per team in `team_spend` (partition `/id`, id = the team id) holds the
three counters with the window each counts (`minute`, `day`, `month`); a window past its end
counts zero, so the document never needs deleting. Every change is a read-modify-write under
its ETag, and a refusal is decided on a fresh read only: two instances booking at once cannot
both take the last room, so the counters never pass a limit on what was booked. Past it go only
calls whose real use exceeds their worst case (settled as used).

A team under half of every limit (after the booking) books a little more than the call needs,
a *credit* of CREDIT_SHARE of each limit, and spends it on later calls in the same minute with
no round trip; what a call booked and did not use goes back to it, the rest to the document.
The credit is booked in the counters, so it is never room the team did not have; near a limit
there is no credit and every call goes through Cosmos DB.

Cosmos DB slow or down (docs/security.md, "Limits and budgets"): each reserve or settle spends
at most STORE_TIMEOUT_SECONDS on it, then the store is not asked for OPEN_SECONDS. Meanwhile the
minute fails open (Azure's own deployment quota still bounds it) and the day and month fail
open within an allowance of OUTAGE_SHARE of each budget per instance, then closed (503
`unavailable`). What was spent meanwhile is written to the counters once the store answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

from azure.core.exceptions import AzureError
from azure.cosmos.exceptions import CosmosAccessConditionFailedError

from shared.core.errors import InvalidRequest, RateLimited, ServiceUnavailable
from shared.core.store import TEAM_SPEND, Store
from shared.metering.team_windows import Spend, Windows, micros, refusal
from shared.metering.teams import Team

log = logging.getLogger(__name__)

CREDIT_SHARE: Final = 0.05
OUTAGE_SHARE: Final = 0.01
STORE_TIMEOUT_SECONDS: Final = 1.0
OPEN_SECONDS: Final = 5.0
ETAG_RETRIES: Final = 16
SWEEP_AT: Final = 4096
# What the route sets on an answer: the minute's as Azure names its own, the day's beside it.
MINUTE_HEADER: Final = "x-ratelimit-remaining-tokens"
DAY_HEADER: Final = "x-ratelimit-remaining-tokens-day"

_Delta = tuple[Windows, int, int]  # tokens and micro-USD to add to the counters of windows


@dataclass
class Booking:
    """One call's reservation: settle it with what the call really used."""

    team_id: str
    tokens: int  # 0 when the team limits no tokens
    usd_micros: int  # 0 when the team has no monthly budget
    windows: Windows
    offline: bool = False  # booked in this instance only: the store did not answer
    minute_remaining: int | None = None
    day_remaining: int | None = None
    counts_tokens: bool = True
    counts_usd: bool = True

    def headers(self) -> dict[str, str]:
        """The team's tokens left this minute and today as this instance last wrote or read
        its counters (credits booked ahead count as spent; other instances' calls since then
        are not in them); none for a limit the team does not have."""
        found = {MINUTE_HEADER: self.minute_remaining, DAY_HEADER: self.day_remaining}
        return {name: str(value) for name, value in found.items() if value is not None}


@dataclass
class _Credit:
    windows: Windows
    tokens: int = 0
    micros: int = 0


@dataclass
class _TeamState:
    """What this instance knows of one team's counters."""

    credit: _Credit | None = None
    doc: dict[str, Any] | None = field(default=None, repr=False)  # last seen, with its _etag
    spend: Spend | None = None  # the counters as last written or read
    pending: list[_Delta] = field(default_factory=list)  # to write: refunds, spend offline
    offline_tokens: int = 0
    offline_micros: int = 0
    # One store change at a time per team here (TeamLimiter._guarded).
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)


class TeamLimiter:
    """The per-team minute, day and month, counted in Cosmos DB (`team_spend`)."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], float] = time.time,
        *,
        timeout: float = STORE_TIMEOUT_SECONDS,
        outage_share: float = OUTAGE_SHARE,
        credit_share: float = CREDIT_SHARE,
    ) -> None:
        self._store = store
        self._clock = clock
        self._timeout = timeout
        self._outage_share = outage_share
        self._credit_share = credit_share
        self._teams: dict[str, _TeamState] = {}
        self._sizes: dict[str, tuple[int, int]] = {}  # each team's credit, as last booked
        self._open_until = 0.0

    async def reserve(
        self, team: Team, tokens: int, usd: float, *, minute: bool = True
    ) -> Booking | None:
        """Book a call's worst case, or raise its 429 (RateLimited, BudgetExceeded); None
        for a team without limits. A worst case larger than a whole limit is a 400.

        `minute=False` books against the day and month only (a Batch API job's, which runs
        over up to 24 h on its own quota): no credit, and no outage allowance (503 while the
        store does not answer: its caller, a timer, tries again later)."""
        counts = (
            (minute and team.tpm is not None) or team.daily_tokens is not None,
            team.monthly_usd is not None,
        )
        if not any(counts):
            return None
        need_tokens = max(0, tokens) if counts[0] else 0
        need_micros = micros(max(0.0, usd)) if counts[1] else 0
        _never_fits(team, need_tokens, need_micros, minute=minute)
        now = self._clock()
        windows = Windows.at(now)
        state = self._state(team.id)
        if not minute:
            work = partial(self._book, team, state, need_tokens, need_micros, now, minute=False)
            if not await self._guarded(team.id, state, work):
                raise ServiceUnavailable(
                    f"team {team.id}'s budget cannot be checked (Cosmos DB did not answer)",
                    headers={"Retry-After": str(int(OPEN_SECONDS))},
                )
            days = (state.spend.windows if state.spend is not None else windows).without_minute()
            return Booking(team.id, need_tokens, need_micros, days, False, None, None, *counts)
        credit = state.credit
        if (
            credit is not None
            and credit.windows == windows
            and credit.tokens >= need_tokens
            and credit.micros >= need_micros
        ):
            credit.tokens -= need_tokens
            credit.micros -= need_micros
            return self._booking(team, state, need_tokens, need_micros, windows)
        # The credit is taken before the first await (concurrent calls must not spend it
        # twice) and given back to the counters by the write that books this call.
        self._return_credit(state)
        work = partial(self._book, team, state, need_tokens, need_micros, now)
        if await self._guarded(team.id, state, work):
            # The windows written (the document's when it counts later ones).
            written = state.spend.windows if state.spend is not None else windows
            return self._booking(team, state, need_tokens, need_micros, written)
        return self._offline(team, state, need_tokens, need_micros, windows)

    async def settle(self, booking: Booking | None, tokens: int, usd: float) -> None:
        """Replace the booking by what the call used (Azure's usage and its cost)."""
        if booking is None:
            return
        state = self._state(booking.team_id)
        d_tokens = max(0, tokens) - booking.tokens if booking.counts_tokens else 0
        d_micros = micros(max(0.0, usd)) - booking.usd_micros if booking.counts_usd else 0
        credit = state.credit
        if not booking.offline and credit is not None and credit.windows == booking.windows:
            # What was booked and not used becomes credit; what was used beyond it comes
            # out of the credit first. Beyond one credit it goes back to every instance.
            credit.tokens -= d_tokens
            credit.micros -= d_micros
            cap_tokens, cap_micros = self._credit_of(booking.team_id)
            d_tokens = max(0, credit.tokens - cap_tokens) + min(0, credit.tokens)
            d_micros = max(0, credit.micros - cap_micros) + min(0, credit.micros)
            credit.tokens, credit.micros = credit.tokens - d_tokens, credit.micros - d_micros
            d_tokens, d_micros = -d_tokens, -d_micros
        if d_tokens == 0 and d_micros == 0:
            return
        state.pending.append((booking.windows, d_tokens, d_micros))
        await self._guarded(booking.team_id, state, partial(self._flush, booking.team_id, state))

    async def release(self, booking: Booking | None) -> None:
        """A call that failed before using anything: its booking is free again."""
        await self.settle(booking, 0, 0.0)

    async def spent(self, team_id: str) -> Spend:
        """The team's counters now (one point read): booked in this minute, UTC day and UTC
        month, calls in flight and credits held included. For `GET /api/teams/{id}`."""
        doc = await self._store.read(TEAM_SPEND, team_id, team_id)
        return Spend.of(doc, Windows.at(self._clock()))

    def _state(self, team_id: str) -> _TeamState:
        state = self._teams.get(team_id)
        if state is None:
            if len(self._teams) >= SWEEP_AT:
                minute = Windows.at(self._clock()).minute
                self._teams = {
                    k: v
                    for k, v in self._teams.items()
                    if v.pending or (v.credit is not None and v.credit.windows.minute == minute)
                }
            state = self._teams[team_id] = _TeamState()
        return state

    def _credit_of(self, team_id: str) -> tuple[int, int]:
        """The credit size of the team last seen by `_book` (tokens, micro-USD)."""
        sizes = self._sizes.get(team_id)
        return sizes if sizes is not None else (0, 0)

    def _credit_size(self, team: Team) -> tuple[int, int]:
        token_limits = [x for x in (team.tpm, team.daily_tokens) if x is not None]
        tokens = int(min(token_limits) * self._credit_share) if token_limits else 0
        money = int(micros(team.monthly_usd) * self._credit_share) if team.monthly_usd else 0
        return tokens, money

    def _return_credit(self, state: _TeamState) -> None:
        credit, state.credit = state.credit, None
        if credit is not None and (credit.tokens or credit.micros):
            state.pending.append((credit.windows, -credit.tokens, -credit.micros))

    def _add_credit(self, state: _TeamState, windows: Windows, tokens: int, money: int) -> None:
        credit = state.credit
        if credit is not None and credit.windows == windows:
            credit.tokens += tokens
            credit.micros += money
            return
        self._return_credit(state)
        state.credit = _Credit(windows, tokens, money)

    def _booking(
        self, team: Team, state: _TeamState, tokens: int, money: int, windows: Windows
    ) -> Booking:
        minute, day = (None, None)
        if state.spend is not None and state.spend.windows == windows:
            minute, day = state.spend.remaining(team)
        counts = (
            team.tpm is not None or team.daily_tokens is not None,
            team.monthly_usd is not None,
        )
        return Booking(team.id, tokens, money, windows, False, minute, day, *counts)

    def _offline(
        self, team: Team, state: _TeamState, tokens: int, money: int, windows: Windows
    ) -> Booking:
        """The store did not answer: the minute passes, the day and month within this
        instance's allowance (OUTAGE_SHARE of each budget), then 503."""
        spent_tokens, spent_micros = state.offline_tokens + tokens, state.offline_micros + money
        if (
            team.daily_tokens is not None and spent_tokens > team.daily_tokens * self._outage_share
        ) or (
            team.monthly_usd is not None
            and spent_micros > micros(team.monthly_usd) * self._outage_share
        ):
            raise ServiceUnavailable(
                f"team {team.id}'s budget cannot be checked (Cosmos DB did not answer) and "
                "this instance's allowance for that is spent; retry",
                headers={"Retry-After": str(int(OPEN_SECONDS))},
            )
        state.offline_tokens, state.offline_micros = spent_tokens, spent_micros
        state.pending.append((windows, tokens, money))
        counts = (
            team.tpm is not None or team.daily_tokens is not None,
            team.monthly_usd is not None,
        )
        return Booking(team.id, tokens, money, windows, True, None, None, *counts)

    async def _guarded(
        self, team_id: str, state: _TeamState, work: Callable[[], Coroutine[Any, Any, None]]
    ) -> bool:
        """Run a store change within the timeout, one at a time per team here (ETag races are
        then only between instances); False (and the store not asked for OPEN_SECONDS) when
        Cosmos DB fails. Calls queued behind a failing one find the store marked away and do
        not wait for it again. A refusal passes through."""
        async with state.lock:
            if self._clock() < self._open_until:
                return False
            try:
                async with asyncio.timeout(self._timeout):
                    await work()
            except (AzureError, TimeoutError) as error:
                self._open_until = self._clock() + OPEN_SECONDS
                log.warning(
                    "team limits: Cosmos DB failed (%s) for team %s; budgets are kept in this "
                    "instance for %gs",
                    type(error).__name__,
                    team_id,
                    OPEN_SECONDS,
                )
                return False
        return True

    async def _book(
        self,
        team: Team,
        state: _TeamState,
        tokens: int,
        money: int,
        now: float,
        *,
        minute: bool = True,
    ) -> None:
        """Add the booking (and a credit when under half of every limit) to the team's
        counters under their ETag, or raise the refusal decided on a fresh read. Without
        `minute`: the day and month only, and no credit."""
        credit_tokens, credit_micros = self._sizes[team.id] = self._credit_size(team)
        # A credit taken by a call that held the lock before this one goes back with this
        # write, so an instance holds one credit at most, not one per call queued in a burst.
        self._return_credit(state)
        for _ in range(ETAG_RETRIES):
            doc, cached = state.doc, state.doc is not None
            if doc is None:
                doc = await self._store.read(TEAM_SPEND, team.id, team.id)
            applied = list(state.pending)
            # The clock again: this call may have waited for the lock into the next minute.
            now = max(now, self._clock())
            spend = _with(Spend.of(doc, Windows.at(now)), applied)
            since = None if minute else spend.windows.without_minute()
            spend = spend.plus(tokens, money, since=since)
            passed = spend.over(team, minute=minute)
            if passed:
                if cached:  # a refusal is decided on a fresh read, never on a cached one
                    state.doc = None
                    continue
                raise refusal(team, passed, now)
            extra = spend.plus(credit_tokens, credit_micros)
            has_credit = minute and extra.within_half(team)
            spend = extra if has_credit else spend
            if await self._write(team.id, state, doc, spend, applied):
                if has_credit:
                    self._add_credit(state, spend.windows, credit_tokens, credit_micros)
                state.offline_tokens = state.offline_micros = 0
                return
        raise RateLimited(f"team {team.id}'s counters are busy; retry", retry_after=1)

    async def _flush(self, team_id: str, state: _TeamState) -> None:
        """Write what is pending (settlements, refunds, spend while offline), whatever the
        limits say: it was spent."""
        for _ in range(ETAG_RETRIES):
            if not state.pending:
                return
            doc = state.doc or await self._store.read(TEAM_SPEND, team_id, team_id)
            applied = list(state.pending)
            windows = Windows.at(self._clock())
            spend = _with(Spend.of(doc, windows), applied)
            if await self._write(team_id, state, doc, spend, applied):
                return
        log.warning("team limits: team %s's counters kept changing; settled later", team_id)

    async def _write(
        self,
        team_id: str,
        state: _TeamState,
        doc: dict[str, Any] | None,
        spend: Spend,
        applied: list[_Delta],
    ) -> bool:
        """Create or replace the document under its ETag; False when another writer came
        first (the cached copy is dropped and the caller reads again)."""
        body = spend.doc(team_id)
        if doc is None:
            stored = await self._store.create(TEAM_SPEND, body)
        else:
            try:
                stored = await self._store.replace_if_unchanged(TEAM_SPEND, body, doc["_etag"])
            except CosmosAccessConditionFailedError:
                stored = None
        state.doc = stored
        if stored is None:
            return False
        # Appended meanwhile stays pending; what this write carried is done.
        del state.pending[: len(applied)]
        state.spend = spend
        return True


def _with(spend: Spend, deltas: list[_Delta]) -> Spend:
    for windows, tokens, money in deltas:
        spend = spend.plus(tokens, money, since=windows)
    return spend


def _never_fits(team: Team, tokens: int, money: int, *, minute: bool = True) -> None:
    """A worst case above a whole limit would wait forever: say what to lower instead."""
    if (minute and team.tpm is not None and tokens > team.tpm) or (
        team.daily_tokens is not None and tokens > team.daily_tokens
    ):
        raise InvalidRequest(
            f"this call may use {tokens} tokens, more than team {team.id}'s limit allows at "
            "all: lower max_tokens or n, or shorten the prompt"
        )
    if team.monthly_usd is not None and money > micros(team.monthly_usd):
        raise InvalidRequest(
            f"this call may cost more than team {team.id}'s monthly budget: lower max_tokens"
        )
