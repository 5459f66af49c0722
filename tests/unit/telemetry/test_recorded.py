"""What shared/telemetry/record.py records, read back through the SDK's in-memory reader: the
instruments are made on a provider of the test's own (never the process's global one)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from shared.aoai.quota import DeploymentLimiter
from shared.core.models import Usage
from shared.telemetry import metrics, names, record


@pytest.fixture
def reader(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    monkeypatch.setattr(metrics, "_meter", lambda: provider.get_meter("test"))
    metrics.instruments.cache_clear()
    yield reader
    metrics.instruments.cache_clear()
    provider.shutdown()


def points(reader: InMemoryMetricReader, name: str) -> list[tuple[dict[str, Any], Any]]:
    """(attributes, point) of every series of `name` collected now."""
    data = reader.get_metrics_data()
    found = []
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    found.extend((dict(p.attributes or {}), p) for p in metric.data.data_points)
    return found


def test_a_call_records_each_token_type_its_duration_and_first_chunk(
    reader: InMemoryMetricReader,
) -> None:
    attributes = record.call_attributes(
        operation="chat_stream",
        source="chat",
        deployment="gpt-4o",
        backend="east",
        team="t1",
        outcome="ok",
    )
    usage = Usage(prompt_tokens=40, completion_tokens=12, cached_tokens=32, total_tokens=52)
    record.record_call(attributes, usage, duration=0.5, first_chunk=0.1)
    tokens = {a[names.TOKEN_TYPE]: (p.sum, p.count) for a, p in points(reader, names.TOKEN_USAGE)}
    assert tokens == {"input": (40, 1), "output": (12, 1), "cached": (32, 1)}
    ((duration_attributes, duration),) = points(reader, names.OPERATION_DURATION)
    assert duration_attributes == attributes
    assert (duration.sum, duration.count) == (0.5, 1)
    ((_, first),) = points(reader, names.TIME_TO_FIRST_CHUNK)
    assert (first.sum, first.count) == (0.1, 1)


def test_a_failed_call_records_its_duration_and_no_tokens(reader: InMemoryMetricReader) -> None:
    attributes = record.call_attributes(
        operation="chat",
        source="gateway",
        deployment="gpt-4o",
        backend="east",
        team=None,
        outcome="throttled",
        error_type="rate_limited",
    )
    record.record_call(attributes, None, duration=0.2)
    assert points(reader, names.TOKEN_USAGE) == []
    assert points(reader, names.TIME_TO_FIRST_CHUNK) == []
    ((seen, _),) = points(reader, names.OPERATION_DURATION)
    assert seen[names.OUTCOME] == "throttled"


def test_job_items_count_one_each_and_their_tokens_by_route(reader: InMemoryMetricReader) -> None:
    items = [
        ("embedding", "succeeded", Usage(prompt_tokens=5, total_tokens=5)),
        ("embedding", "succeeded", Usage(prompt_tokens=7, total_tokens=7)),
        ("embedding", "failed", Usage()),
    ]
    record.record_job_items(items, mode="batch", deployment="emb", backend="east", team="t1")
    counted = {a[names.OUTCOME]: p.value for a, p in points(reader, names.JOB_ITEMS)}
    assert counted == {"ok": 2, "error": 1}
    tokens = points(reader, names.TOKEN_USAGE)
    assert {(a[names.TOKEN_TYPE], a[names.ROUTE], p.sum, p.count) for a, p in tokens} == {
        ("input", "batch", 12, 2),
        ("output", "batch", 0, 2),
    }  # the failed item used none: no token point


async def test_the_limiter_records_a_wait_and_the_callers_waiting(
    reader: InMemoryMetricReader,
) -> None:
    now = [0.0]
    depths: list[float] = []

    async def sleep(seconds: float) -> None:
        ((_, depth),) = points(reader, names.LIMITER_QUEUE_DEPTH)
        depths.append(depth.value)
        now[0] += seconds

    limiter = DeploymentLimiter(
        6000, 600, clock=lambda: now[0], sleep=sleep, deployment="gpt-4o", backend="east"
    )
    assert await limiter.acquire(6000, max_wait=120)  # room at once: no wait recorded
    assert points(reader, names.LIMITER_WAIT) == []
    assert await limiter.acquire(6000, max_wait=120)  # waits for the minute to pass
    assert depths
    assert set(depths) == {1}
    ((attributes, wait),) = points(reader, names.LIMITER_WAIT)
    assert attributes == {names.DEPLOYMENT: "gpt-4o", names.BACKEND: "east"}
    assert wait.count == 1
    ((_, depth),) = points(reader, names.LIMITER_QUEUE_DEPTH)
    assert depth.value == 0
