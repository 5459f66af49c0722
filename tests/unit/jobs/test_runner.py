"""One slice: its moves between backends, its waits, what it writes and reports (pure logic:
limiters without quotas, the real failover over two backends, a fake service and store)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime

import pytest
from openai import AsyncOpenAI

from shared.aoai.backends import Backend, Backends
from shared.aoai.failover import Failover, Lane
from shared.aoai.limiters import Limiters
from shared.aoai.reservation import Reservation
from shared.core.errors import AppError, RateLimited, ServiceUnavailable, UpstreamError
from shared.core.models import Usage
from shared.jobs.memory import MIB, MemoryBudget
from shared.jobs.models import EmbeddingJob, Item, JobDoc, JobSpec, ResultDoc
from shared.jobs.results import answer_in_parts
from shared.jobs.runner import SliceOutcome, run_slice
from shared.metering.bookkeeper import CallSite

ITEMS = [Item(id=f"i{n}", text="x") for n in range(6)]
JOB = EmbeddingJob(job_id="j", items=ITEMS)
SPEC = JobSpec(deployment="d")


@pytest.fixture
async def client() -> AsyncIterator[AsyncOpenAI]:
    """A client no test sends through (the service below is a fake)."""
    c = AsyncOpenAI(base_url="http://127.0.0.1:9", api_key="k")
    yield c
    await c.close()


def done(group: list[Item], tokens: int = 0) -> list[ResultDoc]:
    return [
        ResultDoc(
            id=f"j:{i.id}",
            job_id="j",
            item_id=i.id,
            kind="embedding",
            status="succeeded",
            usage=Usage(prompt_tokens=tokens, total_tokens=tokens),
            created_at=datetime.now(UTC),
        )
        for i in group
    ]


class Service:
    """One request per item. A backend in `always` refuses every call with its error; one in
    `first` refuses its first calls with those errors, in order; the others answer."""

    def __init__(
        self,
        always: dict[str, AppError] | None = None,
        first: dict[str, list[AppError]] | None = None,
    ) -> None:
        self.always = always or {}
        self.first = first or {}
        self.served: dict[str, list[str]] = {}

    def plan(
        self, items: list[Item], token_budget: int | None = None, spec: JobSpec | None = None
    ) -> list[list[Item]]:
        return [[item] for item in items]

    def estimate(self, group: list[Item], spec: JobSpec) -> int:
        return 1

    def answer_bytes(self, group: list[Item], spec: JobSpec) -> int:
        return 0

    async def run(
        self, group: list[Item], spec: JobSpec, site: CallSite, reservation: Reservation
    ) -> list[ResultDoc]:
        assert site.backend is not None
        assert site.job_id == "j"
        assert reservation.limiter.name == f"{site.backend}/d"  # the backend's own limiter
        if site.backend in self.always:
            raise self.always[site.backend]
        if self.first.get(site.backend):
            raise self.first[site.backend].pop(0)
        self.served.setdefault(site.backend, []).extend(i.id for i in group)
        return done(group, tokens=2)


class Store:
    def __init__(self) -> None:
        self.written: list[str] = []

    async def get(self, job_id: str) -> JobDoc | None:
        return JobDoc(
            id=job_id,
            job_id=job_id,
            kind="embedding",
            status="running",
            created_at=datetime.now(UTC),
            updated_at=datetime.now(UTC),
        )

    async def write_results(self, results: Iterable[ResultDoc]) -> list[ResultDoc]:
        kept = list(results)
        self.written.extend(r.item_id for r in kept)
        return kept


class AskedFailover(Failover):
    """The real failover, recording the lanes it was asked about."""

    def __init__(self, backends: Backends, limiters: Limiters, deployment: str) -> None:
        super().__init__(backends, limiters, deployment)
        self.asked: list[str] = []

    def next(self, failed: Lane, failure: AppError) -> Lane | None:
        self.asked.append(failed.backend)
        return super().next(failed, failure)


def two_backends(client: AsyncOpenAI, *, second_ready: bool) -> Backends:
    backends = Backends(
        [Backend("a", 1, client, client), Backend("b", 2, client, client)], cooldown=10.0
    )
    if not second_ready:
        backends.cool("b", "d", RateLimited("429", retry_after=600))
    return backends


async def slice_with(
    client: AsyncOpenAI, refusal: AppError, *, second_ready: bool
) -> tuple[SliceOutcome, dict[str, list[str]], list[str], AskedFailover]:
    backends = two_backends(client, second_ready=second_ready)
    failover = AskedFailover(backends, Limiters({}), "d")
    service, store = Service(always={"a": refusal}), Store()
    outcome = await run_slice(
        JOB,
        SPEC,
        list(ITEMS),
        service=service,
        store=store,
        failover=failover,
        concurrency=3,
        seconds=60,
    )
    return outcome, service.served, store.written, failover


async def test_a_429_moves_the_slice_to_the_next_backend_with_the_refused_request(
    client: AsyncOpenAI,
) -> None:
    outcome, served, written, failover = await slice_with(
        client, RateLimited("429", retry_after=30), second_ready=True
    )
    assert outcome.stop == "done"
    assert sorted(written) == sorted(served["b"]) == [f"i{n}" for n in range(6)]
    assert set(failover.asked) == {"a"}
    assert failover.current.backend == "b"


async def test_a_5xx_moves_it_too(client: AsyncOpenAI) -> None:
    outcome, _, written, _ = await slice_with(client, UpstreamError("HTTP 500"), second_ready=True)
    assert outcome.stop == "done"
    assert len(written) == 6


async def test_with_no_backend_ready_the_slice_stops_as_with_one(client: AsyncOpenAI) -> None:
    outcome, _, written, _ = await slice_with(
        client, RateLimited("429", retry_after=30), second_ready=False
    )
    assert outcome.stop == "rate_limited"
    assert outcome.retry_after == 30
    assert outcome.lead == 10  # due back half the pacing bound early: the slice waits the rest
    assert written == []


async def test_a_failure_that_is_not_the_backends_is_not_failed_over(client: AsyncOpenAI) -> None:
    """Cosmos DB down: failover is asked (it decides), and says no."""
    outcome, _, _, failover = await slice_with(
        client, ServiceUnavailable("cosmos"), second_ready=False
    )
    assert outcome.stop == "passing"
    assert failover.asked
    assert set(failover.asked) == {"a"}
    assert failover.current.backend == "a"


async def test_a_permanent_failure_writes_those_items_failed_and_the_slice_goes_on(
    client: AsyncOpenAI,
) -> None:
    backends = two_backends(client, second_ready=True)
    denied = UpstreamError("HTTP 401", retryable=False)
    service, store = Service(first={"a": [denied, denied]}), Store()
    outcome = await run_slice(
        JOB,
        SPEC,
        list(ITEMS[:3]),
        service=service,
        store=store,
        failover=Failover(backends, Limiters({}), "d"),
        concurrency=1,
        seconds=60,
    )
    assert outcome.stop == "done"
    assert store.written == ["i0", "i1", "i2"]  # two failed on "a", the third served
    assert (outcome.requests, outcome.written, outcome.failed) == (3, 3, 2)
    assert outcome.usage.total_tokens == 2  # the served item's only
    assert backends.cooling_for("a", "d") == 0.0  # an answer, not an outage


async def refused_then_served(
    client: AsyncOpenAI, refusals: int, retry_after: float
) -> tuple[SliceOutcome, list[str]]:
    """One backend whose first `refusals` calls are 429s with `retry_after`."""
    backends = Backends([Backend("a", 1, client, client)], cooldown=10.0)
    limiters = Limiters({}, minute=6.0)  # pacing: up to 2 s here
    service = Service(first={"a": [RateLimited("429", retry_after=retry_after)] * refusals})
    store = Store()
    outcome = await run_slice(
        JOB,
        SPEC,
        list(ITEMS[:2]),
        service=service,
        store=store,
        failover=Failover(backends, limiters, "d"),
        concurrency=1,
        seconds=60,
    )
    return outcome, store.written


async def test_a_short_retry_after_is_waited_in_the_slice(client: AsyncOpenAI) -> None:
    """Within the pacing budget the slice waits and sends again: no queue round trip."""
    outcome, written = await refused_then_served(client, 1, 0.05)
    assert outcome.stop == "done"
    assert written == ["i0", "i1"]


async def test_a_request_refused_twice_goes_back_to_the_queue(client: AsyncOpenAI) -> None:
    outcome, written = await refused_then_served(client, 2, 0.05)
    assert outcome.stop == "rate_limited"
    assert outcome.retry_after == 0.05
    assert written == []
    assert [i.id for i in outcome.remaining] == ["i0", "i1"]


async def test_a_long_retry_after_goes_back_to_the_queue_at_once(client: AsyncOpenAI) -> None:
    outcome, written = await refused_then_served(client, 1, 2.5)
    assert outcome.stop == "rate_limited"
    assert outcome.retry_after == 2.5
    assert outcome.lead == pytest.approx(1.0)  # half the 2 s pacing bound
    assert written == []


class Weighed(Service):
    """Every request's answer weighs 1 MiB; it records the most held at once."""

    def __init__(self, budget: MemoryBudget) -> None:
        super().__init__()
        self.budget = budget
        self.most = 0

    def answer_bytes(self, group: list[Item], spec: JobSpec) -> int:
        return MIB

    async def run(
        self, group: list[Item], spec: JobSpec, site: CallSite, reservation: Reservation
    ) -> list[ResultDoc]:
        self.most = max(self.most, self.budget.held)
        await asyncio.sleep(0.01)  # in flight while the others start
        return done(group)


async def test_the_memory_budget_holds_across_concurrent_messages(client: AsyncOpenAI) -> None:
    # Two messages of 6 requests, 4 in flight each, on one process's 3 MiB budget: 8 answers
    # of 1 MiB would be in flight without it.
    budget = MemoryBudget(3)
    service = Weighed(budget)
    backends = two_backends(client, second_ready=True)
    stores = [Store(), Store()]
    outcomes = await asyncio.gather(
        *(
            run_slice(
                JOB,
                SPEC,
                list(ITEMS),
                service=service,
                store=store,
                failover=Failover(backends, Limiters({}), "d"),
                concurrency=4,
                seconds=60,
                memory=budget,
            )
            for store in stores
        )
    )
    assert [o.stop for o in outcomes] == ["done", "done"]
    assert [len(s.written) for s in stores] == [6, 6]
    assert service.most == 3 * MIB
    assert budget.held == 0


class SplitService(Service):
    """One request for all items, answered in parts: the first two parts answer, then every
    part fails with `failure` (a request split after a filtered item, meeting an outage)."""

    def __init__(self, failure: AppError) -> None:
        super().__init__()
        self.failure = failure

    def plan(
        self, items: list[Item], token_budget: int | None = None, spec: JobSpec | None = None
    ) -> list[list[Item]]:
        return [items]

    async def run(
        self, group: list[Item], spec: JobSpec, site: CallSite, reservation: Reservation
    ) -> list[ResultDoc]:
        async def part(items: list[Item]) -> list[ResultDoc]:
            if len(self.served.setdefault("parts", [])) >= 2:
                raise self.failure
            self.served["parts"].extend(i.id for i in items)
            return done(items, tokens=2)

        return await answer_in_parts([[item] for item in group], part)


class FailingStore(Store):
    async def write_results(self, results: Iterable[ResultDoc]) -> list[ResultDoc]:
        raise ServiceUnavailable("cosmos")


@pytest.mark.parametrize("sink", [Store(), FailingStore()], ids=["stored", "store-down"])
async def test_the_parts_answered_before_a_failure_are_kept_not_asked_again(
    client: AsyncOpenAI, sink: Store
) -> None:
    backends = Backends([Backend("a", 1, client, client)], cooldown=10.0)
    service = SplitService(UpstreamError("HTTP 503"))
    outcome = await run_slice(
        JOB,
        SPEC,
        list(ITEMS),
        service=service,
        store=sink,
        failover=Failover(backends, Limiters({}), "d"),
        concurrency=1,
        seconds=60,
    )
    assert outcome.stop == "passing"
    kept = sink.written if not isinstance(sink, FailingStore) else []
    handed_on = [r.item_id for r in outcome.unwritten]
    assert sorted(kept + handed_on) == ["i0", "i1"]  # written, or handed on with the rest
    assert [i.id for i in outcome.remaining] == ["i2", "i3", "i4", "i5"]
