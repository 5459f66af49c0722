"""The per-caller token limit shared across instances (issue 14): two limiters or two runtimes
over the same Cosmos DB server (the local one, through the real SDK) together stay within the
limit; a caller far under it spends a local credit instead of a round trip; Cosmos DB down
lets calls through. And the gateway's token arithmetic (pure)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from devstack.aoai_simulator import RunningSimulator
from shared.chat.models import ChatRequest
from shared.core.errors import InvalidRequest, RateLimited
from shared.core.settings import load_settings
from shared.core.store import CALLER_MINUTES, Store, create_store
from shared.metering.caller_limit import Booking, SharedCallerLimiter
from shared.metering.callers import cap_completion_tokens, chat_estimate, embedding_estimate
from shared.runtime import Runtime, create_runtime

# One minute for the limiter tests: a bucket must not roll over in the middle of one.
NOW = time.time()


def clock() -> float:
    return NOW


def caller() -> str:
    return f"principal:{uuid.uuid4()}"


async def within_one_minute() -> None:
    """For the runtimes, which count on the wall clock: start early in a minute, so that the
    few seconds a test takes cannot cross into the next one (and find an empty bucket)."""
    into = time.time() % 60
    if into > 40:
        await asyncio.sleep(60 - into + 0.5)


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


async def bucket(store: Store, limiter: SharedCallerLimiter, who: str, booking: Booking) -> int:
    doc_id = limiter._id(who, booking.minute)
    found = await store.read(CALLER_MINUTES, doc_id, doc_id)
    return int(found["tokens"]) if found else 0


async def test_two_limiters_together_never_book_past_the_limit(store: Store) -> None:
    """Finding: the limit was per instance, so N instances let a caller spend N times it. Two
    limiters (two instances) booking at once for one caller stay within one limit."""
    first, second = SharedCallerLimiter(store, 1000, clock), SharedCallerLimiter(store, 1000, clock)
    who = caller()

    async def book(limiter: SharedCallerLimiter) -> Booking | None:
        try:
            return await limiter.reserve(who, 100)
        except RateLimited:
            return None

    got = await asyncio.gather(*(book(x) for x in [first, second] * 10))
    granted = [b for b in got if b is not None]
    # A credit (5% of the limit) may sit unused in each instance: at most one call each.
    assert 8 <= len(granted) <= 10
    assert len(granted) * 100 <= await bucket(store, first, who, granted[0]) <= 1000


async def test_a_caller_far_under_its_limit_spends_its_credit_without_a_round_trip(
    store: Store,
) -> None:
    counting = CountingStore(store)
    limiter = SharedCallerLimiter(counting, 10_000, clock)  # a credit of 500
    who = caller()
    first = await limiter.reserve(who, 50)
    assert first is not None
    trips = counting.requests
    for _ in range(9):
        await limiter.settle(await limiter.reserve(who, 50), 40)
    assert counting.requests == trips  # ten small calls, Cosmos DB asked once
    # The bucket runs ahead of what was spent by at most the credit.
    spent = 50 + 9 * 40
    assert spent <= await bucket(store, limiter, who, first) <= spent + 500


async def test_a_refund_larger_than_the_credit_goes_back_to_every_instance(store: Store) -> None:
    first, second = SharedCallerLimiter(store, 1000, clock), SharedCallerLimiter(store, 1000, clock)
    who = caller()
    booking = await first.reserve(who, 900)  # max_tokens booked, far more than used
    with pytest.raises(RateLimited) as refused:
        await second.reserve(who, 200)
    # Until the bucket's minute ends: under a second when the module was imported late in one.
    assert 0 < refused.value.retry_after <= 60  # type: ignore[operator]
    await first.settle(booking, 100)
    assert await second.reserve(who, 200) is not None  # what the first did not use is free


async def test_two_runtimes_share_one_callers_minute(
    app_environ: dict[str, str], simulator: RunningSimulator, store: Store
) -> None:
    """Through the chat service of two runtimes (two instances): each alone has room for the
    third call, together they have not. With CHAT_CALLER_LIMIT_SCOPE=instance they would."""
    environ = {
        **app_environ,
        "AZURE_OPENAI_ENDPOINT": simulator.url,
        "AZURE_OPENAI_API_KEY": simulator.api_key,
        "AOAI_DEPLOYMENTS": "{}",
        "CHAT_CALLER_TPM": "1000",
    }
    team = f"t-{uuid.uuid4().hex[:8]}"
    # About 400 prompt tokens and 10 output tokens: two calls fit in 1000, three do not.
    ask = ChatRequest.model_validate(
        {
            "messages": [{"role": "user", "content": "word " * 320}],
            "max_tokens": 10,
            "tags": {"team": team},
        }
    )
    await within_one_minute()
    runtimes: list[Runtime] = [create_runtime(load_settings(environ)) for _ in range(2)]
    try:
        a, b = runtimes
        await a.chat.complete(ask, f"r-{uuid.uuid4()}")
        await b.chat.complete(ask, f"r-{uuid.uuid4()}")
        with pytest.raises(RateLimited):
            await a.chat.complete(ask, f"r-{uuid.uuid4()}")
        with pytest.raises(RateLimited):
            await b.chat.complete(ask, f"r-{uuid.uuid4()}")
    finally:
        for runtime in runtimes:
            await runtime.aclose()


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


async def test_cosmos_down_lets_calls_through_and_logs_no_caller(
    unreachable: Store, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = SharedCallerLimiter(unreachable, 100, clock)
    who = caller()
    with caplog.at_level(logging.WARNING, logger="shared.metering.caller_limit"):
        assert await limiter.reserve(who, 50) is None  # unchecked, not refused
        assert await limiter.reserve(who, 100) is None  # still open: no second wait
    (warning,) = [r for r in caplog.records if r.name == "shared.metering.caller_limit"]
    assert "principal" in warning.getMessage()
    assert who.partition(":")[2] not in warning.getMessage()


def test_output_tokens_default_to_the_limit_and_refuse_more() -> None:
    body: dict[str, Any] = {"messages": []}
    assert cap_completion_tokens(body, 300) == 300
    assert body["max_completion_tokens"] == 300
    legacy = {"max_tokens": 20}
    assert cap_completion_tokens(legacy, 300) == 20
    assert "max_completion_tokens" not in legacy  # the service refuses both at once
    for bad in ({"max_tokens": 301}, {"max_completion_tokens": 301}, {"max_tokens": "9"}):
        with pytest.raises(InvalidRequest):
            cap_completion_tokens(bad, 300)
    assert chat_estimate("x" * 400, {"n": 3}, 10) == 100 + 30
    assert embedding_estimate("x" * 400) == 100
    assert embedding_estimate(["x" * 40, "y" * 80]) == 30
    assert embedding_estimate([[1, 2, 3], [4]]) == 4
