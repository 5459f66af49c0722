"""The `batches` document: one per Batch API job, with its lease and ingestion checkpoint.

A classification job in batch mode becomes one or more parts (files); each part has one
document, id `{job_id}:{part}` (partition `/id`), whatever happens to its Batch API jobs: a
resubmission after a quota refusal or after `BATCH_MAX_AGE` reuses the document with a new
`batch_id`. Pollers claim a document with a lease (`lease_owner`, `lease_until`) written under
its ETag, so two runs never work on the same batch; a killed run's lease simply expires.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.core.models import ErrorDetail

# waiting: not on the Batch API yet (new, waiting for room in the enqueued-token quota, or
# after a failure); creating: its tokens are counted as enqueued and a Batch API job may be
# being made (the input file id is saved before the create): whoever finds a part in this
# state looks the batch up by its metadata before making another; submitted: a Batch API job
# runs; done: ingested (or given up) and its files deleted.
BatchState = Literal["waiting", "creating", "submitted", "done"]
# Why we cancelled a batch ourselves: the job was cancelled, or the batch grew too old.
StopReason = Literal["cancel", "max_age"]
FileKind = Literal["output", "error"]

# The Batch API's statuses after which nothing changes any more.
FINISHED: frozenset[str] = frozenset({"completed", "failed", "cancelled", "expired"})


class BatchBooking(BaseModel):
    """A part's booking against its team's day and month (shared/jobs/batch/budget.py): what
    the poller that settles it, on any instance and days later, needs of it."""

    team: str
    tokens: int
    usd_micros: int
    day: str
    month: str
    counts_tokens: bool
    counts_usd: bool


class BatchDoc(BaseModel):
    """`batches` document. `first`/`last` is the part's range of the job's items (in the
    items blob); `offsets` counts the lines of each file already ingested."""

    model_config = ConfigDict(extra="ignore")

    id: str
    job_id: str
    part: int
    deployment: str
    endpoint: str
    items_blob: str
    first: int
    last: int
    state: BatchState = "waiting"
    lines: int = 0
    tokens: int = 0  # estimated input tokens it holds in the deployment's enqueued-token quota
    batch_id: str | None = None
    batch_status: str | None = None
    input_file_id: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    submitted_at: datetime | None = None
    attempts: int = 0  # failed submissions (BATCH_MAX_ATTEMPTS)
    refusals: int = 0  # token_limit_exceeded refusals: waits for room, not failures
    creating_since: datetime | None = None
    next_attempt_at: datetime | None = None
    resubmitted: bool = False
    stop: StopReason | None = None
    offsets: dict[str, int] = Field(default_factory=dict)
    ingested: int = 0
    ingested_all: bool = False
    error: ErrorDetail | None = None
    # Its team's budget: the worst case booked while it is `creating` or running (cleared,
    # under the lease, before it is settled: settled once), what the lines ingested so far
    # used and cost (micro-USD, at the batch price), and since when it waits for room.
    booking: BatchBooking | None = None
    used_tokens: int = 0
    used_micros: int = 0
    budget_since: datetime | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None
    created_at: datetime
    updated_at: datetime
    etag: str | None = Field(default=None, alias="_etag", exclude=True)


def doc_id(job_id: str, part: int) -> str:
    return f"{job_id}:{part}"


def custom_id(job_id: str, item_id: str) -> str:
    """A line's `custom_id`, which is also its result's id."""
    return f"{job_id}:{item_id}"


def item_of(job_id: str, line_id: str) -> str | None:
    """The item id in a line's `custom_id`, or None when it is not one of this job's."""
    prefix = job_id + ":"
    return (
        line_id[len(prefix) :]
        if line_id.startswith(prefix) and len(line_id) > len(prefix)
        else None
    )
