"""Cached and reasoning tokens, end to end: the real function_app.py under the local Functions
host, the simulator (prompt caching and reasoning as Azure's), Azurite and the Cosmos DB server.

A long prompt sent twice: the second answer reports most of it cached; its usage document,
the roll-up and `GET /api/usage` carry the cached tokens, and the report prices them at the
cached-input price, so the repeat costs less than the first call. Before, usage documents had
no such fields and every prompt token cost the input price. A reasoning model's hidden tokens
land in the usage document and the roll-up.

Each test's prompt starts with an id of its own: the session's simulator keeps the prefixes it
answered, so no other test's prompt can be a hit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from openai import AsyncAzureOpenAI, AsyncOpenAI

from devstack.hosted_app import AppHost
from shared.core.store import USAGE, Store
from tests.support.hosts import HOST_SETTINGS, host_fixture
from tests.support.records import docs_by_client_request_id
from tests.support.samples import new_id

host = host_fixture("tokens", HOST_SETTINGS, own_queues=True)

API_VERSION = "2025-04-01-preview"
# The roll-up timer runs every 2 s on test hosts: the report has a call within seconds.
REPORT_TRIES = 300


@pytest.fixture
async def http(host: AppHost) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=host.url, headers=host.headers(), timeout=30) as client:
        yield client


def long_system(run: str) -> str:
    """An 8,008-character system message (2,002 tokens to the simulator), unique to `run`."""
    return (run + " " + "policy " * 1144)[:8008]


def messages(run: str) -> list[dict[str, str]]:
    """The long prompt, and a question whose answer is two words whatever is cached."""
    return [
        {"role": "system", "content": long_system(run)},
        {"role": "user", "content": "echo: alpha beta"},
    ]


async def one_usage(store: Store, request_id: str) -> dict[str, Any]:
    found = await docs_by_client_request_id(store, USAGE, request_id)
    assert len(found) == 1, f"usage documents of {request_id}: {found}"
    return found[0]


async def report_groups(http: httpx.AsyncClient, keys: list[str]) -> dict[str, dict[str, Any]]:
    """The `/api/usage` groups by `tag:run` of `keys`, once the roll-ups count each one call."""
    groups: dict[str, dict[str, Any]] = {}
    for _ in range(REPORT_TRIES):
        report = await http.get("/usage", params={"group_by": "tag:run"})
        assert report.status_code == 200, report.text
        groups = {g["key"]: g for g in report.json()["groups"] if g["key"] in keys}
        if len(groups) == len(keys) and all(g["calls"] == 1 for g in groups.values()):
            return groups
        await asyncio.sleep(0.1)
    raise AssertionError(f"the report never had one call for each of {keys}: {groups}")


async def assert_the_repeat_is_cached_and_cheaper(
    http: httpx.AsyncClient, store: Store, calls: list[tuple[str, str]]
) -> None:
    """`calls`: (client request id, run tag) of the first call and its repeat."""
    (first_id, first_run), (again_id, again_run) = calls
    first, again = await one_usage(store, first_id), await one_usage(store, again_id)
    assert first["cached_tokens"] == 0
    assert 1024 <= again["cached_tokens"] <= again["prompt_tokens"]
    assert again["prompt_tokens"] == first["prompt_tokens"]
    assert again["completion_tokens"] == first["completion_tokens"]
    groups = await report_groups(http, [first_run, again_run])
    assert groups[again_run]["cached_tokens"] == again["cached_tokens"]
    assert groups[first_run]["cached_tokens"] == 0
    # The same tokens, the cached ones at a tenth of the input price (gpt-5.4's list prices).
    assert groups[again_run]["total_tokens"] == groups[first_run]["total_tokens"]
    assert groups[again_run]["estimated_cost_usd"] < groups[first_run]["estimated_cost_usd"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_a_repeated_long_chat_prompt_is_recorded_cached_and_costs_less(
    http: httpx.AsyncClient, store: Store, stream: bool
) -> None:
    run = new_id("chat")
    calls = []
    for attempt in ("first", "again"):
        request_id, tag = new_id(attempt), f"{run}-{attempt}"
        body = {"messages": messages(run), "stream": stream, "tags": {"run": tag}}
        answer = await http.post("/chat", json=body, headers={"x-request-id": request_id})
        assert answer.status_code == 200, answer.text
        calls.append((request_id, tag))
    # The answer's usage says so too: the JSON body, or the stream's done frame.
    if stream:
        done = [line for line in answer.text.splitlines() if '"type":"done"' in line]
        assert len(done) == 1
        assert '"cached_tokens":' in done[0]
        assert '"cached_tokens":0' not in done[0]
    else:
        assert answer.json()["usage"]["cached_tokens"] >= 1024
    await assert_the_repeat_is_cached_and_cheaper(http, store, calls)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_a_repeated_long_gateway_prompt_is_recorded_cached_and_costs_less(
    http: httpx.AsyncClient, host: AppHost, store: Store, stream: bool
) -> None:
    """Both shapes: the OpenAI shape whole, the Azure shape streamed (the usage chunk)."""
    run = new_id("gw")
    calls = []
    for attempt in ("first", "again"):
        request_id, tag = new_id(attempt), f"{run}-{attempt}"
        headers = {"x-usage-tags": f"run={tag}"}
        headers["x-request-id"] = request_id
        if stream:
            azure = AsyncAzureOpenAI(
                azure_endpoint=host.url,
                api_key=host.team_key,
                api_version=API_VERSION,
                default_headers=headers,
            )
            async with azure:
                chunks = await azure.chat.completions.create(
                    model="gpt-4o",
                    messages=messages(run),  # type: ignore[arg-type]
                    stream=True,
                    stream_options={"include_usage": True},
                )
                usage = [c.usage async for c in chunks if c.usage is not None][-1]
        else:
            client = AsyncOpenAI(
                base_url=f"{host.url}/v1", api_key=host.team_key, default_headers=headers
            )
            async with client:
                completion = await client.chat.completions.create(
                    model="gpt-4o",
                    messages=messages(run),  # type: ignore[arg-type]
                )
                assert completion.usage is not None
                usage = completion.usage
        calls.append((request_id, tag))
    assert usage.prompt_tokens_details is not None
    cached = usage.prompt_tokens_details.cached_tokens
    assert (await one_usage(store, calls[1][0]))["cached_tokens"] == cached
    await assert_the_repeat_is_cached_and_cheaper(http, store, calls)


async def test_a_reasoning_models_hidden_tokens_reach_the_usage_document_and_roll_up(
    http: httpx.AsyncClient, host: AppHost, store: Store
) -> None:
    """The default deployment's model (gpt-5.4) reasons when asked: its hidden tokens are
    among the completion tokens, billed as output, and shown apart."""
    request_id, tag = new_id("reason"), new_id("run")
    headers = {"x-usage-tags": f"run={tag}"}
    headers["x-request-id"] = request_id
    client = AsyncOpenAI(base_url=f"{host.url}/v1", api_key=host.team_key, default_headers=headers)
    async with client:
        completion = await client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "echo: alpha beta"}],
            reasoning_effort="low",
        )
    assert completion.usage is not None
    assert completion.usage.completion_tokens_details is not None
    hidden = completion.usage.completion_tokens_details.reasoning_tokens
    assert hidden
    usage = await one_usage(store, request_id)
    assert usage["reasoning_tokens"] == hidden
    assert usage["completion_tokens"] == completion.usage.completion_tokens == hidden + 2
    groups = await report_groups(http, [tag])
    assert groups[tag]["reasoning_tokens"] == hidden
    assert groups[tag]["completion_tokens"] == hidden + 2
