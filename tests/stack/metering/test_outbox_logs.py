"""No document body in the logs (issue #21, item 9; docs/security.md): a record that Cosmos DB
fails is logged by container and id only, whether it goes behind as a claim check or is lost
with both stores down, even with CONTENT_FILTER_STORE_TEXT on and the filtered prompt inside.

The real chat path in process, its log captured: Cosmos DB "down" is a loopback port where
nothing listens, Storage "down" likewise; Azurite and the simulator are otherwise real.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator

import pytest
from azure.storage.queue import TextBase64DecodePolicy
from azure.storage.queue.aio import QueueClient

from devstack.emulators import EmulatorPorts, EmulatorStack
from devstack.emulators.processes import free_port
from shared.core.errors import ContentFiltered
from shared.core.settings import load_settings
from shared.core.store import Store
from shared.runtime import Runtime, create_runtime
from tests.support.samples import ask


def secret() -> str:
    return f"SECRET-{uuid.uuid4().hex}"


async def runtime_with(environ: dict[str, str]) -> AsyncIterator[Runtime]:
    runtime = create_runtime(load_settings(environ))
    try:
        yield runtime
    finally:
        await runtime.aclose()


@pytest.fixture
def outbox() -> str:
    return f"outbox-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def cosmos_down(app_environ: dict[str, str], outbox: str) -> dict[str, str]:
    return {
        **app_environ,
        "COSMOS_ENDPOINT": f"https://127.0.0.1:{free_port()}",
        "OUTBOX_QUEUE": outbox,
        "CONTENT_FILTER_STORE_TEXT": "true",
    }


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="shared")
    return caplog


async def test_a_record_lost_with_both_stores_down_is_logged_without_its_body(
    cosmos_down: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    captured: pytest.LogCaptureFixture,
) -> None:
    nowhere = EmulatorStack(EmulatorPorts.free(), tmp_path_factory.mktemp("nowhere"))
    environ = {**cosmos_down, "AzureWebJobsStorage": nowhere.storage_connection_string}
    prompt, tag = f"forbidden-violence {secret()}", secret()
    async for runtime in runtime_with(environ):
        with pytest.raises(ContentFiltered):
            await runtime.chat.complete(ask(prompt, tags={"team": tag}), f"lost-{uuid.uuid4()}")
    assert "LOST content_filter_events" in captured.text
    assert "LOST usage" in captured.text
    assert prompt.split()[1] not in captured.text
    assert tag not in captured.text


async def test_a_large_record_written_behind_is_logged_without_its_body(
    cosmos_down: dict[str, str],
    emulators: EmulatorStack,
    store: Store,
    outbox: str,
    captured: pytest.LogCaptureFixture,
) -> None:
    """A filter event over 64 KiB goes behind as a claim check: the message names the blob."""
    marker = secret()
    prompt = f"forbidden-violence {marker} " + "lorem ipsum " * 6_000
    async for runtime in runtime_with(cosmos_down):
        await runtime.queues.ensure([outbox])
        with pytest.raises(ContentFiltered):
            await runtime.chat.complete(ask(prompt), f"big-{uuid.uuid4()}")
    assert marker not in captured.text
    client = QueueClient.from_connection_string(
        emulators.storage_connection_string, outbox, message_decode_policy=TextBase64DecodePolicy()
    )
    async with client:
        pending = [
            json.loads(m.content)
            async for m in client.receive_messages(max_messages=32, visibility_timeout=1)
        ]
    assert sorted(m["container"] for m in pending) == ["content_filter_events", "usage"]
    (event,) = [m for m in pending if m["container"] == "content_filter_events"]
    assert "document" not in event
    assert event["document_blob"].startswith("outbox/content_filter_events/")
