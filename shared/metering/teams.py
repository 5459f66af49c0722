"""Teams: the `teams` document, the admin API's bodies and answers, and the container.

A team is who a call belongs to (docs/teams.md): its allowed models, its limits, its Entra
members and its keys. One document per team in `teams` (partition `/id`, id = the team id);
every change is a read-modify-write under the document's ETag, so two admins changing one
team at once cannot lose either change. Key hashes live only here: answers carry
:class:`TeamView`, which has none.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Final

from azure.cosmos.exceptions import CosmosAccessConditionFailedError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from shared.core.clock import now
from shared.core.store import TEAMS, Store
from shared.metering.team_keys import KEY_ID_PATTERN, TEAM_ID_PATTERN

# Rotation with overlap: a new key while the old one still works, then revoke the old one.
MAX_LIVE_KEYS: Final = 2
MAX_MODELS: Final = 100
MAX_MEMBERS: Final = 1000
ETAG_RETRIES: Final = 10
_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def _guid(value: str) -> str:
    if _GUID.fullmatch(value) is None:
        raise ValueError("must be a GUID (an Entra object id or app id)")
    return value.lower()


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


TeamId = Annotated[
    str,
    StringConstraints(pattern=rf"^{TEAM_ID_PATTERN}$"),
    Field(
        description="2-40 characters: lowercase letters, digits and `-`, starting with a letter."
    ),
]
KeyId = Annotated[str, StringConstraints(pattern=rf"^{KEY_ID_PATTERN}$")]
ModelName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
Member = Annotated[str, AfterValidator(_guid)]
Models = Annotated[
    list[ModelName],
    Field(
        max_length=MAX_MODELS,
        description="Model aliases or deployment names the team may call; empty: all.",
    ),
    AfterValidator(_unique),
]
Members = Annotated[
    list[Member],
    Field(
        max_length=MAX_MEMBERS,
        description="Entra object ids or app ids (GUIDs) whose sign-in names this team.",
    ),
    AfterValidator(_unique),
]
Tokens = Annotated[int, Field(gt=0, le=10**12, strict=True)]
Usd = Annotated[float, Field(gt=0, le=10**9, strict=True, allow_inf_nan=False)]


class _Body(BaseModel):
    """A request body: unknown fields are refused (a typo must not pass as 'no limit')."""

    model_config = ConfigDict(extra="forbid")


class _Limits(BaseModel):
    tpm: Tokens | None = Field(default=None, description="Tokens per minute.")
    daily_tokens: Tokens | None = Field(default=None, description="Tokens per UTC day.")
    monthly_usd: Usd | None = Field(default=None, description="Estimated USD per UTC month.")
    max_tokens: Tokens | None = Field(default=None, description="Output tokens per call.")


class NewTeam(_Limits, _Body):
    """`POST /api/teams`: every limit optional."""

    id: TeamId
    models: Models = Field(default_factory=list)
    members: Members = Field(default_factory=list)
    disabled: bool = Field(default=False, strict=True)


class TeamChanges(_Limits, _Body):
    """`PATCH /api/teams/{id}`: the fields given change, the rest stay; `null` clears a limit
    (and empties `models` or `members`)."""

    models: Models | None = None
    members: Members | None = None
    # Only fields the body names apply, so the default changes nothing; `null` is a 400.
    disabled: bool = Field(default=False, strict=True)

    def apply(self, team: Team) -> Team:
        given = self.model_dump(include=self.model_fields_set)
        for name in ("models", "members"):
            if name in given and given[name] is None:
                given[name] = []
        return team.model_copy(update=given)


class TeamKey(BaseModel):
    """A key as stored: its hash, never the key."""

    model_config = ConfigDict(extra="forbid")

    id: KeyId
    prefix: str
    hash: str = Field(repr=False)  # a logged Team must not carry it
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def live(self) -> bool:
        return self.revoked_at is None


class KeyView(BaseModel):
    """A key in an answer: what identifies it, never its hash."""

    id: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None = None


class TeamSpend(BaseModel):
    """`GET /api/teams/{id}`: what the team has booked in the current windows (calls in flight
    and credits instances hold included), beside the limit each counts against."""

    minute: int = Field(description="Minute since the epoch counted by `minute_tokens`.")
    minute_tokens: int
    tpm: int | None
    day: str = Field(description="UTC day (YYYY-MM-DD) counted by `day_tokens`.")
    day_tokens: int
    daily_tokens: int | None
    month: str = Field(description="UTC month (YYYY-MM) counted by `month_usd`.")
    month_usd: float
    monthly_usd: float | None


class TeamView(_Limits):
    """A team in an answer."""

    id: str
    models: list[str]
    members: list[str]
    disabled: bool
    keys: list[KeyView]
    created_at: datetime
    updated_at: datetime


class TeamDetail(TeamView):
    """`GET /api/teams/{id}`: the team and its spend so far against each limit."""

    spend: TeamSpend


class Team(_Limits):
    """The `teams` document."""

    model_config = ConfigDict(extra="forbid")

    id: TeamId
    models: list[str] = Field(default_factory=list)
    members: list[str] = Field(default_factory=list)
    disabled: bool = False
    keys: list[TeamKey] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime

    @property
    def live_keys(self) -> list[TeamKey]:
        return [k for k in self.keys if k.live]

    def key(self, key_id: str) -> TeamKey | None:
        return next((k for k in self.keys if k.id == key_id), None)

    def view(self) -> TeamView:
        data = self.model_dump(exclude={"keys"})
        keys = [KeyView(**k.model_dump(exclude={"hash"})) for k in self.keys]
        return TeamView(**data, keys=keys)


class TeamCreated(BaseModel):
    """`POST /api/teams` 201: the team and its first key, shown this once."""

    team: TeamView
    key_id: str
    key: str


class KeyCreated(BaseModel):
    """`POST /api/teams/{id}/keys` 201: the new key, shown this once."""

    key_id: str
    key: str


class TeamList(BaseModel):
    """`GET /api/teams`."""

    teams: list[TeamView]


class TeamStore:
    """The `teams` container."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def create(self, team: Team) -> bool:
        """Insert `team`; False when a team with its id exists."""
        return await self._store.create(TEAMS, _doc(team)) is not None

    async def get(self, team_id: str) -> Team | None:
        found = await self._store.read(TEAMS, team_id, team_id)
        return _team(found) if found is not None else None

    async def all(self) -> list[Team]:
        """Every team, by id. Teams are few (one per product team), so one query reads them."""
        rows = await self._store.query(TEAMS, "SELECT * FROM c")
        return sorted((_team(row) for row in rows), key=lambda t: t.id)

    async def change(self, team_id: str, decide: Callable[[Team], Team | None]) -> Team | None:
        """Read the team, let `decide` make the changed team (None: nothing to change; it may
        raise to refuse) and write it under the ETag read, deciding again on a lost race.
        The team as stored; None if it does not exist."""
        for _ in range(ETAG_RETRIES):
            raw = await self._store.read(TEAMS, team_id, team_id)
            if raw is None:
                return None
            team = _team(raw)
            changed = decide(team)
            if changed is None:
                return team
            changed = changed.model_copy(update={"updated_at": now()})
            try:
                stored = await self._store.replace_if_unchanged(TEAMS, _doc(changed), raw["_etag"])
            except CosmosAccessConditionFailedError:
                continue
            return _team(stored)
        raise RuntimeError(f"team {team_id} kept changing under {ETAG_RETRIES} updates")


def _doc(team: Team) -> dict[str, Any]:
    return team.model_dump(mode="json")


def _team(row: dict[str, Any]) -> Team:
    """A stored document without Cosmos DB's system properties (`_etag`, `_ts`, ...)."""
    return Team.model_validate({k: v for k, v in row.items() if not k.startswith("_")})
