"""THE Azure OpenAI client module: the process's clients, one per backend, behind the router
of shared/aoai/backends.py.

Backends: `AOAI_BACKENDS` when set, else one backend named `default` from
`AZURE_OPENAI_ENDPOINT` (or `openai` for the standard OpenAI API).

API shape, per `AZURE_OPENAI_API_VERSION`: `v1` gives Azure's v1 API, a plain `AsyncOpenAI` at
`<endpoint>/openai/v1/` with the deployment as the body's `model` and no api-version; a dated
version gives `AsyncAzureOpenAI` (`/openai/deployments/{deployment}/...?api-version=...`).
Both send the same bodies, so callers do not know which one they hold.

Auth, in order (never two at once), per backend:
- an `api_key` (`AZURE_OPENAI_API_KEY` for the one backend): key auth (the local simulator,
  emergencies).
- an Azure endpoint without a key: Microsoft Entra ID. ONE credential and ONE bearer-token
  provider (scope https://cognitiveservices.azure.com/.default) serve every backend, so the
  process keeps one token for all of them (`AZURE_CLIENT_ID` picks the user-assigned identity).
  Under v1 the provider is the client's `api_key`: openai 3.x awaits a callable `api_key` before
  every request, so the token is refreshed as with `azure_ad_token_provider`.
- no Azure endpoint, `OPENAI_API_KEY` set: the standard OpenAI API.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from azure.core.credentials_async import AsyncTokenCredential
from azure.identity.aio import DefaultAzureCredential, get_bearer_token_provider
from openai import AsyncAzureOpenAI, AsyncOpenAI

from shared.aoai.backends import Backend, Backends
from shared.core.errors import UnknownModelError
from shared.core.settings import V1_API, AoaiBackend, Settings

log = logging.getLogger(__name__)

COGNITIVE_SERVICES_SCOPE = "https://cognitiveservices.azure.com/.default"
DEFAULT_BACKEND = "default"
OPENAI_BACKEND = "openai"

TokenProvider = Callable[[], Awaitable[str]]


def v1_base_url(endpoint: str) -> str:
    """Azure's v1 API of an account: https://<name>.openai.azure.com/openai/v1/."""
    return endpoint.rstrip("/") + "/openai/v1/"


@dataclass
class AoaiConnection:
    """The backends and the credential behind them; closing it closes every client (and the
    credential when the connection owns it)."""

    backends: Backends
    credential: AsyncTokenCredential | None = None  # set only when the connection owns it

    @property
    def client(self) -> AsyncOpenAI:
        """The first backend's client (health checks, single-backend callers)."""
        return self.backends.primary.client

    async def aclose(self) -> None:
        for backend in self.backends.all:
            await backend.client.close()  # `direct` shares its transport
        if self.credential is not None:
            await self.credential.close()


def backend_configs(settings: Settings) -> list[AoaiBackend]:
    """AOAI_BACKENDS, or the one backend today's single-endpoint settings describe."""
    if settings.aoai_backends:
        return list(settings.aoai_backends)
    if settings.azure_openai_endpoint is None:
        return []
    return [
        AoaiBackend(
            name=DEFAULT_BACKEND,
            endpoint=settings.azure_openai_endpoint,
            api_key=settings.azure_openai_api_key,
        )
    ]


def deployment_map(settings: Settings, config: AoaiBackend) -> dict[str, str]:
    """The backend's map keyed by deployment name: alias keys (AOAI_DEPLOYMENTS) become the
    deployment they stand for, so the router looks up resolved names only."""
    names = dict(config.deployments)
    for alias, deployment in settings.aoai_deployments.items():
        if alias in config.deployments and deployment not in names:
            names[deployment] = config.deployments[alias]
    return names


def create_client(
    settings: Settings, config: AoaiBackend, token_provider: TokenProvider | None
) -> AsyncOpenAI:
    """One backend's client: its key if it has one, else the shared token provider."""
    if config.api_key is None and token_provider is None:  # create_connection passes one
        raise ValueError(f"backend {config.name}: no api_key and no token provider")
    if settings.azure_openai_api_version == V1_API:
        auth: str | TokenProvider | None = (
            config.api_key.get_secret_value() if config.api_key is not None else token_provider
        )
        return AsyncOpenAI(
            base_url=v1_base_url(str(config.endpoint)),
            api_key=auth,
            timeout=settings.aoai_timeout_seconds,
            max_retries=settings.aoai_max_retries,
        )
    return AsyncAzureOpenAI(
        azure_endpoint=str(config.endpoint),
        api_key=config.api_key.get_secret_value() if config.api_key is not None else None,
        azure_ad_token_provider=token_provider if config.api_key is None else None,
        api_version=settings.azure_openai_api_version,
        timeout=settings.aoai_timeout_seconds,
        max_retries=settings.aoai_max_retries,
    )


def _backend(name: str, priority: int, client: AsyncOpenAI, names: dict[str, str]) -> Backend:
    return Backend(name, priority, client, client.with_options(max_retries=0), names)


def create_connection(
    settings: Settings, *, credential: AsyncTokenCredential | None = None
) -> AoaiConnection:
    """Build every backend's client from settings. With Entra ID, `credential` is the
    process's shared one (shared/runtime.py passes it; the connection does not own it);
    without one the connection creates and owns a DefaultAzureCredential."""

    def router(backends: list[Backend]) -> Backends:
        return Backends(
            backends,
            cooldown=settings.aoai_backend_cooldown_seconds,
            batch_backend=settings.aoai_batch_backend,
        )

    configs = backend_configs(settings)
    if not configs:
        if settings.openai_api_key is None:  # settings validation makes this unreachable
            raise ValueError("set AZURE_OPENAI_ENDPOINT, AOAI_BACKENDS or OPENAI_API_KEY")
        base_url = str(settings.openai_base_url) if settings.openai_base_url else None
        client = AsyncOpenAI(
            api_key=settings.openai_api_key.get_secret_value(),
            base_url=base_url,
            timeout=settings.aoai_timeout_seconds,
            max_retries=settings.aoai_max_retries,
        )
        return AoaiConnection(router([_backend(OPENAI_BACKEND, 1, client, {})]))
    owned: AsyncTokenCredential | None = None
    provider: TokenProvider | None = None
    if any(c.api_key is None for c in configs):
        if credential is None:
            credential = owned = DefaultAzureCredential(
                managed_identity_client_id=settings.azure_client_id
            )
        provider = get_bearer_token_provider(credential, COGNITIVE_SERVICES_SCOPE)
    backends = [
        _backend(
            c.name, c.priority, create_client(settings, c, provider), deployment_map(settings, c)
        )
        for c in configs
    ]
    return AoaiConnection(router(backends), owned)


def describe_auth(settings: Settings) -> str:
    """Which auth mode the settings select, for logs (no secret in it)."""
    configs = backend_configs(settings)
    if not configs:
        return "openai-api-key"
    if any(c.api_key is None for c in configs):
        return "entra-id"
    return "azure-api-key"


def known_models(settings: Settings) -> list[str]:
    names = set(settings.aoai_deployments)
    for backend in settings.aoai_backends:
        names.update(backend.deployments)
    names.update(
        d
        for d in (
            settings.chat_deployment,
            settings.embedding_deployment,
            settings.classify_deployment,
            settings.batch_deployment,
        )
        if d
    )
    return sorted(names)


def resolve_deployment(
    settings: Settings, model: str | None, default: str, allowed: Sequence[str] = ()
) -> str:
    """Map a model alias to its deployment name; `None` gives `default`.

    A configured deployment name is accepted as its own alias. With `allowed` (a team's
    `models`: aliases or deployment names), a model outside it is unknown, exactly as one
    that is not configured: a caller learns nothing of what other teams may call.
    """
    deployment = _resolve(settings, model, default)
    if allowed and model not in allowed and deployment not in allowed:
        known = [name for name in known_models(settings) if name in allowed]
        raise UnknownModelError(model or deployment, known)
    return deployment


def _resolve(settings: Settings, model: str | None, default: str) -> str:
    if model is None:
        return default
    if model in settings.aoai_deployments:
        return settings.aoai_deployments[model]
    known = known_models(settings)
    if model in known:
        return model
    raise UnknownModelError(model, known)
