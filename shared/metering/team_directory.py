"""Which team a credential names: a team key, or an Entra principal that is a member of one.

The seam the data-plane routes use (docs/teams.md): :meth:`TeamDirectory.authenticate` and
:meth:`TeamDirectory.for_principal`. Both read through an in-process cache of
`cache_seconds` (TEAM_CACHE_SECONDS), so a hot key costs no round trip, and a change made on
another instance (a revoked key, a disabled team) holds everywhere within those seconds; the
instance that made it forgets its copy at once (:meth:`forget`). Concurrent misses for one
team share one read.

When Cosmos DB fails or does not answer within `load_timeout` (TEAM_READ_TIMEOUT), a team
read within the last `stale_seconds` is used as last known (no key can be revoked while the
store is down either); one never read, or read longer ago, is a 503 (docs/security.md).
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
# Unknown team ids are cached too (a made-up key must not cost a read each time), so the
# cache is bounded: past this, the oldest entry goes.
MAX_CACHED_TEAMS: Final = 4096
_ALL: Final = ""  # the cache key of the whole list (no team id is empty)

V = TypeVar("V")


@dataclass(frozen=True)
class _Entry(Generic[V]):
    value: V
    until: float


class _TtlCache(Generic[V]):
    """Values for `seconds`, at most `max_entries`, with one load in flight per key; a value
    up to `stale_seconds` past its time stands in for a load that fails."""

    def __init__(
        self,
        seconds: float,
        max_entries: int,
        clock: Callable[[], float],
        stale_seconds: float = 0.0,
    ) -> None:
        self._seconds = seconds
        self._stale = stale_seconds
        self._max = max_entries
        self._clock = clock
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
        try:
            value = await load()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as error:
            entry = self._entries.get(key)
            if entry is not None and entry.until + self._stale > self._clock():
                log.warning("team registry read failed (%s): last known used", type(error).__name__)
                future.set_result(entry.value)
                return entry.value
            future.set_exception(error)
            future.exception()  # waiters see it; no "never retrieved" warning without any
            raise
        else:
            future.set_result(value)
            self._put(key, value)
            return value
        finally:
            del self._loading[key]

    def _put(self, key: str, value: V) -> None:
        self._entries.pop(key, None)
        while len(self._entries) >= self._max:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = _Entry(value, self._clock() + self._seconds)

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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._teams = teams
        self._secret = hash_secret
        self._timeout = load_timeout
        self._by_id: _TtlCache[Team | None] = _TtlCache(
            cache_seconds, max_entries, clock, stale_seconds
        )
        self._all: _TtlCache[list[Team]] = _TtlCache(cache_seconds, 1, clock, stale_seconds)

    async def _read(self, load: Callable[[], Awaitable[V]]) -> V:
        """One read of the store, bounded by `load_timeout`: a hung Cosmos DB is a 503 in
        seconds, not the SDK's own minutes."""
        try:
            async with asyncio.timeout(self._timeout):
                return await load()
        except TimeoutError:
            raise ServiceUnavailable("the team registry did not answer in time") from None

    async def authenticate(self, key: str) -> Team | None:
        """The team `key` belongs to; None for a malformed or unknown key, a revoked one, or
        a disabled team. A malformed key costs no read. Raises the store's error when Cosmos
        DB fails and the team is not cached (503 at the boundary)."""
        parsed = parse_key(key)
        if parsed is None:
            return None
        team = await self._by_id.get(
            parsed.team_id, lambda: self._read(lambda: self._teams.get(parsed.team_id))
        )
        if team is None or team.disabled:
            return None
        stored = team.key(parsed.key_id)
        if stored is None or not stored.live:
            return None
        return team if key_matches(self._secret, parsed.key, stored.hash) else None

    async def by_id(self, team_id: str) -> Team | None:
        """The team `team_id` names, disabled or not (a job's, for its limits); None when
        no such team is registered."""
        return await self._by_id.get(team_id, lambda: self._read(lambda: self._teams.get(team_id)))

    async def for_principal(self, principal_id: str) -> Team | None:
        """The team whose `members` holds `principal_id` (an Entra object id or app id), if
        it is a member of exactly one team, and that team is not disabled; else None."""
        wanted = principal_id.lower()
        teams = await self._all.get(_ALL, lambda: self._read(self._teams.all))
        holding = [t for t in teams if wanted in t.members]
        if len(holding) != 1 or holding[0].disabled:
            return None
        return holding[0]

    def forget(self, team_id: str) -> None:
        """Drop this instance's copies after a change made here (the admin API)."""
        self._by_id.forget(team_id)
        self._all.forget(_ALL)
