"""A job slice's way through the backends: which one it sends to, and the next on a refusal
(on a fake clock; the slice that uses it is tests/unit/jobs/test_runner.py)."""

from __future__ import annotations

import pytest
from openai import AsyncOpenAI

from shared.aoai.backends import Backend, Backends
from shared.aoai.failover import Failover
from shared.aoai.limiters import Limiters
from shared.core.errors import RateLimited, ServiceUnavailable, UpstreamError
from tests.support.clock import Clock


def backends(client: AsyncOpenAI, clock: Clock) -> Backends:
    return Backends(
        [
            Backend("ptu", 1, client, client, {"gpt-4o": "gpt-4o-ptu"}),
            Backend("paygo", 2, client, client),
        ],
        cooldown=10.0,
        clock=clock,
    )


def test_a_slice_starts_on_the_first_candidate_with_its_limiter_there(
    client: AsyncOpenAI,
) -> None:
    limiters = Limiters({})
    failover = Failover(backends(client, Clock()), limiters, "gpt-4o")
    assert failover.current.backend == "ptu"
    assert failover.current.limiter is limiters.get("gpt-4o-ptu", backend="ptu")


@pytest.mark.parametrize(
    ("failure", "cooling"),
    [(RateLimited("429", retry_after=30), 30.0), (UpstreamError("HTTP 500"), 10.0)],
)
def test_a_429_or_5xx_cools_the_backend_and_moves_to_the_next(
    client: AsyncOpenAI, failure: RateLimited | UpstreamError, cooling: float
) -> None:
    router, limiters = backends(client, Clock()), Limiters({})
    failover = Failover(router, limiters, "gpt-4o")
    moved = failover.next(failover.current, failure)
    assert moved is not None
    assert moved == failover.current
    assert moved.backend == "paygo"
    assert moved.limiter is limiters.get("gpt-4o", backend="paygo")
    assert router.cooling_for("ptu", "gpt-4o") == pytest.approx(cooling)


@pytest.mark.parametrize(
    "failure",
    [ServiceUnavailable("cosmos"), UpstreamError("HTTP 401", retryable=False)],
    ids=["not-the-backends", "permanent"],
)
def test_a_failure_that_is_not_the_backends_moves_nothing(
    client: AsyncOpenAI, failure: ServiceUnavailable | UpstreamError
) -> None:
    router = backends(client, Clock())
    failover = Failover(router, Limiters({}), "gpt-4o")
    first = failover.current
    assert failover.next(first, failure) is None
    assert failover.current == first
    assert router.cooling_for("ptu", "gpt-4o") == 0.0


def test_with_no_backend_ready_it_stays_where_it_is(client: AsyncOpenAI) -> None:
    clock = Clock()
    router = backends(client, clock)
    router.cool("paygo", "gpt-4o", RateLimited("429", retry_after=60))
    failover = Failover(router, Limiters({}), "gpt-4o")
    first = failover.current
    assert failover.next(first, RateLimited("429", retry_after=5)) is None
    assert failover.current == first
    assert router.cooling_for("ptu", "gpt-4o") == pytest.approx(5.0)
    clock.now += 5  # the PTU's cooldown is over, the pay-as-you-go one is not
    assert Failover(router, Limiters({}), "gpt-4o").current.backend == "ptu"
