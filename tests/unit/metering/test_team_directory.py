"""TeamDirectory's cache and its answers, over an in-memory stand-in for the `teams`
container (the container itself is tested through the host: tests/stack/metering/
test_teams_host.py). Time is a clock the test moves, never a sleep."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from shared.core.errors import ServiceUnavailable
from shared.metering.team_directory import TeamDirectory
from shared.metering.team_keys import issue_key
from shared.metering.teams import Team, TeamKey, TeamStore

SECRET = b"unit-test-team-key-hash-secret-0123456789"
WHEN = datetime(2026, 12, 7, tzinfo=UTC)
ALICE = "0f8fad5b-d9cb-469f-a165-70867728950e"


class Teams(TeamStore):
    """Teams in a dict; counts the reads the directory makes."""

    def __init__(self, *teams: Team) -> None:
        self.teams = {t.id: t for t in teams}
        self.reads = 0
        self.gate: asyncio.Event | None = None

    async def get(self, team_id: str) -> Team | None:
        self.reads += 1
        if self.gate is not None:
            await self.gate.wait()
        return self.teams.get(team_id)

    async def all(self) -> list[Team]:
        self.reads += 1
        return list(self.teams.values())


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def team_with_key(team_id: str = "search", **fields: object) -> tuple[Team, str]:
    issued = issue_key(SECRET, team_id)
    key = TeamKey(id=issued.key_id, prefix=issued.prefix, hash=issued.hash, created_at=WHEN)
    team = Team.model_validate(
        {"id": team_id, "keys": [key], "created_at": WHEN, "updated_at": WHEN, **fields}
    )
    return team, issued.key


def directory(store: Teams, clock: Clock, seconds: float = 5) -> TeamDirectory:
    return TeamDirectory(store, SECRET, cache_seconds=seconds, clock=clock)


async def test_a_hot_key_costs_one_read_per_cache_period() -> None:
    team, key = team_with_key()
    store, clock = Teams(team), Clock()
    teams = directory(store, clock)
    for _ in range(100):
        found = await teams.authenticate(key)
        assert found is not None
        assert found.id == "search"
    assert store.reads == 1
    clock.now += 5.01
    assert await teams.authenticate(key) is not None
    assert store.reads == 2


async def test_a_revoked_key_is_refused_once_the_cache_period_ends() -> None:
    team, key = team_with_key()
    store, clock = Teams(team), Clock()
    teams = directory(store, clock)
    assert await teams.authenticate(key) is not None
    revoked = team.keys[0].model_copy(update={"revoked_at": WHEN})
    store.teams["search"] = team.model_copy(update={"keys": [revoked]})
    assert await teams.authenticate(key) is not None  # another instance's cached copy
    clock.now += 5.01
    assert await teams.authenticate(key) is None


async def test_forget_drops_this_instance_s_copy_at_once() -> None:
    team, key = team_with_key()
    store, clock = Teams(team), Clock()
    teams = directory(store, clock)
    assert await teams.authenticate(key) is not None
    store.teams["search"] = team.model_copy(update={"disabled": True})
    teams.forget("search")
    assert await teams.authenticate(key) is None


async def test_malformed_unknown_wrong_and_disabled_keys_are_none() -> None:
    team, key = team_with_key()
    off, off_key = team_with_key("off", disabled=True)
    store, clock = Teams(team, off), Clock()
    teams = directory(store, clock)
    assert await teams.authenticate("not-a-key") is None
    assert store.reads == 0, "a malformed key costs no read"
    assert await teams.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    other_id = "0" * 8 if team.keys[0].id != "0" * 8 else "1" * 8
    assert await teams.authenticate(key.replace(team.keys[0].id, other_id)) is None
    _, stranger = team_with_key("nobody")
    assert await teams.authenticate(stranger) is None
    assert await teams.authenticate(stranger) is None
    assert store.reads == 2, "an unknown team is cached too"
    assert await teams.authenticate(off_key) is None


async def test_concurrent_misses_for_one_team_share_one_read() -> None:
    team, key = team_with_key()
    store, clock = Teams(team), Clock()
    store.gate = asyncio.Event()
    teams = directory(store, clock)
    waiting = [asyncio.create_task(teams.authenticate(key)) for _ in range(20)]
    await asyncio.sleep(0)
    store.gate.set()
    found = await asyncio.gather(*waiting)
    assert all(t is not None for t in found)
    assert store.reads == 1


async def test_a_cancelled_reader_does_not_cancel_the_others() -> None:
    team, key = team_with_key()
    store, clock = Teams(team), Clock()
    store.gate = asyncio.Event()
    teams = directory(store, clock)
    first = asyncio.create_task(teams.authenticate(key))
    await asyncio.sleep(0)
    second = asyncio.create_task(teams.authenticate(key))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    store.gate.set()
    found = await second
    assert found is not None
    assert found.id == "search"


async def test_the_cache_is_bounded() -> None:
    store, clock = Teams(), Clock()
    teams = TeamDirectory(store, SECRET, max_entries=3, clock=clock)
    for name in ("aa", "bb", "cc", "dd"):
        await teams.authenticate(team_with_key(name)[1])
    assert store.reads == 4
    await teams.authenticate(team_with_key("aa")[1])  # the oldest went
    assert store.reads == 5
    await teams.authenticate(team_with_key("dd")[1])
    assert store.reads == 5


async def test_a_principal_names_the_one_team_it_is_a_member_of() -> None:
    one, _ = team_with_key("one", members=[ALICE])
    two, _ = team_with_key("two")
    store, clock = Teams(one, two), Clock()
    teams = directory(store, clock)
    found = await teams.for_principal(ALICE.upper())
    assert found is not None
    assert found.id == "one"
    assert await teams.for_principal("11111111-2222-3333-4444-555555555555") is None
    assert store.reads == 1


async def test_a_principal_in_two_teams_or_a_disabled_one_names_none() -> None:
    one, _ = team_with_key("one", members=[ALICE])
    two, _ = team_with_key("two", members=[ALICE])
    clock = Clock()
    assert await directory(Teams(one, two), clock).for_principal(ALICE) is None
    off, _ = team_with_key("off", members=[ALICE], disabled=True)
    assert await directory(Teams(off), clock).for_principal(ALICE) is None


class Failing(Teams):
    """A store that fails (Cosmos DB down) once `down` is set, or never answers (hung)."""

    def __init__(self, *teams: Team) -> None:
        super().__init__(*teams)
        self.down = False

    async def get(self, team_id: str) -> Team | None:
        if self.down:
            self.reads += 1
            raise ConnectionError("Cosmos DB is down")
        return await super().get(team_id)


async def test_a_store_outage_keeps_the_last_known_team_for_the_stale_window() -> None:
    """Cosmos DB down: a key seen within TEAM_STALE_SECONDS still opens the data plane (no
    revocation can be written meanwhile either); past that, or never seen, the error stands."""
    team, key = team_with_key()
    store, clock = Failing(team), Clock()
    teams = TeamDirectory(store, SECRET, cache_seconds=5, stale_seconds=60, clock=clock)
    assert await teams.authenticate(key) is not None
    store.down = True
    clock.now += 30
    found = await teams.authenticate(key)
    assert found is not None
    assert found.id == "search"
    clock.now += 40
    with pytest.raises(ConnectionError):
        await teams.authenticate(key)
    other, other_key = team_with_key("billing")
    store.teams["billing"] = other
    with pytest.raises(ConnectionError):
        await teams.authenticate(other_key)


async def test_a_hung_store_is_unavailable_after_the_load_timeout() -> None:
    team, key = team_with_key()
    store, clock = Teams(team), Clock()
    store.gate = asyncio.Event()  # never set: Cosmos DB does not answer
    teams = TeamDirectory(store, SECRET, load_timeout=0.01, clock=clock)
    with pytest.raises(ServiceUnavailable):
        await teams.authenticate(key)


async def test_after_a_failed_read_the_last_known_team_serves_a_cache_period_unasked() -> None:
    """An outage costs one read attempt per team and cache period, not one per call: each
    attempt may wait up to the read timeout, which the answer path must not pay every time."""
    team, key = team_with_key()
    store, clock = Failing(team), Clock()
    teams = TeamDirectory(store, SECRET, cache_seconds=5, stale_seconds=60, clock=clock)
    assert await teams.authenticate(key) is not None
    store.down = True
    clock.now += 6
    for _ in range(20):
        found = await teams.authenticate(key)
        assert found is not None
        assert found.id == "search"
        clock.now += 0.2
    assert store.reads == 2  # the first read, then one failed attempt for the 4 s that passed
    clock.now += 1.1
    assert await teams.authenticate(key) is not None
    assert store.reads == 3


async def test_a_hung_store_with_a_last_known_team_is_waited_for_briefly() -> None:
    team, key = team_with_key()
    store, clock = Teams(team), Clock()
    teams = TeamDirectory(
        store, SECRET, load_timeout=60, stale_load_timeout=0.01, clock=clock, cache_seconds=5
    )
    assert await teams.authenticate(key) is not None
    store.gate = asyncio.Event()  # never set: Cosmos DB stops answering
    clock.now += 6
    found = await asyncio.wait_for(teams.authenticate(key), timeout=5)
    assert found is not None
    assert found.id == "search"
