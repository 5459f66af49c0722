"""A team's day budget under concurrency through two host processes (#22, "Concurrency"): 60
calls at once, half at each host, against a budget that admits about ten calls' worst case.
Every answer is a 200 or a 429 `budget_exceeded`, and no more room is refused than one host's
credit; nothing past the budget goes upstream; the spend recorded (the team's usage documents
and its day counter) passes the budget by no more than the calls' prompt-estimate error,
computed here from what the simulator counted against what the app booked. Two real
function_app.py hosts under the local Functions host, sharing the simulator, Azurite and the
Cosmos DB server: of the team's spend they share only its counters document (`team_spend`).
Each route gets a team of its own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from devstack.aoai_simulator import RunningSimulator
from devstack.hosted_app import AppHost, fresh_queues
from shared.core.store import USAGE, Store
from shared.gateway.service import prompt_text
from shared.metering.callers import chat_estimate
from tests.support.hosts import HOST_SETTINGS, app_host
from tests.support.records import query_until
from tests.support.simulator import requests_sent_to

API_VERSION = "2025-04-01-preview"
AZURE_CHAT = f"/openai/deployments/gpt-4o/chat/completions?api-version={API_VERSION}"
CALLS = 60
MAX_TOKENS = 200
# An echo of more words than MAX_TOKENS: every call uses its whole output cap (one token a
# word), so real use is the worst case plus the prompt estimate's error, the most it can be.
PROMPT = "echo: " + " ".join(f"w{i:03d}" for i in range(300))
MESSAGES = [{"role": "user", "content": PROMPT}]
# The calls overlap: each waits this long upstream, so all 60 are booked before any settles.
UPSTREAM_MS = 300


@dataclass(frozen=True)
class Route:
    path: str
    body: dict[str, Any]


ROUTES = {
    "chat": Route("/chat", {"messages": MESSAGES, "max_tokens": MAX_TOKENS}),
    "gateway": Route(AZURE_CHAT, {"messages": MESSAGES, "max_tokens": MAX_TOKENS}),
}


def booked(route: Route) -> int:
    """The worst case the app books for one call of `route`: its own estimate of the prompt
    (chat: shared/chat/service.py; gateway: the same function it calls) plus the output cap."""
    return chat_estimate(prompt_text(route.body["messages"]), route.body, MAX_TOKENS)


@pytest.fixture(scope="module")
def hosts(
    app_environ: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[AppHost, AppHost]]:
    """Two processes of the app on the same stack (queues of their own, so no other host of
    the session takes their messages)."""
    environ = {**app_environ, **fresh_queues("concurrency"), **HOST_SETTINGS}
    with (
        app_host(environ, tmp_path_factory.mktemp("concurrency-a")) as first,
        app_host(environ, tmp_path_factory.mktemp("concurrency-b")) as second,
    ):
        yield first, second


@pytest.fixture
async def admin(hosts: tuple[AppHost, AppHost]) -> AsyncIterator[httpx.AsyncClient]:
    first = hosts[0]
    async with httpx.AsyncClient(
        base_url=first.url, headers=first.admin_headers(), timeout=30
    ) as client:
        yield client


async def calls_upstream(simulator: RunningSimulator) -> int:
    return await requests_sent_to(simulator.url)


@pytest.mark.parametrize("route_name", sorted(ROUTES))
async def test_sixty_calls_at_once_on_two_hosts_pass_the_budget_by_the_estimate_error_only(
    route_name: str,
    hosts: tuple[AppHost, AppHost],
    admin: httpx.AsyncClient,
    store: Store,
    simulator: RunningSimulator,
    sim_control: httpx.AsyncClient,
) -> None:
    route = ROUTES[route_name]
    worst = booked(route)
    budget = 10 * worst
    slow = {"latency": {"request_ms": UPSTREAM_MS}}
    (await sim_control.patch("/sim/config", json=slow)).raise_for_status()
    team_id = f"c-{uuid.uuid4().hex[:12]}"
    created = await admin.post("/teams", json={"id": team_id, "daily_tokens": budget})
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    before = await calls_upstream(simulator)

    clients = [
        httpx.AsyncClient(base_url=h.url, headers={"api-key": key}, timeout=60) for h in hosts
    ]
    try:
        answers = await asyncio.gather(
            *(clients[i % 2].post(route.path, json=route.body) for i in range(CALLS))
        )
    finally:
        for client in clients:
            await client.aclose()

    ok = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code != 200]
    for answer in refused:
        assert answer.status_code == 429, answer.text
        assert answer.json()["error"]["code"] == "budget_exceeded", answer.text
    assert refused, "every call was admitted"
    # Nor refused with room left: at most one call's room is held as the other host's credit
    # (5% of the budget each, docs/security.md), so nine of the ten worst cases are admitted.
    assert len(ok) >= 9, len(ok)
    # Nothing past the budget went upstream: one upstream request per admitted call.
    assert await calls_upstream(simulator) - before == len(ok)

    # The bound: what each admitted call used beyond what it booked (Azure stops at the output
    # cap, so only the prompt's real count above the app's estimate), summed over the calls
    # that could be in flight at once: at most every admitted one.
    used = [a.json()["usage"] for a in ok]
    assert all(u["completion_tokens"] == MAX_TOKENS for u in used), used
    error = sum(max(0, u["total_tokens"] - worst) for u in used)
    assert error > 0  # the simulator counts message overheads the estimate leaves out

    records = await query_until(
        store, USAGE, "SELECT * FROM c WHERE c.team = @t", {"@t": team_id}, count=len(ok)
    )
    assert len(records) == len(ok)
    recorded = sum(int(r["total_tokens"]) for r in records)
    assert recorded == sum(u["total_tokens"] for u in used)
    assert recorded <= budget + error, (recorded, budget, error)

    shown = await admin.get(f"/teams/{team_id}")
    assert shown.status_code == 200, shown.text
    # The counter: what was used, plus any credit an instance still holds (booked, unused).
    counted = shown.json()["spend"]["day_tokens"]
    assert recorded <= counted <= budget + error, (counted, budget, error)
