"""Priority backends: the Azure OpenAI accounts behind the client module, and which one serves
a call.

Each call goes to the highest-priority backend (lowest number) that serves its deployment and
is not cooling for it; backends of one priority take turns (least recently picked first). A
backend that answers 429 cools for its retry-after (`retry-after-ms`, then `retry-after`); one
that answers 5xx (or 408), times out or cannot be reached cools for
`AOAI_BACKEND_COOLDOWN_SECONDS`. A cooldown holds for the (backend, deployment) pair that was
refused, never for the whole account: Azure rate-limits each deployment on its own, so an
embedding deployment held near its quota by jobs must not push chat to the spill-over. (An
account that is down is found out once per deployment: one failed attempt each.)
The call then goes to the next backend at once: every attempt but the last uses a client
without the SDK's own retries, so nothing sleeps on a 429 while another backend could answer.
The last candidate keeps the SDK's retries, which makes one backend (today's settings) behave
exactly as a single client did. When every backend is cooling, the one whose cooldown ends
first gets the call; if it still refuses, the caller gets the refusal with the shortest
retry-after seen. Other errors (400, 401, 404) are answers, not outages: no fail-over.

An interactive call (chat, the gateway routes: `route(max_wait=...)`) is never held longer than
INTERACTIVE_MAX_WAIT_SECONDS: when every backend cools for longer it is refused at once
(`Cooling`, a 429 with Retry-After, nothing sent), and its last attempt retries as the SDK
would only while the sleeps fit in that wait (shared/aoai/patience.py); past it the 429 is
the caller's at once.

A stream fails over only while it has not started: the SDK call returns once the status line
is in, so an error before the first byte is an ordinary failed attempt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import openai
from openai import AsyncOpenAI

from shared.aoai import patience
from shared.core.errors import (
    AppError,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    retry_after_seconds,
)
from shared.telemetry import tracing

log = logging.getLogger(__name__)

T = TypeVar("T")

# A refusal asking for no wait (`retry-after: 0`) still cools the backend this long, so two
# refusing backends cannot bounce one request between them at full speed.
MIN_COOLDOWN = 0.1


class NoBackend(UpstreamError):
    """No backend serves the deployment: AOAI_BACKENDS lists it nowhere (settings validation
    catches this for the configured deployments; a name only a request brings can reach it)."""

    def __init__(self, deployment: str) -> None:
        super().__init__(
            f"no Azure OpenAI backend serves deployment {deployment!r} (AOAI_BACKENDS)",
            retryable=False,
        )
        self.deployment = deployment


class Cooling(RateLimited):
    """An interactive call refused before it is sent: every backend serving the deployment
    cools after a 429 whose retry-after ends later than the call may wait
    (INTERACTIVE_MAX_WAIT_SECONDS)."""

    def __init__(self, deployment: str, seconds: float) -> None:
        super().__init__("Azure OpenAI rate limit reached; retry later", retry_after=seconds)
        self.deployment = deployment


@dataclass
class Backend:
    """One account: its clients and the names its deployments have there."""

    name: str
    priority: int
    client: AsyncOpenAI  # with the SDK's retries: the last resort
    direct: AsyncOpenAI  # max_retries=0: an attempt another backend may take over
    deployments: Mapping[str, str] = field(default_factory=dict)  # empty: every name as is

    def deployment_for(self, deployment: str) -> str | None:
        """The deployment's name on this backend, or None if it does not serve it."""
        if not self.deployments:
            return deployment
        return self.deployments.get(deployment)


@dataclass(frozen=True)
class Target:
    """Where one attempt goes: the backend's name, its deployment name, the client to use,
    and headers the request must carry (a retry's count: shared/aoai/patience.py)."""

    backend: str
    deployment: str
    client: AsyncOpenAI
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class _State:
    picked: int = 0  # order of the last pick: same priority, least recently picked first


class Backends:
    """The router, one per process (shared/runtime.py). Not thread-safe: one event loop."""

    def __init__(
        self,
        backends: Sequence[Backend],
        *,
        cooldown: float,
        batch_backend: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not backends:
            raise ValueError("at least one backend")
        self.all = list(backends)
        self.cooldown = cooldown
        self._clock = clock
        self._state = {b.name: _State() for b in self.all}
        # (backend, deployment) -> monotonic time its cooldown ends; absent: not cooling.
        self._cooling: dict[tuple[str, str], float] = {}
        # The same, for cooldowns a 429 asked for (the service's retry-after): only these turn
        # an interactive call away unsent; a 5xx cooldown is ours, a guess, and is tried.
        self._throttled: dict[tuple[str, str], float] = {}
        self._picks = 0
        self.batch = self.get(batch_backend) if batch_backend else self.all[0]

    @property
    def primary(self) -> Backend:
        return self.all[0]

    def get(self, name: str) -> Backend:
        for backend in self.all:
            if backend.name == name:
                return backend
        raise KeyError(name)

    def cooling_for(self, name: str, deployment: str) -> float:
        """Seconds until the backend takes calls for `deployment` again (0.0: it does now)."""
        return max(0.0, self._cooling_until(name, deployment) - self._clock())

    def throttled_for(self, name: str, deployment: str) -> float:
        """Seconds until the retry-after of the backend's last 429 for `deployment` ends
        (0.0: none pending)."""
        until = self._throttled.get((name, deployment), float("-inf"))
        return max(0.0, min(until, self._cooling_until(name, deployment)) - self._clock())

    def _cooling_until(self, name: str, deployment: str) -> float:
        return self._cooling.get((name, deployment), float("-inf"))

    def ready(self, deployment: str) -> list[Backend]:
        """The backends serving `deployment` that are not cooling for it, in the order to try
        them: by priority, then least recently picked (empty when all are cooling)."""
        now = self._clock()
        ready = [
            b for b in self._serving(deployment) if self._cooling_until(b.name, deployment) <= now
        ]
        return sorted(ready, key=lambda b: (b.priority, self._state[b.name].picked))

    def candidates(self, deployment: str) -> list[Backend]:
        """The backends to try, in order: the ready ones; if all are cooling, only the one
        whose cooldown ends first."""
        ready = self.ready(deployment)
        if ready:
            return ready
        serving = self._serving(deployment)
        return [min(serving, key=lambda b: self._cooling_until(b.name, deployment))]

    def target(self, name: str | None, deployment: str) -> Target:
        """An attempt on the named backend (default: the first candidate) without the SDK's
        retries: a queue job picks its backend per slice and never sleeps on a 429."""
        backend = self.get(name) if name is not None else self.candidates(deployment)[0]
        mapped = backend.deployment_for(deployment)
        if mapped is None:
            raise NoBackend(deployment)
        return Target(backend.name, mapped, backend.direct)

    def _serving(self, deployment: str) -> list[Backend]:
        serving = [b for b in self.all if b.deployment_for(deployment) is not None]
        if not serving:
            raise NoBackend(deployment)
        return serving

    def picked(self, backend: Backend) -> None:
        self._picks += 1
        self._state[backend.name].picked = self._picks

    def cooldown_for(self, error: BaseException) -> float | None:
        """How long a backend that raised `error` should be passed over; None when the
        error is an answer another backend would give too (400, 401, 404, content filter)."""
        if isinstance(error, openai.RateLimitError):
            seconds = retry_after_seconds(error.response.headers)
            return self.cooldown if seconds is None else seconds
        if isinstance(error, openai.APIStatusError):
            status = error.status_code
            return self.cooldown if status >= 500 or status == 408 else None
        if isinstance(error, openai.APIConnectionError):  # timeouts included
            return self.cooldown
        if isinstance(error, RateLimited):  # a job's request, already translated
            return self.cooldown if error.retry_after is None else error.retry_after
        if isinstance(error, UpstreamError | UpstreamTimeout) and error.retryable:
            return self.cooldown
        return None

    def cool(self, name: str, deployment: str, error: BaseException) -> bool:
        """Pass the backend over for `deployment` as long as `error` asks (its other
        deployments keep their own state); False if it asks for nothing."""
        seconds = self.cooldown_for(error)
        if seconds is None:
            return False
        seconds = max(seconds, MIN_COOLDOWN)
        key = (name, deployment)
        until = self._clock() + seconds
        self._cooling[key] = max(self._cooling_until(name, deployment), until)
        if isinstance(error, openai.RateLimitError | RateLimited):
            self._throttled[key] = max(self._throttled.get(key, float("-inf")), until)
        log.warning(
            "Azure OpenAI backend %s cools for %.3f s for deployment %s (%s)",
            name,
            seconds,
            deployment,
            _describe(error),
        )
        return True

    def route(
        self,
        deployment: str,
        *,
        retries: bool = True,
        pinned: str | None = None,
        operation: str | None = None,
        max_wait: float | None = None,
    ) -> Route:
        """One call's way through the backends. `retries=False`: no attempt uses the SDK's
        retries (queue jobs, which never sleep on the service's behalf). `pinned`: only that
        backend, whatever the priorities say (a stored response lives on the account that
        created it): a cooling one is waited for, never passed over. `operation`: the GenAI
        operation (chat | embeddings | responses) its attempts' spans are named by (the
        metered call's; unset, a span is named by the deployment alone). `max_wait`: an
        interactive call, which never sleeps longer than that on the service's behalf: when
        every backend cools for longer it is refused at once (`Cooling`), and its last attempt
        retries as the SDK would only while the sleeps fit (shared/aoai/patience.py)."""
        return Route(self, deployment, retries, pinned, operation, max_wait)


class Route:
    """One call: `await route.send(call)`; `route.backend` names the backend that answered
    (or whose error was raised), for the usage record. Each attempt is a CLIENT span and
    counts in app.upstream.requests; a move to the next backend in app.upstream.spillovers."""

    def __init__(
        self,
        backends: Backends,
        deployment: str,
        retries: bool,
        pinned: str | None = None,
        operation: str | None = None,
        max_wait: float | None = None,
    ) -> None:
        self._backends = backends
        self._max_wait = max_wait
        self.deployment = deployment
        self._retries = retries
        self._pinned = pinned
        self.operation = operation
        self.backend: str | None = None

    async def send(self, call: Callable[[Target], Awaitable[T]]) -> T:
        if self._pinned is not None:
            try:
                order = [self._backends.get(self._pinned)]
            except KeyError:  # AOAI_BACKENDS no longer lists it
                raise NoBackend(self.deployment) from None
            # Its cooldown is the service's own retry-after (or AOAI_BACKEND_COOLDOWN_SECONDS);
            # the caller's deadline, if any, bounds the wait from outside.
            waiting = self._backends.cooling_for(self._pinned, self.deployment)
            if waiting > 0:
                self._impatient(self._backends.throttled_for(self._pinned, self.deployment))
                await asyncio.sleep(waiting)
        else:
            order = self._backends.candidates(self.deployment)
            # All cooling: the first to end gets the call now; not when a 429 asked for a
            # wait longer than the call may take (a 5xx cooldown is tried as before).
            self._impatient(self._backends.throttled_for(order[0].name, self.deployment))
        refused: list[tuple[str, openai.OpenAIError]] = []
        for index, backend in enumerate(order):
            last = index == len(order) - 1
            name = backend.deployment_for(self.deployment)
            if name is None:  # a pinned backend that no longer serves it (AOAI_BACKENDS)
                raise NoBackend(self.deployment)
            patient = last and self._retries and self._max_wait is not None
            client = backend.client if last and self._retries and not patient else backend.direct
            target = Target(backend.name, name, client)
            self.backend = backend.name
            self._backends.picked(backend)

            async def attempt(retried: int = 0, target: Target = target) -> T:
                if retried:  # as the SDK's own retries say (x-stainless-retry-count)
                    retry = {patience.RETRY_COUNT: str(retried)}
                    target = Target(target.backend, target.deployment, target.client, retry)
                with tracing.upstream_span(
                    self.operation, self.deployment, target.backend, target.client
                ):
                    return await call(target)

            try:
                if patient and self._max_wait is not None:
                    return await patience.attempts(
                        attempt, retries=backend.client.max_retries, max_wait=self._max_wait
                    )
                return await attempt()
            except openai.OpenAIError as error:
                if not self._backends.cool(backend.name, self.deployment, error):
                    raise
                refused.append((backend.name, error))
                if last:
                    raise self._answer(refused) from None
                log.info(
                    "deployment %s: backend %s refused; trying %s",
                    self.deployment,
                    backend.name,
                    order[index + 1].name,
                )
                tracing.spilled(backend.name, order[index + 1].name)
        raise AssertionError("unreachable: candidates() is never empty")

    def _impatient(self, waiting: float) -> None:
        """Refuse an interactive call at once rather than wait `waiting` seconds past its
        `max_wait`."""
        if self._max_wait is not None and waiting > self._max_wait:
            raise Cooling(self.deployment, waiting)

    def _answer(self, refused: list[tuple[str, openai.OpenAIError]]) -> openai.OpenAIError:
        """What the caller sees when every backend refused: the 429 with the shortest
        retry-after if any backend said 429 (the caller's SDK waits that long), else the
        last error."""
        limited = [
            (retry_after_seconds(e.response.headers), name, e)
            for name, e in refused
            if isinstance(e, openai.RateLimitError)
        ]
        if not limited:
            self.backend, error = refused[-1]
            return error
        _, self.backend, error = min(
            limited, key=lambda found: float("inf") if found[0] is None else found[0]
        )
        return error


def _describe(error: BaseException) -> str:
    if isinstance(error, openai.APIStatusError):
        return f"HTTP {error.status_code}"
    if isinstance(error, AppError):
        return error.code
    return type(error).__name__
