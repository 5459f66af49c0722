"""Jobs in: reading a queue message or an HTTP body into a valid job, and putting a job on its
queue (as a claim check when it is too large for one message).

A message is the job's JSON (base64 on the queue), or a claim check `{job_id, kind,
items_blob}` whose blob holds that JSON. Anything else is an :class:`InvalidJob`, recorded at
once as a failed job and never retried: trying again cannot make it valid.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from pydantic import TypeAdapter, ValidationError

from shared.aoai.client import resolve_deployment
from shared.core.errors import UnknownModelError, validation_details
from shared.core.queues import JobQueues, fits_in_message
from shared.core.settings import Settings
from shared.jobs.models import (
    ClaimCheck,
    ClassificationJob,
    EmbeddingJob,
    Job,
    JobId,
    JobKind,
    JobSpec,
)
from shared.telemetry import tracing

JOB_TYPES: dict[JobKind, type[EmbeddingJob] | type[ClassificationJob]] = {
    "embedding": EmbeddingJob,
    "classification": ClassificationJob,
}


class InvalidJob(Exception):
    """A message or body that is not a valid job; `job_id` when the body named one, `team`
    when it was a job (its record is then that team's to read)."""

    def __init__(
        self,
        reason: str,
        *,
        details: Any = None,
        job_id: str | None = None,
        code: str = "",
        team: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details
        self.job_id = job_id
        self.code = code or "invalid_job"
        self.team = team


def parse_job(kind: JobKind, data: bytes | dict[str, Any], settings: Settings) -> Job:
    """Validate a job body of `kind` against the models and the settings' limits."""
    try:
        document = json.loads(data) if isinstance(data, bytes) else data
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidJob(f"the message is not JSON: {error.__class__.__name__}") from None
    if not isinstance(document, dict):
        raise InvalidJob("the message is not a JSON object")
    job_id = named_job_id(document)
    if document.get("kind", kind) != kind:
        raise InvalidJob(
            f"a {document.get('kind')!r} job was sent to the {kind} queue", job_id=job_id
        )
    model = JOB_TYPES[kind]
    try:
        job: Job = model.model_validate(document, context={"settings": settings})
    except ValidationError as error:
        raise InvalidJob(
            "the job is invalid", details=validation_details(error), job_id=job_id
        ) from None
    if job.job_id is None:
        job = job.model_copy(update={"job_id": str(uuid.uuid4())})
    return job


def job_spec(job: Job, settings: Settings, allowed: Sequence[str] = ()) -> JobSpec:
    """The deployment and options a job runs with; an unknown model alias, or one outside
    `allowed` (its team's `models`, when the team lists any), is InvalidJob."""
    if isinstance(job, EmbeddingJob):
        default = settings.embedding_deployment
    elif job.mode == "batch" and settings.batch_deployment:
        default = settings.batch_deployment
    else:
        default = settings.classification_deployment
    try:
        deployment = resolve_deployment(settings, job.model, default, allowed)
    except UnknownModelError as error:
        raise InvalidJob(
            str(error),
            details={"known_models": error.known},
            job_id=job.job_id,
            team=job.team or settings.default_team,
        ) from None
    return JobSpec(
        model=job.model,
        deployment=deployment,
        dimensions=getattr(job, "dimensions", None),
        labels=getattr(job, "labels", None),
        multi_label=getattr(job, "multi_label", False),
        instructions=getattr(job, "instructions", None),
        tags=dict(job.tags),
        principal_id=job.principal_id,
        team=job.team or settings.default_team,
    )


async def read_message(
    kind: JobKind, body: bytes, queues: JobQueues, settings: Settings
) -> tuple[Job, str | None]:
    """A queue message as a job, and the claim-check blob it came from (if any)."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidJob(f"the message is not JSON: {error.__class__.__name__}") from None
    if isinstance(document, dict) and "items_blob" in document:
        try:
            check = ClaimCheck.model_validate(document)
        except ValidationError as error:
            raise InvalidJob(
                "the claim check is invalid",
                details=validation_details(error),
                job_id=named_job_id(document),
            ) from None
        try:
            payload = await queues.get_payload(check.items_blob)
        except ResourceNotFoundError:
            raise InvalidJob(
                f"the claim check points nowhere: no blob {check.items_blob!r}",
                job_id=check.job_id,
                code="claim_check_missing",
            ) from None
        job = parse_job(kind, payload, settings)
        if job.job_id != check.job_id:
            raise InvalidJob(
                "the claim check and its blob name different jobs", job_id=check.job_id
            )
        carried = {
            "attempt": check.attempt,
            "reason": check.reason,
            "lease": check.lease,
            "created_at": check.created_at,
            "answers_blob": check.answers_blob,
            "budget_since": check.budget_since,
            "traceparent": check.traceparent,
        }
        return job.model_copy(update=carried), check.items_blob
    return parse_job(kind, body if isinstance(document, dict) else b"[]", settings), None


async def enqueue(
    queues: JobQueues, queue: str, job: Job, *, delay_seconds: float = 0, blob: str | None = None
) -> str:
    """Put `job` on `queue`; too large for one message, its JSON goes to a blob (`blob`, or a
    new name under the job's folder) and the message is a claim check. Returns the message id.
    A job without a `traceparent` takes the current span's (the submitting call's, or the
    message's whose continuation this is): the next message's span links to it."""
    if job.traceparent is None:
        job = job.model_copy(update={"traceparent": tracing.current_traceparent()})
    text = job.model_dump_json(exclude_none=True, exclude_defaults=False)
    delay = max(0, round(delay_seconds))
    if fits_in_message(text):
        return await queues.send(queue, text, delay_seconds=delay)
    assert job.job_id is not None  # parse_job always sets it
    name = blob or f"{job.job_id}/{uuid.uuid4().hex}.json"
    await queues.put_payload(name, text.encode("utf-8"))
    check = ClaimCheck(
        job_id=job.job_id,
        kind=job.kind,
        items_blob=name,
        attempt=job.attempt,
        reason=job.reason,
        lease=job.lease,
        created_at=job.created_at,
        answers_blob=job.answers_blob,
        budget_since=job.budget_since,
        traceparent=job.traceparent,
    )
    return await queues.send(queue, check, delay_seconds=delay)


def named_job_id(document: Any) -> str | None:
    """The job id a body names, if it is a usable id (for the failed-job record)."""
    if not isinstance(document, dict):
        return None
    try:
        return _JOB_ID.validate_python(document.get("job_id"))
    except ValidationError:
        return None


_JOB_ID: TypeAdapter[str] = TypeAdapter(JobId)
