"""Authentication and api-version checks, in the order the Azure gateway applies them."""

from __future__ import annotations

import re

from starlette.requests import Request

from . import errors
from .config import SimulatorConfig

_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")


def _is_jwt(token: str) -> bool:
    return token.count(".") == 2


def authenticate(request: Request, config: SimulatorConfig, *, v1: bool = False) -> None:
    """Accept a configured `api-key`, or `Authorization: Bearer <token>`.

    Tokens cannot be minted offline, so any non-empty bearer token is accepted unless
    `bearer_tokens` lists the accepted ones. Anything else is Azure's 401.

    `v1`: Azure's v1 API also takes the key as the bearer (what `OpenAI(api_key=<key>)`
    sends), so there a bearer that is not a JWT (an Entra token is one) must be a configured
    key; a wrong one is the bearer 401.
    """
    key = request.headers.get("api-key")
    if key is not None:
        if key not in config.api_keys:
            raise errors.unauthorized(bearer=False)
        return
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        raise errors.unauthorized(bearer=False, missing=not authorization)
    token = token.strip()
    if v1 and token and not _is_jwt(token):
        if token not in config.api_keys:
            raise errors.unauthorized(bearer=True)
        return
    accepted = config.bearer_tokens
    if not token or (accepted is not None and token not in accepted):
        raise errors.unauthorized(bearer=True)


def api_version(request: Request, config: SimulatorConfig) -> str:
    """The `api-version` query parameter. Missing: 404 as Azure answers; malformed: 400."""
    version = request.query_params.get("api-version")
    if version is None:
        if config.require_api_version:
            raise errors.resource_not_found()
        return "2024-10-21"
    if not _API_VERSION.match(version):
        raise errors.error(400, "BadRequest", "API version not supported")
    return version
