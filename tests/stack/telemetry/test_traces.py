"""One trace per HTTP call or queue message, read from what the app exported over OTLP.

The real function_app.py under the local Functions host exports its spans to the in-process
receiver (conftest.py); the simulator, Azurite and the Cosmos DB server answer. A call sent with
a `traceparent` continues that trace: its span's parent is the caller's span, and the upstream
attempt (a GenAI CLIENT span) and the Cosmos DB write of its usage document are in the same
trace. A job's message is a trace of its own, linked to the call that submitted it. No prompt
text leaves the app in any exported byte; a 429 counts as throttled for its backend.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from openai import AsyncOpenAI

from devstack.hosted_app import AppHost
from devstack.otlp_receiver import OtlpReceiver, Span
from shared.telemetry import names

DEPLOYMENT = "gpt-4o"
STORE_WRITES = ("upsert_item", "create_item", "replace_item")  # db.operation.name


def new_traceparent() -> tuple[str, str, str]:
    """A caller's `traceparent` (sampled), its trace id and its span id."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def is_call_work(span: Span) -> bool:
    """A span of the work a call does itself: a store call, a queue send or blob upload, an
    upstream attempt."""
    return (
        "db.operation.name" in span.attributes
        or span.kind == "producer"
        or (span.kind == "client" and names.OPERATION in span.attributes)
    )


def in_trace(otlp: OtlpReceiver, trace_id: str) -> list[Span]:
    return [span for span in otlp.spans() if span.trace_id == trace_id]


def call_span(spans: list[Span], parent: str) -> Span | None:
    found = [s for s in spans if s.parent_span_id == parent and s.kind == "internal"]
    return found[0] if len(found) == 1 else None


def upstream(spans: list[Span]) -> list[Span]:
    return [s for s in spans if s.kind == "client" and names.OPERATION in s.attributes]


def store_writes(spans: list[Span]) -> list[Span]:
    """The Cosmos DB writes: `upsert_item usage`, with db.system.name azure.cosmosdb."""
    return [
        s
        for s in spans
        if s.attributes.get("db.system.name") == "azure.cosmosdb"
        and s.attributes.get("db.operation.name") in STORE_WRITES
    ]


def under(spans: list[Span], root: Span) -> set[str]:
    """The ids of `root` and every span below it."""
    ids = {root.span_id}
    grew = True
    while grew:
        more = {s.span_id for s in spans if s.parent_span_id in ids} - ids
        ids |= more
        grew = bool(more)
    return ids


def wait_for_trace(
    otlp: OtlpReceiver, trace_id: str, complete: Callable[[list[Span]], bool]
) -> list[Span]:
    assert otlp.wait_for(lambda: complete(in_trace(otlp, trace_id)), timeout=30), [
        (s.name, s.kind) for s in in_trace(otlp, trace_id)
    ]
    return in_trace(otlp, trace_id)


def full_call(parent: str) -> Callable[[list[Span]], bool]:
    """The call's span, an upstream attempt and a store write are in."""

    def complete(spans: list[Span]) -> bool:
        return (
            call_span(spans, parent) is not None
            and bool(upstream(spans))
            and bool(store_writes(spans))
        )

    return complete


def has_call_span(parent: str) -> Callable[[list[Span]], bool]:
    return lambda spans: call_span(spans, parent) is not None


def assert_one_call_trace(otlp: OtlpReceiver, trace_id: str, parent: str, route: str) -> Span:
    """The call's span continues the caller's; the upstream attempt and the usage write hang
    under it; no Azure SDK span of its time was left a root of its own trace."""
    spans = wait_for_trace(otlp, trace_id, full_call(parent))
    call = call_span(spans, parent)
    assert call is not None
    assert call.name == f"POST {route}"
    assert call.attributes["http.route"] == route
    assert call.attributes["http.request.method"] == "POST"
    assert call.attributes["http.response.status_code"] == 200
    assert call.attributes[names.TEAM]
    below = under(spans, call)
    (attempt,) = upstream(spans)
    assert attempt.span_id in below
    assert attempt.name == f"{attempt.attributes[names.OPERATION]} {DEPLOYMENT}"
    assert attempt.attributes[names.PROVIDER] == names.PROVIDER_NAME
    assert attempt.attributes[names.DEPLOYMENT] == DEPLOYMENT
    assert attempt.attributes[names.BACKEND]
    assert attempt.attributes["server.address"] == "127.0.0.1"
    assert all(w.span_id in below for w in store_writes(spans))
    assert set(under(spans, call)) == {s.span_id for s in spans}  # nothing else in it
    orphans = [
        s
        for s in otlp.spans()
        if not s.parent_span_id and is_call_work(s) and call.start_ns <= s.start_ns <= call.end_ns
    ]
    assert not orphans, [(s.name, s.kind) for s in orphans]
    return call


async def test_a_chat_continues_the_callers_trace_to_the_upstream_call_and_the_store_write(
    http: httpx.AsyncClient, otlp: OtlpReceiver
) -> None:
    traceparent, trace_id, parent = new_traceparent()
    r = await http.post(
        "/chat",
        json={"messages": [{"role": "user", "content": "hello"}]},
        headers={"traceparent": traceparent},
    )
    assert r.status_code == 200, r.text
    call = assert_one_call_trace(otlp, trace_id, parent, "/api/chat")
    assert r.headers["traceresponse"] == f"00-{trace_id}-{call.span_id}-01"
    (attempt,) = upstream(in_trace(otlp, trace_id))
    assert attempt.attributes[names.OPERATION] == "chat"


async def test_a_streamed_chats_span_ends_after_its_stream(
    http: httpx.AsyncClient, otlp: OtlpReceiver
) -> None:
    traceparent, trace_id, parent = new_traceparent()
    body = {"messages": [{"role": "user", "content": "tell a story"}], "stream": True}
    async with http.stream("POST", "/chat", json=body, headers={"traceparent": traceparent}) as r:
        assert r.status_code == 200
        assert r.headers["traceresponse"].startswith(f"00-{trace_id}-")
        text = "".join([chunk async for chunk in r.aiter_text()])
    assert text
    call = assert_one_call_trace(otlp, trace_id, parent, "/api/chat")
    (attempt,) = upstream(in_trace(otlp, trace_id))
    assert call.end_ns > attempt.end_ns
    # The usage document is written after the last chunk, still inside the call's span.
    assert all(w.end_ns <= call.end_ns for w in store_writes(in_trace(otlp, trace_id)))


async def test_a_gateway_call_through_the_openai_sdk_continues_its_trace(
    host: AppHost, otlp: OtlpReceiver
) -> None:
    traceparent, trace_id, parent = new_traceparent()
    async with AsyncOpenAI(
        base_url=f"{host.url}/openai/v1",
        api_key=host.team_key,
        max_retries=0,
        default_headers={"traceparent": traceparent},
    ) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model=DEPLOYMENT, messages=[{"role": "user", "content": "hi"}]
        )
    assert raw.headers["traceresponse"].startswith(f"00-{trace_id}-")
    assert_one_call_trace(otlp, trace_id, parent, "/api/openai/v1/chat/completions")


async def test_a_deployment_in_the_path_is_the_route_template_not_its_name(
    host: AppHost, otlp: OtlpReceiver
) -> None:
    traceparent, trace_id, parent = new_traceparent()
    async with httpx.AsyncClient(base_url=host.url, headers=host.headers(), timeout=60) as c:
        r = await c.post(
            f"/openai/deployments/{DEPLOYMENT}/chat/completions?api-version=2024-10-21",
            json={"messages": [{"role": "user", "content": "hi"}]},
            headers={"traceparent": traceparent},
        )
    assert r.status_code == 200, r.text
    assert_one_call_trace(
        otlp, trace_id, parent, "/api/openai/deployments/{deployment}/chat/completions"
    )


async def submit_and_finish(http: httpx.AsyncClient, body: dict[str, Any], tp: str) -> str:
    r = await http.post("/jobs/classifications", json=body, headers={"traceparent": tp})
    assert r.status_code == 202, r.text
    job_id = str(r.json()["job_id"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = (await http.get(f"/jobs/{job_id}")).json()["status"]
        if status in {"succeeded", "partially_failed", "failed", "cancelled"}:
            assert status == "succeeded", status
            return job_id
        await asyncio.sleep(0.25)
    raise AssertionError(f"job {job_id} did not finish")


async def test_a_job_message_is_a_trace_linked_to_the_call_that_submitted_it(
    http: httpx.AsyncClient, otlp: OtlpReceiver
) -> None:
    traceparent, trace_id, parent = new_traceparent()
    body = {"items": [{"id": "a", "text": "my invoice is wrong"}], "labels": ["billing", "bug"]}
    await submit_and_finish(http, body, traceparent)
    submitted = wait_for_trace(otlp, trace_id, has_call_span(parent))
    submit = call_span(submitted, parent)
    assert submit is not None
    assert submit.name == "POST /api/jobs/classifications"

    def linked() -> list[Span]:
        return [
            s
            for s in otlp.spans()
            if s.kind == "consumer" and (trace_id, submit.span_id) in s.links
        ]

    assert otlp.wait_for(lambda: bool(linked()), timeout=30)
    message = linked()[0]
    assert message.name.startswith("process ")
    assert message.trace_id != trace_id  # a trace of its own
    assert not message.parent_span_id
    assert message.attributes[names.JOB_KIND] == "classification"
    assert message.attributes[names.TEAM]
    spans = wait_for_trace(
        otlp, message.trace_id, lambda s: bool(upstream(s)) and bool(store_writes(s))
    )
    (attempt,) = upstream(spans)
    assert attempt.attributes[names.OPERATION] == "chat"
    assert attempt.attributes[names.DEPLOYMENT]
    assert under(spans, message) == {s.span_id for s in spans}


async def test_no_prompt_text_in_any_exported_byte(
    host: AppHost, http: httpx.AsyncClient, otlp: OtlpReceiver
) -> None:
    marker = f"zq-marker-{uuid.uuid4().hex}"
    prompt: list[Any] = [{"role": "user", "content": f"echo: {marker}"}]
    traces: list[tuple[str, str]] = []

    def traced() -> dict[str, str]:
        traceparent, trace_id, parent = new_traceparent()
        traces.append((trace_id, parent))
        return {"traceparent": traceparent}

    r = await http.post("/chat", json={"messages": prompt}, headers=traced())
    assert r.status_code == 200, r.text
    body = {"messages": prompt, "stream": True}
    async with http.stream("POST", "/chat", json=body, headers=traced()) as streamed:
        # The completion holds it too: neither a prompt nor a completion is exported.
        assert marker in "".join([c async for c in streamed.aiter_text()])
    async with AsyncOpenAI(
        base_url=f"{host.url}/openai/v1", api_key=host.team_key, max_retries=0
    ) as client:
        await client.chat.completions.create(
            model=DEPLOYMENT, messages=prompt, extra_headers=traced()
        )
        await client.responses.create(
            model=DEPLOYMENT, input=f"echo: {marker}", extra_headers=traced()
        )
    job_body = {"items": [{"id": "m", "text": f"about {marker}"}], "labels": ["a", "b"]}
    await submit_and_finish(http, job_body, traced()["traceparent"])
    for trace_id, parent in traces:
        wait_for_trace(otlp, trace_id, has_call_span(parent))
    assert otlp.wait_for(
        lambda: any(
            s.kind == "consumer" and s.attributes.get(names.JOB_KIND) == "classification"
            for s in otlp.spans()
        )
    )
    await asyncio.sleep(6)  # the batch span processor's delay: whatever else was pending
    raw = otlp.raw()
    # The search works: what the app did put in its spans is there, verbatim.
    assert b"/api/openai/v1/responses" in raw
    assert marker.encode() not in raw


@pytest.mark.parametrize("route", ["/chat"])
async def test_a_429_counts_as_throttled_for_its_backend(
    http: httpx.AsyncClient, otlp: OtlpReceiver, sim_control: httpx.AsyncClient, route: str
) -> None:
    def throttled() -> float:
        return sum(
            p.value or 0
            for p in otlp.latest(names.UPSTREAM_REQUESTS)
            if p.attributes.get(names.OUTCOME) == "throttled"
            and p.attributes.get(names.DEPLOYMENT) == DEPLOYMENT
            and p.attributes.get(names.BACKEND)
        )

    before = throttled()
    refusing = {"faults": {"chat": {"error_429": 1.0, "retry_after_ms": 50}}}
    (await sim_control.patch("/sim/config", json=refusing)).raise_for_status()
    r = await http.post(route, json={"messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 429, r.text
    assert otlp.wait_for(lambda: throttled() >= before + 1)
    (await sim_control.post("/sim/reset", json={"config": True})).raise_for_status()
    r = await http.post(route, json={"messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    assert otlp.wait_for(
        lambda: any(
            p.attributes.get(names.OUTCOME) == "ok" for p in otlp.latest(names.UPSTREAM_REQUESTS)
        )
    )
