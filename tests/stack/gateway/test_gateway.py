"""The Azure OpenAI-compatible routes end to end: the openai SDK, sync and async, in both the
Azure and the OpenAI shapes, against the real function_app.py under the local Functions host,
the simulator, Azurite and the Cosmos DB server."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncAzureOpenAI, AsyncOpenAI, AzureOpenAI, OpenAI

from devstack.hosted_app import AppHost
from shared.core.settings import Settings
from shared.core.store import CONTENT_FILTER_EVENTS, USAGE, Store
from shared.metering.filter_events import hash_user
from tests.support.hosts import HOST_SETTINGS, host_fixture
from tests.support.records import docs_by_client_request_id
from tests.support.samples import new_id

API_VERSION = "2025-04-01-preview"
TAGS = "team=search,feature=qa"

Client = OpenAI | AzureOpenAI
AsyncClient = AsyncOpenAI | AsyncAzureOpenAI


# The app's client retries once; the simulator asks for 100 ms (see `throttled`).
host = host_fixture("gateway", HOST_SETTINGS)


def client_options(host: AppHost, max_retries: int) -> dict[str, Any]:
    return {
        "api_key": host.team_key,
        "default_headers": {"x-usage-tags": TAGS},
        "max_retries": max_retries,
        "timeout": 30,
    }


def sync_client(host: AppHost, shape: str, max_retries: int = 2) -> Client:
    if shape == "azure":
        return AzureOpenAI(
            azure_endpoint=host.url, api_version=API_VERSION, **client_options(host, max_retries)
        )
    return OpenAI(base_url=f"{host.url}/v1", **client_options(host, max_retries))


def async_client(host: AppHost, shape: str, max_retries: int = 2) -> AsyncClient:
    if shape == "azure":
        return AsyncAzureOpenAI(
            azure_endpoint=host.url, api_version=API_VERSION, **client_options(host, max_retries)
        )
    return AsyncOpenAI(base_url=f"{host.url}/v1", **client_options(host, max_retries))


def user_message(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


SHAPES = ["azure", "openai"]


async def chat_calls(
    host: AppHost,
    shape: str,
    mode: str,
    kwargs: dict[str, Any],
    *,
    times: int = 1,
    max_retries: int = 2,
) -> None:
    """`times` chat completions with a sync (in a thread) or an async client."""
    if mode == "sync":
        with sync_client(host, shape, max_retries) as client:
            for _ in range(times):
                await asyncio.to_thread(client.chat.completions.create, **kwargs)
        return
    async with async_client(host, shape, max_retries) as aclient:
        for _ in range(times):
            await aclient.chat.completions.create(**kwargs)


@pytest.mark.parametrize("shape", SHAPES)
async def test_sync_chat_json_passes_the_answer_through(
    host: AppHost, store: Store, app_settings: Settings, shape: str
) -> None:
    request_id = new_id("gw")
    with sync_client(host, shape) as client:
        completion = await asyncio.to_thread(
            client.chat.completions.create,
            model="default-chat",
            messages=user_message("echo: one two three"),
            user="alice",
            extra_headers={"x-request-id": request_id},
        )
    assert completion.choices[0].message.content == "one two three"
    # Azure's own extension fields arrive as the service sent them.
    assert "content_filter_results" in (completion.choices[0].model_extra or {})
    assert "prompt_filter_results" in (completion.model_extra or {})
    (usage,) = await docs_by_client_request_id(store, USAGE, request_id)
    assert usage["operation"] == "chat"
    assert usage["deployment"] == "gpt-4o"
    assert usage["tags"] == {"team": "search", "feature": "qa"}
    assert usage["user_hash"] == hash_user(
        "alice", app_settings.user_hash_secret.get_secret_value()
    )
    assert completion.usage is not None
    assert usage["total_tokens"] == completion.usage.total_tokens


@pytest.mark.parametrize("shape", SHAPES)
async def test_async_stream_with_usage(host: AppHost, store: Store, shape: str) -> None:
    request_id = new_id("gw")
    async with async_client(host, shape) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o",
            messages=user_message("echo: alpha beta gamma"),
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"x-request-id": request_id},
        )
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "alpha beta gamma"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    (usage,) = await docs_by_client_request_id(store, USAGE, request_id)
    assert (usage["operation"], usage["status"]) == ("chat_stream", "ok")
    assert usage["completion_tokens"] == 3
    assert usage["tags"] == {"team": "search", "feature": "qa"}


async def test_stream_without_usage_asked_still_records_it(host: AppHost, store: Store) -> None:
    """The app asks for the usage chunk for its record and keeps it from a caller that did
    not ask for it."""
    request_id = new_id("gw")
    async with async_client(host, "azure") as client:
        stream = await client.chat.completions.create(
            model="gpt-4o",
            messages=user_message("echo: a b"),
            stream=True,
            extra_headers={"x-request-id": request_id},
        )
        chunks = [chunk async for chunk in stream]
    assert all(c.usage is None for c in chunks)
    (usage,) = await docs_by_client_request_id(store, USAGE, request_id)
    assert usage["completion_tokens"] == 2


@pytest.mark.parametrize("shape", SHAPES)
async def test_sync_stream_with_usage(host: AppHost, shape: str) -> None:
    with sync_client(host, shape) as client:
        stream = await asyncio.to_thread(
            client.chat.completions.create,
            model="gpt-4o",
            messages=user_message("echo: x y"),
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = await asyncio.to_thread(list, stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "x y"
    assert chunks[-1].usage is not None


@pytest.mark.parametrize("shape", SHAPES)
async def test_embeddings_over_a_list(host: AppHost, store: Store, shape: str) -> None:
    request_id = new_id("gw")
    async with async_client(host, shape) as client:
        answer = await client.embeddings.create(
            model="text-embedding-3-small",
            input=["first", "second"],
            dimensions=64,
            extra_headers={"x-request-id": request_id},
        )
    assert [d.index for d in answer.data] == [0, 1]
    assert all(len(d.embedding) == 64 for d in answer.data)
    (usage,) = await docs_by_client_request_id(store, USAGE, request_id)
    assert usage["operation"] == "embedding"
    assert usage["prompt_tokens"] == answer.usage.prompt_tokens > 0


@pytest.mark.parametrize(("shape", "mode"), [("azure", "sync"), ("openai", "async")])
async def test_filtered_prompt_raises_bad_request_with_the_filter_code(
    host: AppHost, store: Store, shape: str, mode: str
) -> None:
    request_id = new_id("gw")
    kwargs: dict[str, Any] = {
        "model": "gpt-4o",
        "messages": user_message("forbidden-violence please"),
        "extra_headers": {"x-request-id": request_id},
    }
    with pytest.raises(openai.BadRequestError) as raised:
        await chat_calls(host, shape, mode, kwargs)
    assert raised.value.code == "content_filter"
    body = raised.value.body
    assert isinstance(body, dict)
    assert body["innererror"]["content_filter_result"]["violence"]["filtered"] is True
    (event,) = await docs_by_client_request_id(store, CONTENT_FILTER_EVENTS, request_id)
    assert (event["stage"], event["source"]) == ("prompt", "gateway")
    (usage,) = await docs_by_client_request_id(store, USAGE, request_id)
    assert usage["status"] == "content_filter"


async def test_filtered_mid_stream_leaves_one_event(host: AppHost, store: Store) -> None:
    request_id = new_id("gw")
    async with async_client(host, "azure") as client:
        stream = await client.chat.completions.create(
            model="gpt-4o",
            messages=user_message("echo: fine words then forbidden-selfharm"),
            stream=True,
            extra_headers={"x-request-id": request_id},
        )
        chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    (event,) = await docs_by_client_request_id(store, CONTENT_FILTER_EVENTS, request_id)
    assert event["stage"] == "completion"
    (usage,) = await docs_by_client_request_id(store, USAGE, request_id)
    assert usage["status"] == "content_filter"


@pytest.mark.parametrize(("shape", "mode"), [("azure", "async"), ("openai", "sync")])
async def test_rate_limit_raises_after_the_sdks_retries(
    host: AppHost, sim_control: httpx.AsyncClient, shape: str, mode: str
) -> None:
    tight = {"deployments": {"gpt-4o": {"rpm": 1}}, "rate_limit": {"retry_after_ms": 100}}
    (await sim_control.patch("/sim/config", json=tight)).raise_for_status()
    (await sim_control.post("/sim/reset", json={"config": False})).raise_for_status()
    kwargs: dict[str, Any] = {"model": "gpt-4o", "messages": user_message("hi")}
    with pytest.raises(openai.RateLimitError) as raised:
        await chat_calls(host, shape, mode, kwargs, times=2, max_retries=1)
    assert raised.value.response.headers["retry-after-ms"] == "100"
    gpt4o = (await sim_control.get("/sim/stats")).json()["deployments"]["gpt-4o"]
    # One answered call; then the caller's call and its one retry, each of which the app
    # tried twice (its own call and its SDK's one retry): four throttled.
    assert (gpt4o["requests"], gpt4o["throttled"]) == (5, 4)


async def test_unknown_deployment_is_azures_404_naming_the_known(host: AppHost) -> None:
    async with async_client(host, "azure") as client:
        with pytest.raises(openai.NotFoundError) as raised:
            await client.chat.completions.create(model="gpt-5", messages=user_message("x"))
    assert raised.value.code == "DeploymentNotFound"
    body = raised.value.body
    assert isinstance(body, dict)
    assert "gpt-4o" in body["details"]["known_models"]


async def test_full_request_bodies_reach_the_service(
    host: AppHost, store: Store, app_settings: Settings
) -> None:
    """Tools, tool_choice, content parts, n, stop, seed, logprobs: nothing is refused."""
    request_id = new_id("gw")
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    }
    parts = [
        {"type": "text", "text": "weather in Paris?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    async with async_client(host, "openai") as client:
        completion = await client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": parts}],
            tools=[tool],  # type: ignore[list-item]
            tool_choice="required",
            n=2,
            stop=["\n\n"],
            seed=7,
            logprobs=False,
            user="bob",
            extra_headers={"x-request-id": request_id},
        )
    assert len(completion.choices) == 2
    calls = completion.choices[0].message.tool_calls
    assert calls is not None
    assert calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    (usage,) = await docs_by_client_request_id(store, USAGE, request_id)
    assert usage["user_hash"] == hash_user("bob", app_settings.user_hash_secret.get_secret_value())


async def last_body(sim: httpx.AsyncClient, deployment: str) -> dict[str, Any] | None:
    """What the simulator last received for `deployment` (None: nothing since its reset)."""
    r = await sim.get(f"/sim/requests/{deployment}/last")
    if r.status_code == 404:
        return None
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    return body


@pytest.mark.parametrize("field", ["data_sources", "dataSources"])
async def test_data_sources_is_refused_before_anything_goes_upstream(
    host: AppHost, sim_control: httpx.AsyncClient, field: str
) -> None:
    """On Your Data makes the account call the endpoints a caller names, with the account's
    own identity: not something a team key should be able to ask for. Before, it was
    forwarded as any unknown field is."""
    (await sim_control.post("/sim/reset")).raise_for_status()
    search = {"type": "azure_search", "parameters": {"endpoint": "https://elsewhere.example"}}
    async with async_client(host, "azure", max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(
                model="gpt-4o",
                messages=user_message("echo: grounded"),
                extra_body={field: [search]},
            )
    error = refused.value.body
    assert isinstance(error, dict)
    assert error["code"] == "invalid_request"
    assert field in error["message"]
    assert error["details"] == {"param": field}
    assert await last_body(sim_control, "gpt-4o") is None  # nothing reached the service


async def test_caller_identifiers_reach_azure_only_as_hmacs(
    host: AppHost, sim_control: httpx.AsyncClient, app_settings: Settings
) -> None:
    """`user`, `safety_identifier` and `prompt_cache_key` name the caller (often an e-mail):
    Azure gets their HMAC, as docs/security.md says; before, the last two went as given."""
    (await sim_control.post("/sim/reset")).raise_for_status()
    secret = app_settings.user_hash_secret.get_secret_value()
    who = "alice@example.com"
    async with async_client(host, "openai", max_retries=0) as client:
        await client.chat.completions.create(
            model="gpt-4o",
            messages=user_message("echo: hi"),
            user=who,
            safety_identifier=who,
            prompt_cache_key=f"{who}:support",
        )
        await client.embeddings.create(
            model="text-embedding-3-small",
            input="hi",
            user=who,
            extra_body={"safety_identifier": who},
        )
    chat = await last_body(sim_control, "gpt-4o")
    assert chat is not None
    assert chat["user"] == chat["safety_identifier"] == hash_user(who, secret)
    assert chat["prompt_cache_key"] == hash_user(f"{who}:support", secret)
    embedded = await last_body(sim_control, "text-embedding-3-small")
    assert embedded is not None
    assert embedded["user"] == embedded["safety_identifier"] == hash_user(who, secret)


async def test_bad_tags_header_is_400(host: AppHost) -> None:
    async with httpx.AsyncClient(base_url=host.url, headers=host.headers()) as http:
        r = await http.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o", "messages": user_message("x")},
            headers={"x-usage-tags": "no-equals-sign"},
        )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_request"


async def test_function_key_is_required(host: AppHost) -> None:
    async with httpx.AsyncClient(base_url=host.url) as http:
        r = await http.post("/v1/embeddings", json={"model": "gpt-4o", "input": "x"})
    assert r.status_code == 401


async def test_stream_broken_after_it_started_raises_the_sdks_api_error(
    host: AppHost, store: Store, sim_control: httpx.AsyncClient
) -> None:
    """The service's stream breaks off after its status line: the `200` is gone, so the app
    ends the stream with one `error` event, which the SDK raises; the call is recorded."""
    broken = {"faults": {"chat": {"drop": 1.0}}}
    (await sim_control.patch("/sim/config", json=broken)).raise_for_status()
    request_id = new_id("gw")
    async with async_client(host, "openai") as client:
        stream = await client.chat.completions.create(
            model="gpt-4o",
            messages=user_message("hi"),
            stream=True,
            extra_headers={"x-request-id": request_id},
        )
        with pytest.raises(openai.APIError, match="the Azure OpenAI stream broke off") as raised:
            _ = [chunk async for chunk in stream]
    assert raised.value.body == {
        "code": "upstream_error",
        "message": "the Azure OpenAI stream broke off",
    }
    (usage,) = await docs_by_client_request_id(store, USAGE, request_id)
    assert (usage["operation"], usage["status"]) == ("chat_stream", "error")


async def test_caller_hanging_up_mid_stream_is_recorded_as_cancelled(
    host: AppHost, store: Store, sim_control: httpx.AsyncClient
) -> None:
    """Closing the connection after the first event closes the upstream stream and records
    the call, as on /api/chat."""
    slow = {"latency": {"per_token_ms": 100}}
    (await sim_control.patch("/sim/config", json=slow)).raise_for_status()
    request_id = new_id("gw")
    text = "echo: " + " ".join(f"w{i}" for i in range(50))
    body = {"model": "gpt-4o", "messages": user_message(text), "stream": True}
    async with (
        httpx.AsyncClient(base_url=host.url, headers=host.headers(), timeout=30) as http,
        http.stream(
            "POST", "/v1/chat/completions", json=body, headers={"x-request-id": request_id}
        ) as r,
    ):
        assert r.status_code == 200
        assert (await anext(r.aiter_lines())).startswith("data: {")
    # Leaving the block closed the connection, about 5 s before the stream would end.
    (usage,) = await docs_by_client_request_id(store, USAGE, request_id)
    assert (usage["operation"], usage["status"]) == ("chat_stream", "cancelled")
