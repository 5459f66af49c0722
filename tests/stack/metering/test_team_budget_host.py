"""A team's limits and budgets on every call (#22 item 4): a team out of its daily budget is
refused `budget_exceeded` on /api/chat and the gateway, with Retry-After and nothing upstream;
answers say the team's room left; a model outside the team's `models` is the route's unknown
model; the team's `max_tokens` clamps the output; `GET /api/teams/{id}` shows the spend. The
real function_app.py under the local Functions host, the simulator, Azurite and the Cosmos DB
server."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from devstack.aoai_simulator import RunningSimulator
from devstack.hosted_app import AppHost
from shared.core.store import TEAM_SPEND, Store
from shared.metering.team_windows import Spend, Windows
from tests.support.hosts import HOST_SETTINGS, host_fixture
from tests.support.simulator import requests_sent_to

API_VERSION = "2025-04-01-preview"
DAY_HEADER = "x-ratelimit-remaining-tokens-day"
MINUTE_HEADER = "x-ratelimit-remaining-tokens"
host = host_fixture("budget", HOST_SETTINGS, own_queues=True)

CHAT = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 20}
GATEWAY_CHAT = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 20}
AZURE_CHAT = f"/openai/deployments/gpt-4o/chat/completions?api-version={API_VERSION}"
AZURE_EMBED = f"/openai/deployments/text-embedding-3-small/embeddings?api-version={API_VERSION}"


@pytest.fixture
async def admin(host: AppHost) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=host.url, headers=host.admin_headers(), timeout=30) as c:
        yield c


async def new_team(admin: httpx.AsyncClient, **fields: Any) -> tuple[str, str]:
    team_id = f"b-{uuid.uuid4().hex[:12]}"
    created = await admin.post("/teams", json={"id": team_id, **fields})
    assert created.status_code == 201, created.text
    return team_id, created.json()["key"]


async def spend_the_day(store: Store, team_id: str, daily_tokens: int) -> None:
    """The team's counters as if it had spent its whole day."""
    spend = Spend(Windows.at(time.time()), day_tokens=daily_tokens)
    await store.create(TEAM_SPEND, spend.doc(team_id))


async def calls_upstream(simulator: RunningSimulator) -> int:
    return await requests_sent_to(simulator.url)


def team_client(host: AppHost, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=host.url, headers={"api-key": key}, timeout=60)


async def test_a_team_out_of_its_daily_budget_is_refused_everywhere_and_nothing_goes_upstream(
    host: AppHost, admin: httpx.AsyncClient, store: Store, simulator: RunningSimulator
) -> None:
    team_id, key = await new_team(admin, daily_tokens=10_000)
    await spend_the_day(store, team_id, 10_000)
    before = await calls_upstream(simulator)
    async with team_client(host, key) as client:
        answers = [
            await client.post("/chat", json=CHAT),
            await client.post("/chat", json={**CHAT, "stream": True}),
            await client.post(AZURE_CHAT, json=GATEWAY_CHAT),
            await client.post(AZURE_CHAT, json={**GATEWAY_CHAT, "stream": True}),
            await client.post("/v1/chat/completions", json={"model": "gpt-4o", **GATEWAY_CHAT}),
            await client.post(AZURE_EMBED, json={"input": "hello"}),
            await client.post(
                "/v1/embeddings", json={"model": "text-embedding-3-small", "input": "hello"}
            ),
        ]
    for answer in answers:
        assert answer.status_code == 429, (answer.request.url, answer.text)
        error = answer.json()["error"]
        assert error["code"] == "budget_exceeded", answer.text
        assert error["details"]["limit"] == "day"
        # Until the next UTC day: at least a second, at most a day.
        assert 1 <= int(answer.headers["retry-after"]) <= 86_400
    assert await calls_upstream(simulator) == before


async def test_answers_say_the_team_s_room_left_and_the_admin_api_shows_the_spend(
    host: AppHost, admin: httpx.AsyncClient
) -> None:
    team_id, key = await new_team(admin, tpm=100_000, daily_tokens=1_000_000, monthly_usd=100)
    async with team_client(host, key) as client:
        answers = [
            await client.post("/chat", json=CHAT),
            await client.post(AZURE_CHAT, json=GATEWAY_CHAT),
        ]
        async with client.stream("POST", "/chat", json={**CHAT, "stream": True}) as sse:
            answers.append(sse)
            await sse.aread()
        async with client.stream("POST", AZURE_CHAT, json={**GATEWAY_CHAT, "stream": True}) as sse:
            answers.append(sse)
            await sse.aread()
    for answer in answers:
        assert answer.status_code == 200, answer.request.url
        assert 0 <= int(answer.headers[DAY_HEADER]) < 1_000_000, answer.request.url
        assert 0 <= int(answer.headers[MINUTE_HEADER]) < 100_000, answer.request.url

    shown = await admin.get(f"/teams/{team_id}")
    assert shown.status_code == 200, shown.text
    spend = shown.json()["spend"]
    assert spend["daily_tokens"] == 1_000_000
    assert spend["tpm"] == 100_000
    assert spend["monthly_usd"] == 100
    # Four calls settled to what they used (a credit booked ahead may count with them).
    assert spend["day_tokens"] > 0
    assert spend["month_usd"] > 0
    assert spend["day"] == time.strftime("%Y-%m-%d", time.gmtime())


async def test_a_model_outside_the_team_s_models_is_an_unknown_model_and_nothing_upstream(
    host: AppHost, admin: httpx.AsyncClient, simulator: RunningSimulator
) -> None:
    _, key = await new_team(admin, models=["gpt-4o"])
    before = await calls_upstream(simulator)
    async with team_client(host, key) as client:
        outside = await client.post(AZURE_EMBED, json={"input": "hello"})
        unknown = await client.post(
            f"/openai/deployments/no-such-model/embeddings?api-version={API_VERSION}",
            json={"input": "hello"},
        )
        v1 = await client.post(
            "/v1/embeddings", json={"model": "text-embedding-3-small", "input": "hello"}
        )
        chat_outside = await client.post("/chat", json={**CHAT, "model": "text-embedding-3-small"})
        chat_unknown = await client.post("/chat", json={**CHAT, "model": "no-such-model"})
    assert await calls_upstream(simulator) == before
    for answer in (outside, unknown, v1):
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"]["code"] == "DeploymentNotFound"
    for answer in (chat_outside, chat_unknown):
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == "invalid_request"
    # What the team may call is all it is told of.
    assert outside.json()["error"]["details"]["known_models"] == ["gpt-4o"]


async def test_the_team_s_max_tokens_clamps_the_output(
    host: AppHost, admin: httpx.AsyncClient
) -> None:
    _, key = await new_team(admin, max_tokens=3)
    long = {"messages": [{"role": "user", "content": "tell me a long story " * 20}]}
    async with team_client(host, key) as client:
        chat = await client.post("/chat", json={**long, "max_tokens": 500})
        gateway = await client.post(AZURE_CHAT, json={**long, "max_completion_tokens": 500})
    assert chat.status_code == 200, chat.text
    assert chat.json()["usage"]["completion_tokens"] <= 3
    assert gateway.status_code == 200, gateway.text
    assert gateway.json()["usage"]["completion_tokens"] <= 3


async def test_a_job_of_a_team_out_of_its_day_waits_for_the_next_day_nothing_sent(
    host: AppHost, admin: httpx.AsyncClient, store: Store, simulator: RunningSimulator
) -> None:
    """With JOB_BUDGET_MAX_WAIT's default (a day) the rest waits for the next UTC day: the job
    says `waiting`, `budget_exceeded`, until when (tests/stack/jobs/test_job_team_budget.py
    has the wait that runs out)."""
    team_id, key = await new_team(admin, daily_tokens=10_000)
    await spend_the_day(store, team_id, 10_000)
    before = await calls_upstream(simulator)
    body = {"items": [{"id": "a", "text": "x"}, {"id": "b", "text": "y"}], "dimensions": 8}
    async with team_client(host, key) as client:
        submitted = await client.post("/jobs/embeddings", json=body)
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["job_id"]
        view: dict[str, Any] = {}
        for _ in range(300):
            view = (await client.get(f"/jobs/{job_id}")).json()
            if view["status"] == "waiting":
                break
            await asyncio.sleep(0.1)
    assert view["status"] == "waiting", view
    assert view["error"]["code"] == "budget_exceeded"
    assert view["error"]["details"]["limit"] == "day"
    assert "tried again at" in view["error"]["message"]
    assert view["counts"]["pending"] == 2
    assert await calls_upstream(simulator) == before


async def test_a_stream_the_caller_hangs_up_on_settles_the_team_to_what_it_sent(
    host: AppHost, admin: httpx.AsyncClient, store: Store, sim_control: httpx.AsyncClient
) -> None:
    """The usage the record estimates (prompt and output sent so far), not the worst case:
    a team whose callers hang up is not charged every output token it could have used."""
    slow = {"latency": {"per_token_ms": 100}}
    (await sim_control.patch("/sim/config", json=slow)).raise_for_status()
    team_id, key = await new_team(admin, daily_tokens=1_000_000)
    # Past half the day: no credit is booked ahead, so the counter is this call's alone.
    spent = 600_000
    await store.create(TEAM_SPEND, Spend(Windows.at(time.time()), day_tokens=spent).doc(team_id))
    text = "echo: " + " ".join(f"w{i}" for i in range(50))
    body = {"messages": [{"role": "user", "content": text}], "max_tokens": 4000, "stream": True}
    async with (
        team_client(host, key) as client,
        client.stream("POST", "/chat", json=body) as sse,
    ):
        assert sse.status_code == 200
        assert (await anext(sse.aiter_lines())).startswith("data: {")
    # Leaving the block hung up, seconds before the stream would end.
    used = 0
    for _ in range(100):
        shown = (await admin.get(f"/teams/{team_id}")).json()["spend"]
        used = shown["day_tokens"] - spent
        if used < 4000:
            break
        await asyncio.sleep(0.1)
    assert 0 < used < 4000, used
