"""Who calls a data-plane route: the team its credential names, or a 401 (docs/security.md).

The data-plane routes (chat, the gateway routes, jobs, usage) are anonymous at the host, so
that the plain openai SDK, which sends only its `api_key`, reaches them: the app is their gate.
The credential is a team key in `api-key` or `Authorization: Bearer` (shared/metering/
team_keys.py), or, with Entra sign-in (ENTRA_AUTH), a principal that is a member of exactly
one team and holds the route's app role. Nothing else a caller sends (tags, `user`, the body,
a function key) names the team. The key is never logged, and compared in constant time
(TeamDirectory.authenticate).
"""

from __future__ import annotations

from fastapi import Request

from shared.core.errors import Unauthorized
from shared.http.boundary import client_request_id_of
from shared.metering.callers import (
    Caller,
    Role,
    presented_key,
    principal_of,
    require_role,
)
from shared.metering.teams import Team
from shared.runtime import Runtime
from shared.telemetry import names, tracing

# Azure OpenAI's own 401 answers (`{"error": {"code": "401", "message": ...}}`), which the
# gateway routes give, as Azure would, so SDKs raise their AuthenticationError.
AZURE_MISSING_KEY = (
    "Access denied due to missing subscription key. Make sure to include subscription key "
    "when making requests to an API."
)
AZURE_INVALID_KEY = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
    "provide a valid key for an active subscription and use a correct regional API endpoint "
    "for your resource."
)


class AzureUnauthorized(Unauthorized):
    """The gateway routes' 401, in Azure OpenAI's shape."""

    code = "401"


async def team_caller(
    rt: Runtime, req: Request, role: Role, *, azure: bool = False
) -> tuple[Caller, Team]:
    """The caller (with its team) and its team, or Unauthorized (401; Azure's shape when
    `azure`).

    A presented key decides alone: a wrong key is a 401 even when the caller is also signed
    in. Without one, a signed-in principal (ENTRA_AUTH) needs `role` (403 without it) and to
    be a member of exactly one team that is not disabled."""
    principal = principal_of(req.headers, trusted=rt.settings.entra_auth)
    key = presented_key(req.headers)
    if key is not None:
        team = await rt.teams.authenticate(key)
    elif principal is not None:
        require_role(principal, role, enforced=True)
        team = await rt.teams.for_principal(principal.object_id)
    else:
        team = None
    if team is None:
        if azure:
            raise AzureUnauthorized(AZURE_INVALID_KEY if key else AZURE_MISSING_KEY)
        raise Unauthorized(
            "this route needs a team key in the api-key header or as Authorization: Bearer"
            + (", or a signed-in member of one team" if rt.settings.entra_auth else "")
        )
    tracing.annotate({names.TEAM: team.id})
    return Caller(client_request_id_of(req), principal, team), team
