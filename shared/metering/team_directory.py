"""Which team a credential names: a team key, or an Entra principal that is a member of one.

The seam the data-plane routes use (docs/teams.md): :meth:`TeamDirectory.authenticate` and
:meth:`TeamDirectory.for_principal`. Both read through an in-process cache of
`cache_seconds` (TEAM_CACHE_SECONDS), so a hot key costs no round trip, and a change made on
another instance (a revoked key, a disabled team) holds everywhere within those seconds; the
instance that made it forgets its copy at once (:meth:`forget`). Concurrent misses for one
team share one read.

When Cosmos DB fails or does not answer within `load_timeout` (TEAM_READ_TIMEOUT), a team
read within the last `stale_seconds` is used as last known (no key can be revoked while the
store is down either); one never read, or read longer ago, is a 503 (docs/security.md). With
a last known team, a read waits TEAM_STALE_READ_TIMEOUT only, and after a failed one the last
known is served for another cache period before the store is asked again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from shared.core.errors import ServiceUnavailable
from shared.metering.team_keys import key_matches, parse_key
from shared.metering.teams import Team, TeamStore

log = logging.getLogger(__name__)

TEAM_CACHE_SECONDS: Final = 5.0
# How long a team read before a Cosmos DB outage keeps serving (its keys keep working).
TEAM_STALE_SECONDS: Final = 600.0
# A point read takes milliseconds; a cold instance's first one (connection, TLS) far less than
# this. Past it, a caller gets a 503 instead of waiting out the SDK's retries.
TEAM_READ_TIMEOUT: Final = 5.0
# With a last known team to fall back on, a caller waits this long for a fresh read, not
# TEAM_READ_TIMEOUT: the answer path's other store waits (limits, usage) come on top of it.
TEAM_STALE_READ_TIMEOUT: Final = 1.0
# Unknown team ids are cached too (a made-up key must not cost a read each time), so the
# cache is bounded: past this, the oldest entry goes.
MAX_CACHED_TEAMS: Final = 4096
_ALL: Final = ""  # the cache key of the whole list (no team id is empty)

V = TypeVar("V")


@dataclass(frozen=True)
class _Entry(Generic[V]):
    value: V
    until: float  # served without a read until then
    read_at: float  # when the store last gave it: it stands in for a failed read for a while


class _TtlCache(Generic[V]):
    """Values for `seconds`, at most `max_entries`, with one load in flight per key.

    A load gets `timeout` seconds (then ServiceUnavailable), or `stale_timeout` when a value
    read within `stale_seconds` can stand in for it. A load that fails then serves that
    value, which is kept for another `seconds` before the store is asked again: during an
    outage one caller per key and period waits for the store, not every caller."""

    def __init__(
        self,
        seconds: float,
        max_entries: int,
        clock: Callable[[], float],
        stale_seconds: float = 0.0,
        *,
        timeout: float | None = None,
        stale_timeout: float | None = None,
    ) -> None:
        self._seconds = seconds
        self._stale = stale_seconds
        self._max = max_entries
        self._clock = clock
        self._timeout = timeout
        self._stale_timeout = stale_timeout
        self._entries: dict[str, _Entry[V]] = {}
        self._loading: dict[str, asyncio.Future[V]] = {}

    async def get(self, key: str, load: Callable[[], Awaitable[V]]) -> V:
        while True:
            entry = self._entries.get(key)
            if entry is not None and entry.until > self._clock():
                return entry.value
            pending = self._loading.get(key)
            if pending is None:
                break
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # this caller was cancelled
                # The caller that was loading was cancelled, not this one: load again.
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        last = self._usable(self._entries.get(key))
        try:
            value = await self._load(load, stale=last is not None)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as error:
            last = self._usable(self._entries.get(key))
            if last is not None:
                log.warning("team registry read failed (%s): last known used", type(error).__name__)
                future.set_result(last.value)
                self._put(key, last.value, read_at=last.read_at)
                return last.value
            future.set_exception(error)
            future.exception()  # waiters see it; no "never retrieved" warning without any
            raise
        else:
            future.set_result(value)
            self._put(key, value, read_at=self._clock())
            return value
        finally:
            del self._loading[key]

    def _usable(self, entry: _Entry[V] | None) -> _Entry[V] | None:
        """`entry` when it may stand in for a failed read (read within the stale window)."""
        if entry is None or entry.read_at + self._seconds + self._stale <= self._clock():
            return None
        return entry

    async def _load(self, load: Callable[[], Awaitable[V]], *, stale: bool) -> V:
        """One read of the store, bounded: a hung Cosmos DB is a 503 in seconds, not the
        SDK's own minutes (or the last known value, sooner)."""
        try:
            async with asyncio.timeout(self._stale_timeout if stale else self._timeout):
                return await load()
        except TimeoutError:
            raise ServiceUnavailable("the team registry did not answer in time") from None

    def _put(self, key: str, value: V, *, read_at: float) -> None:
        self._entries.pop(key, None)
        while len(self._entries) >= self._max:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = _Entry(value, self._clock() + self._seconds, read_at)

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)


class TeamDirectory:
    """Teams by key and by principal, cached for `cache_seconds`."""

    def __init__(
        self,
        teams: TeamStore,
        hash_secret: bytes,
        *,
        cache_seconds: float = TEAM_CACHE_SECONDS,
        max_entries: int = MAX_CACHED_TEAMS,
        stale_seconds: float = TEAM_STALE_SECONDS,
        load_timeout: float | None = TEAM_READ_TIMEOUT,
        stale_load_timeout: float | None = TEAM_STALE_READ_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._teams = teams
        self._secret = hash_secret
        bounds = {"timeout": load_timeout, "stale_timeout": stale_load_timeout}
        self._by_id: _TtlCache[Team | None] = _TtlCache(
            cache_seconds, max_entries, clock, stale_seconds, **bounds
        )
        self._all: _TtlCache[list[Team]] = _TtlCache(
            cache_seconds, 1, clock, stale_seconds, **bounds
        )

    async def authenticate(self, key: str) -> Team | None:
        """The team `key` belongs to; None for a malformed or unknown key, a revoked one, or
        a disabled team. A malformed key costs no read. Raises the store's error when Cosmos
        DB fails and the team is not cached (503 at the boundary)."""
        parsed = parse_key(key)
        if parsed is None:
            return None
        team = await self._by_id.get(parsed.team_id, lambda: self._teams.get(parsed.team_id))
        if team is None or team.disabled:
            return None
        stored = team.key(parsed.key_id)
        if stored is None or not stored.live:
            return None
        return team if key_matches(self._secret, parsed.key, stored.hash) else None

    async def by_id(self, team_id: str) -> Team | None:
        """The team `team_id` names, disabled or not (a job's, for its limits); None when
        no such team is registered."""
        return await self._by_id.get(team_id, lambda: self._teams.get(team_id))

    async def for_principal(self, principal_id: str) -> Team | None:
        """The team whose `members` holds `principal_id` (an Entra object id or app id), if
        it is a member of exactly one team, and that team is not disabled; else None."""
        wanted = principal_id.lower()
        teams = await self._all.get(_ALL, self._teams.all)
        holding = [t for t in teams if wanted in t.members]
        if len(holding) != 1 or holding[0].disabled:
            return None
        return holding[0]

    def forget(self, team_id: str) -> None:
        """Drop this instance's copies after a change made here (the admin API)."""
        self._by_id.forget(team_id)
        self._all.forget(_ALL)
