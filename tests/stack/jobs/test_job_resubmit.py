"""Submitting a job again after an unclear answer: the first submission recorded the job but
never queued it (its host was killed between the two, or Storage was down and it answered
503 "submit it again"), the path the soak's resubmissions take. Before, the second submission
answered 202 with the job as it stood, and the job never ran. Now it is queued; a job that ran
is still never run twice."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from shared.core.clock import now
from shared.core.models import ErrorDetail
from shared.core.settings import load_settings
from shared.core.store import Store
from shared.jobs.intake import job_spec, parse_job
from shared.jobs.models import JobDoc, JobSource
from shared.jobs.store import JobStore
from tests.support.jobs_stack import JobsStack, all_results, items, stack_fixture, submit, wait_job
from tests.support.samples import LABELS

stack = stack_fixture("rs")


async def _recorded_not_queued(
    stack: JobsStack, store: Store, body: dict[str, object], **fields: object
) -> None:
    """The job record as a first submission leaves it when no message followed."""
    settings = load_settings(stack.environ)
    job = parse_job("classification", json.dumps(body).encode(), settings)
    assert job.job_id is not None
    doc = JobDoc(
        id=job.job_id,
        job_id=job.job_id,
        kind="classification",
        status="queued",
        spec=job_spec(job, settings),
        total=len(job.items),
        created_at=now(),
        updated_at=now(),
        source=JobSource(via="http", request_id="first"),
    ).model_copy(update=fields)
    _, created = await JobStore(store).create(doc)
    assert created


@pytest.mark.parametrize(
    "first",
    [
        {},  # recorded, then the host died before the message
        {
            "status": "failed",
            "error": ErrorDetail(code="unavailable", message="the job could not be queued"),
        },
    ],
    ids=["queued-without-message", "failed-at-intake"],
)
async def test_submitting_again_queues_a_job_that_was_never_queued(
    http: httpx.AsyncClient, stack: JobsStack, store: Store, first: dict[str, object]
) -> None:
    body = {"job_id": f"rs-{uuid.uuid4().hex[:8]}", "items": items(6), "labels": LABELS}
    await _recorded_not_queued(stack, store, body, **first)

    await submit(http, "classification", body)
    view = await wait_job(http, str(body["job_id"]), within=90)
    assert view["status"] == "succeeded", view
    assert sorted(r["item_id"] for r in await all_results(http, str(body["job_id"]))) == sorted(
        f"i{i}" for i in range(6)
    )


async def test_submitting_a_finished_job_again_does_not_run_it_again(
    http: httpx.AsyncClient, stack: JobsStack
) -> None:
    body = {"job_id": f"rs-{uuid.uuid4().hex[:8]}", "items": items(3), "labels": LABELS}
    await submit(http, "classification", body)
    await wait_job(http, str(body["job_id"]))
    before = stack.log().count(f"job {body['job_id']} queued")

    again = await http.post("/jobs/classifications", json=body)
    assert again.status_code == 202
    assert again.json()["status"] == "succeeded"
    assert stack.log().count(f"job {body['job_id']} queued") == before
    assert f"job {body['job_id']} submitted again" not in stack.log()
