"""Submitting a job: built with the app's models, sent over HTTP or straight to the queue.

Over the queue the app's own `enqueue` sends it: a job too large for one message (64 KiB once
base64-encoded) goes into a blob of the claim-check container and the message carries a
`ClaimCheck`.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Literal

from cli.api import JobsApi
from shared.core.queues import JobQueues, fits_in_message
from shared.jobs.intake import enqueue
from shared.jobs.models import ClassificationJob, EmbeddingJob, Item, Job, JobMode

log = logging.getLogger(__name__)

Kind = Literal["embedding", "classification"]


@dataclass(frozen=True)
class JobOptions:
    """Everything of a job but its items, as given on the command line."""

    kind: Kind
    job_id: str | None = None
    model: str | None = None
    mode: JobMode = "realtime"
    tags: dict[str, str] = field(default_factory=dict)
    dimensions: int | None = None
    labels: tuple[str, ...] = ()
    multi_label: bool = False
    instructions: str | None = None


@dataclass(frozen=True)
class Submitted:
    job_id: str
    via: Literal["http", "queue"]
    claim_check: bool = False  # the job went to a blob, the message is a claim check
    status_url: str | None = None
    message_id: str | None = None


def build_job(options: JobOptions, items: list[Item]) -> Job:
    """The job body; raises pydantic's ValidationError with the app's own messages. The
    job id is set here (a new UUID unless given) so the job can be watched afterwards."""
    job_id = options.job_id or str(uuid.uuid4())
    common = {
        "job_id": job_id,
        "items": items,
        "model": options.model,
        "mode": options.mode,
        "tags": options.tags,
    }
    if options.kind == "embedding":
        if options.labels or options.multi_label or options.instructions:
            raise ValueError("--label, --multi-label and --instructions are for classification")
        return EmbeddingJob.model_validate({**common, "dimensions": options.dimensions})
    if options.dimensions is not None:
        raise ValueError("--dimensions is for embedding jobs")
    return ClassificationJob.model_validate(
        {
            **common,
            "labels": list(options.labels),
            "multi_label": options.multi_label,
            "instructions": options.instructions,
        }
    )


async def submit_to_queue(queues: JobQueues, queue: str, job: Job) -> Submitted:
    """Send `job` to `queue` with the app's own `enqueue`: a claim check when it does not fit
    in one message, exactly as the app re-enqueues its continuations."""
    assert job.job_id is not None  # build_job sets it
    claim_check = not fits_in_message(job.model_dump_json(exclude_none=True))
    message_id = await enqueue(queues, queue, job)
    if claim_check:
        log.info("job %s sent as a claim check", job.job_id)
    return Submitted(job.job_id, "queue", claim_check=claim_check, message_id=message_id)


async def submit_over_http(api: JobsApi, job: Job) -> Submitted:
    """POST the job; the app itself turns a large one into a claim check."""
    accepted = await api.submit(job)
    return Submitted(accepted.job_id, "http", status_url=accepted.status_url)
