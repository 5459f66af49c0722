"""Jobs belong to their team (#22 item 5): another team's job is the same 404 as an unknown
one, on GET, cancel and submit; a used job_id with another body is a 409 that runs nothing; a
message dropped on a queue is its `team` field's, else DEFAULT_TEAM's. Before, any caller could
read or cancel any job by id, and a second body under a queued job_id ran in its place.
Teams and keys are made through the admin API; the stack's own host acts as DEFAULT_TEAM."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from shared.core.store import USAGE, Store
from tests.support.jobs_stack import (
    JobsStack,
    all_results,
    items,
    send_raw,
    stack_fixture,
    submit,
    upstream_sends,
    wait_for_job_doc,
    wait_job,
)
from tests.support.records import query_until

stack = stack_fixture("jt")
DEFAULT_TEAM = "default"  # DEFAULT_TEAM's default: the stack's own host acts as it


@dataclass(frozen=True)
class Team:
    id: str
    http: httpx.AsyncClient  # with its key


@pytest.fixture
async def other(stack: JobsStack) -> AsyncIterator[Team]:
    """Another team, made through the admin API, and a client with its key."""
    host, team_id = stack.host, f"jt-{uuid.uuid4().hex[:10]}"
    async with httpx.AsyncClient(base_url=host.url, timeout=30) as admin:
        created = await admin.post("/teams", json={"id": team_id}, headers=host.admin_headers())
    assert created.status_code == 201, created.text
    headers = {"api-key": created.json()["key"]}
    async with httpx.AsyncClient(base_url=host.url, headers=headers, timeout=30) as client:
        yield Team(team_id, client)


def body(job_id: str, text: str = "item {i} about billing") -> dict[str, Any]:
    return {"job_id": job_id, "items": items(3, text), "dimensions": 8}


def same_error(a: httpx.Response, b: httpx.Response) -> None:
    """Two answers a caller cannot tell apart: status, code and message shape."""
    assert (a.status_code, b.status_code) == (404, 404), (a.text, b.text)
    assert a.json()["error"]["code"] == b.json()["error"]["code"] == "not_found"


async def test_another_team_s_job_is_404_on_get_cancel_and_submit(
    http: httpx.AsyncClient, other: Team
) -> None:
    job_id = f"jt-{uuid.uuid4().hex[:10]}"
    await submit(http, "embedding", body(job_id))
    unknown = f"jt-{uuid.uuid4().hex[:10]}"
    them = other.http
    same_error(await them.get(f"/jobs/{job_id}"), await them.get(f"/jobs/{unknown}"))
    same_error(
        await them.post(f"/jobs/{job_id}/cancel"), await them.post(f"/jobs/{unknown}/cancel")
    )
    resubmitted = await them.post("/jobs/embeddings", json=body(job_id))
    assert resubmitted.status_code == 404, resubmitted.text
    view = await wait_job(http, job_id)
    assert view["status"] == "succeeded"  # its owner's job ran, not cancelled


async def test_a_used_job_id_with_another_body_is_409_and_runs_nothing(
    http: httpx.AsyncClient, stack: JobsStack
) -> None:
    job_id = f"jt-{uuid.uuid4().hex[:10]}"
    tag = uuid.uuid4().hex[:8]
    first = body(job_id, f"first {tag} item {{i}}")
    second = body(job_id, f"second {tag} item {{i}}")
    await submit(http, "embedding", first)
    conflict = await http.post("/jobs/embeddings", json=second)
    assert conflict.status_code == 409, conflict.text
    assert conflict.json()["error"]["code"] == "conflict"
    again = await http.post("/jobs/embeddings", json=first)  # the same body: idempotent
    assert again.status_code == 202, again.text
    assert (await wait_job(http, job_id))["status"] == "succeeded"
    assert len(await all_results(http, job_id)) == 3
    texts = [i["text"] for i in second["items"]]
    assert set((await upstream_sends(stack, texts)).values()) <= {0}


async def test_a_queue_message_is_its_team_field_s_else_the_default_team_s(
    http: httpx.AsyncClient, other: Team, stack: JobsStack, store: Store
) -> None:
    named, unnamed = f"jt-{uuid.uuid4().hex[:10]}", f"jt-{uuid.uuid4().hex[:10]}"
    queue = stack.embedding_queue
    for _ in range(2):  # delivered twice: one job, each item once
        await send_raw(stack.connection_string, queue, {**body(named), "team": other.id})
    await send_raw(stack.connection_string, queue, body(unnamed))
    await wait_for_job_doc(other.http, named)
    await wait_for_job_doc(http, unnamed)  # the stack's host acts as DEFAULT_TEAM
    assert (await http.get(f"/jobs/{named}")).status_code == 404
    assert (await other.http.get(f"/jobs/{unnamed}")).status_code == 404
    assert (await wait_job(other.http, named))["status"] == "succeeded"
    assert len(await all_results(other.http, named)) == 3
    assert (await wait_job(http, unnamed))["status"] == "succeeded"
    for job_id, team in ((named, other.id), (unnamed, DEFAULT_TEAM)):
        records = await query_until(
            store, USAGE, "SELECT c.team FROM c WHERE c.job_id = @j", {"@j": job_id}
        )
        assert records, job_id
        assert {r["team"] for r in records} == {team}
