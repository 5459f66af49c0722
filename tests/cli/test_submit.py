"""`submit` straight to the queue, against real Azurite: the message is what the app reads
(base64 JSON of the app's own job models), and a large job becomes a claim check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from cli.submit import JobOptions, build_job
from shared.core.queues import MAX_MESSAGE_BYTES, JobQueues, encoded_size
from shared.jobs.models import ClaimCheck, ClassificationJob, EmbeddingJob, Item
from tests.cli.conftest import Queues, ainvoke


def items_file(tmp_path: Path, count: int, text_chars: int = 10) -> Path:
    path = tmp_path / "items.jsonl"
    lines = (json.dumps({"id": f"i{n}", "text": f"{n} " + "x" * text_chars}) for n in range(count))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def receive_one(queues: JobQueues, name: str) -> str:
    """The one message on `name`, decoded as the Functions host decodes it."""
    found = [m async for m in queues.queue(name).receive_messages(visibility_timeout=30)]
    assert len(found) == 1, f"{len(found)} messages on {name}"
    return str(found[0].content)


def test_job_built_with_the_apps_models() -> None:
    items = [Item(id="a", text="x")]
    job = build_job(
        JobOptions(kind="classification", labels=("cat", "dog"), tags={"t": "1"}), items
    )
    assert isinstance(job, ClassificationJob)
    assert job.job_id
    assert job.labels == ["cat", "dog"]
    embed = build_job(JobOptions(kind="embedding", job_id="mine", dimensions=256), items)
    assert isinstance(embed, EmbeddingJob)
    assert (embed.job_id, embed.dimensions) == ("mine", 256)


def test_the_apps_validation_errors_reach_the_operator() -> None:
    items = [Item(id="a", text="x")]
    with pytest.raises(ValidationError, match="labels"):
        build_job(JobOptions(kind="classification", labels=("only-one",)), items)
    with pytest.raises(ValueError, match="--label, --multi-label and --instructions"):
        build_job(JobOptions(kind="embedding", labels=("a", "b")), items)
    with pytest.raises(ValueError, match="--dimensions is for embedding"):
        build_job(JobOptions(kind="classification", labels=("a", "b"), dimensions=3), items)


async def test_small_job_is_one_base64_message_the_app_parses(
    tmp_path: Path, storage_env: dict[str, str], fresh: Queues, job_queues: JobQueues
) -> None:
    path = items_file(tmp_path, 3)
    result = await ainvoke(
        [
            "submit",
            str(path),
            "-k",
            "classification",
            "-l",
            "spam",
            "-l",
            "ham",
            "--multi-label",
            "--tag",
            "team=ops",
            "--job-id",
            "cli-small",
        ],
        storage_env,
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "cli-small"
    assert "one message" in result.stderr
    job = ClassificationJob.model_validate_json(await receive_one(job_queues, fresh.classification))
    assert job.job_id == "cli-small"
    assert [i.id for i in job.items] == ["i0", "i1", "i2"]
    assert (job.labels, job.multi_label, job.tags) == (["spam", "ham"], True, {"team": "ops"})


async def test_large_job_goes_as_a_claim_check_holding_the_whole_job(
    tmp_path: Path, storage_env: dict[str, str], fresh: Queues, job_queues: JobQueues
) -> None:
    path = items_file(tmp_path, 60, text_chars=1500)
    assert encoded_size(path.read_text()) > MAX_MESSAGE_BYTES
    result = await ainvoke(["submit", str(path), "--kind", "embedding"], storage_env)
    assert result.exit_code == 0, result.stderr
    job_id = result.stdout.strip()
    check = ClaimCheck.model_validate_json(await receive_one(job_queues, fresh.embedding))
    assert (check.job_id, check.kind) == (job_id, "embedding")
    job = EmbeddingJob.model_validate_json(await job_queues.get_payload(check.items_blob))
    assert job.job_id == job_id
    assert len(job.items) == 60
    assert "as a claim check" in result.stderr


async def test_bad_file_exits_2_and_sends_nothing(
    tmp_path: Path, storage_env: dict[str, str], fresh: Queues, job_queues: JobQueues
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("id,text\na,\n", encoding="utf-8")
    result = await ainvoke(["submit", str(path), "-k", "embedding"], storage_env)
    assert result.exit_code == 2
    assert "bad.csv:2: text:" in result.stderr
    peeked = await job_queues.queue(fresh.embedding).peek_messages()
    assert peeked == []


async def test_the_apps_refusal_is_one_line_per_problem(tmp_path: Path) -> None:
    path = items_file(tmp_path, 1)
    result = await ainvoke(["submit", str(path), "-k", "classification", "-l", "only"])
    assert result.exit_code == 2
    assert result.stderr.startswith("invalid job: labels: List should have at least 2 items")


async def test_no_storage_and_no_url_is_a_clear_error(tmp_path: Path) -> None:
    result = await ainvoke(["submit", str(items_file(tmp_path, 1)), "-k", "embedding"])
    assert result.exit_code == 2
    assert "--connection-string" in result.stderr
    assert "AzureWebJobsStorage" in result.stderr


async def test_unreachable_app_is_a_service_error(tmp_path: Path) -> None:
    result = await ainvoke(
        [
            "submit",
            str(items_file(tmp_path, 1)),
            "-k",
            "embedding",
            "--url",
            "http://127.0.0.1:9/api",
        ],
    )
    assert result.exit_code == 6, result.stderr
