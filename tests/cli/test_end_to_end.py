"""The CLI against the real app: function_app.py under the local Functions host, the Azure
OpenAI simulator, Azurite and the Cosmos DB server. Jobs are submitted both ways (HTTP and
straight to the host's queues), watched to the end and exported."""

from __future__ import annotations

import asyncio
import csv
import json
import uuid
from pathlib import Path

import pytest
from azure.storage.queue.aio import QueueClient

from cli.export import read_parquet_rows
from devstack.emulators import COSMOS_EMULATOR_KEY, EmulatorStack
from devstack.hosted_app import AppHost
from shared.core.queues import MAX_MESSAGE_BYTES, encoded_size
from shared.core.settings import Settings
from tests.cli.conftest import ainvoke
from tests.support.hosts import host_fixture

pytestmark = pytest.mark.slow

WATCH = ["--interval", "0.5", "--timeout", "90"]


# The app's poison sweep records and deletes poisoned messages within seconds; here it is
# held off (once a year) so the messages wait in the poison queue for the operator.
host = host_fixture("cli-app", {"POISON_SWEEP_SCHEDULE": "0 0 0 1 1 *"})


@pytest.fixture
def http_env(host: AppHost) -> dict[str, str]:
    return {"JOBS_API_URL": host.url, "JOBS_API_KEY": host.team_key}


@pytest.fixture
def queue_env(emulators: EmulatorStack, app_settings: Settings) -> dict[str, str]:
    """Straight to the queues the host listens to, and Cosmos DB for `failed`."""
    return {
        "AzureWebJobsStorage": emulators.storage_connection_string,
        "EMBEDDING_QUEUE": app_settings.embedding_queue,
        "CLASSIFICATION_QUEUE": app_settings.classification_queue,
        "CLAIM_CHECK_CONTAINER": app_settings.claim_check_container,
        "COSMOS_ENDPOINT": emulators.cosmos_endpoint,
        "COSMOS_KEY": COSMOS_EMULATOR_KEY,
        "COSMOS_DATABASE": app_settings.cosmos_database,
        "COSMOS_VERIFY_TLS": "false",
    }


def csv_items(tmp_path: Path, texts: list[str]) -> Path:
    path = tmp_path / "items.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        writer.writerows((f"item-{n}", text) for n, text in enumerate(texts))
    return path


async def test_http_submit_watch_and_export_an_embedding_job(
    tmp_path: Path, http_env: dict[str, str]
) -> None:
    items = csv_items(tmp_path, [f"sentence number {n}" for n in range(5)])
    submitted = await ainvoke(["submit", str(items), "-k", "embedding", "--watch"], http_env)
    assert submitted.exit_code == 0, submitted.stderr
    job_id, summary = submitted.stdout.splitlines()
    assert f"job {job_id} succeeded: 5 succeeded" in summary
    assert "over HTTP" in submitted.stderr

    jsonl = tmp_path / "out.jsonl"
    # Two a page: five results take three pages, following the continuation tokens.
    exported = await ainvoke(["export", job_id, str(jsonl), "--page-size", "2"], http_env)
    assert exported.exit_code == 0, exported.stderr
    assert "5 results in 3 pages" in exported.stderr
    rows = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    assert sorted(r["item_id"] for r in rows) == [f"item-{n}" for n in range(5)]
    assert all(r["status"] == "succeeded" and r["embedding"] for r in rows)

    parquet = tmp_path / "out.parquet"
    exported = await ainvoke(["export", job_id, str(parquet)], http_env)
    assert exported.exit_code == 0, exported.stderr
    table = list(read_parquet_rows(parquet))
    assert sorted(r["item_id"] for r in table) == [f"item-{n}" for n in range(5)]
    by_id = {r["item_id"]: r for r in rows}
    for row in table:
        assert len(row["embedding"]) == len(by_id[row["item_id"]]["embedding"])


async def test_queue_submit_of_a_classification_job(
    tmp_path: Path, http_env: dict[str, str], queue_env: dict[str, str]
) -> None:
    texts = ["a billing question: the invoice is overdue", "sports news: our team won"]
    items = csv_items(tmp_path, texts)
    labels = ["billing", "sports", "weather"]
    submitted = await ainvoke(
        ["submit", str(items), "-k", "classification", *[f"--label={x}" for x in labels]],
        queue_env,
    )
    assert submitted.exit_code == 0, submitted.stderr
    assert "the queue, as one message" in submitted.stderr
    job_id = submitted.stdout.strip()

    watched = await ainvoke(["watch", job_id, "--json", *WATCH], http_env)
    assert watched.exit_code == 0, watched.stderr
    summary = json.loads(watched.stdout)
    assert summary["status"] == "succeeded"
    assert summary["counts"]["succeeded"] == 2

    out = tmp_path / "labels.jsonl"
    assert (await ainvoke(["export", job_id, str(out)], http_env)).exit_code == 0
    rows = {json.loads(line)["item_id"]: json.loads(line) for line in out.read_text().splitlines()}
    # The simulator answers with the labels that share a word with each item's text.
    assert rows["item-0"]["labels"] == ["billing"]
    assert rows["item-1"]["labels"] == ["sports"]


async def test_queue_submit_of_a_large_job_goes_through_a_claim_check(
    tmp_path: Path, http_env: dict[str, str], queue_env: dict[str, str]
) -> None:
    texts = [f"{n} " + "lorem ipsum dolor " * 60 for n in range(80)]
    items = csv_items(tmp_path, texts)
    assert encoded_size(items.read_text()) > MAX_MESSAGE_BYTES
    submitted = await ainvoke(["submit", str(items), "-k", "embedding"], queue_env)
    assert submitted.exit_code == 0, submitted.stderr
    assert "claim check" in submitted.stderr
    job_id = submitted.stdout.strip()
    watched = await ainvoke(["watch", job_id, "--json", *WATCH], http_env)
    assert watched.exit_code == 0, watched.stderr
    assert json.loads(watched.stdout)["counts"]["succeeded"] == 80


async def test_a_failed_job_exits_1_and_is_listed_by_failed(
    tmp_path: Path, http_env: dict[str, str], queue_env: dict[str, str]
) -> None:
    """A batch embedding job fails not_supported (Azure's Batch API takes no embeddings)."""
    items = csv_items(tmp_path, ["one", "two"])
    submitted = await ainvoke(["submit", str(items), "-k", "embedding", "--batch"], http_env)
    assert submitted.exit_code == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    watched = await ainvoke(["watch", job_id, *WATCH], http_env)
    assert watched.exit_code == 1, watched.stdout + watched.stderr
    assert "not_supported" in watched.stdout
    listed = await ainvoke(["failed", "--json", "--limit", "1000"], queue_env)
    assert listed.exit_code == 0, listed.stderr
    (row,) = [r for r in json.loads(listed.stdout) if r["job_id"] == job_id]
    assert row["error"]["code"] == "not_supported"


async def test_watching_an_unknown_job_is_the_apps_not_found(http_env: dict[str, str]) -> None:
    watched = await ainvoke(["watch", "no-such-job", "--wait-for-record", "0"], http_env)
    assert watched.exit_code == 6
    assert "404 not_found" in watched.stderr


async def test_a_wrong_key_is_refused(http_env: dict[str, str]) -> None:
    watched = await ainvoke(["watch", "any", *WATCH], {**http_env, "JOBS_API_KEY": "wrong"})
    assert watched.exit_code == 6
    assert "401" in watched.stderr


async def test_a_message_sent_without_base64_is_requeued_and_runs(
    tmp_path: Path,
    http_env: dict[str, str],
    queue_env: dict[str, str],
    emulators: EmulatorStack,
    app_settings: Settings,
) -> None:
    """The classic mistake: a job sent without an encode policy. The host cannot decode it and
    moves it to the poison queue; `poison requeue` sends it again base64-encoded, and it runs."""
    job_id = f"cli-raw-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"job_id": job_id, "items": [{"id": "a", "text": "hello there"}]})
    queue = app_settings.embedding_queue
    async with QueueClient.from_connection_string(
        emulators.storage_connection_string, queue
    ) as raw:
        await raw.send_message(body)

    async def poisoned() -> dict[str, object] | None:
        """The copy the host put on the poison queue (a new message, found by its text)."""
        listed = await ainvoke(["poison", "list", "--queue", queue, "--json"], queue_env)
        assert listed.exit_code == 0, listed.stderr
        return next((m for m in json.loads(listed.stdout) if m["text"] == body), None)

    found = None
    for _ in range(60):  # the host polls its queues at most every 2 s
        if found := await poisoned():
            break
        await asyncio.sleep(0.5)
    assert found is not None, "the host never moved the message to the poison queue"
    assert found["encoding"] == "raw"
    poison_id = str(found["id"])

    moved = await ainvoke(["poison", "requeue", queue, "--id", poison_id], queue_env)
    assert moved.exit_code == 0, moved.stderr
    assert f"requeued {poison_id} to {queue}" in moved.stdout
    assert await poisoned() is None

    watched = await ainvoke(["watch", job_id, "--json", *WATCH], http_env)
    assert watched.exit_code == 0, watched.stderr
    assert json.loads(watched.stdout)["counts"]["succeeded"] == 1
