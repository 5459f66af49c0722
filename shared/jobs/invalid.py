"""A queue message that is not a valid job: recorded at once as a failed job with its reason
and (part of) its raw body, once however often it is delivered, and never retried
(docs/jobs.md#how-a-job-runs, step 1). The worker (shared/jobs/worker.py) records what it
cannot read; the poison sweep (shared/jobs/poison.py) what the host gave up on.

A message that names its job (`job_id`) fails that job, if it is still open; one that does
not is recorded under a name made from its queue and body, so a redelivery finds its record.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Literal, Protocol

from shared.core.clock import now
from shared.core.models import ErrorDetail
from shared.jobs.intake import InvalidJob
from shared.jobs.models import JobDoc, JobKind, JobSource
from shared.jobs.store import OPEN, JobStore

log = logging.getLogger(__name__)


class Delivered(Protocol):
    """What a record needs of the message: where it came from and what it held."""

    @property
    def queue(self) -> str: ...

    @property
    def id(self) -> str | None: ...

    @property
    def body(self) -> bytes: ...


async def record_invalid(
    jobs: JobStore,
    kind: JobKind | None,
    message: Delivered,
    error: InvalidJob,
    *,
    raw_body_chars: int,
    via: Literal["queue", "poison"] = "queue",
    raw_blob: str | None = None,
) -> JobDoc:
    """Record `message`, which is not a valid job, as a failed job (its first
    `raw_body_chars` characters kept; `raw_blob`: where the whole of it is)."""
    digest = hashlib.sha256(message.queue.encode() + b"\n" + message.body).hexdigest()
    detail = ErrorDetail(code=error.code, message=error.reason, details=error.details)
    raw = message.body.decode("utf-8", errors="replace")[:raw_body_chars]
    record = JobDoc(
        id=f"invalid-{digest[:32]}",
        job_id=f"invalid-{digest[:32]}",
        kind=kind,
        status="failed",
        error=detail,
        raw_body=raw,
        raw_blob=raw_blob,
        created_at=now(),
        updated_at=now(),
        source=JobSource(via=via, queue=message.queue, message_id=message.id),
    )
    log.warning("message %s on %s is not a valid job: %s", message.id, message.queue, error.reason)
    if error.job_id is not None:
        named = record.model_copy(
            update={"id": error.job_id, "job_id": error.job_id, "team": error.team}
        )
        stored, created = await jobs.create(named)
        if created or stored.raw_body == raw:  # new, or this very message again
            return stored
        if stored.status in OPEN:
            failed = await jobs.update(
                error.job_id, status="failed", only_from=OPEN, error=detail, raw_body=raw
            )
            return failed or stored
    stored, _ = await jobs.create(record)
    return stored
