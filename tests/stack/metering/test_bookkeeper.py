"""Bookkeeping never fails the caller and never loses a record: with Cosmos DB unreachable the
usage document and filter event go to the outbox queue, and a drain writes them once it is back.

Cosmos DB is "down" by pointing the app at a loopback port where nothing listens (refused at
once, as a failed-over or firewalled account is); Azurite and the simulator are real.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from azure.storage.queue import TextBase64DecodePolicy
from azure.storage.queue.aio import QueueClient

from devstack.emulators import EmulatorStack
from devstack.emulators.processes import free_port
from shared.core.settings import load_settings
from shared.core.store import CONTENT_FILTER_EVENTS, USAGE, Store
from shared.metering.outbox import OutboxMessage
from shared.runtime import Runtime, create_runtime
from tests.support.samples import ask

BOOKS = {"team": "books"}


@pytest.fixture
def outbox() -> str:
    return f"outbox-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def cosmos_down(
    app_environ: dict[str, str], store: Store, outbox: str
) -> AsyncIterator[Runtime]:
    """A runtime whose Cosmos DB endpoint refuses connections, with its own outbox queue."""
    environ = {
        **app_environ,
        "COSMOS_ENDPOINT": f"https://127.0.0.1:{free_port()}",
        "OUTBOX_QUEUE": outbox,
    }
    runtime = create_runtime(load_settings(environ))
    await runtime.queues.ensure([outbox])
    yield runtime
    await runtime.aclose()


@pytest.fixture
async def healthy(app_environ: dict[str, str], outbox: str) -> AsyncIterator[Runtime]:
    runtime = create_runtime(load_settings({**app_environ, "OUTBOX_QUEUE": outbox}))
    yield runtime
    await runtime.aclose()


async def outbox_messages(emulators: EmulatorStack, queue: str) -> list[OutboxMessage]:
    client = QueueClient.from_connection_string(
        emulators.storage_connection_string, queue, message_decode_policy=TextBase64DecodePolicy()
    )
    async with client:
        return [
            OutboxMessage.model_validate_json(m.content)
            async for m in client.receive_messages(max_messages=32, visibility_timeout=1)
        ]


async def test_chat_answers_and_its_usage_is_written_behind_then_drained(
    cosmos_down: Runtime, healthy: Runtime, emulators: EmulatorStack, outbox: str, store: Store
) -> None:
    request_id = f"wb-{uuid.uuid4()}"
    answer = await cosmos_down.chat.complete(ask("Hello there", tags=BOOKS), request_id)
    assert answer.message.content
    assert answer.usage.total_tokens > 0

    (pending,) = await outbox_messages(emulators, outbox)
    assert pending.container == USAGE
    assert pending.document["request_id"] == request_id
    assert pending.document["total_tokens"] == answer.usage.total_tokens
    assert await store.read(USAGE, pending.document["id"], pending.document["day"]) is None

    await healthy.outbox.drain(pending.model_dump_json())
    await healthy.outbox.drain(pending.model_dump_json())  # redelivered: still one document
    stored = await store.query(USAGE, "SELECT * FROM c WHERE c.request_id = @r", {"@r": request_id})
    assert [d["total_tokens"] for d in stored] == [answer.usage.total_tokens]


async def test_a_filter_event_is_written_behind_too(
    cosmos_down: Runtime, healthy: Runtime, emulators: EmulatorStack, outbox: str, store: Store
) -> None:
    request_id = f"wb-{uuid.uuid4()}"
    with pytest.raises(Exception, match="filtered"):
        await cosmos_down.chat.complete(ask("forbidden-violence", tags=BOOKS), request_id)
    pending = await outbox_messages(emulators, outbox)
    assert sorted(m.container for m in pending) == [CONTENT_FILTER_EVENTS, USAGE]
    for message in pending:
        await healthy.outbox.drain(message.model_dump_json())
    (event,) = await store.query(
        CONTENT_FILTER_EVENTS, "SELECT * FROM c WHERE c.request_id = @r", {"@r": request_id}
    )
    assert event["stage"] == "prompt"
    assert event["text"] is None


async def test_a_drain_while_cosmos_is_still_down_puts_the_document_back(
    cosmos_down: Runtime, emulators: EmulatorStack, outbox: str
) -> None:
    message = OutboxMessage(container="usage", document={"id": "x", "day": "2031-01-01"})
    await cosmos_down.outbox.drain(message.model_dump_json())
    client = QueueClient.from_connection_string(emulators.storage_connection_string, outbox)
    async with client:
        properties = await client.get_queue_properties()
        visible = await client.peek_messages(max_messages=32)
    # Put back with a delay: counted, but not visible yet.
    assert properties.approximate_message_count == 1
    assert visible == []


async def test_a_document_over_64_kib_goes_behind_as_a_claim_check_drained_once(
    cosmos_down: Runtime, healthy: Runtime, emulators: EmulatorStack, outbox: str, store: Store
) -> None:
    """Delivered twice: the second finds the blob gone (deleted only once the document was
    stored) and is done; still one document."""
    document = {"id": f"big-{uuid.uuid4()}", "day": "2031-01-02", "text": "x" * 70_000}
    await cosmos_down.outbox.write(CONTENT_FILTER_EVENTS, document, within=None)
    (pending,) = await outbox_messages(emulators, outbox)
    assert pending.document is None
    assert pending.document_blob is not None
    await healthy.outbox.drain(pending.model_dump_json())
    await healthy.outbox.drain(pending.model_dump_json())
    stored = await store.read(CONTENT_FILTER_EVENTS, document["id"], "2031-01-02")
    assert stored is not None
    assert stored["text"] == document["text"]
    assert await healthy.queues.payload_names(pending.document_blob) == []
