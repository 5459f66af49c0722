"""`poison list` and `poison requeue` against real Azurite, with the two kinds of poisoned
message the host leaves: base64 text that failed, and text that was never base64."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import pytest
from azure.storage.queue.aio import QueueClient

from cli.poison import decode
from devstack.emulators import EmulatorStack
from shared.core.queues import JobQueues
from tests.cli.conftest import Queues, ainvoke

JOB_TEXT = json.dumps({"job_id": "p1", "items": [{"id": "a", "text": "héllo"}]})
# Brackets that look like rich markup must reach the operator as they are.
NOT_BASE64 = '{"job_id": "p2", "items": []} [bold]sent without an encode policy[/]'


@pytest.fixture
async def poisoned(
    emulators: EmulatorStack, fresh: Queues
) -> AsyncIterator[tuple[QueueClient, dict[str, str]]]:
    """The embedding poison queue holding one base64 and one raw message: {text: id}."""
    raw = QueueClient.from_connection_string(
        emulators.storage_connection_string, fresh.embedding + "-poison"
    )
    async with raw:
        ids = {}
        encoded = base64.b64encode(JOB_TEXT.encode()).decode()
        ids[JOB_TEXT] = (await raw.send_message(encoded)).id
        ids[NOT_BASE64] = (await raw.send_message(NOT_BASE64)).id
        yield raw, ids


async def main_queue_texts(job_queues: JobQueues, name: str) -> list[str]:
    """Messages on the main queue, decoded as the host decodes them (base64)."""
    return [str(m.content) for m in await job_queues.queue(name).peek_messages(max_messages=32)]


def test_decode_tells_base64_from_raw() -> None:
    assert decode(base64.b64encode("ok ✓".encode()).decode()) == ("base64", "ok ✓")
    assert decode("plain text") == ("raw", "plain text")
    # Valid base64 that is not UTF-8 text is shown raw rather than as mojibake.
    assert decode(base64.b64encode(b"\xff\xfe").decode())[0] == "raw"


async def test_list_shows_decoded_and_raw_text(
    poisoned: tuple[QueueClient, dict[str, str]], storage_env: dict[str, str], fresh: Queues
) -> None:
    _, ids = poisoned
    result = await ainvoke(["poison", "list", "--json"], storage_env)
    assert result.exit_code == 0, result.stderr
    rows = {row["id"]: row for row in json.loads(result.stdout)}
    assert rows[ids[JOB_TEXT]]["encoding"] == "base64"
    assert rows[ids[JOB_TEXT]]["text"] == JOB_TEXT
    assert rows[ids[NOT_BASE64]]["encoding"] == "raw"
    assert rows[ids[NOT_BASE64]]["text"] == NOT_BASE64
    assert {row["queue"] for row in rows.values()} == {fresh.embedding}
    table = await ainvoke(["poison", "list"], storage_env)
    assert ids[NOT_BASE64] in table.stdout
    assert "[bold]sent without an encode policy[/]" in table.stdout
    assert "2 poisoned messages" in table.stderr


async def test_dry_run_changes_nothing(
    poisoned: tuple[QueueClient, dict[str, str]],
    storage_env: dict[str, str],
    fresh: Queues,
    job_queues: JobQueues,
) -> None:
    raw, ids = poisoned
    result = await ainvoke(["poison", "requeue", fresh.embedding, "--dry-run"], storage_env)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count("would requeue") == 2
    assert await main_queue_texts(job_queues, fresh.embedding) == []
    # Peeked, not received: both stay visible in the poison queue.
    assert {m.id for m in await raw.peek_messages(max_messages=32)} == set(ids.values())


async def test_requeue_one_by_id_leaves_the_other_visible(
    poisoned: tuple[QueueClient, dict[str, str]],
    storage_env: dict[str, str],
    fresh: Queues,
    job_queues: JobQueues,
) -> None:
    raw, ids = poisoned
    result = await ainvoke(
        ["poison", "requeue", fresh.embedding, "--id", ids[NOT_BASE64]], storage_env
    )
    assert result.exit_code == 0, result.stderr
    assert await main_queue_texts(job_queues, fresh.embedding) == [NOT_BASE64]
    assert [m.id for m in await raw.peek_messages(max_messages=32)] == [ids[JOB_TEXT]]


async def test_requeue_all_reencodes_base64_and_empties_the_poison_queue(
    poisoned: tuple[QueueClient, dict[str, str]],
    storage_env: dict[str, str],
    fresh: Queues,
    job_queues: JobQueues,
    emulators: EmulatorStack,
) -> None:
    raw, _ = poisoned
    result = await ainvoke(["poison", "requeue", fresh.embedding, "--json"], storage_env)
    assert result.exit_code == 0, result.stderr
    moved = json.loads(result.stdout)
    assert all(row["new_id"] and row["problem"] is None for row in moved)
    assert sorted(await main_queue_texts(job_queues, fresh.embedding)) == sorted(
        [JOB_TEXT, NOT_BASE64]
    )
    assert await raw.peek_messages(max_messages=32) == []
    # On the wire the requeued messages are base64, as the host expects.
    async with QueueClient.from_connection_string(
        emulators.storage_connection_string, fresh.embedding
    ) as main:
        for message in await main.peek_messages(max_messages=32):
            assert base64.b64decode(str(message.content), validate=True)


async def test_a_raw_message_too_large_once_encoded_is_kept_and_reported(
    emulators: EmulatorStack, storage_env: dict[str, str], fresh: Queues, job_queues: JobQueues
) -> None:
    big = "not base64! " * 5000  # 60,000 bytes raw, 80,000 once base64-encoded
    async with QueueClient.from_connection_string(
        emulators.storage_connection_string, fresh.classification + "-poison"
    ) as raw:
        sent = await raw.send_message(big)
        result = await ainvoke(["poison", "requeue", fresh.classification], storage_env)
        assert result.exit_code == 1
        assert f"kept {sent.id}: 80000 bytes once encoded" in result.stdout
        assert await main_queue_texts(job_queues, fresh.classification) == []
        # Visible again at once, for a later look.
        assert [m.id for m in await raw.peek_messages()] == [sent.id]
