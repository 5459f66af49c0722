"""One slice's moves between backends (pure logic: limiters without quotas, a fake service)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.aoai.quota import DeploymentLimiter, Reservation
from shared.core.errors import AppError, RateLimited, ServiceUnavailable, UpstreamError
from shared.jobs.models import Item, ResultDoc
from shared.jobs.runner import SliceOutcome, run_slice

GROUPS = [[Item(id=f"i{n}", text="x")] for n in range(6)]


def done(group: list[Item]) -> list[ResultDoc]:
    return [
        ResultDoc(
            id=f"j:{i.id}",
            job_id="j",
            item_id=i.id,
            kind="embedding",
            status="succeeded",
            created_at=datetime.now(UTC),
        )
        for i in group
    ]


async def never_cancelled() -> bool:
    return False


async def slice_with(
    refusal: AppError, *, second_ready: bool
) -> tuple[SliceOutcome, dict[str, list[str]], list[str]]:
    first, second = DeploymentLimiter(None, None, name="a"), DeploymentLimiter(None, None, name="b")
    served: dict[str, list[str]] = {"a": [], "b": []}
    written: list[str] = []

    async def run(group: list[Item], reservation: Reservation) -> list[ResultDoc]:
        name = reservation.limiter.name
        if name == "a":
            raise refusal
        served[name] += [i.id for i in group]
        return done(group)

    async def write(results: list[ResultDoc]) -> None:
        written.extend(r.item_id for r in results)

    def failover(failure: AppError, failed: DeploymentLimiter) -> DeploymentLimiter | None:
        assert failed is first
        return second if second_ready else None

    outcome = await run_slice(
        [list(g) for g in GROUPS],
        run=run,
        estimate=lambda g: 1,
        write=write,
        fail=lambda g, e: [],
        limiter=first,
        concurrency=3,
        seconds=60,
        cancelled=never_cancelled,
        failover=failover,
    )
    return outcome, served, written


async def test_a_429_moves_the_slice_to_the_next_backend_with_the_refused_request() -> None:
    outcome, served, written = await slice_with(
        RateLimited("429", retry_after=30), second_ready=True
    )
    assert outcome.stop == "done"
    assert sorted(written) == sorted(served["b"]) == [f"i{n}" for n in range(6)]


async def test_a_5xx_moves_it_too() -> None:
    outcome, _, written = await slice_with(UpstreamError("HTTP 500"), second_ready=True)
    assert outcome.stop == "done"
    assert len(written) == 6


async def test_with_no_backend_ready_the_slice_stops_as_with_one() -> None:
    outcome, _, written = await slice_with(RateLimited("429", retry_after=30), second_ready=False)
    assert outcome.stop == "rate_limited"
    assert outcome.retry_after == 30
    assert outcome.lead == 10  # due back half the pacing bound early: the slice waits the rest
    assert written == []


async def test_a_failure_that_is_not_the_backends_is_not_failed_over() -> None:
    """Cosmos DB down: failover is asked (it decides), and says no."""
    outcome, _, _ = await slice_with(ServiceUnavailable("cosmos"), second_ready=False)
    assert outcome.stop == "passing"


async def refused_then_served(refusals: int, retry_after: float) -> tuple[SliceOutcome, list[str]]:
    """One backend whose first `refusals` calls are 429s with `retry_after`."""
    lim = DeploymentLimiter(None, None, name="a", minute=6.0)  # pacing: up to 2 s here
    written: list[str] = []
    left = [refusals]

    async def run(group: list[Item], reservation: Reservation) -> list[ResultDoc]:
        if left[0] > 0:
            left[0] -= 1
            raise RateLimited("429", retry_after=retry_after)
        return done(group)

    async def write(results: list[ResultDoc]) -> None:
        written.extend(r.item_id for r in results)

    outcome = await run_slice(
        [list(g) for g in GROUPS[:2]],
        run=run,
        estimate=lambda g: 1,
        write=write,
        fail=lambda g, e: [],
        limiter=lim,
        concurrency=1,
        seconds=60,
        cancelled=never_cancelled,
    )
    return outcome, written


async def test_a_short_retry_after_is_waited_in_the_slice() -> None:
    """Within the pacing budget the slice waits and sends again: no queue round trip."""
    outcome, written = await refused_then_served(1, 0.05)
    assert outcome.stop == "done"
    assert written == ["i0", "i1"]


async def test_a_request_refused_twice_goes_back_to_the_queue() -> None:
    outcome, written = await refused_then_served(2, 0.05)
    assert outcome.stop == "rate_limited"
    assert outcome.retry_after == 0.05
    assert written == []
    assert [i.id for i in outcome.remaining] == ["i0", "i1"]


async def test_a_long_retry_after_goes_back_to_the_queue_at_once() -> None:
    outcome, written = await refused_then_served(1, 2.5)
    assert outcome.stop == "rate_limited"
    assert outcome.retry_after == 2.5
    assert outcome.lead == pytest.approx(1.0)  # half the 2 s pacing bound
    assert written == []
