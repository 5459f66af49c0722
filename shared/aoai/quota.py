"""Client-side pacing of Azure OpenAI calls: one `DeploymentLimiter` per backend and
deployment, per process (`Limiters`).

A limiter keeps a log of what it sent as Azure counts a deployment's quota, on arrival: each
request's estimated prompt tokens plus `max_tokens` in a sliding window of a minute, and the
request itself in Azure's shorter request window and a one-second window that spreads starts.
`acquire()` waits for room (at most `max_wait`); a `Reservation` (shared/aoai/reservation.py)
settles each request to what the service charged; `observe()` reads the
`x-ratelimit-remaining-*` headers, books what other hosts spent as entries spread over the time
since the previous answer, and learns a quota that is not configured; `throttled()` pauses the
process for a 429's retry-after. Calls a person waits for book their charge with
`interactive()` without waiting; a job acquires with
`job=True` and is held under the quota (tokens and requests) less the headroom those calls need
(shared/aoai/priority.py). With a `QuotaShare`, a job's request is also taken from the
instances' ledger in Cosmos DB (shared/aoai/quota_share.py), and what the process sends is
reported to it.

How calls and jobs use it (the 429 and retry policy): docs/jobs.md#rate-limits-and-retries;
what it achieves, measured: docs/performance.md.

Not thread-safe: one event loop per process (the Functions Python worker) uses it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from shared.aoai.priority import HeadroomPolicy, InteractiveRate
from shared.aoai.quota_ledger import Quota
from shared.aoai.quota_share import QuotaShare
from shared.aoai.usage_window import Entry, UsageWindow
from shared.telemetry import record as metrics

log = logging.getLogger(__name__)

TOKEN_WINDOW = 60.0
REQUEST_WINDOW = 10.0
TOKEN_MARGIN = 0.5  # seconds an entry outlives its window: 0.8 % of a minute
REQUEST_MARGIN = 0.1  # 1 % of a 10 s window
DECREASE = 0.7  # rate factor kept after a 429
RECOVERY_PER_SECOND = 0.005  # rate factor regained per second: 0.7 -> 1.0 in a minute
MIN_FACTOR = 0.05
DEFAULT_PAUSE = 1.0  # a 429 without retry-after
MIN_SLEEP = 0.001


def _header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:  # a plain dict with other casing; httpx.Headers ignores case itself
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    try:
        number = int(float(value)) if value is not None else None
    except (ValueError, OverflowError):
        return None
    return number if number is not None and number >= 0 else None  # Azure sends -1 at times


def _learnt(
    known: int | None,
    headers: Mapping[str, str],
    unit: str,
    remaining: int | None,
    window: UsageWindow,
) -> int | None:
    """A limit not configured: the service's `x-ratelimit-limit-*` if sent, else the most
    ever seen free plus counted at once (a lower bound while others spend the quota too)."""
    stated = _header(headers, f"x-ratelimit-limit-{unit}")
    if stated is not None and stated > 0:
        return stated
    if remaining is None:
        return known
    seen = remaining + window.total
    return max(seen, known or 0) or None


class DeploymentLimiter:
    """Tokens and requests per minute for one deployment, as seen from one process.

    `tpm` / `rpm` are the deployment's quota; None means unknown: learnt from the
    `x-ratelimit-*` headers (until then nothing is held back but 429 pauses).
    """

    def __init__(
        self,
        tpm: int | None,
        rpm: int | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        name: str = "",
        minute: float = 60.0,
        deployment: str = "",
        backend: str | None = None,
        headroom: HeadroomPolicy | None = None,
        share: QuotaShare | None = None,
    ) -> None:
        self.name = name
        self._share = share  # the instances' ledger in Cosmos DB (None: this process alone)
        # app.limiter.* attributes, built once; callers waiting in acquire (the gauge's value).
        self._attributes = metrics.limiter_attributes(deployment or name, backend or "primary")
        self._waiting = 0
        self._clock = clock
        self._sleep = sleep
        # Azure's quota minute. Tests and benchmarks shorten it (AOAI_QUOTA_WINDOW_SECONDS)
        # together with the simulator's window; every duration below scales with it.
        self.minute = minute
        scale = minute / 60.0
        self._recovery_per_second = RECOVERY_PER_SECOND / scale
        self._tpm = tpm
        # The service's unit is requests per 10 s window; learnt limits arrive in that unit.
        self._per_window: int | None = None if rpm is None else max(1, rpm // 6)
        self._learn_tokens, self._learn_requests = tpm is None, rpm is None
        self._tokens = UsageWindow(TOKEN_WINDOW * scale, TOKEN_MARGIN * scale)
        self._requests = UsageWindow(REQUEST_WINDOW * scale, REQUEST_MARGIN * scale)
        # Smoothing only, no service counter to match: it needs no margin, costs no throughput.
        self._second = UsageWindow(1.0 * scale, 0.0)
        self._paused_until = -math.inf
        self._factor = 1.0
        self._factor_at = clock()
        self._cut_until = -math.inf  # 429s of one burst cut the rate once
        self._seen_until: float | None = None  # stamp of the last reservation settled
        self._policy = headroom or HeadroomPolicy()
        self._interactive = InteractiveRate(minute, clock())
        self._interactive_requests = InteractiveRate(minute, clock())

    # --- what the caller asks -----------------------------------------------------------

    @property
    def share(self) -> QuotaShare | None:
        """This process's share of the instances' ledger for the deployment, if any."""
        return self._share

    async def aclose(self) -> None:
        """Hand this process's hold back to the ledger (the instance stops)."""
        if self._share is not None:
            await self._share.aclose(self._quota())

    @property
    def rate_factor(self) -> float:
        """The share of the quota allowed now (1.0 until a 429, then recovering)."""
        return self._recover(self._clock())

    @property
    def token_limit(self) -> int | None:
        """Tokens per minute this limiter allows now, or None when unknown."""
        return None if self._tpm is None else self._scaled(self._tpm, self.rate_factor)

    @property
    def request_limit(self) -> int | None:
        """Requests per 10 s window this limiter allows now, or None when unknown."""
        if self._per_window is None:
            return None
        return self._scaled(self._per_window, self.rate_factor)

    @property
    def headroom(self) -> int:
        """Tokens a job's acquisition leaves free now for interactive calls (0: none)."""
        return self._policy.headroom(self._interactive.per_minute(self._clock()))

    @property
    def request_headroom(self) -> int:
        """Requests a job's acquisition leaves free now in the service's request window."""
        now = self._clock()
        per_window = self._interactive_requests.per_minute(now) * REQUEST_WINDOW / TOKEN_WINDOW
        return self._policy.requests(self._interactive.per_minute(now), per_window)

    def delay_for(self, tokens: int, *, job: bool = False) -> float:
        """Seconds until a request charged `tokens` would fit (0.0: now). Reserves nothing.
        `job`: a job's request, which fits only under the quota less the headroom."""
        now = self._clock()
        self._expire(now)
        factor = self._recover(now)
        waits = [self._paused_until - now]
        if self._share is not None and self._share.available:
            waits.append(self._share.delay())
        if self._tpm is not None:
            limit = self._scaled(self._tpm, factor)
            if job:
                limit = max(1, limit - self.headroom)
            waits.append(self._tokens.delay(now, tokens, limit))
        if self._per_window is not None:
            per_window = self._scaled(self._per_window, factor)
            room = max(1, per_window - self.request_headroom) if job else per_window
            waits.append(self._requests.delay(now, 1, room))
            waits.append(self._second.delay(now, 1, math.ceil(per_window / 10)))
        return max(0.0, *waits)

    async def acquire(
        self, tokens: int, *, max_wait: float, within: float | None = None, job: bool = False
    ) -> bool:
        """Wait for room, then reserve `tokens` and one request.

        False (nothing reserved) when room would come later than `max_wait` seconds from now,
        or later than `within` seconds from the call (default: `max_wait`); the caller sends
        the work back with a delay instead of holding the invocation. While others take the
        room as it comes (the process's other jobs, other instances), a request waits its turn
        as long as each turn is due within `max_wait`: room that flows is not a quota that is
        gone. `job`: room under the quota less the interactive headroom
        (shared/aoai/priority.py).
        """
        deadline = self._clock() + (max_wait if within is None else within)
        started, queued = time.perf_counter(), False
        try:
            while (delay := self.delay_for(tokens, job=job)) > 0.0:
                if delay > max_wait or self._clock() + delay > deadline:
                    return False
                if not queued:  # app.limiter.queue_depth while it waits, wait.duration after
                    queued = True
                    self._queue(+1)
                await self._sleep(max(delay, MIN_SLEEP))
        finally:
            if queued:
                self._queue(-1)
                metrics.record_limiter_wait(self._attributes, time.perf_counter() - started)
        return await self._shared(tokens, max_wait, deadline, job)

    async def _shared(self, tokens: int, max_wait: float, deadline: float, job: bool) -> bool:
        """Room here: take the request from the instances' ledger too (waiting for room
        there as `acquire` waits, until `deadline`), then reserve it. The ledger away: this
        process alone."""
        quota = self._quota()
        if self._share is not None and quota is not None:
            taken = await self._share.take(
                tokens,
                quota,
                max_wait=max_wait,
                within=max(0.0, deadline - self._clock()),
                headroom=(self.headroom, self.request_headroom) if job else (0, 0),
                policy=self._policy if job and self._policy.enabled else None,
            )
            if taken is False:
                return False
        self._reserve(tokens)
        return True

    def _quota(self) -> Quota | None:
        """The quota as the ledger counts it; None while the token quota is unknown."""
        if self._tpm is None:
            return None
        return Quota(
            tokens=self._tpm,
            requests=self._per_window,
            token_window=TOKEN_WINDOW * self.minute / 60.0,
            request_window=REQUEST_WINDOW * self.minute / 60.0,
            scale=self.minute / 60.0,
        )

    def _shared_usage(
        self, tokens: int, requests: int, stamp: float | None = None, *, interactive: bool = False
    ) -> None:
        """Usage the ledger has not taken from a hold (a person's call, a correction):
        reported with this instance's next round trip. `stamp`: when it was sent (clock)."""
        quota = self._quota()
        if self._share is None or quota is None or (tokens == 0 and requests == 0):
            return
        ago = 0.0 if stamp is None else max(0.0, self._clock() - stamp)
        self._share.sent(tokens, quota, requests=requests, ago=ago, interactive=interactive)

    def interactive(self, tokens: int) -> Interactive:
        """Book a call a person waits for, charged `tokens`, as it goes out: never waits (it
        sees the whole quota; the service's 429 is the only refusal it meets) and counts in
        the recent interactive use that jobs leave headroom for. `Interactive.refused()`
        takes it back when the service refused it."""
        now = self._clock()
        self._expire(now)
        self._interactive.add(now, tokens)
        self._interactive_requests.add(now, 1)
        booked = (
            self._tokens.add(now, tokens, settled=True),
            self._requests.add(now, 1, settled=True),
            self._second.add(now, 1, settled=True),
        )
        self._shared_usage(tokens, 1, interactive=True)
        return Interactive(self, tokens, booked)

    def _unbook(self, booking: Interactive) -> None:
        now = self._clock()
        self._expire(now)
        self._interactive.remove(now, booking.tokens)
        self._interactive_requests.remove(now, 1)
        for window, entry in zip(
            (self._tokens, self._requests, self._second), booking.entries, strict=True
        ):
            window.void(now, entry)
        self._shared_usage(-booking.tokens, -1, booking.entries[0].stamp, interactive=True)

    def _queue(self, change: int) -> None:
        self._waiting += change
        metrics.record_queue_depth(self._attributes, self._waiting)

    def settle(self, reserved: int, used: int) -> None:
        """Correct a reservation of `reserved` tokens to what the service charged, `used`.

        Azure charges the estimate made on arrival (prompt + `max_tokens`) and does not give
        unused `max_tokens` back, so for chat `used` is usage.prompt_tokens + max_tokens; for
        embeddings it is usage.prompt_tokens. A 429 was not charged: settle it to 0. A call
        that failed without an answer (timeout) may have been charged: leave it. A reservation
        that has left the window is forgotten (nothing to correct).
        """
        now = self._clock()
        self._expire(now)
        stamp = self._tokens.settle(reserved, max(0, used))
        if stamp is not None:
            self._seen_until = stamp
            # The ledger too: the request reached the service before its answer came, so it
            # is booked again at the answer, at what was charged, and the booking made as it
            # went out is taken back (a refused or unsent request was no request at all).
            self._shared_usage(-reserved, -1, stamp)
            if used > 0:
                self._shared_usage(used, 1)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Take the service's `x-ratelimit-remaining-*` as the truth about the quota.

        Whatever the service counts beyond this process's own log was spent by someone else
        (another host): it is booked as phantom entries that age out like ours. Call it after
        `settle()` for the same response: then reservations made after that request went out
        (not yet counted by the service) are told apart from others' usage. Accepts any
        mapping; names are matched without regard to case.
        """
        now = self._clock()
        self._expire(now)
        remaining_tokens = _header(headers, "x-ratelimit-remaining-tokens")
        remaining_requests = _header(headers, "x-ratelimit-remaining-requests")
        if self._learn_tokens:
            self._tpm = _learnt(self._tpm, headers, "tokens", remaining_tokens, self._tokens)
        if self._learn_requests:
            self._per_window = _learnt(
                self._per_window, headers, "requests", remaining_requests, self._requests
            )
        if remaining_tokens is not None and self._tpm is not None:
            self._tokens.reconcile(now, self._tpm - remaining_tokens, self._seen_until)
        if remaining_requests is not None and self._per_window is not None:
            counted = self._per_window - remaining_requests
            self._requests.reconcile(now, counted, self._seen_until)

    def throttled(self, retry_after: float | None) -> None:
        """A 429: nobody in this process sends before `retry_after` seconds.

        Without a retry-after the service said nothing of when room returns: then the rate is
        cut too, once for the 429s of one burst (all sent before the first came back).
        """
        now = self._clock()
        pause = DEFAULT_PAUSE if retry_after is None else max(0.0, retry_after)
        self._paused_until = max(self._paused_until, now + pause)
        if retry_after is not None or now < self._cut_until:
            return
        self._factor = max(MIN_FACTOR, self._recover(now) * DECREASE)
        self._factor_at = now
        self._cut_until = now + max(pause, DEFAULT_PAUSE)
        log.warning(
            "429 from deployment %s: pausing %.3f s, rate cut to %.2f of quota",
            self.name or "?",
            pause,
            self._factor,
        )

    # --- bookkeeping --------------------------------------------------------------------

    def _reserve(self, tokens: int) -> None:
        now = self._clock()
        self._tokens.add(now, tokens)
        self._requests.add(now, 1)
        self._second.add(now, 1)

    def _expire(self, now: float) -> None:
        self._tokens.expire(now)
        self._requests.expire(now)
        self._second.expire(now)

    def _recover(self, now: float) -> float:
        if self._factor < 1.0:
            elapsed = max(0.0, now - self._factor_at)
            self._factor = min(1.0, self._factor + elapsed * self._recovery_per_second)
        self._factor_at = now
        return self._factor

    @staticmethod
    def _scaled(limit: int, factor: float) -> int:
        return max(1, math.floor(limit * factor))


@dataclass
class Interactive:
    """An interactive call's booking (`DeploymentLimiter.interactive`)."""

    limiter: DeploymentLimiter
    tokens: int
    entries: tuple[Entry, Entry, Entry]
    taken_back: bool = False

    def refused(self) -> None:
        """The service refused the call (429): it was not charged."""
        if not self.taken_back:
            self.taken_back = True
            self.limiter._unbook(self)
