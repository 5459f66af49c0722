"""The health cache (pure logic on a fake clock; the checks themselves run end to end in
tests/stack/http/test_function_app.py)."""

from __future__ import annotations

import asyncio

from shared.core.health import CheckResult, HealthCache, HealthReport, readiness


async def test_checks_are_reused_for_a_few_seconds_and_shared_by_concurrent_callers() -> None:
    """Finding: every anonymous call fanned out to three services. Now one round of checks
    serves every caller within HEALTH_CACHE_SECONDS."""
    now, rounds = [0.0], []

    async def check() -> HealthReport:
        rounds.append(now[0])
        await asyncio.sleep(0.01)
        return HealthReport(status="ok", checks={"x": CheckResult(ok=True, latency_ms=1)})

    cache = HealthCache(check, ttl_seconds=5, clock=lambda: now[0])
    await asyncio.gather(*(cache.report() for _ in range(20)))
    now[0] = 4.9
    await cache.report()
    assert len(rounds) == 1
    now[0] = 5.0
    await cache.report()
    assert len(rounds) == 2


def _checks(**oks: bool) -> dict[str, CheckResult]:
    return {name.replace("__", ":"): CheckResult(ok=ok, latency_ms=1) for name, ok in oks.items()}


def test_ready_while_one_backend_answers_not_when_none_or_a_store_fails() -> None:
    """Calls fail over to a backend that answers, so one backend down takes no instance out of
    rotation; every backend down, or Cosmos DB or the queues down, does."""
    one_down = _checks(cosmos=True, queues=True, azure_openai__a=False, azure_openai__b=True)
    assert readiness(one_down) == "ok"
    all_down = _checks(cosmos=True, queues=True, azure_openai__a=False, azure_openai__b=False)
    assert readiness(all_down) == "unavailable"
    assert readiness(_checks(cosmos=True, queues=True, azure_openai=False)) == "unavailable"
    assert readiness(_checks(cosmos=False, queues=True, azure_openai=True)) == "unavailable"
    assert readiness(_checks(cosmos=True, queues=False, azure_openai=True)) == "unavailable"
    assert readiness(_checks(cosmos=True, queues=True, azure_openai=True)) == "ok"
