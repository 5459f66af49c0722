"""The client module on the wire: which credential reaches the server, alias mapping."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from openai import AsyncAzureOpenAI, AsyncOpenAI

from shared.aoai.client import create_connection, resolve_deployment
from shared.core.errors import UnknownModelError
from shared.core.settings import DEFAULT_API_VERSION, Settings, SettingsError, load_settings
from tests.support.recording_server import Recorded, RecordingServer, recording_server
from tests.support.unit_env import BASE

MESSAGES: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    with recording_server() as srv:
        yield srv


def settings(**values: str) -> Settings:
    return load_settings({**BASE, **values})


async def one_chat(server: RecordingServer, s: Settings) -> tuple[AsyncOpenAI, Recorded]:
    """The client the settings make, and the one request its chat call sent to `server`."""
    conn = create_connection(s)
    try:
        await conn.client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    finally:
        await conn.aclose()
    (req,) = server.requests
    return conn.client, req


async def test_a_dated_api_version_sends_api_key_header_and_no_bearer(
    server: RecordingServer,
) -> None:
    client, req = await one_chat(
        server,
        settings(
            AZURE_OPENAI_ENDPOINT=server.url,
            AZURE_OPENAI_API_KEY="local-key",
            AZURE_OPENAI_API_VERSION="2025-04-01-preview",
        ),
    )
    assert isinstance(client, AsyncAzureOpenAI)
    assert req.headers["api-key"] == "local-key"
    assert "authorization" not in req.headers
    assert req.path == "/openai/deployments/gpt-4o/chat/completions"
    assert req.query["api-version"] == ["2025-04-01-preview"]


def _identity_endpoint(req: Recorded) -> tuple[int, dict[str, str], Any]:
    """The App Service managed-identity protocol: a token naming the identity asked for."""
    return (
        200,
        {},
        {
            "access_token": "token-for-" + req.query.get("client_id", ["?"])[0],
            "expires_on": str(int(time.time()) + 3600),
            "resource": req.query["resource"][0],
            "token_type": "Bearer",
        },
    )


@pytest.fixture
def identity(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingServer]:
    """DefaultAzureCredential finds a managed identity on loopback, as on App Service."""
    with recording_server(_identity_endpoint) as srv:
        for name in ("AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("IDENTITY_ENDPOINT", srv.url + "/msi/token")
        monkeypatch.setenv("IDENTITY_HEADER", "local-identity-header")
        yield srv


async def test_entra_mode_sends_bearer_from_default_credential_for_the_configured_identity(
    server: RecordingServer, identity: RecordingServer
) -> None:
    """DefaultAzureCredential, through the App Service managed-identity protocol, on loopback."""
    conn = create_connection(
        settings(AZURE_OPENAI_ENDPOINT=server.url, AZURE_CLIENT_ID="uami-client-id")
    )
    try:
        await conn.client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    finally:
        await conn.aclose()
    (token_request,) = identity.requests
    assert token_request.query["resource"] == ["https://cognitiveservices.azure.com"]
    assert token_request.query["client_id"] == ["uami-client-id"]
    (req,) = server.requests
    assert req.headers["authorization"] == "Bearer token-for-uami-client-id"
    assert "api-key" not in req.headers


async def test_by_default_v1_with_a_key_calls_the_v1_path_with_the_deployment_in_the_body(
    server: RecordingServer,
) -> None:
    client, req = await one_chat(
        server, settings(AZURE_OPENAI_ENDPOINT=server.url + "/", AZURE_OPENAI_API_KEY="local-key")
    )
    assert not isinstance(client, AsyncAzureOpenAI)
    assert req.path == "/openai/v1/chat/completions"
    assert "api-version" not in req.query
    assert json.loads(req.body)["model"] == "gpt-4o"
    assert req.headers["authorization"] == "Bearer local-key"


async def test_v1_with_entra_awaits_the_token_provider_on_every_client_of_every_backend(
    server: RecordingServer, identity: RecordingServer
) -> None:
    """The token provider is the v1 client's `api_key`: the primary and the no-retry `direct`
    client of each backend send the managed identity's token, fetched once for all."""
    backends = json.dumps(
        [
            {"name": "a", "endpoint": server.url, "priority": 1},
            {"name": "b", "endpoint": server.url, "priority": 2},
        ]
    )
    conn = create_connection(
        settings(
            AOAI_BACKENDS=backends,
            AZURE_CLIENT_ID="uami-client-id",
            AZURE_OPENAI_API_VERSION="v1",
        )
    )
    try:
        for backend in conn.backends.all:
            for client in (backend.client, backend.direct):
                await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    finally:
        await conn.aclose()
    assert len(identity.requests) == 1
    assert len(server.requests) == 4
    for req in server.requests:
        assert req.path == "/openai/v1/chat/completions"
        assert req.headers["authorization"] == "Bearer token-for-uami-client-id"
        assert "api-key" not in req.headers
        assert "api-version" not in req.query


@pytest.mark.parametrize("version", ["latest", "v2", "2025-04-01-beta", ""])
def test_an_api_version_that_is_neither_v1_nor_dated_is_refused(version: str) -> None:
    values = {"AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com"}
    if version:
        values["AZURE_OPENAI_API_VERSION"] = version
        with pytest.raises(SettingsError, match="AZURE_OPENAI_API_VERSION"):
            settings(**values)
    else:  # empty is unset: the default
        assert settings(**values).azure_openai_api_version == DEFAULT_API_VERSION


async def test_openai_mode_when_no_azure_endpoint(server: RecordingServer) -> None:
    client, req = await one_chat(
        server, settings(OPENAI_API_KEY="sk-local", OPENAI_BASE_URL=server.url + "/v1")
    )
    assert not isinstance(client, AsyncAzureOpenAI)
    assert isinstance(client, AsyncOpenAI)
    assert req.headers["authorization"] == "Bearer sk-local"
    assert "api-key" not in req.headers
    assert req.path == "/v1/chat/completions"


async def test_timeout_and_retries_come_from_settings(server: RecordingServer) -> None:
    conn = create_connection(
        settings(
            AZURE_OPENAI_ENDPOINT=server.url,
            AZURE_OPENAI_API_KEY="k",
            AOAI_TIMEOUT_SECONDS="7.5",
            AOAI_MAX_RETRIES="4",
            AZURE_OPENAI_API_VERSION="2025-01-01-preview",
        )
    )
    try:
        assert conn.client.timeout == 7.5
        assert conn.client.max_retries == 4
        await conn.client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    finally:
        await conn.aclose()
    assert server.requests[0].query["api-version"] == ["2025-01-01-preview"]


def test_alias_maps_to_deployment() -> None:
    s = settings(
        AZURE_OPENAI_ENDPOINT="https://x.openai.azure.com",
        AOAI_DEPLOYMENTS='{"gpt-4o": "gpt-4o-prod"}',
    )
    assert resolve_deployment(s, "gpt-4o", "fallback") == "gpt-4o-prod"
    assert resolve_deployment(s, None, "fallback") == "fallback"
    assert resolve_deployment(s, "text-embedding-3-small", "x") == "text-embedding-3-small"


def test_a_model_outside_the_team_s_list_is_unknown_and_only_its_models_are_named() -> None:
    """A team's `models` holds aliases or deployment names: either admits; anything else is
    the unknown model, listing what the team may call (nothing of other teams')."""
    s = settings(
        AZURE_OPENAI_ENDPOINT="https://x.openai.azure.com",
        AOAI_DEPLOYMENTS='{"gpt-4o": "gpt-4o-prod"}',
    )
    assert resolve_deployment(s, "gpt-4o", "x", ["gpt-4o"]) == "gpt-4o-prod"
    assert resolve_deployment(s, "gpt-4o", "x", ["gpt-4o-prod"]) == "gpt-4o-prod"
    assert resolve_deployment(s, "gpt-4o", "x", []) == "gpt-4o-prod"  # empty: all
    with pytest.raises(UnknownModelError) as caught:
        resolve_deployment(s, "text-embedding-3-small", "x", ["gpt-4o"])
    assert caught.value.known == ["gpt-4o"]
    with pytest.raises(UnknownModelError):  # the default deployment is no exception
        resolve_deployment(s, None, "text-embedding-3-small", ["gpt-4o"])


def test_unknown_alias_lists_known_aliases() -> None:
    s = settings(
        AZURE_OPENAI_ENDPOINT="https://x.openai.azure.com",
        AOAI_DEPLOYMENTS='{"mini": "gpt-4o-mini-prod"}',
    )
    with pytest.raises(UnknownModelError) as caught:
        resolve_deployment(s, "gpt-5", "gpt-4o")
    assert caught.value.known == ["gpt-4o", "mini", "text-embedding-3-small"]
    assert str(caught.value) == (
        "unknown model 'gpt-5'; known models: gpt-4o, mini, text-embedding-3-small"
    )
