"""The team registry's admin routes, `/api/teams...` (docs/teams.md).

They are `admin`-level functions: the host lets them run only with its master key (a
function key is a 401 before the app sees the request); with ENTRA_AUTH on, the principal also
needs the `Admin` app role (403). Each handler reads its input into a model, calls one
operation of `rt.team_admin` and answers JSON; errors are AppErrors, answered by `guarded`.
"""

from __future__ import annotations

import re

from fastapi import Request, Response

from shared.core.errors import NotFound
from shared.http.boundary import json_response, read_json
from shared.metering.callers import ADMIN_ROLE, principal_of, require_role
from shared.metering.team_keys import KEY_ID_PATTERN, TEAM_ID_PATTERN
from shared.metering.team_windows import MICROS
from shared.metering.teams import NewTeam, TeamChanges, TeamDetail, TeamSpend
from shared.runtime import Runtime

_TEAM_ID = re.compile(TEAM_ID_PATTERN)
_KEY_ID = re.compile(KEY_ID_PATTERN)


def _admin(rt: Runtime, req: Request) -> None:
    principal = principal_of(req.headers, trusted=rt.settings.entra_auth)
    require_role(principal, ADMIN_ROLE, enforced=rt.settings.entra_auth)


def _team_id(req: Request) -> str:
    """The path's team id; one no team can have is a 404 without a read (and never logged)."""
    team_id = str(req.path_params.get("team_id", ""))
    if _TEAM_ID.fullmatch(team_id) is None:
        raise NotFound("no such team")
    return team_id


async def create_team(rt: Runtime, req: Request, request_id: str) -> Response:
    """`POST /api/teams` -> 201 `{"team": {...}, "key_id", "key"}` (the key shown once)."""
    _admin(rt, req)
    new = await read_json(req, NewTeam)
    return json_response(await rt.team_admin.create(new), 201)


async def list_teams(rt: Runtime, req: Request, request_id: str) -> Response:
    """`GET /api/teams` -> `{"teams": [...]}`."""
    _admin(rt, req)
    return json_response(await rt.team_admin.list())


async def get_team(rt: Runtime, req: Request, request_id: str) -> Response:
    """`GET /api/teams/{team_id}` -> the team (keys by id and prefix, never a hash) with its
    spend so far this minute, UTC day and UTC month against each limit."""
    _admin(rt, req)
    team = await rt.team_admin.show(_team_id(req))
    spent = await rt.team_limits.spent(team.id)
    spend = TeamSpend(
        minute=spent.windows.minute,
        minute_tokens=spent.minute_tokens,
        tpm=team.tpm,
        day=spent.windows.day,
        day_tokens=spent.day_tokens,
        daily_tokens=team.daily_tokens,
        month=spent.windows.month,
        month_usd=spent.month_micros / MICROS,
        monthly_usd=team.monthly_usd,
    )
    return json_response(TeamDetail(**team.model_dump(), spend=spend))


async def update_team(rt: Runtime, req: Request, request_id: str) -> Response:
    """`PATCH /api/teams/{team_id}`: limits, models, members, disabled; `null` clears."""
    _admin(rt, req)
    team_id = _team_id(req)
    changes = await read_json(req, TeamChanges)
    return json_response(await rt.team_admin.update(team_id, changes))


async def new_team_key(rt: Runtime, req: Request, request_id: str) -> Response:
    """`POST /api/teams/{team_id}/keys` -> 201 `{"key_id", "key"}`; 409 with two live keys."""
    _admin(rt, req)
    return json_response(await rt.team_admin.new_key(_team_id(req)), 201)


async def revoke_team_key(rt: Runtime, req: Request, request_id: str) -> Response:
    """`DELETE /api/teams/{team_id}/keys/{key_id}` -> 204; 404 for an unknown key."""
    _admin(rt, req)
    team_id = _team_id(req)
    key_id = str(req.path_params.get("key_id", ""))
    if _KEY_ID.fullmatch(key_id) is None:
        raise NotFound(f"team {team_id!r} has no such key")
    await rt.team_admin.revoke(team_id, key_id)
    return Response(status_code=204)
