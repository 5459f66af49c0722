"""The per-caller token limit (`CHAT_CALLER_TPM`): one caller cannot spend the whole quota.

A call reserves its estimate (prompt characters / 4 plus its max tokens; embeddings: input
characters / 4) before it goes upstream and settles to the tokens Azure reported afterwards.
Past the limit the call is refused with 429 and `Retry-After`, and nothing goes upstream. It
stops one key, tag or user from draining a deployment; it is not billing.

Two scopes (`CHAT_CALLER_LIMIT_SCOPE`):

- `shared` (default): fixed one-minute buckets per caller in the Cosmos DB container
  `caller_minutes` (id `{sha256(caller)[:32]}:{minute}`, partition `/id`), changed under
  their ETag, so every instance counts against the same minute. Expired buckets go by the
  container's `defaultTtl` in Azure (the local Cosmos DB server has no TTL and keeps them).
  A caller far under its limit (after the booking, at most half of it) books a little more
  than its call needs, a *credit* of `CREDIT_SHARE` of the limit, and spends it on later
  calls in the same minute without a round trip; what a call books but does not use goes
  back to that credit, the rest of it back to the bucket. So the bucket may run ahead of
  what was really spent by at most one credit per instance: with N instances a caller may
  be refused up to N x 5% early, and it is never let past the limit by the credit. If Cosmos
  DB does not answer (`LIMIT_DEADLINE_SECONDS`), calls pass unchecked for `OPEN_SECONDS`
  and a warning is logged: availability first.
- `instance`: a sliding 60 s window in each instance's memory; with N instances a caller
  may spend N times the limit.

Either way one call may always use a whole minute (its booking is capped at the limit), and
a call whose real usage exceeds its estimate is counted at what it used.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from azure.core.exceptions import AzureError
from azure.cosmos.exceptions import CosmosAccessConditionFailedError

from shared.core.errors import RateLimited
from shared.core.store import CALLER_MINUTES, Store

log = logging.getLogger(__name__)

WINDOW_SECONDS: Final = 60.0
CREDIT_SHARE: Final = 0.05
LIMIT_DEADLINE_SECONDS: Final = 2.0
OPEN_SECONDS: Final = 10.0
ETAG_RETRIES: Final = 16
# Callers remembered per instance before stale minutes are swept.
SWEEP_AT: Final = 1024


@dataclass
class Booking:
    """One call's reservation: settle it with what the call really used."""

    caller: str
    tokens: int
    minute: int = 0
    entry: list[float] | None = None  # the instance window's entry


class CallerLimiter(Protocol):
    @property
    def enabled(self) -> bool: ...

    async def reserve(self, caller: str, tokens: int) -> Booking | None:
        """Book `tokens` for `caller`, or raise 429 with the wait until they fit."""

    async def settle(self, booking: Booking | None, tokens: int) -> None:
        """Replace a booking by what the call really used."""


def _refused(limit: int, wait: float) -> RateLimited:
    return RateLimited(f"this caller may use {limit} tokens a minute", retry_after=wait)


class InstanceCallerLimiter:
    """Tokens per minute per caller in this instance's memory (a sliding 60 s window)."""

    def __init__(self, tokens_per_minute: int, clock: Callable[[], float] = time.monotonic):
        self._limit = tokens_per_minute
        self._clock = clock
        self._spent: dict[str, deque[list[float]]] = {}

    @property
    def enabled(self) -> bool:
        return self._limit > 0

    def _window(self, caller: str) -> deque[list[float]]:
        now = self._clock()
        window = self._spent.setdefault(caller, deque())
        while window and window[0][0] <= now - WINDOW_SECONDS:
            window.popleft()
        if not window:
            self._spent.pop(caller, None)
            window = self._spent.setdefault(caller, deque())
        return window

    async def reserve(self, caller: str, tokens: int) -> Booking | None:
        if not self.enabled:
            return None
        window = self._window(caller)
        used = sum(entry[1] for entry in window)
        tokens = min(tokens, self._limit)
        if used + tokens > self._limit:
            # The earliest moment enough of the window has aged out.
            need, freed, wait = used + tokens - self._limit, 0.0, WINDOW_SECONDS
            for stamp, spent in window:
                freed += spent
                if freed >= need:
                    wait = stamp + WINDOW_SECONDS - self._clock()
                    break
            raise _refused(self._limit, wait)
        entry = [self._clock(), float(tokens)]
        window.append(entry)
        return Booking(caller, tokens, entry=entry)

    async def settle(self, booking: Booking | None, tokens: int) -> None:
        if booking is not None and booking.entry is not None:
            booking.entry[1] = float(tokens)


@dataclass
class _Minute:
    """What this instance knows of one caller's current bucket."""

    minute: int
    credit: int = 0  # booked in the bucket, not yet given to a call
    doc: dict[str, Any] | None = field(default=None, repr=False)  # last seen, with its _etag
    # One bucket write at a time per caller here: ETag races are then only between instances.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)


class SharedCallerLimiter:
    """Tokens per minute per caller across instances: fixed minute buckets in Cosmos DB."""

    def __init__(
        self, store: Store, tokens_per_minute: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._limit = tokens_per_minute
        self._clock = clock
        self._credit = int(tokens_per_minute * CREDIT_SHARE)
        self._minutes: dict[str, _Minute] = {}
        self._open_until = 0.0

    @property
    def enabled(self) -> bool:
        return self._limit > 0

    def _current(self, caller: str) -> _Minute:
        minute = int(self._clock() // WINDOW_SECONDS)
        known = self._minutes.get(caller)
        if known is None or known.minute != minute:
            if len(self._minutes) >= SWEEP_AT:
                self._minutes = {k: v for k, v in self._minutes.items() if v.minute == minute}
            known = self._minutes[caller] = _Minute(minute)
        return known

    async def reserve(self, caller: str, tokens: int) -> Booking | None:
        if not self.enabled:
            return None
        tokens = min(tokens, self._limit)
        state = self._current(caller)
        if state.credit >= tokens:
            state.credit -= tokens
            return Booking(caller, tokens, state.minute)
        # The credit is taken before the first await: concurrent calls must not spend it twice.
        held, state.credit = state.credit, 0
        try:
            booked = await self._guarded(caller, self._book(caller, state, tokens - held))
        except RateLimited:
            state.credit += held
            raise
        if not booked:
            state.credit += held
            return None  # Cosmos DB did not answer: unchecked
        return Booking(caller, tokens, state.minute)

    async def settle(self, booking: Booking | None, tokens: int) -> None:
        if booking is None:
            return
        state = self._minutes.get(booking.caller)
        if state is None or state.minute != booking.minute:
            return  # that minute is over: its bucket no longer limits anyone
        back = booking.tokens - tokens  # > 0: booked more than it used
        if back >= 0:
            state.credit += back
            # Keep at most one credit here; the rest goes back for every instance.
            excess = max(0, state.credit - self._credit)
            state.credit -= excess
            if excess:
                await self._guarded(booking.caller, self._add(booking.caller, state, -excess))
            return
        owed = -back
        taken = min(owed, state.credit)
        state.credit -= taken
        if owed > taken:
            await self._guarded(booking.caller, self._add(booking.caller, state, owed - taken))

    async def _guarded(self, caller: str, work: Coroutine[Any, Any, None]) -> bool:
        """Run a bucket change within LIMIT_DEADLINE_SECONDS; False (and calls unchecked for
        OPEN_SECONDS) when Cosmos DB fails. A refusal (429) passes through."""
        if self._clock() < self._open_until:
            work.close()
            return False
        try:
            async with asyncio.timeout(LIMIT_DEADLINE_SECONDS):
                await work
        except (AzureError, TimeoutError) as error:
            self._open_until = self._clock() + OPEN_SECONDS
            # Only the kind of caller key: its value is a principal, a tag or a user hash.
            log.warning(
                "caller limit: Cosmos DB failed (%s); %s and every other caller pass "
                "unchecked for %gs",
                type(error).__name__,
                caller.partition(":")[0],
                OPEN_SECONDS,
            )
            return False
        return True

    def _id(self, caller: str, minute: int) -> str:
        return f"{hashlib.sha256(caller.encode()).hexdigest()[:32]}:{minute}"

    async def _book(self, caller: str, state: _Minute, need: int) -> None:
        """Add `need` (and a credit when far under the limit) to the bucket, or raise 429."""
        async with state.lock:
            await self._book_locked(caller, state, need)

    async def _book_locked(self, caller: str, state: _Minute, need: int) -> None:
        doc_id = self._id(caller, state.minute)
        for _ in range(ETAG_RETRIES):
            doc, cached = state.doc, state.doc is not None
            if doc is None:
                doc = await self._store.read(CALLER_MINUTES, doc_id, doc_id)
            used = int(doc["tokens"]) if doc is not None else 0
            if used + need > self._limit:
                if cached:  # a refusal is decided on a fresh read, never on a cached one
                    state.doc = None
                    continue
                wait = (state.minute + 1) * WINDOW_SECONDS - self._clock()
                raise _refused(self._limit, wait)
            extra = self._credit if used + need + self._credit <= self._limit // 2 else 0
            if await self._write(doc_id, state, doc, used + need + extra):
                state.credit += extra
                return
        raise _contended(self._limit)

    async def _add(self, caller: str, state: _Minute, delta: int) -> None:
        """Add `delta` (negative: give back) to the bucket whatever the limit says."""
        doc_id = self._id(caller, state.minute)
        async with state.lock:
            for _ in range(ETAG_RETRIES):
                doc = state.doc or await self._store.read(CALLER_MINUTES, doc_id, doc_id)
                used = int(doc["tokens"]) if doc is not None else 0
                if await self._write(doc_id, state, doc, max(0, used + delta)):
                    return
        log.warning("caller limit: a bucket kept changing; %d tokens not settled", delta)

    async def _write(
        self, doc_id: str, state: _Minute, doc: dict[str, Any] | None, tokens: int
    ) -> bool:
        """Create or replace the bucket under its ETag; False when another writer came first
        (the cached copy is then dropped and the caller reads again)."""
        body = {"id": doc_id, "minute": state.minute, "tokens": tokens}
        if doc is None:
            stored = await self._store.create(CALLER_MINUTES, body)
        else:
            try:
                stored = await self._store.replace_if_unchanged(CALLER_MINUTES, body, doc["_etag"])
            except CosmosAccessConditionFailedError:
                stored = None
        state.doc = stored
        return stored is not None


def _contended(limit: int) -> RateLimited:
    """The bucket kept changing under ETAG_RETRIES writes (many instances booking for one
    caller at once): the call is refused rather than let through unchecked."""
    return RateLimited(f"this caller may use {limit} tokens a minute; busy, retry", retry_after=1)


def create_caller_limiter(store: Store, tokens_per_minute: int, scope: str) -> CallerLimiter:
    if scope == "instance":
        return InstanceCallerLimiter(tokens_per_minute)
    return SharedCallerLimiter(store, tokens_per_minute)
