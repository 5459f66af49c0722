"""One instance's share of a deployment's quota, taken from the ledger every instance of the app
keeps in Cosmos DB (shared/aoai/quota_ledger.py): the instances together send no more than the
quota, and none leaves room unused that another is waiting for.

A job's request is taken from this instance's hold when the hold still has room; else one
store round trip reports what the instance sent since the last one, hands back the unused rest
of its hold, and takes a new hold of up to what the instance sent over the last hold period
(at least the request at hand) from the room the ledger has. With no room, the ledger says
when the request would fit, and the job waits that long (or hands its work on, as with the
local limiter). Calls a person waits for never wait here: they are reported as sent.

When Cosmos DB fails or a round trip takes longer than `timeout`, the instance falls back to
its own limiter, fed by the service's rate-limit headers (shared/aoai/quota.py), for
`OPEN_SECONDS` (Azure seconds: a compressed minute shortens them), and then tries the ledger
again; what it sent meanwhile is reported then, so the others see it.
Nothing ever stops on the ledger.

Not thread-safe: one event loop per process uses it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from azure.core.exceptions import AzureError
from azure.cosmos.exceptions import CosmosAccessConditionFailedError

from shared.aoai.priority import HeadroomPolicy
from shared.aoai.quota_ledger import Grant, Ledger, Quota
from shared.core.store import QUOTA_LEDGER, Store

log = logging.getLogger(__name__)

OPEN_SECONDS: Final = 10.0  # Azure seconds the ledger is left alone after Cosmos DB failed
ETAG_RETRIES: Final = 8
FLUSH_AFTER_HOLDS: Final = 1.0  # report unreported sends this many holds after the first
# What the host logs as the ledger goes away and comes back (soak/checks.py looks for them).
FELL_BACK: Final = "Cosmos DB failed"
SHARED_AGAIN: Final = "Cosmos DB answers again; pacing is shared"


@dataclass
class LedgerStats:
    """What the ledger cost this instance: store round trips, by kind, and the bytes moved
    (Cosmos DB charges a point read 1 RU per KB; docs/performance.md has the write figure)."""

    reads: int = 0
    writes: int = 0
    conflicts: int = 0
    failures: int = 0
    grants: int = 0
    refusals: int = 0
    taken: int = 0  # requests taken from a hold
    fallback: int = 0  # requests sent while the ledger was away
    doc_bytes: int = 0  # of the last document written

    @property
    def round_trips(self) -> int:
        return self.reads + self.writes + self.conflicts

    def line(self, doc_id: str) -> str:
        """One log line (bench/_ledger.py reads it back from the host's log)."""
        return (
            f"quota ledger {doc_id}: round_trips={self.round_trips} reads={self.reads} "
            f"writes={self.writes} conflicts={self.conflicts} failures={self.failures} "
            f"grants={self.grants} refusals={self.refusals} taken={self.taken} "
            f"fallback={self.fallback} doc_bytes={self.doc_bytes}"
        )


@dataclass
class QuotaShare:
    """This instance's hold on one deployment's ledger (one per `DeploymentLimiter`)."""

    store: Store
    doc_id: str
    instance: str
    timeout: float
    open_seconds: float = OPEN_SECONDS
    clock: Callable[[], float] = time.time
    stats: LedgerStats = field(default_factory=LedgerStats)
    # The hold: what is left to send of it, and until when.
    _tokens: int = 0
    _requests: int = 0
    _until: float = 0.0
    # Sent and not yet reported, by ledger slot (tokens, requests, and the interactive part of
    # each); applied ones are subtracted after a write.
    _unreported: dict[int, list[int]] = field(default_factory=dict)
    _recent: deque[tuple[float, int]] = field(default_factory=deque)  # (stamp, tokens) taken
    _doc: dict[str, Any] | None = None  # the last one read or written, with its _etag
    _down_until: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _flush: asyncio.Task[None] | None = None
    _next_room: float = 0.0  # epoch seconds the ledger last said room would come
    _degraded: bool = False  # Cosmos DB failed and has not answered since

    @property
    def available(self) -> bool:
        """False while the instance runs on its own limiter (Cosmos DB failed lately)."""
        return time.monotonic() >= self._down_until

    def delay(self) -> float:
        """Seconds until the ledger last said room would come (0 once passed)."""
        return max(0.0, self._next_room - self.clock())

    async def take(
        self,
        tokens: int,
        quota: Quota,
        *,
        max_wait: float,
        within: float | None = None,
        headroom: tuple[int, int] = (0, 0),
        policy: HeadroomPolicy | None = None,
    ) -> bool | None:
        """Take one request of `tokens` from the hold, renewing it from the ledger as needed
        and waiting for room while it comes within `max_wait` seconds, `within` seconds in
        all (default: `max_wait`). True: taken (and reported as sent now); False: no room that
        soon; None: the ledger is away, the caller goes on alone.
        A job's request passes its `policy`: the hold then leaves free the headroom it gives
        every instance's interactive use in the ledger, and at least `headroom`."""
        deadline = time.monotonic() + (max_wait if within is None else within)
        while True:
            if not self.available:
                self.stats.fallback += 1
                return None
            async with self._lock:
                if self._from_hold(tokens, quota):
                    return True
                if time.monotonic() < self._down_until:  # the round trip it queued behind failed
                    self.stats.fallback += 1
                    return None
                # The ledger said lately when room would come: no round trip before that.
                wait = self._next_room - self.clock()
                if wait <= 0.0:
                    grant = await self._sync(
                        quota, need=(tokens, 1), headroom=headroom, policy=policy
                    )
                    if grant is None:
                        self.stats.fallback += 1
                        return None
                    if self._from_hold(tokens, quota):
                        return True
                    wait = grant.wait
            # Spread a little, so instances waiting for the same room do not all ask at once.
            wait += random.uniform(0.0, quota.slot / 4)  # noqa: S311 - jitter, not a secret
            if wait > max_wait or time.monotonic() + wait > deadline:
                return False
            await asyncio.sleep(wait)

    def sent(
        self,
        tokens: int,
        quota: Quota,
        *,
        requests: int = 1,
        ago: float = 0.0,
        interactive: bool = False,
    ) -> None:
        """Calls outside any hold (a person's, which never waits: `interactive`), or a
        correction (negative too) to what was sent `ago` seconds back: reported with the next
        round trip, which comes within a hold period."""
        self._book(self.clock() - ago, tokens, requests, quota, interactive=interactive)
        self._schedule_flush(quota)

    async def aclose(self, quota: Quota | None) -> None:
        """The instance stops: report what it sent and hand its hold back (best effort, within
        the timeout), then log what the ledger cost it."""
        if self._flush is not None:
            self._flush.cancel()
        if quota is not None and self.available and (self._unreported or self._tokens):
            async with self._lock:
                await self._sync(quota, need=(0, 0))
        log.info("%s", self.stats.line(self.doc_id))

    # --- the hold -----------------------------------------------------------------------

    def _from_hold(self, tokens: int, quota: Quota) -> bool:
        now = self.clock()
        # A slot of margin: the hold ends in the others' view at `until` by their clocks.
        if now >= self._until - quota.slot or self._tokens < tokens or self._requests < 1:
            return False
        self._tokens -= tokens
        self._requests -= 1
        self.stats.taken += 1
        self._book(now, tokens, 1, quota)
        self._recent.append((now, tokens))
        return True

    def _book(
        self, now: float, tokens: int, requests: int, quota: Quota, *, interactive: bool = False
    ) -> None:
        cell = self._unreported.setdefault(quota.slot_of(now), [0, 0, 0, 0])
        cell[0] += tokens
        cell[1] += requests
        if interactive:
            cell[2] += tokens
            cell[3] += requests

    def _asks(self, quota: Quota, need: tuple[int, int]) -> tuple[int, int]:
        """What to hold next: what this instance took over the last hold period (its pace),
        at most the deployment's whole quota over a hold, and at least `need`."""
        now = self.clock()
        while self._recent and self._recent[0][0] <= now - quota.hold:
            self._recent.popleft()
        pace_tokens = sum(t for _, t in self._recent)
        share = quota.hold / quota.token_window
        tokens = min(pace_tokens, int(quota.tokens * share))
        requests = len(self._recent)
        if quota.requests is not None:
            per_hold = quota.requests * quota.hold / quota.request_window
            requests = min(requests, max(1, int(per_hold)))
        return max(tokens, need[0]), max(requests, need[1])

    # --- the store ----------------------------------------------------------------------

    async def _sync(
        self,
        quota: Quota,
        *,
        need: tuple[int, int],
        headroom: tuple[int, int] = (0, 0),
        policy: HeadroomPolicy | None = None,
    ) -> Grant | None:
        """Report, hand back the rest of the hold and take a new one; None when Cosmos DB
        failed (the instance is then on its own for OPEN_SECONDS)."""
        ask = (0, 0) if need == (0, 0) else self._asks(quota, need)
        try:
            return await self._write(quota, need, ask, headroom, policy)
        except (AzureError, TimeoutError) as error:
            self.stats.failures += 1
            # In Azure seconds: tests and benchmarks compress the quota's minute.
            away = self.open_seconds * quota.scale
            self._down_until = time.monotonic() + away
            self._degraded = True
            self._doc = None
            self._tokens = self._requests = 0
            log.warning(
                "quota ledger %s: %s (%s); this instance paces the deployment on its own "
                "limiter for %gs",
                self.doc_id,
                FELL_BACK,
                type(error).__name__,
                away,
            )
            return None

    async def _write(
        self,
        quota: Quota,
        need: tuple[int, int],
        ask: tuple[int, int],
        headroom: tuple[int, int],
        policy: HeadroomPolicy | None,
    ) -> Grant:
        for _ in range(ETAG_RETRIES):
            fresh = self._doc is None
            if self._doc is None:
                self.stats.reads += 1
                async with asyncio.timeout(self.timeout):
                    self._doc = await self.store.read(QUOTA_LEDGER, self.doc_id, self.doc_id)
            now = self.clock()
            ledger = Ledger.of(self.doc_id, self._doc)
            held = self.instance in ledger.holds
            applied = {slot: tuple(cell) for slot, cell in self._unreported.items()}
            ledger.report(applied)
            ledger.prune(now, quota)
            room = headroom
            if policy is not None:
                everyone = ledger.headroom(now, quota, policy)
                room = (max(room[0], everyone[0]), max(room[1], everyone[1]))
            grant = ledger.grant(self.instance, now, quota, need=need, ask=ask, headroom=room)
            if not grant.tokens and not applied and not held:
                # Nothing to write: no room, nothing to report, no hold to hand back. Decided
                # on a fresh read (one RU), never on the copy of an earlier round trip.
                if not fresh:
                    self._doc = None
                    continue
                self._next_room = now + grant.wait if need != (0, 0) else 0.0
                self.stats.refusals += need != (0, 0)
                return grant
            body = ledger.doc()
            stored = await self._store(body)
            if stored is None:
                continue
            self._doc = stored
            self.stats.doc_bytes = len(json.dumps(body))
            for slot, amounts in applied.items():
                cell = self._unreported[slot]
                for n, amount in enumerate(amounts):
                    cell[n] -= amount
                if not any(cell):
                    del self._unreported[slot]
            self._tokens, self._requests, self._until = grant.tokens, grant.requests, grant.until
            self._next_room = 0.0 if grant.tokens else now + grant.wait
            if grant.tokens:
                self.stats.grants += 1
                self._schedule_flush(quota)
            elif need != (0, 0):
                self.stats.refusals += 1
            self._down_until = 0.0
            if self._degraded:
                self._degraded = False
                log.info("quota ledger %s: %s", self.doc_id, SHARED_AGAIN)
            return grant
        # Instances kept writing first: no room this time, ask again after a slot.
        self._doc = None
        return Grant(0, 0, self.clock(), quota.slot)

    async def _store(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """Create or replace under the ETag of the copy last seen; None when another
        instance wrote first (the copy is dropped, the caller reads again)."""
        self.stats.writes += 1
        async with asyncio.timeout(self.timeout):
            if self._doc is None:
                stored = await self.store.create(QUOTA_LEDGER, body)
            else:
                try:
                    stored = await self.store.replace_if_unchanged(
                        QUOTA_LEDGER, body, self._doc["_etag"]
                    )
                except CosmosAccessConditionFailedError:
                    stored = None
        if stored is None:
            self.stats.writes -= 1
            self.stats.conflicts += 1
            self._doc = None
        return stored

    def _schedule_flush(self, quota: Quota) -> None:
        """Report sends and hand back an unused hold within a hold period, even when nothing
        else asks the ledger: the others then count what was really sent, not the hold."""
        if self._flush is not None and not self._flush.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._flush = loop.create_task(self._flush_later(quota))

    async def _flush_later(self, quota: Quota) -> None:
        while True:
            await asyncio.sleep(quota.hold * FLUSH_AFTER_HOLDS)
            async with self._lock:
                if not self.available:
                    continue
                if self.clock() < self._until - quota.slot and self._tokens > 0:
                    continue  # the hold is still in use: its renewal reports
                if not self._unreported and self._tokens == 0 and self._until <= self.clock():
                    return
                await self._sync(quota, need=(0, 0))
                if not self._unreported:
                    return


def instance_id() -> str:
    """This process's name in the ledgers: the App Service instance with a random suffix
    (one instance may run several worker processes)."""
    host = os.environ.get("WEBSITE_INSTANCE_ID", "")[:12]
    return f"{host}-{uuid.uuid4().hex[:8]}" if host else uuid.uuid4().hex[:12]
