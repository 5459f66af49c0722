"""A job spends its team's budget (docs/jobs.md#team-limits-and-budgets): each request books
its worst case against the team's minute, UTC day and UTC month before it goes upstream
(shared/metering/team_limits.py), and is settled to the tokens its results report and their
cost. A refusal stops the slice; the worker sends the rest back to wait for the room
(shared/metering/budget_wait.py) or fails it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from shared.core.errors import RateLimited, TeamDisabled
from shared.core.models import ErrorDetail, Usage
from shared.core.settings import ModelPrice, Settings
from shared.jobs.intake import InvalidJob, job_spec
from shared.jobs.models import Job, JobSpec, ResultDoc
from shared.metering.report import price_for, usage_cost
from shared.metering.team_directory import TeamDirectory
from shared.metering.team_limits import Booking, TeamLimiter
from shared.metering.teams import Team


@dataclass(frozen=True)
class TeamBudget:
    """One job's team, its limiter and the prices its deployment's tokens cost."""

    limiter: TeamLimiter
    team: Team
    deployment: str
    prices: Mapping[str, ModelPrice]

    def token_cap(self) -> int | None:
        """The most one request may book: the team's smallest token limit (None: none), so
        the plan never makes a request larger than the team could ever be given."""
        limits = [x for x in (self.team.tpm, self.team.daily_tokens) if x is not None]
        return min(limits) if limits else None

    async def reserve(self, tokens: int) -> Booking | None:
        """Book a request of `tokens` (its estimate, answer included), priced as if every
        token were the dearer of input and output: a worst case, never below the cost.
        Raises the limiter's 429 (RateLimited, BudgetExceeded), 400 or 503."""
        price = price_for(self.deployment, self.prices)
        rate = max(price.input, price.output) if price is not None else 0.0
        return await self.limiter.reserve(self.team, tokens, tokens * rate / 1e6)

    async def settle(self, booking: Booking | None, results: Iterable[ResultDoc]) -> None:
        """Replace the booking by what the results report (their usage and its cost)."""
        if booking is None:
            return
        used = Usage()
        model = self.deployment
        for result in results:
            used = used.plus(result.usage)
            model = result.deployment or model
        usd = usage_cost(model, used, self.prices)
        await self.limiter.settle(booking, used.total_tokens, usd)

    async def release(self, booking: Booking | None) -> None:
        await self.limiter.release(booking)


async def team_budget(
    teams: TeamDirectory | None,
    limiter: TeamLimiter | None,
    spec: JobSpec,
    prices: Mapping[str, ModelPrice],
) -> TeamBudget | None:
    """The budget a job's requests book against: its team's, when the team is registered
    (a queue message may name a team, or DEFAULT_TEAM, that has no document: no limits to
    hold it to). Raises the registry's error when Cosmos DB fails (a passing failure)."""
    if teams is None or limiter is None or spec.team is None:
        return None
    team = await teams.by_id(spec.team)
    if team is None:
        return None
    return TeamBudget(limiter, team, spec.deployment, prices)


async def team_job_spec(job: Job, settings: Settings, teams: TeamDirectory | None) -> JobSpec:
    """`job_spec` held to the job's team: a message dropped on the queue names its team and
    model itself, so the team's `models` hold here as over HTTP, and a disabled team's work
    stops (its keys are refused at once; its queued jobs must not go on spending). InvalidJob
    for either; the registry's error when Cosmos DB fails."""
    team_id = job.team or settings.default_team
    team = await teams.by_id(team_id) if teams is not None else None
    if team is not None and team.disabled:
        disabled = TeamDisabled(team.id)
        raise InvalidJob(disabled.message, job_id=job.job_id, code=disabled.code, team=team.id)
    return job_spec(job, settings, team.models if team is not None else ())


def gave_up(refused: RateLimited, max_wait: float) -> ErrorDetail:
    """The error of the items a job stops waiting for: the refusal's code and limit."""
    wait = refused.retry_after or 0.0
    return ErrorDetail(
        code=refused.code,
        message=f"{refused.message}; room returns in {wait:.0f}s, past the job's wait for its "
        f"team's budget (JOB_BUDGET_MAX_WAIT, {max_wait:.0f}s)",
        details=refused.details,
    )
