"""The process's limiters (shared/aoai/quota.py), one per backend and deployment, made on first
use; jobs and interactive calls of the process share them (shared/runtime.py). With a ledger
factory, each one with a known quota also takes its share of the quota from the ledger every
instance keeps in Cosmos DB (shared/aoai/quota_share.py).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Mapping

from shared.aoai.priority import HeadroomPolicy
from shared.aoai.quota import DeploymentLimiter
from shared.aoai.quota_share import QuotaShare
from shared.core.settings import DeploymentQuota

# Makes a limiter's share of a ledger from the ledger's document id.
ShareFactory = Callable[[str], QuotaShare]


def ledger_id(key: str) -> str:
    """A limiter's ledger document id: its key (`backend/deployment`) without the '/' that
    a Cosmos DB id may not hold."""
    return key.replace("/", "|")


class Limiters:
    """The process's limiters, one per deployment name, made on first use; jobs and
    interactive calls of the process share them (shared/runtime.py)."""

    def __init__(
        self,
        quotas: Mapping[str, DeploymentQuota],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        minute: float = 60.0,
        headroom: HeadroomPolicy | None = None,
        shares: ShareFactory | None = None,
    ) -> None:
        self._headroom = headroom
        self._shares = shares
        self._quotas = dict(quotas)
        self._minute = minute
        self._clock = clock
        self._sleep = sleep
        self._limiters: dict[str, DeploymentLimiter] = {}
        self._lock = threading.Lock()  # get() may be reached from the worker's threads

    def get(self, deployment: str, *, backend: str | None = None) -> DeploymentLimiter:
        """The limiter of `deployment` (its name on `backend`); one without a configured
        quota learns from the service. AOAI_QUOTAS keys: `backend/deployment` for one
        backend's deployment, or the deployment name for it on any backend."""
        key = deployment if backend is None else f"{backend}/{deployment}"
        with self._lock:
            limiter = self._limiters.get(key)
            if limiter is None:
                quota = self._quotas.get(key) or self._quotas.get(deployment)
                limiter = DeploymentLimiter(
                    quota.tpm if quota else None,
                    quota.requests_per_minute if quota else None,
                    clock=self._clock,
                    sleep=self._sleep,
                    name=key,
                    minute=self._minute,
                    deployment=deployment,
                    backend=backend,
                    headroom=self._headroom,
                    share=self._shares(ledger_id(key)) if self._shares and quota else None,
                )
                self._limiters[key] = limiter
            return limiter

    async def aclose(self) -> None:
        """The instance stops: every limiter hands its hold back to its ledger."""
        with self._lock:
            limiters = list(self._limiters.values())
        for limiter in limiters:
            await limiter.aclose()
