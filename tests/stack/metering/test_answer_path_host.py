"""Bookkeeping never holds an answer and never drops a cut stream, end to end: the real
function_app.py under the local Functions host, the simulator, Azurite and the Cosmos DB server.

- A hung store (the Cosmos DB server paused with SIGSTOP: it accepts connections and never
  answers, as a partitioned or throttled account does) holds no answer: a JSON chat, a streamed
  chat's `[DONE]` and a gateway call all arrive while the server is still paused, and their
  usage documents land through the outbox once it resumes.
- A stream the caller hangs up on before the usage chunk is recorded with the prompt estimate
  and the output seen so far, marked `estimated`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from devstack.emulators import EmulatorStack
from devstack.emulators.outage import cosmos_paused
from devstack.hosted_app import AppHost
from shared.core.store import USAGE, Store
from tests.support.hosts import HOST_SETTINGS, host_fixture
from tests.support.records import docs_by_client_request_id
from tests.support.samples import chat_body, new_id

host = host_fixture("answers", HOST_SETTINGS, own_queues=True)

# Far below the 88 s a paused store held a chat before the fix (issue #21, item 11), far above
# a healthy answer from the simulator.
CLIENT_TIMEOUT = 10.0
# After the server resumes, the outbox's drain writes the documents behind.
OUTBOX_TRIES = 600


@pytest.fixture
async def http(host: AppHost) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=host.url, headers=host.headers(), timeout=CLIENT_TIMEOUT
    ) as client:
        yield client


def gateway_body(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": text}], **extra}


async def one_usage(store: Store, request_id: str, *, tries: int = 30) -> dict[str, Any]:
    found = await docs_by_client_request_id(store, USAGE, request_id, tries=tries)
    assert len(found) == 1, f"usage documents of {request_id}: {found}"
    return found[0]


async def test_answers_are_not_held_by_a_paused_store(
    http: httpx.AsyncClient, emulators: EmulatorStack, store: Store
) -> None:
    # A healthy call first: the host's Cosmos DB client has its connections and account.
    warm = await http.post("/chat", json=chat_body("Hello"))
    assert warm.status_code == 200
    ids = {name: new_id(name) for name in ("json", "sse", "gateway")}
    with cosmos_paused(emulators):
        answer = await http.post(
            "/chat", json=chat_body("Hello there"), headers={"x-request-id": ids["json"]}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["usage"]["total_tokens"] > 0

        # The whole stream, [DONE] and the end of the body, within the client's timeout.
        streamed = await http.post(
            "/chat",
            json=chat_body("echo: alpha beta gamma", stream=True),
            headers={"x-request-id": ids["sse"]},
        )
        assert streamed.status_code == 200
        assert streamed.text.rstrip().endswith("data: [DONE]")

        gateway = await http.post(
            "/v1/chat/completions",
            json=gateway_body("Hello gateway"),
            headers={"x-request-id": ids["gateway"]},
        )
        assert gateway.status_code == 200, gateway.text
        assert gateway.json()["usage"]["total_tokens"] > 0
        # Every answer is in and the server is still paused: nothing of it is stored yet.

    usages = {name: await one_usage(store, rid, tries=OUTBOX_TRIES) for name, rid in ids.items()}
    assert usages["json"]["total_tokens"] == answer.json()["usage"]["total_tokens"]
    assert usages["sse"]["operation"] == "chat_stream"
    assert usages["sse"]["status"] == "ok"
    assert usages["sse"]["completion_tokens"] == 3
    assert usages["gateway"]["total_tokens"] == gateway.json()["usage"]["total_tokens"]


async def slow_pace(sim_control: httpx.AsyncClient) -> None:
    """100 ms a token: a 200-word answer streams for 20 s, and the test hangs up long before."""
    slow = {"latency": {"per_token_ms": 100}}
    (await sim_control.patch("/sim/config", json=slow)).raise_for_status()


LONG_ANSWER = "echo: " + " ".join(f"w{i}" for i in range(200))


async def report_group(http: httpx.AsyncClient, group_by: str, key: str) -> dict[str, Any]:
    """The `/api/usage` group `key`, once the roll-up timer has counted it."""
    for _ in range(OUTBOX_TRIES):
        report = await http.get("/usage", params={"group_by": group_by})
        assert report.status_code == 200, report.text
        groups = [g for g in report.json()["groups"] if g["key"] == key]
        if groups:
            return groups[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {group_by} group {key} in the report")


async def test_a_chat_stream_cut_before_its_usage_is_counted_as_estimated(
    http: httpx.AsyncClient, store: Store, sim_control: httpx.AsyncClient
) -> None:
    await slow_pace(sim_control)
    request_id = new_id("cut")
    body = chat_body(LONG_ANSWER, stream=True, tags={"cut": request_id})
    async with http.stream(
        "POST", "/chat", json=body, headers={"x-request-id": request_id}
    ) as answer:
        assert answer.status_code == 200
        lines = answer.aiter_lines()
        deltas = 0
        while deltas < 3:
            line = await anext(lines)
            deltas += line.startswith('data: {"type":"delta"')
    # Leaving the block hung up, long before the usage chunk.
    usage = await one_usage(store, request_id)
    assert usage["status"] == "cancelled"
    assert usage["estimated"] is True
    assert usage["prompt_tokens"] > 0
    assert 0 < usage["completion_tokens"] < 200
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # The report counts them, and says they were estimated (roll-ups every 2 s here).
    group = await report_group(http, "tag:cut", request_id)
    assert group["total_tokens"] == group["estimated_tokens"] == usage["total_tokens"]


async def test_a_gateway_stream_cut_before_its_usage_is_counted_as_estimated(
    http: httpx.AsyncClient, store: Store, sim_control: httpx.AsyncClient
) -> None:
    await slow_pace(sim_control)
    request_id = new_id("cutgw")
    body = gateway_body(LONG_ANSWER, stream=True)
    async with http.stream(
        "POST", "/v1/chat/completions", json=body, headers={"x-request-id": request_id}
    ) as answer:
        assert answer.status_code == 200
        lines = answer.aiter_lines()
        words = 0
        while words < 3:  # chunks with a word of the answer (after the filter and role chunks)
            line = await anext(lines)
            chunk = json.loads(line[6:]) if line.startswith("data: {") else {}
            words += any(c["delta"].get("content") for c in chunk.get("choices", []))
    usage = await one_usage(store, request_id)
    assert usage["status"] == "cancelled"
    assert usage["estimated"] is True
    assert usage["prompt_tokens"] > 0
    assert 0 < usage["completion_tokens"] < 200


async def test_a_whole_stream_is_counted_as_reported_not_estimated(
    http: httpx.AsyncClient, store: Store
) -> None:
    request_id = new_id("whole")
    answer = await http.post(
        "/chat",
        json=chat_body("echo: alpha beta", stream=True),
        headers={"x-request-id": request_id},
    )
    assert answer.status_code == 200
    usage = await one_usage(store, request_id)
    assert (usage["status"], usage["estimated"], usage["completion_tokens"]) == ("ok", False, 2)
