"""The app's metrics as exported over OTLP (docs/telemetry.md, "Metrics"): a chat, a gateway
call, a streamed chat and a job's items each record gen_ai.client.token.usage with the counts
their answer reports and the dimensions of the call; a stream its time to first chunk; a call
refused upstream with a 429 its duration as `throttled`.

Metrics are cumulative, so each test reads the totals of its series before and after, and
compares the difference (the host is this module's alone, its team and queues too).
"""

from __future__ import annotations

from typing import Any

import httpx
from openai import AsyncOpenAI

from devstack.hosted_app import AppHost
from devstack.otlp_receiver import OtlpReceiver
from shared.core.store import USAGE, Store
from shared.telemetry import names
from tests.support.jobs_stack import all_results, items, submit, wait_job
from tests.support.records import docs_by_client_request_id
from tests.support.samples import chat_body, new_id
from tests.support.sse import parse_frames, split_stream

WAIT = 20.0  # seconds for an export to carry a change (the host exports every 500 ms)


def totals(otlp: OtlpReceiver, metric: str, **match: str) -> dict[str, tuple[float, int]]:
    """The series of `metric` whose attributes include `match`: (sum or value, count) per
    token type (or "" for metrics without one), summed over the other attributes."""
    found: dict[str, tuple[float, int]] = {}
    for point in otlp.latest(metric):
        attributes = point.attributes
        if any(attributes.get(key) != value for key, value in match.items()):
            continue
        key = str(attributes.get(names.TOKEN_TYPE, ""))
        total, count = found.get(key, (0.0, 0))
        value = point.sum if point.sum is not None else point.value or 0.0
        found[key] = (total + value, count + (point.count or 0))
    return found


def delta(
    before: dict[str, tuple[float, int]], after: dict[str, tuple[float, int]]
) -> dict[str, tuple[float, int]]:
    changed = {}
    for key, (total, count) in after.items():
        old_total, old_count = before.get(key, (0.0, 0))
        if (total, count) != (old_total, old_count):
            changed[key] = (total - old_total, count - old_count)
    return changed


def changed_by(
    otlp: OtlpReceiver, metric: str, before: dict[str, tuple[float, int]], **match: str
) -> dict[str, tuple[float, int]]:
    """What `metric` gained since `before` in the series matching `match`, once an export
    has carried a change (and one more interval for the rest of a call's points)."""
    otlp.wait_for(lambda: bool(delta(before, totals(otlp, metric, **match))), WAIT)
    otlp.wait_for(lambda: False, 1.2)  # one more export: every point of the call is in it
    return delta(before, totals(otlp, metric, **match))


def dimensions(host: AppHost, route: str, deployment: str, backend: str) -> dict[str, str]:
    return {
        names.ROUTE: route,
        names.TEAM: host.team,
        names.DEPLOYMENT: deployment,
        names.BACKEND: backend,
        names.OUTCOME: "ok",
        names.PROVIDER: names.PROVIDER_NAME,
    }


def tokens_of(usage: dict[str, Any]) -> dict[str, tuple[float, int]]:
    """The token metric's change one call with `usage` makes: one point per type."""
    found = {
        "input": (float(usage["prompt_tokens"]), 1),
        "output": (float(usage["completion_tokens"]), 1),
    }
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    if cached:
        found["cached"] = (float(cached), 1)
    return found


async def one_usage_doc(store: Store, request_id: str) -> dict[str, Any]:
    (doc,) = await docs_by_client_request_id(store, USAGE, request_id)
    return doc


async def test_a_json_chat_records_its_tokens_and_duration(
    host: AppHost, otlp: OtlpReceiver, http: httpx.AsyncClient, store: Store
) -> None:
    match = {names.ROUTE: "chat", names.TEAM: host.team, names.OUTCOME: "ok"}
    tokens_before = totals(otlp, names.TOKEN_USAGE, **match)
    duration_before = totals(otlp, names.OPERATION_DURATION, **match)
    request_id = new_id("tel")
    r = await http.post(
        "/chat", json=chat_body("Hello there"), headers={"x-request-id": request_id}
    )
    assert r.status_code == 200, r.text
    answer = r.json()
    doc = await one_usage_doc(store, request_id)

    tokens = changed_by(otlp, names.TOKEN_USAGE, tokens_before, **match)
    assert tokens == {
        "input": (answer["usage"]["prompt_tokens"], 1),
        "output": (answer["usage"]["completion_tokens"], 1),
    }
    assert answer["usage"]["prompt_tokens"] > 0
    want = dimensions(host, "chat", answer["deployment"], doc["backend"])
    exact = totals(otlp, names.TOKEN_USAGE, **want, **{names.OPERATION: "chat"})
    assert delta(tokens_before, exact) == tokens  # the same points carry every dimension
    duration = delta(duration_before, totals(otlp, names.OPERATION_DURATION, **want))
    assert duration[""][1] == 1
    assert 0 < duration[""][0] < 30


async def test_a_gateway_call_records_its_tokens(
    host: AppHost, otlp: OtlpReceiver, store: Store
) -> None:
    match = {names.ROUTE: "gateway", names.TEAM: host.team, names.OUTCOME: "ok"}
    before = totals(otlp, names.TOKEN_USAGE, **match)
    request_id = new_id("tel")
    async with AsyncOpenAI(
        base_url=f"{host.url}/openai/v1", api_key=host.team_key, max_retries=0, timeout=30
    ) as client:
        answer = await client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "Hello gateway"}],
            extra_headers={"x-request-id": request_id},
        )
    assert answer.usage is not None
    doc = await one_usage_doc(store, request_id)

    tokens = changed_by(otlp, names.TOKEN_USAGE, before, **match)
    assert tokens == tokens_of(answer.usage.model_dump())
    want = dimensions(host, "gateway", "gpt-4o", doc["backend"])
    assert delta(before, totals(otlp, names.TOKEN_USAGE, **want)) == tokens


async def test_a_streamed_chat_records_its_tokens_and_time_to_first_chunk(
    host: AppHost, otlp: OtlpReceiver, http: httpx.AsyncClient, store: Store
) -> None:
    match = {names.ROUTE: "chat", names.TEAM: host.team, names.OUTCOME: "ok"}
    tokens_before = totals(otlp, names.TOKEN_USAGE, **match)
    first_before = totals(otlp, names.TIME_TO_FIRST_CHUNK, **match)
    duration_before = totals(otlp, names.OPERATION_DURATION, **match)
    request_id = new_id("tel")
    r = await http.post(
        "/chat",
        json=chat_body("echo: one two three four", stream=True),
        headers={"x-request-id": request_id},
    )
    assert r.status_code == 200, r.text
    done = next(
        frame
        for frame in parse_frames(split_stream(r.text))
        if isinstance(frame, dict) and frame["type"] == "done"
    )
    doc = await one_usage_doc(store, request_id)

    tokens = changed_by(otlp, names.TOKEN_USAGE, tokens_before, **match)
    assert tokens == {
        "input": (done["usage"]["prompt_tokens"], 1),
        "output": (done["usage"]["completion_tokens"], 1),
    }
    assert done["usage"]["completion_tokens"] == 4
    want = dimensions(host, "chat", doc["deployment"], doc["backend"])
    assert delta(tokens_before, totals(otlp, names.TOKEN_USAGE, **want)) == tokens
    (first_sum, first_count) = delta(first_before, totals(otlp, names.TIME_TO_FIRST_CHUNK, **want))[
        ""
    ]
    (duration_sum, _) = delta(duration_before, totals(otlp, names.OPERATION_DURATION, **want))[""]
    assert first_count == 1
    assert 0 < first_sum <= duration_sum


async def test_a_429_upstream_is_recorded_as_throttled(
    host: AppHost, otlp: OtlpReceiver, http: httpx.AsyncClient, sim_control: httpx.AsyncClient
) -> None:
    match = {names.ROUTE: "chat", names.TEAM: host.team, names.OUTCOME: "throttled"}
    before = totals(otlp, names.OPERATION_DURATION, **match)
    tokens_before = totals(otlp, names.TOKEN_USAGE, **match)
    refuse = {"faults": {"chat": {"error_429": 1.0, "retry_after_ms": 10}}}
    (await sim_control.patch("/sim/config", json=refuse)).raise_for_status()
    r = await http.post("/chat", json=chat_body("Hello"))
    assert r.status_code == 429, r.text

    throttled = changed_by(otlp, names.OPERATION_DURATION, before, **match)
    assert throttled[""][1] == 1
    with_type = totals(
        otlp, names.OPERATION_DURATION, **match, **{names.ERROR_TYPE: "rate_limited"}
    )
    assert delta(before, with_type)[""][1] == 1
    assert delta(tokens_before, totals(otlp, names.TOKEN_USAGE, **match)) == {}  # none used


async def test_a_job_s_items_record_their_tokens_and_one_item_each(
    host: AppHost, otlp: OtlpReceiver, http: httpx.AsyncClient
) -> None:
    match = {names.ROUTE: "job", names.TEAM: host.team, names.OUTCOME: "ok"}
    item_match = {
        names.JOB_KIND: "embedding",
        names.JOB_MODE: "realtime",
        names.TEAM: host.team,
        names.OUTCOME: "ok",
    }
    tokens_before = totals(otlp, names.TOKEN_USAGE, **match)
    items_before = totals(otlp, names.JOB_ITEMS, **item_match)
    job_id = await submit(http, "embedding", {"job_id": new_id("tel"), "items": items(3)})
    assert (await wait_job(http, job_id))["status"] == "succeeded"
    results = await all_results(http, job_id)
    assert len(results) == 3

    tokens = changed_by(otlp, names.TOKEN_USAGE, tokens_before, **match)
    prompt = sum(result["usage"]["prompt_tokens"] for result in results)
    assert prompt > 0
    assert tokens == {"input": (prompt, 3), "output": (0, 3)}
    assert delta(items_before, totals(otlp, names.JOB_ITEMS, **item_match)) == {"": (3, 0)}
    deployment = results[0]["deployment"]
    (point,) = [
        p
        for p in otlp.latest(names.TOKEN_USAGE)
        if p.attributes.get(names.ROUTE) == "job"
        and p.attributes.get(names.TOKEN_TYPE) == "input"
        and p.attributes.get(names.DEPLOYMENT) == deployment
        and p.attributes.get(names.TEAM) == host.team
    ]
    assert point.attributes[names.OPERATION] == "embeddings"
    assert point.attributes[names.BACKEND] not in ("", "none")
