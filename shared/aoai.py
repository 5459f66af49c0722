"""THE Azure OpenAI client module: one cached async client per process.

Auth, in order (never two at once):
- `AZURE_OPENAI_API_KEY` set: key auth (the local simulator, emergencies).
- `AZURE_OPENAI_ENDPOINT` set: Microsoft Entra ID through `DefaultAzureCredential`
  (`AZURE_CLIENT_ID` picks the user-assigned identity) and a bearer-token provider.
- `AZURE_OPENAI_ENDPOINT` unset, `OPENAI_API_KEY` set: the standard OpenAI API.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from azure.core.credentials_async import AsyncTokenCredential
from azure.identity.aio import DefaultAzureCredential, get_bearer_token_provider
from openai import AsyncAzureOpenAI, AsyncOpenAI

from shared.settings import Settings

log = logging.getLogger(__name__)

COGNITIVE_SERVICES_SCOPE = "https://cognitiveservices.azure.com/.default"


class UnknownModelError(ValueError):
    """A model alias that maps to no deployment. Answered as 400, never sent upstream."""

    def __init__(self, alias: str, known: list[str]) -> None:
        super().__init__(f"unknown model {alias!r}; known models: {', '.join(known)}")
        self.alias = alias
        self.known = known


@dataclass
class AoaiConnection:
    """The client and the credential behind it; closing one closes both."""

    client: AsyncOpenAI
    credential: AsyncTokenCredential | None = None  # set only when the connection owns it

    async def aclose(self) -> None:
        await self.client.close()
        if self.credential is not None:
            await self.credential.close()


def create_connection(
    settings: Settings, *, credential: AsyncTokenCredential | None = None
) -> AoaiConnection:
    """Build a client from settings. With Entra ID, `credential` is the process's shared one
    (shared/runtime.py passes it; the connection does not own it); without one the connection
    creates and owns a DefaultAzureCredential."""
    timeout, max_retries = settings.aoai_timeout_seconds, settings.aoai_max_retries
    if settings.azure_openai_endpoint is None:
        if settings.openai_api_key is None:  # settings validation makes this unreachable
            raise ValueError("set AZURE_OPENAI_ENDPOINT or OPENAI_API_KEY")
        base_url = str(settings.openai_base_url) if settings.openai_base_url else None
        client = AsyncOpenAI(
            api_key=settings.openai_api_key.get_secret_value(),
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
        )
        return AoaiConnection(client)
    endpoint = str(settings.azure_openai_endpoint)
    if settings.azure_openai_api_key is not None:
        client = AsyncAzureOpenAI(
            azure_endpoint=endpoint,
            api_key=settings.azure_openai_api_key.get_secret_value(),
            api_version=settings.azure_openai_api_version,
            timeout=timeout,
            max_retries=max_retries,
        )
        return AoaiConnection(client)
    owned = credential is None
    if credential is None:
        credential = DefaultAzureCredential(managed_identity_client_id=settings.azure_client_id)
    client = AsyncAzureOpenAI(
        azure_endpoint=endpoint,
        azure_ad_token_provider=get_bearer_token_provider(credential, COGNITIVE_SERVICES_SCOPE),
        api_version=settings.azure_openai_api_version,
        timeout=timeout,
        max_retries=max_retries,
    )
    return AoaiConnection(client, credential if owned else None)


def describe_auth(settings: Settings) -> str:
    """Which auth mode the settings select, for logs (no secret in it)."""
    if settings.azure_openai_endpoint is None:
        return "openai-api-key"
    if settings.azure_openai_api_key is not None:
        return "azure-api-key"
    return "entra-id"


def known_models(settings: Settings) -> list[str]:
    names = set(settings.aoai_deployments)
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


def resolve_deployment(settings: Settings, model: str | None, default: str) -> str:
    """Map a model alias to its deployment name; `None` gives `default`.

    A configured deployment name is accepted as its own alias.
    """
    if model is None:
        return default
    if model in settings.aoai_deployments:
        return settings.aoai_deployments[model]
    known = known_models(settings)
    if model in known:
        return model
    raise UnknownModelError(model, known)
