"""Pydantic models of the job contract: what callers submit (HTTP or queue), the messages on the
queues, and the `jobs` and `results` documents. docs/jobs.md documents them for other systems.

Limits that depend on settings are checked with the settings as validation context, as for
chat: `EmbeddingJob.model_validate_json(body, context={"settings": s})`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from shared.core.clock import now
from shared.core.models import CategoryResult, ErrorDetail, Tags, Usage
from shared.core.settings import Settings
from shared.metering.team_keys import TEAM_ID_PATTERN
from shared.telemetry.tracing import TRACEPARENT_PATTERN

JobKind = Literal["embedding", "classification"]
JobMode = Literal["realtime", "batch"]
JobStatus = Literal[
    "queued",
    "running",
    "waiting",
    "submitted",
    "succeeded",
    "partially_failed",
    "failed",
    "cancelled",
]
TERMINAL: frozenset[str] = frozenset({"succeeded", "partially_failed", "failed", "cancelled"})
ResultStatus = Literal["succeeded", "failed", "content_filtered"]
# A failed job with one of these codes never ran (or was poisoned): the same job requeued by an
# operator after a fix runs again instead of being taken for a finished job.
REQUEUEABLE: frozenset[str] = frozenset(
    {"invalid_job", "undecodable", "claim_check_missing", "poisoned"}
)

# Cosmos DB ids may not hold / \ ? #; ours are `{job_id}:{item_id}`, so ':' is fine inside.
Ident = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")]
# A job id is also a path segment: of `/api/jobs/{job_id}`, of Cosmos DB's document URL and of
# its claim-check blobs' names. It may not end with a dot: `.` and `..` are dot segments those
# URLs resolve away, and Blob Storage drops a segment's trailing dot (`report.` would share
# `report`'s folder).
JobId = Annotated[
    str,
    Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]*[A-Za-z0-9_:@-]$"),
]
Label = Annotated[str, Field(min_length=1, max_length=100)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Item(_Strict):
    id: Ident
    text: str = Field(min_length=1)


class _JobBase(_Strict):
    job_id: JobId | None = Field(
        default=None, description="Default: a new UUID. Not ending with a dot."
    )
    items: list[Item] = Field(min_length=1)
    model: str | None = Field(default=None, min_length=1, max_length=128, description="Alias.")
    mode: JobMode = "realtime"
    tags: Tags = Field(default_factory=dict, description="Cost attribution, e.g. team.")
    # Set by the app from the signed-in caller of an HTTP submit (whatever the body said), so
    # the job's usage records name who spent it; optional, so messages written before it
    # existed still parse. A message another system drops on a queue carries none.
    principal_id: str | None = Field(default=None, max_length=256, description="Set by the app.")
    # The team the job belongs to and spends for: set by the app from the caller's team key on
    # an HTTP submit (whatever the body said); a message dropped on a queue may name it (only
    # identities with a queue data role can send one), else DEFAULT_TEAM applies.
    team: str | None = Field(
        default=None, pattern=rf"^{TEAM_ID_PATTERN}$", description="Set by the app over HTTP."
    )
    # Set by the app on re-enqueued remaining work (a continuation), never by callers.
    attempt: int = Field(default=0, ge=0, le=1000)
    reason: str | None = Field(default=None, max_length=200)
    # The job's lease handed to this continuation, when the job was created (JOB_MAX_AGE
    # counts from it even while Cosmos DB cannot be read), and answers the last slice could
    # not store (shared/jobs/answers.py): docs/jobs.md#one-slice-at-a-time.
    lease: str | None = Field(default=None, max_length=64)
    created_at: datetime | None = None
    answers_blob: str | None = Field(default=None, max_length=1024)
    # Since when the rest has waited for its team's budget (JOB_BUDGET_MAX_WAIT counts from
    # it): set on a continuation sent back to wait for the budget, cleared on any other.
    budget_since: datetime | None = None
    # The submitting call's span (W3C `traceparent`), set by the app when it queues the job:
    # each message's span links to it (shared/telemetry/tracing.py). Optional: a message
    # written before it existed, or dropped on the queue by another system, has none.
    traceparent: str | None = Field(default=None, pattern=TRACEPARENT_PATTERN)

    @model_validator(mode="after")
    def _within_limits(self, info: ValidationInfo) -> _JobBase:
        ids = [item.id for item in self.items]
        if len(set(ids)) != len(ids):
            raise ValueError("item ids must be unique within a job")
        settings = (info.context or {}).get("settings")
        if not isinstance(settings, Settings):
            return self
        if len(self.items) > settings.job_max_items:
            raise ValueError(f"at most {settings.job_max_items} items per job (JOB_MAX_ITEMS)")
        longest = max(len(item.text) for item in self.items)
        if longest > settings.job_max_item_chars:
            raise ValueError(
                f"an item holds {longest} characters; at most {settings.job_max_item_chars} "
                "(JOB_MAX_ITEM_CHARS)"
            )
        return self


class EmbeddingJob(_JobBase):
    """`POST /api/jobs/embeddings` body, and the `embedding-jobs` queue message."""

    kind: Literal["embedding"] = "embedding"
    dimensions: int | None = Field(default=None, ge=1, le=3072)


class ClassificationJob(_JobBase):
    """`POST /api/jobs/classifications` body, and the `classification-jobs` queue message."""

    kind: Literal["classification"] = "classification"
    labels: list[Label] = Field(min_length=2)
    multi_label: bool = False
    instructions: str | None = Field(default=None, max_length=4000)

    @model_validator(mode="after")
    def _labels_within_limits(self, info: ValidationInfo) -> ClassificationJob:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        settings = (info.context or {}).get("settings")
        if isinstance(settings, Settings) and len(self.labels) > settings.job_max_labels:
            raise ValueError(f"at most {settings.job_max_labels} labels (JOB_MAX_LABELS)")
        return self


Job = EmbeddingJob | ClassificationJob


class ClaimCheck(_Strict):
    """A job too large for one queue message: the whole job body is the blob `items_blob` in
    the claim-check container."""

    job_id: JobId
    kind: JobKind
    items_blob: str = Field(min_length=1, max_length=1024)
    attempt: int = Field(default=0, ge=0, le=1000)
    reason: str | None = Field(default=None, max_length=200)
    lease: str | None = Field(default=None, max_length=64)
    created_at: datetime | None = None
    answers_blob: str | None = Field(default=None, max_length=1024)
    budget_since: datetime | None = None
    traceparent: str | None = Field(default=None, pattern=TRACEPARENT_PATTERN)


class SubmitAccepted(BaseModel):
    """202 answer of the submit routes."""

    job_id: str
    status: JobStatus
    status_url: str


class JobSpec(BaseModel):
    """What a job asks for, without its items (they stay in the message or the blob)."""

    model: str | None = None
    deployment: str
    dimensions: int | None = None
    labels: list[str] | None = None
    multi_label: bool = False
    instructions: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    principal_id: str | None = Field(default=None, description="The submitter (Entra sign-in).")
    team: str | None = Field(default=None, description="The job's team (None before teams).")


class Counts(BaseModel):
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    content_filtered: int = 0
    pending: int = 0


class JobSource(BaseModel):
    """Where a job came from: a queue message (with its id) or an HTTP request."""

    via: Literal["http", "queue", "poison"]
    queue: str | None = None
    message_id: str | None = None
    request_id: str | None = None


class JobLease(BaseModel):
    """Who runs a slice of the job (or the continuation it was handed to), and until when."""

    owner: str
    until: datetime


class JobDoc(BaseModel):
    """One document per job in `jobs` (partition `/job_id`, id = job_id)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    job_id: str
    kind: JobKind | None
    mode: JobMode = "realtime"
    status: JobStatus
    spec: JobSpec | None = None
    total: int = 0
    items_blob: str | None = None
    counts: Counts = Field(default_factory=Counts)
    usage: Usage = Field(default_factory=Usage)
    error: ErrorDetail | None = None
    source: JobSource | None = None
    raw_body: str | None = Field(default=None, description="Invalid messages only, truncated.")
    raw_blob: str | None = Field(
        default=None, description="Poisoned messages: the whole message, kept for a requeue."
    )
    lease: JobLease | None = None
    team: str | None = Field(default=None, description="The owner; None in jobs from before.")
    body_hash: str | None = Field(
        default=None,
        description="SHA-256 of the job as submitted over HTTP: the same job_id with another "
        "body is a 409 (None for queue messages and jobs from before it).",
    )
    created_at: datetime
    updated_at: datetime
    etag: str | None = Field(default=None, alias="_etag", exclude=True)

    @classmethod
    def for_job(
        cls,
        job: Job,
        spec: JobSpec,
        status: JobStatus,
        source: JobSource,
        body_hash: str | None = None,
    ) -> JobDoc:
        """The first document of a valid job, as submitted, delivered or swept from poison."""
        assert job.job_id is not None
        created = now()
        return cls(
            id=job.job_id,
            job_id=job.job_id,
            kind=job.kind,
            mode=job.mode,
            status=status,
            spec=spec,
            total=len(job.items),
            team=spec.team,
            body_hash=body_hash,
            created_at=created,
            updated_at=created,
            source=source,
        )


class ResultDoc(BaseModel):
    """One document per item in `results` (partition `/job_id`, id `{job_id}:{item_id}`)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    job_id: str
    item_id: str
    kind: JobKind
    status: ResultStatus
    deployment: str | None = None
    embedding: list[float] | None = None
    labels: list[str] | None = None
    usage: Usage = Field(default_factory=Usage)
    error: ErrorDetail | None = None
    categories: dict[str, CategoryResult] | None = None
    created_at: datetime


class JobQuery(BaseModel):
    """`GET /api/jobs/{job_id}` query. Other parameters are ignored (`code` is the key)."""

    page_size: int = Field(default=100, ge=1, le=1000)
    continuation: str | None = Field(default=None, max_length=8192)


class JobView(BaseModel):
    """`GET /api/jobs/{job_id}`: the job with true counts and one page of its results."""

    job_id: str
    kind: JobKind | None
    mode: JobMode
    status: JobStatus
    counts: Counts
    usage: Usage
    error: ErrorDetail | None
    tags: dict[str, str]
    created_at: datetime
    updated_at: datetime
    results: list[dict[str, Any]]
    continuation: str | None = Field(description="Pass as ?continuation= for the next page.")
