"""Who is calling: the signed-in principal and its app roles; whose tokens a call spends and
how many it may ask for (the limit itself is shared/metering/caller_limit.py).

With App Service authentication on (`ENTRA_AUTH=true`, infra's `entraAuth` switch), App
Service validates the Entra ID token, strips any `x-ms-client-principal*` headers a caller
sent, and sets its own. Only then may the app read them: with the switch off they are
ignored, since any holder of a function key could forge them.

App roles (defined on the app registration, docs/security.md): `Chat.Invoke` for chat,
`Jobs.Submit` for jobs, `Usage.Read` for the team's usage report (each needed by a signed-in
caller without a team key), `Admin` for the team registry and every team's usage (on top of
the host's master key, which those routes need in any case).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from shared.core.errors import Forbidden, InvalidRequest
from shared.metering.teams import Team

Role = Literal["Chat.Invoke", "Jobs.Submit", "Usage.Read", "Admin"]
CHAT_ROLE: Final[Role] = "Chat.Invoke"
JOBS_ROLE: Final[Role] = "Jobs.Submit"
USAGE_ROLE: Final[Role] = "Usage.Read"
ADMIN_ROLE: Final[Role] = "Admin"

_OBJECT_ID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
# Output-token fields of a chat completions body; reasoning models take only the first.
_MAX_TOKEN_FIELDS = ("max_completion_tokens", "max_tokens")
# The Responses API's one name for the output cap (reasoning tokens included).
RESPONSES_MAX_TOKEN_FIELDS = ("max_output_tokens",)


@dataclass(frozen=True)
class Principal:
    """The signed-in caller as App Service authentication describes it."""

    object_id: str
    roles: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Caller:
    """Who sent a request, besides what its body says. `team` is the team its credential
    names (shared/http/team_auth.py): the one thing a data-plane call is attributed to, and
    whose limits it spends; None only for callers inside the app (tests, tools)."""

    client_request_id: str | None = None
    principal: Principal | None = None
    team: Team | None = None


@dataclass(frozen=True)
class Origin:
    """Who a call is for and how to find it again: what it is booked and recorded under."""

    caller: Caller
    request_id: str
    tags: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None

    @property
    def team(self) -> Team | None:
        return self.caller.team


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The team key a request presents: `api-key` (what `AzureOpenAI(api_key=...)` sends),
    else `Authorization: Bearer <key>` (what `OpenAI(api_key=...)` sends); None for none."""
    key = headers.get("api-key", "").strip()
    if key:
        return key
    scheme, _, token = headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def principal_of(headers: Mapping[str, str], *, trusted: bool) -> Principal | None:
    """The caller App Service authentication signed in, or None (switch off, or no sign-in).

    `x-ms-client-principal` is base64 JSON: `{"claims": [{"typ", "val"}], "role_typ", ...}`."""
    if not trusted:
        return None
    raw = headers.get("x-ms-client-principal")
    object_id = headers.get("x-ms-client-principal-id")
    roles: set[str] = set()
    if raw:
        try:
            doc = json.loads(base64.b64decode(raw, validate=False))
        except (binascii.Error, ValueError):
            doc = {}
        claims = doc.get("claims") if isinstance(doc, dict) else None
        role_typ = doc.get("role_typ") or "roles" if isinstance(doc, dict) else "roles"
        for claim in claims if isinstance(claims, list) else []:
            if not isinstance(claim, dict):
                continue
            typ, val = claim.get("typ"), claim.get("val")
            if not isinstance(val, str):
                continue
            if typ in (role_typ, "roles"):
                roles.add(val)
            elif typ in _OBJECT_ID_CLAIMS and not object_id:
                object_id = val
    if not object_id:
        return None
    return Principal(object_id=object_id, roles=frozenset(roles))


def require_role(principal: Principal | None, role: Role, *, enforced: bool) -> None:
    """403 unless the signed-in caller holds `role`; nothing to check with the switch off
    (the function key is then the only gate)."""
    if not enforced:
        return
    if principal is None or role not in principal.roles:
        raise Forbidden(f"this route needs the app role {role}")


def caller_key(
    principal: Principal | None, tags: Mapping[str, str], user_hash: str | None, tag: str
) -> str:
    """Whose tokens a call spends: the principal, else the naming tag, else the user."""
    if principal is not None:
        return f"principal:{principal.object_id}"
    if tag in tags:
        return f"tag:{tags[tag]}"
    if user_hash is not None:
        return f"user:{user_hash}"
    return "anonymous"


def names_completion_tokens(
    body: dict[str, Any], fields: tuple[str, ...] = _MAX_TOKEN_FIELDS
) -> bool:
    """Whether the caller set an output cap of its own (any of `fields`)."""
    return any(body.get(name) is not None for name in fields)


def cap_completion_tokens(
    body: dict[str, Any],
    limit: int,
    fields: tuple[str, ...] = _MAX_TOKEN_FIELDS,
    default: int | None = None,
) -> int:
    """The output tokens a gateway body may use, held to CHAT_MAX_TOKENS_LIMIT as on
    `/api/chat`: a body naming none of `fields` gets the first of them set to `limit` (left
    out, the model's own default, far above the limit, would apply); a larger value is a 400.
    `fields`: chat's names by default, RESPONSES_MAX_TOKEN_FIELDS for the Responses API.
    `default`: what a body naming none gets instead of `limit` (a learned cap, within it)."""
    asked = 0
    for name in fields:
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidRequest(f"{name} must be a positive integer", details={"param": name})
        if value > limit:
            raise InvalidRequest(
                f"{name} must be at most {limit} (CHAT_MAX_TOKENS_LIMIT)", details={"param": name}
            )
        asked = max(asked, value)
    if not asked:
        body[fields[0]] = asked = limit if default is None else max(1, min(default, limit))
    return asked


def clamp_completion_tokens(
    body: dict[str, Any], asked: int, cap: int | None, fields: tuple[str, ...] = _MAX_TOKEN_FIELDS
) -> int:
    """A team's `max_tokens` (`cap`) clamps the output tokens of a gateway body (as on
    `/api/chat`): every token field of `fields` the body sends above it is lowered to it."""
    if cap is None or asked <= cap:
        return asked
    for name in fields:
        if body.get(name) is not None:
            body[name] = cap
    return cap


def choices_of(body: dict[str, Any]) -> int:
    """A chat body's `n`, 1 when absent or not a positive integer."""
    n = body.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1


def chat_estimate(prompt: str, body: dict[str, Any], max_tokens: int) -> int:
    """What a chat call books before it runs: prompt characters / 4, plus its output tokens
    for each of its `n` choices."""
    return len(prompt) // 4 + max_tokens * choices_of(body)


def embedding_estimate(inputs: str | list[str] | list[int] | list[list[int]]) -> int:
    """What an embeddings call books: input characters / 4, or the tokens given as ids."""
    if isinstance(inputs, str):
        return max(1, len(inputs) // 4)
    total = 0
    for one in inputs:
        total += len(one) // 4 if isinstance(one, str) else len(one) if isinstance(one, list) else 1
    return max(1, total)
