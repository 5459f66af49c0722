"""Queues and claim checks against real Azurite."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator

import pytest
from azure.storage.queue.aio import QueueClient
from pydantic import BaseModel

from devstack.emulators import EmulatorStack
from shared.core.queues import (
    MAX_MESSAGE_BYTES,
    JobQueues,
    create_queues,
    encoded_size,
    fits_in_message,
)
from shared.core.settings import Settings


class Ping(BaseModel):
    job_id: str
    note: str | None = None


@pytest.fixture(scope="module")
async def queues(stack_settings: Settings) -> AsyncIterator[JobQueues]:
    queues = create_queues(stack_settings)
    yield queues
    await queues.aclose()


def raw_client(emulators: EmulatorStack, name: str) -> QueueClient:
    """A client with no decode policy: sees the bytes exactly as the Functions host does."""
    return QueueClient.from_connection_string(emulators.storage_connection_string, name)


def fresh_queue() -> str:
    return f"q-{uuid.uuid4().hex[:12]}"


async def test_ensure_creates_queue_poison_queue_and_container_idempotently(
    queues: JobQueues, emulators: EmulatorStack
) -> None:
    name = fresh_queue()
    await queues.ensure([name])
    await queues.ensure([name])
    for full in (name, name + "-poison"):
        async with raw_client(emulators, full) as client:
            props = await client.get_queue_properties()
            assert props.name == full
    await queues.put_payload("probe.json", b"{}")
    assert await queues.get_payload("probe.json") == b"{}"


async def test_message_is_base64_json_on_the_wire(
    queues: JobQueues, emulators: EmulatorStack
) -> None:
    name = fresh_queue()
    await queues.ensure([name])
    await queues.send(name, Ping(job_id="j1"))
    async with raw_client(emulators, name) as client:
        message = await client.receive_message()
    assert message is not None
    raw = message.content
    assert json.loads(base64.b64decode(raw)) == {"job_id": "j1"}  # None fields left out


async def test_round_trip_through_the_decode_policy(queues: JobQueues) -> None:
    name = fresh_queue()
    await queues.ensure([name])
    text = json.dumps({"job_id": "j2", "text": "naïve café ✓"})
    await queues.send(name, text)
    message = await queues.queue(name).receive_message()
    assert message is not None
    assert message.content == text


async def test_delayed_message_stays_invisible(queues: JobQueues) -> None:
    name = fresh_queue()
    await queues.ensure([name])
    await queues.send(name, "later", delay_seconds=60)
    assert await queues.queue(name).receive_message() is None
    props = await queues.queue(name).get_queue_properties()
    assert props.approximate_message_count == 1


async def test_oversized_message_is_refused_with_the_claim_check_hint(queues: JobQueues) -> None:
    text = "x" * MAX_MESSAGE_BYTES
    assert not fits_in_message(text)
    with pytest.raises(ValueError, match="use a claim check"):
        await queues.send("embedding-jobs", text)


def test_encoded_size_counts_base64_of_utf8() -> None:
    assert encoded_size("abc") == 4
    assert encoded_size("é") == 4  # two UTF-8 bytes
    assert fits_in_message("x" * (MAX_MESSAGE_BYTES // 4 * 3))
    assert not fits_in_message("x" * (MAX_MESSAGE_BYTES // 4 * 3 + 1))


async def test_ping_answers_when_up(queues: JobQueues) -> None:
    await queues.ping()
