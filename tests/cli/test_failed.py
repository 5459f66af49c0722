"""`failed` against the real Cosmos DB server: jobs written as the app writes them (JobDoc)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from devstack.emulators import COSMOS_EMULATOR_KEY, EmulatorStack
from shared.core.models import ErrorDetail
from shared.core.settings import Settings
from shared.core.store import JOBS, Store
from shared.jobs.models import Counts, JobDoc, JobSource
from tests.cli.conftest import ainvoke


def job(status: str, age: timedelta, code: str | None = None) -> JobDoc:
    job_id = f"cli-{status}-{uuid.uuid4().hex[:8]}"
    when = datetime.now(UTC) - age
    return JobDoc(
        id=job_id,
        job_id=job_id,
        kind="embedding",
        status=status,  # type: ignore[arg-type]
        counts=Counts(total=4, succeeded=3, failed=1),
        error=ErrorDetail(code=code, message=f"{code} happened") if code else None,
        source=JobSource(via="queue", queue="embedding-jobs", message_id="m-1"),
        created_at=when,
        updated_at=when,
    )


@pytest.fixture
def cosmos_env(emulators: EmulatorStack, app_settings: Settings) -> dict[str, str]:
    return {
        "COSMOS_ENDPOINT": emulators.cosmos_endpoint,
        "COSMOS_KEY": COSMOS_EMULATOR_KEY,
        "COSMOS_DATABASE": app_settings.cosmos_database,
        "COSMOS_VERIFY_TLS": "false",
    }


async def test_failed_and_partially_failed_jobs_newest_first(
    store: Store, cosmos_env: dict[str, str]
) -> None:
    failed = job("failed", timedelta(minutes=5), "invalid_message")
    partial = job("partially_failed", timedelta(minutes=1))
    old = job("failed", timedelta(hours=30), "old")
    fine = job("succeeded", timedelta(minutes=2))
    for doc in (failed, partial, old, fine):
        await store.upsert(JOBS, doc.model_dump(mode="json", exclude={"etag"}))

    result = await ainvoke(["failed", "--json", "--limit", "1000"], cosmos_env)
    assert result.exit_code == 0, result.stderr
    listed = [row["job_id"] for row in json.loads(result.stdout)]
    assert listed.index(partial.job_id) < listed.index(failed.job_id)
    assert old.job_id not in listed
    assert fine.job_id not in listed
    row = next(r for r in json.loads(result.stdout) if r["job_id"] == failed.job_id)
    assert row["error"]["code"] == "invalid_message"

    wider = await ainvoke(["failed", "--json", "--hours", "48", "--limit", "1000"], cosmos_env)
    assert old.job_id in [row["job_id"] for row in json.loads(wider.stdout)]

    table = await ainvoke(["failed", "--hours", "1", "--limit", "1000"], cosmos_env)
    assert table.exit_code == 0, table.stderr
    assert "invalid_message" in table.stdout


async def test_missing_endpoint_names_the_option_and_variable() -> None:
    result = await ainvoke(["failed"])
    assert result.exit_code == 2
    assert "--cosmos-endpoint" in result.stderr
    assert "COSMOS_ENDPOINT" in result.stderr
