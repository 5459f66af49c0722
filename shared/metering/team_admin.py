"""The team registry's operations (the admin API and `python -m cli teams`): create, list,
show, change, issue and revoke keys. Knows nothing of HTTP; errors are AppErrors.

A key is returned once, in the answer that issued it, and never logged (only its id and
prefix are). At most MAX_LIVE_KEYS keys of a team are live at once: rotation is a new key,
then a revoke of the old one; a revoked key is kept, with `revoked_at`, for audit.
"""

from __future__ import annotations

import logging

from shared.core.clock import now
from shared.core.errors import Conflict, NotFound
from shared.metering.team_directory import TeamDirectory
from shared.metering.team_keys import IssuedKey, issue_key
from shared.metering.teams import (
    MAX_LIVE_KEYS,
    KeyCreated,
    NewTeam,
    Team,
    TeamChanges,
    TeamCreated,
    TeamKey,
    TeamList,
    TeamStore,
    TeamView,
)

log = logging.getLogger(__name__)


def _stored(issued: IssuedKey) -> TeamKey:
    return TeamKey(id=issued.key_id, prefix=issued.prefix, hash=issued.hash, created_at=now())


def _unknown(team_id: str) -> NotFound:
    return NotFound(f"no team {team_id!r}")


class TeamAdmin:
    def __init__(self, teams: TeamStore, directory: TeamDirectory, hash_secret: bytes) -> None:
        self._teams = teams
        self._directory = directory
        self._secret = hash_secret

    async def create(self, new: NewTeam) -> TeamCreated:
        """A new team with its first key; 409 when the id is taken."""
        issued = issue_key(self._secret, new.id)
        created = now()
        team = Team(
            **new.model_dump(),
            keys=[_stored(issued)],
            created_at=created,
            updated_at=created,
        )
        if not await self._teams.create(team):
            raise Conflict(f"team {new.id!r} exists")
        self._directory.forget(team.id)
        log.info("team %s created with key %s", team.id, issued.prefix)
        return TeamCreated(team=team.view(), key_id=issued.key_id, key=issued.key)

    async def list(self) -> TeamList:
        return TeamList(teams=[t.view() for t in await self._teams.all()])

    async def show(self, team_id: str) -> TeamView:
        team = await self._teams.get(team_id)
        if team is None:
            raise _unknown(team_id)
        return team.view()

    async def update(self, team_id: str, changes: TeamChanges) -> TeamView:
        given = changes.model_fields_set
        team = await self._teams.change(team_id, lambda t: changes.apply(t) if given else None)
        if team is None:
            raise _unknown(team_id)
        self._directory.forget(team_id)
        log.info("team %s changed: %s", team_id, ", ".join(sorted(given)) or "nothing")
        return team.view()

    async def new_key(self, team_id: str) -> KeyCreated:
        """Another key; 409 when the team already has MAX_LIVE_KEYS live ones."""
        issued: IssuedKey | None = None

        def add(team: Team) -> Team:
            nonlocal issued
            if len(team.live_keys) >= MAX_LIVE_KEYS:
                raise Conflict(
                    f"team {team_id!r} has {MAX_LIVE_KEYS} live keys: revoke one first "
                    f"(DELETE /api/teams/{team_id}/keys/{{key_id}})",
                    details={"live_keys": [k.id for k in team.live_keys]},
                )
            issued = issue_key(self._secret, team_id, {k.id for k in team.keys})
            return team.model_copy(update={"keys": [*team.keys, _stored(issued)]})

        if await self._teams.change(team_id, add) is None:
            raise _unknown(team_id)
        assert issued is not None
        self._directory.forget(team_id)
        log.info("team %s: key %s issued", team_id, issued.prefix)
        return KeyCreated(key_id=issued.key_id, key=issued.key)

    async def revoke(self, team_id: str, key_id: str) -> None:
        """Revoke a key (refused everywhere within TEAM_CACHE_SECONDS); 404 for an unknown
        team or key. Revoking a revoked key changes nothing."""
        known = True

        def revoke(team: Team) -> Team | None:
            nonlocal known
            stored = team.key(key_id)
            known = stored is not None
            if stored is None or not stored.live:
                return None
            revoked = stored.model_copy(update={"revoked_at": now()})
            return team.model_copy(
                update={"keys": [revoked if k.id == key_id else k for k in team.keys]}
            )

        if await self._teams.change(team_id, revoke) is None:
            raise _unknown(team_id)
        if not known:
            raise NotFound(f"team {team_id!r} has no key {key_id!r}")
        self._directory.forget(team_id)
        log.info("team %s: key %s revoked", team_id, key_id)
