"""A job spends its team's budget (#22 item 4): its requests book against the team's minute,
day and month before they go upstream; refused, the rest waits for the room as a
continuation (the job `waiting`, `error.code` the refusal's), and when room returns past
JOB_BUDGET_MAX_WAIT the remaining items fail with the refusal's code, nothing sent. The real
function_app.py under the local Functions host, its own simulator and queues, Azurite and the
Cosmos DB server; the team's counters are set through the store as its other calls would."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from shared.core.store import JOBS, TEAM_SPEND, Store
from shared.metering.team_windows import Spend, Windows
from tests.support.jobs_stack import (
    JobsStack,
    all_results,
    items,
    send_raw,
    stack_fixture,
    submit,
    upstream_sends,
    wait_job,
)

MAX_WAIT = 300
stack = stack_fixture("jb", settings={"JOB_BUDGET_MAX_WAIT": str(MAX_WAIT)})


@dataclass(frozen=True)
class Team:
    id: str
    http: httpx.AsyncClient  # with its key


async def new_team(stack: JobsStack, **limits: Any) -> tuple[str, str]:
    team_id = f"jb-{uuid.uuid4().hex[:10]}"
    async with httpx.AsyncClient(base_url=stack.host.url, timeout=30) as admin:
        created = await admin.post(
            "/teams", json={"id": team_id, **limits}, headers=stack.host.admin_headers()
        )
    assert created.status_code == 201, created.text
    return team_id, created.json()["key"]


@pytest.fixture
async def team(stack: JobsStack) -> AsyncIterator[Team]:
    """A team with a minute and a day, made through the admin API, and a client with its key."""
    team_id, key = await new_team(stack, tpm=10_000, daily_tokens=100_000)
    async with httpx.AsyncClient(
        base_url=stack.host.url, headers={"api-key": key}, timeout=30
    ) as client:
        yield Team(team_id, client)


async def set_spend(store: Store, team_id: str, **counters: int) -> None:
    """The team's counters as its other calls (another instance) left them."""
    spend = Spend(Windows.at(time.time()), **counters)
    doc = await store.read(TEAM_SPEND, team_id, team_id)
    if doc is None:
        await store.create(TEAM_SPEND, spend.doc(team_id))
    else:
        await store.replace_if_unchanged(TEAM_SPEND, spend.doc(team_id), doc["_etag"])


async def wait_status(
    http: httpx.AsyncClient, job_id: str, status: str, within: float = 60
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + within
    view: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        r = await http.get(f"/jobs/{job_id}", params={"page_size": 1})
        if r.status_code == 200:
            view = r.json()
            if view["status"] == status:
                return view
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} not {status} in {within}s: {view}")


def seconds_to_utc_midnight() -> float:
    moment = datetime.now(UTC)
    return ((moment + timedelta(days=1)).replace(hour=0, minute=0, second=0) - moment).seconds


@pytest.fixture(autouse=True)
def _not_at_the_day_s_end() -> None:
    # Near UTC midnight the day's room returns within JOB_BUDGET_MAX_WAIT: the job would wait.
    if seconds_to_utc_midnight() < MAX_WAIT + 120:
        pytest.skip("too close to UTC midnight for a day's refusal to outlast the wait")


async def test_a_job_out_of_its_team_s_day_fails_its_items_budget_exceeded_nothing_sent(
    stack: JobsStack, store: Store, team: Team
) -> None:
    await set_spend(store, team.id, day_tokens=100_000)
    body: dict[str, Any] = {"items": items(4, "day spent {i}"), "dimensions": 8}
    job_id = await submit(team.http, "embedding", body)
    view = await wait_job(team.http, job_id)
    assert view["status"] == "failed", view
    results = await all_results(team.http, job_id)
    assert len(results) == 4
    for result in results:
        assert result["status"] == "failed", result
        assert result["error"]["code"] == "budget_exceeded", result
        assert "JOB_BUDGET_MAX_WAIT" in result["error"]["message"], result
    sent = await upstream_sends(stack, [i["text"] for i in body["items"]])
    assert set(sent.values()) == {0}, sent


async def test_a_queue_message_of_a_spent_team_delivered_twice_fails_each_item_once(
    stack: JobsStack, store: Store, team: Team
) -> None:
    await set_spend(store, team.id, day_tokens=100_000)
    job_id = f"jb-twice-{uuid.uuid4().hex[:8]}"
    message: dict[str, Any] = {"job_id": job_id, "items": items(3, "twice {i}"), "team": team.id}
    for _ in range(2):
        await send_raw(stack.connection_string, stack.embedding_queue, message)
    view = await wait_job(team.http, job_id)
    assert view["status"] == "failed", view
    assert view["counts"]["total"] == 3
    results = await all_results(team.http, job_id)
    assert sorted(r["item_id"] for r in results) == ["i0", "i1", "i2"]
    assert {r["error"]["code"] for r in results} == {"budget_exceeded"}
    sent = await upstream_sends(stack, [i["text"] for i in message["items"]])
    assert set(sent.values()) == {0}, sent


async def test_a_job_waits_for_its_team_s_minute_then_fails_budget_exceeded_when_the_day_is_spent(
    stack: JobsStack, store: Store, team: Team
) -> None:
    # The minute's room returns at least 20 s after the refusal: time to spend the day then.
    if time.time() % 60 > 40:
        await asyncio.sleep(61 - time.time() % 60)
    await set_spend(store, team.id, minute_tokens=10_000)
    body: dict[str, Any] = {"items": items(3, "minute spent {i}"), "dimensions": 8}
    job_id = await submit(team.http, "embedding", body)

    waiting = await wait_status(team.http, job_id, "waiting")
    assert waiting["error"]["code"] == "rate_limited", waiting
    assert waiting["error"]["details"]["limit"] == "minute"
    assert waiting["counts"]["pending"] == 3

    # Meanwhile the team's other calls spend its day: when the job comes back, room would
    # return past JOB_BUDGET_MAX_WAIT.
    await set_spend(store, team.id, minute_tokens=10_000, day_tokens=100_000)
    view = await wait_job(team.http, job_id, within=120)
    assert view["status"] == "failed", view
    results = await all_results(team.http, job_id)
    assert [r["error"]["code"] for r in results] == ["budget_exceeded"] * 3
    sent = await upstream_sends(stack, [i["text"] for i in body["items"]])
    assert set(sent.values()) == {0}, sent


async def test_a_job_within_its_team_s_limits_runs_and_books_what_it_used(
    stack: JobsStack, store: Store, team: Team
) -> None:
    body: dict[str, Any] = {"items": items(5, "within limits {i}"), "dimensions": 8}
    job_id = await submit(team.http, "embedding", body)
    view = await wait_job(team.http, job_id)
    assert view["status"] == "succeeded", view
    spend = Spend.of(await store.read(TEAM_SPEND, team.id, team.id), Windows.at(time.time()))
    # What the results report, plus at most the credit this instance booked ahead (5% of
    # the smaller limit).
    used = view["usage"]["total_tokens"]
    assert used > 0
    assert used <= spend.day_tokens <= used + 500


async def test_a_job_for_a_model_outside_its_team_s_list_is_refused_over_http_and_on_the_queue(
    stack: JobsStack,
) -> None:
    """The team's `models` hold for jobs as for chat (#22): over HTTP the same 400 as an
    unknown model, telling only the team's models; a message dropped on the queue naming the
    team ends as a failed job with the reason, delivered twice or not; nothing upstream."""
    team_id, key = await new_team(stack, models=["gpt-4o"])
    body: dict[str, Any] = {"items": items(2, "outside the list {i}"), "dimensions": 8}
    async with httpx.AsyncClient(
        base_url=stack.host.url, headers={"api-key": key}, timeout=30
    ) as http:
        refused = await http.post("/jobs/embeddings", json=body)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "invalid_request"
        assert refused.json()["error"]["details"]["known_models"] == ["gpt-4o"]

        job_id = f"jb-models-{uuid.uuid4().hex[:8]}"
        message = {**body, "job_id": job_id, "team": team_id}
        for _ in range(2):
            await send_raw(stack.connection_string, stack.embedding_queue, message)
        view = await wait_job(http, job_id)
    assert view["status"] == "failed", view
    assert view["error"]["code"] == "invalid_job", view
    assert view["error"]["details"]["known_models"] == ["gpt-4o"], view
    sent = await upstream_sends(stack, [i["text"] for i in body["items"]])
    assert set(sent.values()) == {0}, sent


async def test_a_disabled_team_s_queued_job_fails_team_disabled_and_sends_nothing(
    stack: JobsStack, store: Store, team: Team
) -> None:
    """A disabled team's keys are a 401; its work already on the queue (or dropped there
    naming it) stops too, however often the message is delivered. Its job record says why
    (read from the store: the team's key cannot read it now)."""
    async with httpx.AsyncClient(base_url=stack.host.url, timeout=30) as admin:
        changed = await admin.patch(
            f"/teams/{team.id}", json={"disabled": True}, headers=stack.host.admin_headers()
        )
    assert changed.status_code == 200, changed.text
    job_id = f"jb-disabled-{uuid.uuid4().hex[:8]}"
    body: dict[str, Any] = {"job_id": job_id, "items": items(2, "disabled {i}"), "team": team.id}
    for _ in range(2):
        await send_raw(stack.connection_string, stack.embedding_queue, body)
    doc: dict[str, Any] | None = None
    for _ in range(600):
        doc = await store.read(JOBS, job_id, job_id)
        if doc is not None and doc["status"] == "failed":
            break
        await asyncio.sleep(0.1)
    assert doc is not None
    assert doc["status"] == "failed", doc
    assert doc["error"]["code"] == "team_disabled", doc
    assert doc["team"] == team.id
    sent = await upstream_sends(stack, [i["text"] for i in body["items"]])
    assert set(sent.values()) == {0}, sent
