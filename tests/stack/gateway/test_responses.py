"""Azure's v1 shape and the Responses API through the gateway, end to end: the openai SDK
against the real function_app.py under the local Functions host, the simulator, Azurite and
the Cosmos DB server.

`OpenAI(base_url="<app>/api/openai/v1")` serves chat, streams and embeddings unchanged; each
`responses.create` (streamed or not, alone or continuing with `previous_response_id`) leaves
one usage document with the team and the tokens of the service's usage, cached and reasoning
ones included; a caller hanging up is `cancelled`; a response belongs to the team that created
it; a call without a key is Azure's 401.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncAzureOpenAI, AsyncOpenAI

from devstack.hosted_app import AppHost
from shared.core.settings import Settings
from shared.core.store import CONTENT_FILTER_EVENTS, RESPONSES, TEAM_SPEND, USAGE, Store
from tests.support.hosts import HOST_SETTINGS, host_fixture
from tests.support.records import docs_by_client_request_id, query_until
from tests.support.samples import new_id
from tests.support.simulator import requests_sent

host = host_fixture("responses", HOST_SETTINGS)

API_VERSION = "2025-04-01-preview"
TEAM = "default"  # the test hosts' team (DEFAULT_TEAM unset)


def v1_client(host: AppHost, key: str | None = None) -> AsyncOpenAI:
    """Azure's v1 shape, pointed at the app."""
    return AsyncOpenAI(
        base_url=f"{host.url}/openai/v1", api_key=key or host.team_key, max_retries=0, timeout=30
    )


async def one_usage(store: Store, request_id: str) -> dict[str, Any]:
    found = await docs_by_client_request_id(store, USAGE, request_id)
    assert len(found) == 1, f"usage documents of {request_id}: {found}"
    return found[0]


def rid(request_id: str) -> dict[str, dict[str, str]]:
    return {"extra_headers": {"x-request-id": request_id}}


@pytest.fixture
async def admin(host: AppHost) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=host.url, headers=host.admin_headers(), timeout=30) as c:
        yield c


async def other_team_key(admin: httpx.AsyncClient) -> str:
    created = await admin.post("/teams", json={"id": f"r-{uuid.uuid4().hex[:12]}"})
    assert created.status_code == 201, created.text
    return str(created.json()["key"])


async def test_the_v1_shape_serves_chat_streams_and_embeddings_unchanged(
    host: AppHost, store: Store
) -> None:
    chat_id, stream_id, embed_id = new_id("v1"), new_id("v1"), new_id("v1")
    async with v1_client(host) as client:
        completion = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "echo: one two"}], **rid(chat_id)
        )
        stream = await client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "echo: three four"}],
            stream=True,
            **rid(stream_id),
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        embedded = await client.embeddings.create(
            model="text-embedding-3-small", input=["a", "b"], **rid(embed_id)
        )
    assert completion.choices[0].message.content == "one two"
    assert text == "three four"
    assert len(embedded.data) == 2
    chat, streamed, embedding = [await one_usage(store, i) for i in (chat_id, stream_id, embed_id)]
    assert (chat["operation"], chat["status"], chat["team"]) == ("chat", "ok", TEAM)
    assert completion.usage is not None
    assert chat["total_tokens"] == completion.usage.total_tokens
    assert (streamed["operation"], streamed["status"]) == ("chat_stream", "ok")
    assert embedding["operation"] == "embedding"


async def test_a_response_and_its_follow_up_each_leave_one_usage_record(
    host: AppHost, store: Store
) -> None:
    first_id, second_id = new_id("rs"), new_id("rs")
    async with v1_client(host) as client:
        first = await client.responses.create(
            model="gpt-4o", input="echo: alpha beta", **rid(first_id)
        )
        second = await client.responses.create(
            model="gpt-4o",
            input="echo: gamma",
            previous_response_id=first.id,
            **rid(second_id),
        )
    assert (first.output_text, second.output_text) == ("alpha beta", "gamma")
    assert first.usage is not None
    assert second.usage is not None
    # The earlier turn is input of the follow-up.
    assert second.usage.input_tokens > first.usage.input_tokens
    for response, request_id in ((first, first_id), (second, second_id)):
        usage = await one_usage(store, request_id)
        assert response.usage is not None
        assert (usage["operation"], usage["status"], usage["team"]) == ("responses", "ok", TEAM)
        assert usage["prompt_tokens"] == response.usage.input_tokens
        assert usage["completion_tokens"] == response.usage.output_tokens
        assert usage["total_tokens"] == response.usage.total_tokens
        assert usage["backend"] == "default"
    # Where it lives is recorded, with its team.
    home = await store.read(RESPONSES, first.id, first.id)
    assert home is not None
    assert (home["team"], home["backend"], home["deployment"]) == (TEAM, "default", "gpt-4o")


async def test_cached_and_reasoning_tokens_of_a_response_are_recorded(
    host: AppHost, store: Store
) -> None:
    """A long instruction sent twice is mostly cached the second time; reasoning effort low
    spends hidden tokens: both land in the usage document as the service reported them."""
    run = uuid.uuid4().hex
    instructions = (run + " " + "policy " * 1144)[:8008]
    ids = [new_id("rc"), new_id("rc")]
    answers = []
    async with v1_client(host) as client:
        for request_id in ids:
            answers.append(
                await client.responses.create(
                    model="gpt-4o",
                    instructions=instructions,
                    input="echo: alpha beta",
                    reasoning={"effort": "low"},
                    **rid(request_id),
                )
            )
    again = answers[1].usage
    assert again is not None
    assert again.input_tokens_details.cached_tokens > 0
    assert again.output_tokens_details.reasoning_tokens > 0
    usage = await one_usage(store, ids[1])
    assert usage["cached_tokens"] == again.input_tokens_details.cached_tokens
    assert usage["reasoning_tokens"] == again.output_tokens_details.reasoning_tokens


async def test_a_streamed_response_passes_through_and_records_the_completed_usage(
    host: AppHost, store: Store
) -> None:
    request_id = new_id("rs")
    async with v1_client(host) as client:
        stream = await client.responses.create(
            model="gpt-4o", input="echo: one two three", stream=True, **rid(request_id)
        )
        events = [event async for event in stream]
    types = [event.type for event in events]
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    assert [event.sequence_number for event in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "one two three"
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.usage is not None
    usage = await one_usage(store, request_id)
    assert (usage["operation"], usage["status"]) == ("responses_stream", "ok")
    assert usage["total_tokens"] == completed.response.usage.total_tokens
    assert usage["prompt_tokens"] == completed.response.usage.input_tokens


async def test_a_caller_hanging_up_mid_stream_is_recorded_as_cancelled(
    host: AppHost, store: Store, sim_control: httpx.AsyncClient
) -> None:
    slow = {"latency": {"per_token_ms": 100}}
    (await sim_control.patch("/sim/config", json=slow)).raise_for_status()
    request_id = new_id("rs")
    text = "echo: " + " ".join(f"w{i}" for i in range(50))
    body = {"model": "gpt-4o", "input": text, "stream": True}
    async with (
        httpx.AsyncClient(base_url=host.url, headers=host.headers(), timeout=30) as http,
        http.stream(
            "POST", "/openai/v1/responses", json=body, headers={"x-request-id": request_id}
        ) as r,
    ):
        assert r.status_code == 200
        assert (await anext(r.aiter_lines())).startswith("event: response.created")
    usage = await one_usage(store, request_id)
    assert (usage["operation"], usage["status"]) == ("responses_stream", "cancelled")


@pytest.mark.parametrize(
    ("fault", "cause"),
    [("stream_failure", "the service's response.failed"), ("drop", "the connection breaks")],
)
async def test_a_stream_failing_after_its_first_byte_ends_as_the_service_ends_one(
    host: AppHost, store: Store, sim_control: httpx.AsyncClient, fault: str, cause: str
) -> None:
    """The status line is gone: the stream ends with `response.failed` (the service's own,
    passed through, or the app's in its shape when the connection broke), which the SDK
    parses; the call is recorded as `error`."""
    broken = {"faults": {"responses": {fault: 1.0}}}
    (await sim_control.patch("/sim/config", json=broken)).raise_for_status()
    request_id = new_id("rs")
    text = "echo: " + " ".join(f"w{i}" for i in range(20))
    async with v1_client(host) as client:
        stream = await client.responses.create(
            model="gpt-4o", input=text, stream=True, **rid(request_id)
        )
        events = [event async for event in stream]
    last = events[-1]
    assert last.type in ("response.failed", "error"), cause
    if last.type == "response.failed":
        assert last.response.status == "failed"
        assert last.response.error is not None
    assert [event.sequence_number for event in events] == list(range(len(events)))
    usage = await one_usage(store, request_id)
    assert (usage["operation"], usage["status"]) == ("responses_stream", "error")


async def test_the_preview_and_openai_shapes_reach_the_same_responses(
    host: AppHost, store: Store
) -> None:
    azure = AsyncAzureOpenAI(
        azure_endpoint=host.url, api_version=API_VERSION, api_key=host.team_key, max_retries=0
    )
    openai_shape = AsyncOpenAI(base_url=f"{host.url}/v1", api_key=host.team_key, max_retries=0)
    async with azure, openai_shape:
        created = await azure.responses.create(model="gpt-4o", input="echo: preview shape")
        assert created.output_text == "preview shape"
        again = await openai_shape.responses.retrieve(created.id)
        assert again.output_text == "preview shape"
        items = await azure.responses.input_items.list(created.id)
        assert [item.type for item in items.data] == ["message"]
        await openai_shape.responses.delete(created.id)
        with pytest.raises(openai.NotFoundError):
            await azure.responses.retrieve(created.id)


async def test_another_team_s_response_is_not_found_and_no_key_is_azure_s_401(
    host: AppHost, admin: httpx.AsyncClient, sim_control: httpx.AsyncClient
) -> None:
    async with v1_client(host) as mine:
        created = await mine.responses.create(model="gpt-4o", input="echo: mine")
    before = requests_sent((await sim_control.get("/sim/stats")).json())
    async with v1_client(host, await other_team_key(admin)) as theirs:
        for read in (
            lambda: theirs.responses.retrieve(created.id),
            lambda: theirs.responses.delete(created.id),
            lambda: theirs.responses.input_items.list(created.id),
            lambda: theirs.responses.cancel(created.id),
        ):
            with pytest.raises(openai.NotFoundError) as missing:
                await read()
            assert missing.value.body == {
                "message": f"Response with id '{created.id}' not found.",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        with pytest.raises(openai.BadRequestError) as refused:
            await theirs.responses.create(
                model="gpt-4o", input="echo: x", previous_response_id=created.id
            )
        assert refused.value.code == "previous_response_not_found"
    # None of it reached the service.
    assert requests_sent((await sim_control.get("/sim/stats")).json()) == before
    async with httpx.AsyncClient(base_url=host.url, timeout=30) as anonymous:
        for method, path in (
            ("POST", "/openai/v1/responses"),
            ("POST", "/openai/responses"),
            ("POST", "/v1/responses"),
            ("GET", f"/openai/v1/responses/{created.id}"),
            ("DELETE", f"/v1/responses/{created.id}"),
        ):
            answer = await anonymous.request(method, path, json={"model": "gpt-4o", "input": "x"})
            assert answer.status_code == 401, (path, answer.text)
            assert answer.json()["error"]["code"] == "401", path


async def test_the_output_cap_and_a_filtered_input_hold_on_the_responses_route(
    host: AppHost, store: Store, sim_control: httpx.AsyncClient, app_settings: Settings
) -> None:
    """No `max_output_tokens`: CHAT_MAX_TOKENS_LIMIT is sent; above it, the app's 400; an
    input the filter refuses is the service's 400 and one event in chat's shape."""
    async with v1_client(host) as client:
        await client.responses.create(model="gpt-4o", input="echo: capped")
        sent = (await sim_control.get("/sim/requests/gpt-4o/last")).json()
        with pytest.raises(openai.BadRequestError):
            await client.responses.create(model="gpt-4o", input="x", max_output_tokens=10**6)
        with pytest.raises(openai.NotFoundError):
            await client.responses.create(model="no-such-model", input="x")
        request_id = new_id("rf")
        with pytest.raises(openai.BadRequestError) as filtered:
            await client.responses.create(
                model="gpt-4o", input="forbidden-violence", **rid(request_id)
            )
    assert filtered.value.code == "content_filter"
    assert sent["max_output_tokens"] == app_settings.chat_max_tokens_limit
    (event,) = await docs_by_client_request_id(store, CONTENT_FILTER_EVENTS, request_id)
    assert (event["stage"], event["source"]) == ("prompt", "gateway")
    assert event["categories"]["violence"]["filtered"] is True
    usage = await one_usage(store, request_id)
    assert (usage["operation"], usage["status"]) == ("responses", "content_filter")


@pytest.mark.parametrize("stream", [False, True])
async def test_an_output_cut_by_the_filter_is_one_completion_event_in_chat_s_shape(
    host: AppHost, store: Store, stream: bool
) -> None:
    request_id = new_id("rf")
    async with v1_client(host) as client:
        if stream:
            events = await client.responses.create(
                model="gpt-4o",
                input="echo: fine then forbidden-selfharm",
                stream=True,
                **rid(request_id),
            )
            last = [event async for event in events][-1]
            assert last.type == "response.incomplete"
            response = last.response
        else:
            response = await client.responses.create(
                model="gpt-4o", input="echo: fine then forbidden-selfharm", **rid(request_id)
            )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "content_filter"
    (event,) = await docs_by_client_request_id(store, CONTENT_FILTER_EVENTS, request_id)
    assert (event["stage"], event["source"], event["deployment"]) == (
        "completion",
        "gateway",
        "gpt-4o",
    )
    usage = await one_usage(store, request_id)
    assert usage["status"] == "content_filter"
    assert usage["operation"] == ("responses_stream" if stream else "responses")


async def test_a_background_response_is_polled_and_cancelled_through_the_app(
    host: AppHost, store: Store, sim_control: httpx.AsyncClient
) -> None:
    request_id = new_id("rb")
    async with v1_client(host) as client:
        queued = await client.responses.create(
            model="gpt-4o", input="echo: later", background=True, **rid(request_id)
        )
        assert queued.status in ("queued", "in_progress")
        polled = queued
        for _ in range(100):
            polled = await client.responses.retrieve(queued.id)
            if polled.status == "completed":
                break
            await asyncio.sleep(0.05)
        assert (polled.status, polled.output_text) == ("completed", "later")
        items = await client.responses.input_items.list(queued.id, order="asc")
        assert len(items.data) == 1
        slow = {"latency": {"per_token_ms": 100}}
        (await sim_control.patch("/sim/config", json=slow)).raise_for_status()
        cancel_id = new_id("rb")
        other = await client.responses.create(
            model="gpt-4o", input="echo: " + "w " * 50, background=True, **rid(cancel_id)
        )
        cancelled = await client.responses.cancel(other.id)
        assert cancelled.status == "cancelled"
    # Its usage document, written at the create without tokens, has them once a poll found
    # the response done: still one document.
    assert polled.usage is not None
    query = "SELECT * FROM c WHERE c.client_request_id = @rid AND c.total_tokens > 0"
    (usage,) = await query_until(store, USAGE, query, {"@rid": request_id})
    assert (usage["operation"], usage["status"], usage["team"]) == ("responses", "ok", TEAM)
    assert usage["prompt_tokens"] == polled.usage.input_tokens
    assert usage["total_tokens"] == polled.usage.total_tokens
    assert usage["id"] == f"response:{queued.id}"
    assert len(await docs_by_client_request_id(store, USAGE, request_id)) == 1
    query = "SELECT * FROM c WHERE c.client_request_id = @rid AND c.status = 'cancelled'"
    (stopped,) = await query_until(store, USAGE, query, {"@rid": cancel_id})
    assert stopped["total_tokens"] == 0


async def test_a_background_response_settles_its_team_s_booking_once_to_what_it_used(
    host: AppHost, admin: httpx.AsyncClient, store: Store
) -> None:
    """A background create books its worst case (its tokens are unknown then); the poll that
    finds it done settles the team's day to what it used, and later polls change nothing.
    The day budget is small enough that no credit is booked beside the call, so the counter
    is the call's alone."""
    team = f"rb-{uuid.uuid4().hex[:12]}"
    created = await admin.post("/teams", json={"id": team, "daily_tokens": 150})
    assert created.status_code == 201, created.text
    async with v1_client(host, created.json()["key"]) as client:
        queued = await client.responses.create(
            model="gpt-4o", input="echo: later", background=True, max_output_tokens=100
        )
        booked = await store.read(TEAM_SPEND, team, team)
        assert booked is not None
        assert booked["day_tokens"] > 100  # the worst case: the prompt and the whole cap
        polled = queued
        for _ in range(100):
            polled = await client.responses.retrieve(queued.id)
            if polled.status == "completed":
                break
            await asyncio.sleep(0.05)
        assert polled.status == "completed"
        for _ in range(2):  # polls after it settled
            await client.responses.retrieve(queued.id)
    assert polled.usage is not None
    spent = await store.read(TEAM_SPEND, team, team)
    assert spent is not None
    assert spent["day_tokens"] == polled.usage.total_tokens


async def test_a_team_s_models_and_max_tokens_hold_on_the_responses_route(
    host: AppHost, admin: httpx.AsyncClient, sim_control: httpx.AsyncClient
) -> None:
    team = f"r-{uuid.uuid4().hex[:12]}"
    created = await admin.post("/teams", json={"id": team, "models": ["gpt-4o"], "max_tokens": 50})
    assert created.status_code == 201, created.text
    async with v1_client(host, created.json()["key"]) as client:
        with pytest.raises(openai.NotFoundError) as outside:
            await client.responses.create(model="text-embedding-3-small", input="x")
        assert outside.value.code == "DeploymentNotFound"
        await client.responses.create(model="gpt-4o", input="echo: clamped", max_output_tokens=200)
        sent = (await sim_control.get("/sim/requests/gpt-4o/last")).json()
    assert sent["max_output_tokens"] == 50
