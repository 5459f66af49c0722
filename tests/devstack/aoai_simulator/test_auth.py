"""Authentication, api-version and unknown deployments: Azure's status codes and bodies."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai import AzureOpenAI

from devstack.aoai_simulator import RunningSimulator

from .conftest import API_VERSION, Control

HI = [{"role": "user", "content": "hi"}]


def test_wrong_key_is_401(sim: RunningSimulator, control: Control) -> None:
    bad = AzureOpenAI(azure_endpoint=sim.url, api_key="wrong", api_version=API_VERSION)
    with pytest.raises(openai.AuthenticationError) as caught:
        bad.chat.completions.create(model="gpt-4o", messages=HI)  # type: ignore[arg-type]
    assert caught.value.code == "401"
    assert "Access denied due to invalid subscription key" in caught.value.message
    assert control.stats()["total"]["status"] == {"401": 1}


def test_any_bearer_token_by_default(sim: RunningSimulator, control: Control) -> None:
    entra = AzureOpenAI(
        azure_endpoint=sim.url, azure_ad_token_provider=lambda: "any-token", api_version=API_VERSION
    )
    result = entra.chat.completions.create(model="gpt-4o", messages=HI)  # type: ignore[arg-type]
    assert result.choices[0].message.content


def test_listed_bearer_tokens_only(sim: RunningSimulator, control: Control) -> None:
    control.patch({"bearer_tokens": ["good-token"]})
    good = AzureOpenAI(azure_endpoint=sim.url, azure_ad_token="good-token", api_version=API_VERSION)
    assert good.chat.completions.create(model="gpt-4o", messages=HI).choices  # type: ignore[arg-type]
    bad = AzureOpenAI(azure_endpoint=sim.url, azure_ad_token="other", api_version=API_VERSION)
    with pytest.raises(openai.AuthenticationError) as caught:
        bad.chat.completions.create(model="gpt-4o", messages=HI)  # type: ignore[arg-type]
    assert "Access token is missing, invalid" in caught.value.message


def test_missing_credentials_is_401(sim: RunningSimulator, control: Control) -> None:
    url = f"{sim.url}/openai/deployments/gpt-4o/chat/completions"
    response = httpx.post(url, params={"api-version": API_VERSION}, json={"messages": HI})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "401"
    assert "missing subscription key" in response.json()["error"]["message"]


def test_unknown_deployment_is_deployment_not_found(client: AzureOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-deployment", messages=HI)  # type: ignore[arg-type]
    assert caught.value.code == "DeploymentNotFound"
    assert "The API deployment for this resource does not exist" in caught.value.message


def test_batch_deployment_refuses_real_time_calls(client: AzureOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o-batch", messages=HI)  # type: ignore[arg-type]
    assert caught.value.code == "OperationNotSupported"


def test_api_version_is_required(sim: RunningSimulator, control: Control) -> None:
    url = f"{sim.url}/openai/deployments/gpt-4o/chat/completions"
    headers = {"api-key": sim.api_key}
    missing = httpx.post(url, json={"messages": HI}, headers=headers)
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "404", "message": "Resource not found"}}
    malformed = httpx.post(
        url, params={"api-version": "latest"}, json={"messages": HI}, headers=headers
    )
    assert malformed.status_code == 400
    ok = httpx.post(
        url, params={"api-version": API_VERSION}, json={"messages": HI}, headers=headers
    )
    assert ok.status_code == 200
    assert ok.headers["apim-request-id"]


@pytest.mark.parametrize(
    ("version", "status"),
    [("2024-10-21", 400), ("2024-09-01-preview", 400), ("2024-12-01-preview", 200)],
)
def test_reasoning_models_need_2024_12_01_preview_or_later(
    sim: RunningSimulator, control: Control, version: str, status: int
) -> None:
    """The built-in chat deployment runs gpt-5.4, a reasoning model: Azure refuses it under an
    older api-version, before anything is charged."""
    old = AzureOpenAI(azure_endpoint=sim.url, api_key=sim.api_key, api_version=version)
    if status == 200:
        assert old.chat.completions.create(model="gpt-4o", messages=HI).choices  # type: ignore[arg-type]
        return
    with pytest.raises(openai.BadRequestError) as caught:
        old.chat.completions.create(model="gpt-4o", messages=HI)  # type: ignore[arg-type]
    assert caught.value.code == "BadRequest"
    assert "enabled only for api versions 2024-12-01-preview and later" in caught.value.message
    assert control.stats()["total"]["status"] == {"400": 1}
    # Embeddings are no reasoning model: any version still answers.
    assert old.embeddings.create(model="text-embedding-3-small", input="hi").data


def test_unknown_route_is_azure_404(sim: RunningSimulator) -> None:
    response = httpx.get(f"{sim.url}/openai/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "404"


def test_bad_request_body(client: AzureOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[])
    assert caught.value.param == "messages"
