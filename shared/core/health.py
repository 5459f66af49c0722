"""Readiness of what the app depends on: Cosmos DB, the storage queues, Azure OpenAI.

Checks run concurrently, each with a short timeout; a failure of Cosmos DB, the queues or
every Azure OpenAI backend makes the whole report `unavailable` (HTTP 503) so a load balancer
or probe takes the instance out of rotation.
`HealthCache` reuses a report for `HEALTH_CACHE_SECONDS`, so an anonymous caller hammering
`/api/health` costs the dependencies at most one round of checks per interval.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import openai
from openai import AsyncOpenAI
from pydantic import BaseModel

from shared.core.queues import JobQueues
from shared.core.store import Store

CHECK_TIMEOUT_SECONDS = 3.0


class CheckResult(BaseModel):
    ok: bool
    latency_ms: float
    error: str | None = None


class HealthStatus(BaseModel):
    """What an anonymous caller of `/api/health` learns: no dependency names or errors."""

    status: Literal["ok", "unavailable"]


class HealthReport(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, CheckResult]


async def _timed(check: Callable[[], Awaitable[object]]) -> CheckResult:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        error: str | None = f"no answer within {CHECK_TIMEOUT_SECONDS:.0f}s"
    except Exception as exc:  # a health check reports every failure, it never raises
        error = type(exc).__name__
    else:
        error = None
    return CheckResult(
        ok=error is None, latency_ms=round((time.perf_counter() - started) * 1000, 2), error=error
    )


async def _aoai_reachable(client: AsyncOpenAI) -> None:
    """Any HTTP answer from the endpoint proves reachability; listing models costs no tokens.

    401/403 fail the check (the identity cannot call the service); other statuses pass, since
    some endpoints do not serve the model list.
    """
    try:
        await client.with_options(max_retries=0, timeout=CHECK_TIMEOUT_SECONDS).models.list()
    except (openai.AuthenticationError, openai.PermissionDeniedError):
        raise
    except openai.APIStatusError:
        return


AOAI_CHECK = "azure_openai"


async def check_health(
    store: Store, queues: JobQueues, backends: Mapping[str, AsyncOpenAI]
) -> HealthReport:
    """Every dependency, checked at once. Azure OpenAI is checked on each backend (by name:
    `azure_openai:<backend>`; `azure_openai` alone with one backend)."""
    checks: dict[str, Callable[[], Awaitable[object]]] = {
        "cosmos": store.ping,
        "queues": queues.ping,
    }
    for name, client in backends.items():
        key = AOAI_CHECK if len(backends) == 1 else f"{AOAI_CHECK}:{name}"
        checks[key] = functools.partial(_aoai_reachable, client)
    results = await asyncio.gather(*(_timed(check) for check in checks.values()))
    report = dict(zip(checks, results, strict=True))
    return HealthReport(status=readiness(report), checks=report)


def readiness(checks: Mapping[str, CheckResult]) -> Literal["ok", "unavailable"]:
    """Ready when Cosmos DB, the queues and at least one Azure OpenAI backend answer: calls
    fail over to any backend that answers (shared/aoai/backends.py), so one that does not is shown
    in the details but takes no instance out of rotation."""
    aoai = [c.ok for name, c in checks.items() if name.split(":")[0] == AOAI_CHECK]
    others = [c.ok for name, c in checks.items() if name.split(":")[0] != AOAI_CHECK]
    return "ok" if all(others) and (any(aoai) or not aoai) else "unavailable"


@dataclass
class HealthCache:
    """The last report, reused while fresh; concurrent callers share one round of checks."""

    check: Callable[[], Awaitable[HealthReport]]
    ttl_seconds: float
    clock: Callable[[], float] = time.monotonic
    _report: HealthReport | None = field(default=None, init=False)
    _at: float = field(default=0.0, init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    async def report(self) -> HealthReport:
        if self._fresh():
            assert self._report is not None
            return self._report
        async with self._lock:
            if not self._fresh():
                self._report = await self.check()
                self._at = self.clock()
            assert self._report is not None
            return self._report

    def _fresh(self) -> bool:
        return self._report is not None and self.clock() - self._at < self.ttl_seconds
