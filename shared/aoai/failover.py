"""Which backend a queue job's requests go to, and the next one when it refuses.

A job sends to one backend at a time (`Failover.current`), through that backend's limiter for
the deployment (shared/aoai/quota.py: each account has its own quota). When a request is
refused in a way that is the backend's doing, `next()` cools that backend for the deployment
(shared/aoai/backends.py) and moves to the next ready one. The policy around it (what waits,
what goes back to the queue): docs/jobs.md#rate-limits-and-retries.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.aoai.backends import Backend, Backends
from shared.aoai.limiters import Limiters
from shared.aoai.quota import DeploymentLimiter
from shared.core.errors import AppError, RateLimited


@dataclass(frozen=True)
class Lane:
    """One backend's way to a deployment: the backend's name and its limiter there."""

    backend: str
    limiter: DeploymentLimiter


class Failover:
    """The backend one slice of a job sends to now; one per slice. Not thread-safe."""

    def __init__(self, backends: Backends, limiters: Limiters, deployment: str) -> None:
        self._backends = backends
        self._limiters = limiters
        self.deployment = deployment
        self.current = self._lane(backends.candidates(deployment)[0])

    def next(self, failed: Lane, failure: AppError) -> Lane | None:
        """After `failure` (a 429 or a passing failure) of a request sent on `failed`: cool
        that backend and make the first ready one `current`. None when the failure is not
        the backend's (Cosmos DB down, say) or no backend is ready."""
        if not (isinstance(failure, RateLimited) or failure.retryable):
            return None
        if not self._backends.cool(failed.backend, self.deployment, failure):
            return None
        ready = self._backends.ready(self.deployment)
        if not ready:
            return None
        self.current = self._lane(ready[0])
        return self.current

    def _lane(self, backend: Backend) -> Lane:
        name = backend.deployment_for(self.deployment) or self.deployment
        return Lane(backend.name, self._limiters.get(name, backend=backend.name))
