"""A batch part spends its team's budget (docs/jobs.md#team-limits-and-budgets), as a
realtime job's requests do, against the team's UTC day (`daily_tokens`) and month
(`monthly_usd`) but never its minute (`tpm`): a batch runs over up to 24 h on the Batch API's
own quota, not the deployment's tokens per minute.

Just before a part's input file is uploaded (shared/jobs/batch/submit.py), its worst case is
booked (`TeamLimiter.reserve(minute=False)`): each line's prompt estimate plus its answer cap,
priced at the batch price (BATCH_DISCOUNT of the deployment's). The booking is kept on the
part's document (`booking`), so the poller that settles it may run on another instance, days
later; as lines are ingested, what they used and cost is added to the document under the same
write as their checkpoint (`used_tokens`, `used_micros`), so each line counts once. When the
batch ends (or the part steps back without one) the booking is cleared under the document's
ETag and our lease, and only then settled to what was used: a repeated run finds no booking
and settles nothing. A run that dies between the two leaves the worst case booked: the team
is charged too much until its window ends, never too little.

Refused (`budget_exceeded`), the part is not uploaded: it waits, its job `waiting` with the
refusal, and every poller run tries again (room returns when other calls settle below their
worst case, or the window ends), until JOB_BUDGET_MAX_WAIT after it began waiting; then its
items fail with the refusal's code. A worst case larger than the whole day or month fails the
part's items at once (`invalid_request`): a part is not split to fit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.core.errors import InvalidRequest, RateLimited, TeamDisabled
from shared.core.models import ErrorDetail
from shared.core.settings import ModelPrice
from shared.jobs.batch.files import LineOutcome, line_tokens
from shared.jobs.batch.models import BatchBooking, BatchDoc
from shared.jobs.batch.store import BatchDocs
from shared.jobs.classification import max_answer_tokens
from shared.jobs.models import Item, JobSpec
from shared.jobs.team_budget import gave_up
from shared.metering.report import price_for, usage_cost
from shared.metering.team_directory import TeamDirectory
from shared.metering.team_limits import Booking, TeamLimiter
from shared.metering.team_windows import MICROS, Windows, micros

CHAT = "/chat/completions"


@dataclass(frozen=True)
class BatchBudget:
    teams: TeamDirectory
    limiter: TeamLimiter
    prices: Mapping[str, ModelPrice]
    discount: float  # BATCH_DISCOUNT: the Batch API's price as a share of the standard one
    max_wait: float  # JOB_BUDGET_MAX_WAIT

    def worst_case(self, url: str, spec: JobSpec, items: Iterable[Item]) -> tuple[int, float]:
        """The part's tokens if every line used its prompt estimate and its whole answer
        cap (`max_completion_tokens`; an embedding has none), and their cost at the batch
        price, no prompt token cached."""
        price = price_for(spec.deployment, self.prices)
        tokens, usd = 0, 0.0
        for item in items:
            prompt = line_tokens(url, spec, item)
            answer = max_answer_tokens(spec, [item]) if url.endswith(CHAT) else 0
            tokens += prompt + answer
            if price is not None:
                usd += (prompt * price.input + answer * price.output) / 1e6
        return tokens, usd * self.discount

    async def book(self, url: str, spec: JobSpec, items: list[Item]) -> BatchBooking | None:
        """Book the part's worst case against its team's day and month; None when the team
        has no document or no day or month limit. Raises TeamDisabled, the limiter's
        BudgetExceeded, InvalidRequest (more than the whole limit) or ServiceUnavailable, and the
        registry's error when Cosmos DB fails."""
        if spec.team is None:
            return None
        team = await self.teams.by_id(spec.team)
        if team is None:
            return None
        if team.disabled:
            raise TeamDisabled(team.id)
        tokens, usd = self.worst_case(url, spec, items)
        try:
            booking = await self.limiter.reserve(team, tokens, usd, minute=False)
        except InvalidRequest as never:
            raise InvalidRequest(
                f"the batch may use {tokens} tokens and {usd:.2f} USD (every line's prompt "
                f"and answer cap), more than team {team.id}'s daily_tokens or monthly_usd "
                "allows at all; batch mode does not split a job to fit: submit fewer items "
                "per job, or run it in realtime mode"
            ) from never
        if booking is None:
            return None
        return BatchBooking(
            team=booking.team_id,
            tokens=booking.tokens,
            usd_micros=booking.usd_micros,
            day=booking.windows.day,
            month=booking.windows.month,
            counts_tokens=booking.counts_tokens,
            counts_usd=booking.counts_usd,
        )

    async def settle(self, booked: BatchBooking, tokens: int, usd_micros: int) -> None:
        """Replace a booking by what its lines used (zero: give it back)."""
        windows = Windows(0, booked.day, booked.month).without_minute()
        booking = Booking(
            booked.team,
            booked.tokens,
            booked.usd_micros,
            windows,
            counts_tokens=booked.counts_tokens,
            counts_usd=booked.counts_usd,
        )
        await self.limiter.settle(booking, tokens, usd_micros / MICROS)

    async def unbook(self, docs: BatchDocs, doc: BatchDoc, owner: str) -> BatchDoc:
        """Settle the part's booking, if it holds one, to what its ingested lines used: the
        booking is cleared on the document first, so it is settled once. Raises LeaseLost."""
        if doc.booking is None:
            return doc
        doc, held = await docs.take_booking(doc, owner)
        if held is not None and held.booking is not None:
            await self.settle(held.booking, held.used_tokens, held.used_micros)
        return doc

    def waiting(self, refused: RateLimited, since: datetime, at: datetime) -> ErrorDetail | None:
        """Why the part waits (the job's `error` meanwhile), or None when it has waited past
        JOB_BUDGET_MAX_WAIT since `since` and its items fail (`failure`)."""
        if (at - since).total_seconds() > self.max_wait:
            return None
        until = since + timedelta(seconds=self.max_wait)
        return ErrorDetail(
            code=refused.code,
            message=f"waits for its team's budget: {refused.message}; tried again on each run "
            f"of the batch poller until {until.isoformat(timespec='seconds')} "
            "(JOB_BUDGET_MAX_WAIT)",
            details=refused.details,
        )

    def failure(self, refused: RateLimited) -> ErrorDetail:
        return gave_up(refused, self.max_wait)

    def used(self, chunk: Iterable[LineOutcome], deployment: str) -> tuple[int, int]:
        """Tokens and micro-USD (at the batch price, as the usage report prices them) the
        ingested lines of `chunk` used."""
        tokens, usd = 0, 0.0
        for outcome in chunk:
            if outcome.result is None or outcome.usage is None:
                continue
            tokens += outcome.usage.total_tokens
            usd += usage_cost(outcome.model or deployment, outcome.usage, self.prices)
        return tokens, micros(usd * self.discount) if usd else 0
