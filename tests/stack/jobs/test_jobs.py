"""Queue jobs end to end: the real function_app.py under the local Functions host, the Azure
OpenAI simulator, Azurite and the Cosmos DB server. Jobs arrive both ways other systems send
them: over HTTP, and as raw base64 messages from azure-storage-queue."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from azure.storage.blob.aio import BlobServiceClient
from openai import AsyncAzureOpenAI

from cli.poison import requeue_record
from shared.core.settings import load_settings
from shared.core.store import CONTENT_FILTER_EVENTS, USAGE, Store
from shared.runtime import create_runtime
from tests.support.jobs_stack import (
    JobsStack,
    all_results,
    items,
    send_raw,
    stack_fixture,
    submit,
    wait_for_job_doc,
    wait_job,
)
from tests.support.samples import LABELS, new_id, tickets
from tests.support.simulator import control_plane

stack = stack_fixture(
    "e2e",
    # Small requests and short slices, so continuations happen within a test.
    settings={
        "CLASSIFY_ITEMS_PER_REQUEST": "4",
        "EMBEDDING_MAX_INPUTS": "250",
        "JOB_SLICE_SECONDS": "2",
    },
)


@pytest.fixture
async def sim(stack: JobsStack) -> AsyncIterator[httpx.AsyncClient]:
    """The job simulator's control plane; config restored afterwards."""
    async with control_plane(stack.simulator) as client:
        yield client


def raw_job(stack: JobsStack, kind: str, job_id: str) -> tuple[str, dict[str, Any]]:
    """The queue and body of a five-ticket job of `kind`, as another system would send it."""
    if kind == "classification":
        body = {"job_id": job_id, "items": tickets(first=1), "labels": LABELS}
        return stack.classification_queue, body
    return stack.embedding_queue, {"job_id": job_id, "items": tickets(first=1)}


async def usage_docs(store: Store, job_id: str) -> list[dict[str, Any]]:
    return await store.query(USAGE, "SELECT * FROM c WHERE c.job_id = @j", {"@j": job_id})


# --- every item gets exactly one result ------------------------------------------------------


async def test_embedding_job_over_http_gives_one_vector_per_item(
    http: httpx.AsyncClient, store: Store
) -> None:
    job_id = await submit(http, "embedding", {"items": items(7), "tags": {"team": "search"}})
    view = await wait_job(http, job_id)
    assert view["status"] == "succeeded"
    assert view["counts"] == {
        "total": 7,
        "succeeded": 7,
        "failed": 0,
        "content_filtered": 0,
        "pending": 0,
    }
    results = await all_results(http, job_id, page_size=3)
    assert sorted(r["item_id"] for r in results) == sorted(f"i{i}" for i in range(7))
    assert all(len(r["embedding"]) == 1536 for r in results)
    assert view["usage"]["prompt_tokens"] > 0
    (record,) = await usage_docs(store, job_id)  # 7 small items: one packed request
    assert (record["operation"], record["tags"]) == ("embedding", {"team": "search"})


async def test_classification_job_over_http_labels_follow_the_text(
    http: httpx.AsyncClient,
) -> None:
    job_id = await submit(http, "classification", {"items": tickets(first=1), "labels": LABELS})
    view = await wait_job(http, job_id)
    assert view["status"] == "succeeded", view
    labels = {r["item_id"]: r["labels"] for r in await all_results(http, job_id)}
    assert labels == {
        "t1": ["billing"],
        "t2": ["shipping"],
        "t3": ["technical"],
        "t4": ["billing"],
        "t5": ["shipping"],
    }


async def test_multi_label_classification(http: httpx.AsyncClient) -> None:
    body = {
        "items": [{"id": "m1", "text": "billing and shipping both wrong"}],
        "labels": LABELS,
        "multi_label": True,
        "instructions": "Pick every label that fits.",
    }
    job_id = await submit(http, "classification", body)
    assert (await wait_job(http, job_id))["status"] == "succeeded"
    (result,) = await all_results(http, job_id)
    assert sorted(result["labels"]) == ["billing", "shipping"]


@pytest.mark.parametrize("kind", ["embedding", "classification"])
async def test_a_raw_base64_queue_message_is_a_job(
    http: httpx.AsyncClient, stack: JobsStack, kind: str
) -> None:
    job_id = new_id("raw")
    queue, body = raw_job(stack, kind, job_id)
    await send_raw(stack.connection_string, queue, body)
    await wait_for_job_doc(http, job_id)
    view = await wait_job(http, job_id)
    assert view["status"] == "succeeded"
    assert view["kind"] == kind
    assert len(await all_results(http, job_id)) == 5


# --- redelivery -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["embedding", "classification"])
async def test_the_same_message_twice_gives_no_duplicates(
    http: httpx.AsyncClient, stack: JobsStack, store: Store, kind: str
) -> None:
    job_id = new_id("twice")
    queue, body = raw_job(stack, kind, job_id)
    await send_raw(stack.connection_string, queue, body)
    await send_raw(stack.connection_string, queue, body)
    await wait_job(http, job_id)
    await asyncio.sleep(3)  # let the second delivery run its course too
    view = await wait_job(http, job_id)
    results = await all_results(http, job_id)
    assert Counter(r["item_id"] for r in results) == Counter(i["id"] for i in tickets(first=1))
    assert view["counts"]["succeeded"] == 5
    usage = await usage_docs(store, job_id)
    assert usage
    assert len({u["id"] for u in usage}) == len(usage)
    assert sum(u["prompt_tokens"] for u in usage) == view["usage"]["prompt_tokens"]


# --- throttling -------------------------------------------------------------------------------


async def test_a_429_storm_gives_delayed_continuations_and_the_job_completes(
    http: httpx.AsyncClient, sim: httpx.AsyncClient, stack: JobsStack
) -> None:
    # One request per 10-second window, 1 s asked for on each 429: most requests of the job
    # are refused at first and come back as delayed continuations.
    tight = {"deployments": {"gpt-4o": {"rpm": 6}}, "rate_limit": {"retry_after_ms": 1000}}
    (await sim.patch("/sim/config", json=tight)).raise_for_status()
    job_id = await submit(
        http,
        "classification",
        {
            "items": tickets(first=1)[:4] * 1 + [{"id": "t9", "text": "technical question"}],
            "labels": LABELS,
        },
    )
    view = await wait_job(http, job_id, within=90)
    assert view["status"] == "succeeded"
    assert view["counts"]["succeeded"] == 5
    stats = (await sim.get("/sim/stats")).json()
    assert stats["deployments"]["gpt-4o"]["throttled"] >= 1
    continued = re.findall(
        rf"job {job_id}: \d+ items continue in [\d.]+s \(rate_limited", stack.log()
    )
    assert continued


# --- bad messages -----------------------------------------------------------------------------


BAD_MESSAGES: list[tuple[str, str | dict[str, Any], str]] = [
    ("not-json", "this is not json", "not JSON"),
    ("schema", {"job_id": "bad-schema-{u}", "items": [{"id": "a"}]}, "the job is invalid"),
    (
        "alias",
        {"job_id": "bad-alias-{u}", "items": [{"id": "a", "text": "x"}], "model": "gpt-99"},
        "unknown model",
    ),
    ("no-items", {"job_id": "bad-empty-{u}", "items": []}, "the job is invalid"),
    (
        "claim",
        {"job_id": "bad-claim-{u}", "kind": "embedding", "items_blob": "nowhere.json"},
        "points nowhere",
    ),
    (
        "wrong-kind",
        {"job_id": "bad-kind-{u}", "kind": "classification", "items": [{"id": "a", "text": "x"}]},
        "was sent to the embedding queue",
    ),
]


@pytest.mark.parametrize(
    ("case", "payload", "reason"), BAD_MESSAGES, ids=[c[0] for c in BAD_MESSAGES]
)
async def test_each_bad_message_ends_recorded_with_its_reason(
    http: httpx.AsyncClient,
    stack: JobsStack,
    store: Store,
    case: str,
    payload: str | dict[str, Any],
    reason: str,
) -> None:
    marker = uuid.uuid4().hex[:8]
    if isinstance(payload, dict):
        payload = {k: (v.format(u=marker) if isinstance(v, str) else v) for k, v in payload.items()}
        payload["tags"] = {"case": marker} if "items_blob" not in payload else None
        payload = {k: v for k, v in payload.items() if v is not None}
        text = json_text(payload)
    else:
        text = f"{payload} {marker}"
    await send_raw(stack.connection_string, stack.embedding_queue, text)
    doc = await failed_job_with(store, marker)
    assert doc["status"] == "failed"
    assert reason in doc["error"]["message"]
    assert doc["source"]["queue"] == stack.embedding_queue
    assert doc["source"]["message_id"]
    assert marker in doc["raw_body"]


async def test_a_bad_message_delivered_twice_is_recorded_once(
    stack: JobsStack, store: Store
) -> None:
    marker = uuid.uuid4().hex[:8]
    for body in (f"not json {marker}", json_text({"job_id": f"named-{marker}", "items": []})):
        await send_raw(stack.connection_string, stack.embedding_queue, body)
        await send_raw(stack.connection_string, stack.embedding_queue, body)
    await asyncio.sleep(3)
    found = await store.query(
        "jobs", "SELECT c.id FROM c WHERE CONTAINS(c.raw_body, @m)", {"@m": marker}
    )
    assert len(found) == 2, found  # one record per distinct message


async def test_a_job_with_too_many_items_ends_recorded(
    http: httpx.AsyncClient, stack: JobsStack
) -> None:
    """Too large for one message, it arrives as a claim check; its blob holds 10,001 items."""
    job_id = new_id("too-many")
    job = {"job_id": job_id, "items": [{"id": f"x{i}", "text": "t"} for i in range(10_001)]}
    blob = BlobServiceClient.from_connection_string(stack.connection_string)
    async with blob:
        container = blob.get_container_client(
            stack.environ.get("CLAIM_CHECK_CONTAINER", "job-payloads")
        )
        await container.upload_blob(f"{job_id}.json", json_text(job), overwrite=True)
    claim = {"job_id": job_id, "kind": "embedding", "items_blob": f"{job_id}.json"}
    await send_raw(stack.connection_string, stack.embedding_queue, claim)
    await wait_for_job_doc(http, job_id)
    view = await wait_job(http, job_id)
    assert view["status"] == "failed"
    assert "at most 10000 items per job" in str(view["error"])


def json_text(payload: dict[str, Any]) -> str:
    import json

    return json.dumps(payload)


async def failed_job_with(store: Store, marker: str, within: float = 30) -> dict[str, Any]:
    """The one failed-job record whose raw body holds `marker`."""
    for _ in range(int(within * 4)):
        found = await store.query(
            "jobs", "SELECT * FROM c WHERE CONTAINS(c.raw_body, @m)", {"@m": marker}
        )
        if found:
            assert len(found) == 1, found
            return found[0]
        await asyncio.sleep(0.25)
    raise AssertionError(f"no failed job recorded for {marker}")


async def test_a_message_that_is_not_base64_ends_recorded_from_the_poison_queue_and_can_be_requeued(
    http: httpx.AsyncClient, stack: JobsStack, store: Store
) -> None:
    marker = uuid.uuid4().hex[:8]
    job_id = f"nb-{marker}"
    text = json_text({"job_id": job_id, "items": [{"id": "a", "text": f"shipping {marker}"}]})
    await send_raw(stack.connection_string, stack.embedding_queue, text, base64=False)
    doc = await failed_job_with(store, marker)
    assert doc["id"] == job_id
    assert doc["error"]["code"] == "undecodable"
    assert doc["source"]["via"] == "poison"
    assert doc["source"]["queue"] == stack.embedding_queue + "-poison"
    assert "not base64" in doc["error"]["message"]

    # After the sender's fix, the operator sends the kept message again (base64 this time):
    # the job runs.
    runtime = create_runtime(load_settings(stack.environ))
    try:
        message, new_id = await requeue_record(store, runtime.queues, job_id)
    finally:
        await runtime.aclose()
    assert (message.queue, message.text, new_id is not None) == (stack.embedding_queue, text, True)
    view = await wait_job_status(http, job_id, "succeeded")
    assert view["counts"]["succeeded"] == 1


async def wait_job_status(http: httpx.AsyncClient, job_id: str, status: str) -> dict[str, Any]:
    for _ in range(120):
        view = (await http.get(f"/jobs/{job_id}")).json()
        if view["status"] == status:
            return dict(view)
        await asyncio.sleep(0.25)
    raise AssertionError(f"job {job_id} never {status}: {view}")


# --- content filter ---------------------------------------------------------------------------


async def test_a_filtered_item_gives_one_event_and_the_job_goes_on(
    http: httpx.AsyncClient, store: Store
) -> None:
    body = {
        "items": [*tickets(first=1)[:3], {"id": "bad", "text": "forbidden-violence here"}],
        "labels": LABELS,
    }
    job_id = await submit(http, "classification", body)
    view = await wait_job(http, job_id)
    assert view["status"] == "partially_failed"
    assert (view["counts"]["succeeded"], view["counts"]["content_filtered"]) == (3, 1)
    results = {r["item_id"]: r for r in await all_results(http, job_id)}
    assert results["bad"]["status"] == "content_filtered"
    assert results["bad"]["categories"]["violence"]["filtered"] is True
    events = await store.query(
        CONTENT_FILTER_EVENTS, "SELECT * FROM c WHERE c.job_id = @j", {"@j": job_id}
    )
    assert [(e["source"], e["item_id"]) for e in events] == [("job", "bad")]
    assert events[0]["text"] is None


# --- batch mode, cancel, validation ---------------------------------------------------------


async def test_a_batch_embedding_job_is_refused_on_azure_with_its_reason(
    http: httpx.AsyncClient,
) -> None:
    job_id = await submit(http, "embedding", {"items": tickets(first=1), "mode": "batch"})
    view = await wait_job(http, job_id)
    assert view["status"] == "failed"
    assert view["error"]["code"] == "not_supported"
    assert "Batch API does not accept embeddings" in view["error"]["message"]
    assert view["counts"]["pending"] == 5


async def test_bad_submissions_are_400_with_reasons(http: httpx.AsyncClient) -> None:
    r = await http.post(
        "/jobs/classifications", json={"items": tickets(first=1), "labels": ["one"]}
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_request"
    r = await http.post("/jobs/embeddings", json={"items": tickets(first=1), "model": "gpt-99"})
    assert r.status_code == 400
    assert "known_models" in r.json()["error"]["details"]
    r = await http.get(f"/jobs/{new_id('missing')}")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


async def test_cancel_stops_a_job_and_keeps_its_results(
    http: httpx.AsyncClient, sim: httpx.AsyncClient
) -> None:
    slow = {"latency": {"request_ms": 1000}}
    (await sim.patch("/sim/config", json=slow)).raise_for_status()
    job_id = await submit(http, "classification", {"items": items(200), "labels": LABELS})
    await asyncio.sleep(2)
    r = await http.post(f"/jobs/{job_id}/cancel")
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled"
    await asyncio.sleep(4)
    view = (await http.get(f"/jobs/{job_id}")).json()
    assert view["status"] == "cancelled"
    assert 0 < view["counts"]["succeeded"] < 200
    assert view["counts"]["pending"] > 0


# --- large jobs -------------------------------------------------------------------------------


async def test_ten_thousand_items_through_claim_check_and_continuations(
    http: httpx.AsyncClient, stack: JobsStack
) -> None:
    # Four dimensions keep 10,000 vectors small for the local server; the path is the same.
    body = {"items": [{"id": f"n{i}", "text": f"w{i}"} for i in range(10_000)], "dimensions": 4}
    job_id = await submit(http, "embedding", body)
    view = await wait_job(http, job_id, within=300)
    assert view["status"] == "succeeded", view
    assert view["counts"]["succeeded"] == 10_000
    results = await all_results(http, job_id, page_size=1000)
    assert len({r["item_id"] for r in results}) == 10_000
    log = stack.log()
    assert re.search(rf"job {job_id}: \d+ items continue in 0.0s \(slice", log)


# --- passing failures and a quota that will not come back soon --------------------------------


async def test_upstream_5xx_and_drops_give_backoff_continuations_and_the_job_completes(
    http: httpx.AsyncClient, sim: httpx.AsyncClient, stack: JobsStack
) -> None:
    faults = {"faults": {"chat": {"error_500": 0.3, "error_503": 0.2, "drop": 0.1}}}
    (await sim.patch("/sim/config", json=faults)).raise_for_status()
    job_id = await submit(http, "classification", {"items": items(24), "labels": LABELS})
    continued = rf"job {job_id}: \d+ items continue in [\d.]+s \(upstream_error, attempt 1"
    for _ in range(240):  # the faults hold until the first backoff continuation is logged
        if re.search(continued, stack.log()):
            break
        await asyncio.sleep(0.25)
    else:
        pytest.fail("no backoff continuation after 60 s of 5xx and drops")
    # Then the service recovers: the job must finish on its continuations. (Left at 60 %
    # failures, a request may need 7+ doubling backoffs, past any sane wait: a flake, not a test.)
    clear = {"faults": {"chat": {"error_500": 0.0, "error_503": 0.0, "drop": 0.0}}}
    (await sim.patch("/sim/config", json=clear)).raise_for_status()
    view = await wait_job(http, job_id, within=120)
    assert view["status"] == "succeeded", view
    assert view["counts"]["succeeded"] == 24


async def test_a_retry_after_beyond_the_cap_fails_the_rest_as_quota_exhausted(
    http: httpx.AsyncClient, sim: httpx.AsyncClient, stack: JobsStack
) -> None:
    """Last in this module: the embedding limiter stays paused for the long retry-after."""
    # One request per 10 s window, and the service asks for 10 minutes (cap: 300 s). Another
    # client takes this window's one request first, so the job's first request is refused.
    tight = {
        "deployments": {"text-embedding-3-small": {"rpm": 6}},
        "rate_limit": {"retry_after_ms": 600_000},
    }
    (await sim.patch("/sim/config", json=tight)).raise_for_status()
    other = AsyncAzureOpenAI(
        azure_endpoint=stack.simulator.url,
        api_key=stack.simulator.api_key,
        api_version="2025-04-01-preview",
        max_retries=0,
    )
    async with other:
        await other.embeddings.create(model="text-embedding-3-small", input=["another team"])
    job_id = await submit(http, "embedding", {"items": items(20)})
    view = await wait_job(http, job_id)
    assert view["status"] == "failed", view
    results = await all_results(http, job_id)
    assert len(results) == 20
    assert {r["error"]["code"] for r in results} == {"quota_exhausted"}
    assert "600s, longer than JOB_RETRY_AFTER_CAP_SECONDS" in results[0]["error"]["message"]
