"""The outbox loses nothing, end to end (issue #21, item 9): the real function_app.py under the
local Functions host, with queues of its own, Azurite and the Cosmos DB server.

- What the host moved to `<OUTBOX_QUEUE>-poison` is swept into Cosmos DB (`sweep_outbox_poison`
  on POISON_SWEEP_SCHEDULE); an unreadable message there is parked with its reason.
- A document Cosmos DB refuses for good (413 over 2 MB; an id the SDK refuses) is parked with
  the reason instead of going round the outbox forever.
- A filter event over 64 KiB (CONTENT_FILTER_STORE_TEXT on, a large prompt) written behind
  while Cosmos DB does not answer goes as a claim check, and is stored once it answers again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob.aio import ContainerClient
from azure.storage.queue.aio import QueueClient

from devstack.emulators import EmulatorStack
from devstack.emulators.outage import cosmos_paused
from shared.core.store import CONTENT_FILTER_EVENTS, USAGE, Store
from shared.metering.report import build_record
from tests.support.jobs_stack import JobsStack, send_raw, stack_fixture
from tests.support.records import docs_by_client_request_id, query_until
from tests.support.samples import chat_body, new_id

stack = stack_fixture(
    "outbox",
    settings={"CONTENT_FILTER_STORE_TEXT": "true", "POISON_SWEEP_SCHEDULE": "*/2 * * * * *"},
)

WAIT_TRIES = 300  # 0.1 s apart, plus the query: the timer runs every 2 s
# The wire: messages and blobs as the app writes them (docs/architecture.md, "The outbox").
PARKED = "outbox-parked"
POISON = "-poison"


@pytest.fixture
async def blobs(stack: JobsStack) -> AsyncIterator[ContainerClient]:
    """The claim-check container the host's outbox keeps its blobs in."""
    async with ContainerClient.from_connection_string(
        stack.connection_string, stack.environ.get("CLAIM_CHECK_CONTAINER", "job-payloads")
    ) as client:
        yield client


@pytest.fixture
async def http(stack: JobsStack) -> AsyncIterator[httpx.AsyncClient]:
    async with stack.client() as client:
        yield client


def outbox(stack: JobsStack) -> str:
    return stack.environ["OUTBOX_QUEUE"]


def usage_document(request_id: str, **extra: Any) -> dict[str, Any]:
    record = build_record(
        operation="chat",
        deployment="gpt-4o",
        model="gpt-4o",
        usage=None,
        latency_ms=1.0,
        tags={},
        request_id=request_id,
    )
    return {**record.model_dump(mode="json"), **extra}


def message(container: str, **fields: Any) -> str:
    """An outbox message as the app sends it: `{container, document | document_blob, attempt}`."""
    return json.dumps({"container": container, **fields})


async def parked(blobs: ContainerClient, blob: str) -> dict[str, Any]:
    """The parked record at `blob` (`{reason, parked_at, container?, document?, raw?}`), once
    it is there."""
    for _ in range(WAIT_TRIES):
        try:
            found: dict[str, Any] = json.loads(await (await blobs.download_blob(blob)).readall())
        except ResourceNotFoundError:
            await asyncio.sleep(0.1)
            continue
        return found
    raise AssertionError(f"nothing parked at {blob}")


async def queue_is_empty(stack: JobsStack, queue: str) -> bool:
    """No message left on `queue`, visible or not."""
    client = QueueClient.from_connection_string(stack.connection_string, queue)
    async with client:
        for _ in range(WAIT_TRIES):
            if (await client.get_queue_properties()).approximate_message_count == 0:
                return True
            await asyncio.sleep(0.1)
    return False


async def test_a_poisoned_outbox_message_is_swept_into_cosmos(
    stack: JobsStack, store: Store, blobs: ContainerClient
) -> None:
    request_id = new_id("poisoned")
    document = usage_document(request_id, total_tokens=42)
    poison = outbox(stack) + POISON
    await send_raw(stack.connection_string, poison, message("usage", document=document, attempt=3))
    await send_raw(stack.connection_string, poison, "not an outbox message", base64=False)

    query = "SELECT * FROM c WHERE c.request_id = @r"
    found = await query_until(store, USAGE, query, {"@r": request_id}, tries=WAIT_TRIES)
    assert [d["total_tokens"] for d in found] == [42]
    assert await queue_is_empty(stack, poison)
    # The unreadable one is parked under its message id, with the reason and the raw text.
    for _ in range(WAIT_TRIES):
        names = [b.name async for b in blobs.list_blobs(name_starts_with=f"{PARKED}/unreadable/")]
        texts = [(await parked(blobs, name))["raw"] for name in names]
        if "not an outbox message" in texts:
            break
        await asyncio.sleep(0.1)
    assert "not an outbox message" in texts


# A 2 MB body goes out as bytes, which aiohttp warns may block the loop: it may here.
@pytest.mark.filterwarnings("ignore:Sending a large body:ResourceWarning")
async def test_a_document_cosmos_refuses_for_good_is_parked_with_the_reason(
    stack: JobsStack, blobs: ContainerClient
) -> None:
    # Over Cosmos DB's 2 MB item limit (413): a claim check, as the app writes one.
    too_big = usage_document(new_id("big"), note="x" * (2 * 1024 * 1024))
    blob = f"outbox/usage/{too_big['id']}.json"
    await blobs.upload_blob(blob, json.dumps(too_big).encode(), overwrite=True)
    # An id with a character Cosmos DB refuses (the SDK says so before sending).
    bad_id = usage_document(new_id("bad"))
    bad_id["id"] = f"{bad_id['id']}/slash"
    for text in (message("usage", document_blob=blob), message("usage", document=bad_id)):
        await send_raw(stack.connection_string, outbox(stack), text)

    big = await parked(blobs, f"{PARKED}/usage/{too_big['id']}.json")
    assert big["reason"].startswith("Cosmos DB 413")
    assert big["document"]["id"] == too_big["id"]
    slash = await parked(blobs, f"{PARKED}/usage/{bad_id['id'].replace('/', '%2F')}.json")
    assert "illegal" in slash["reason"]
    # Not put back: the outbox and its poison queue are empty, the claim check's blob is gone.
    assert await queue_is_empty(stack, outbox(stack))
    assert await queue_is_empty(stack, outbox(stack) + POISON)
    assert not await blobs.get_blob_client(blob).exists()


async def test_a_filter_event_over_64_kib_is_claim_checked_and_stored(
    http: httpx.AsyncClient, stack: JobsStack, emulators: EmulatorStack, store: Store
) -> None:
    """CONTENT_FILTER_STORE_TEXT on: the event of a filtered 80,000-character prompt holds it
    all, too large for a queue message."""
    prompt = "forbidden-violence " + "lorem ipsum dolor " * 4_500
    request_id = new_id("big")
    # The instance knows the team's key before the outage (a key it never read is a 503 while
    # Cosmos DB is down: docs/security.md).
    assert (await http.post("/chat", json=chat_body("hi"))).status_code == 200
    with cosmos_paused(emulators):
        refused = await http.post(
            "/chat", json=chat_body(prompt), headers={"x-request-id": request_id}
        )
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "content_filter"
    (event,) = await docs_by_client_request_id(
        store, CONTENT_FILTER_EVENTS, request_id, tries=WAIT_TRIES
    )
    assert event["text"] == prompt
    assert await docs_by_client_request_id(store, USAGE, request_id, tries=WAIT_TRIES)
    assert await queue_is_empty(stack, outbox(stack))
