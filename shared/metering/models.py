"""What metering stores and reports: usage records, content-filter events, the usage report."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from shared.core.models import CategoryResult

Operation = Literal[
    "chat", "chat_stream", "responses", "responses_stream", "embedding", "classification", "batch"
]
Mode = Literal["realtime", "batch"]


# Who set the output cap a chat call was sent with (shared/metering/output_caps.py): its
# caller, the learned percentile, CHAT_MAX_TOKENS_LIMIT, or the team's `max_tokens`.
CapSource = Literal["caller", "learned", "limit", "team"]


class UsageRecord(BaseModel):
    """One upstream call, in the `usage` container (partition `/day`)."""

    id: str
    day: str
    timestamp: datetime
    operation: Operation
    deployment: str
    model: str | None
    mode: Mode = "realtime"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    # 0 in documents written before they were recorded.
    cached_tokens: int = Field(
        default=0, description="Of prompt_tokens, those the service served from its prompt cache."
    )
    reasoning_tokens: int = Field(
        default=0, description="Of completion_tokens, the model's hidden reasoning."
    )
    latency_ms: float
    status: Literal["ok", "content_filter", "error", "cancelled"] = "ok"
    tags: dict[str, str] = Field(default_factory=dict)
    request_id: str | None = None
    client_request_id: str | None = Field(default=None, description="The caller's x-request-id.")
    principal_id: str | None = Field(
        default=None, description="Entra object id of the signed-in caller (App Service auth)."
    )
    job_id: str | None = None
    team: str | None = Field(
        default=None,
        description="The team the call belongs to: its key's (or its member's) on the data "
        "plane, its job's for jobs and batch (None in documents from before teams).",
    )
    user_hash: str | None = None  # HMAC of the caller's `user` (USER_HASH_SECRET), if sent
    backend: str | None = Field(
        default=None, description="The AOAI_BACKENDS entry that served the call (or refused it)."
    )
    cut_by: CapSource | None = Field(
        default=None,
        description="A chat answer that ended at its output cap (`finish_reason: length`): "
        "who set that cap. `learned`, `limit` or `team`: cut by a cap its caller did not set.",
    )
    estimated: bool = Field(
        default=False,
        description="The tokens are the app's estimate: a stream that ended before the "
        "service's usage chunk (the caller hung up, or it broke off): the prompt's characters "
        "/ 4 and the output sent so far.",
    )


GROUP_BY_PATTERN = r"^(deployment|operation|model|principal_id|backend|team|tag:.+)$"


class UsageQuery(BaseModel):
    """`GET /api/usage` query: `since`/`until` ISO 8601 (default: the last 24 hours).

    Other query parameters are ignored: `code` carries the function key."""

    since: datetime | None = None
    until: datetime | None = None
    group_by: str = Field(default="deployment", pattern=GROUP_BY_PATTERN)


class UsageGroup(BaseModel):
    key: str | None
    calls: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int = Field(
        default=0,
        description="Of prompt_tokens, those served from the prompt cache: priced at the "
        "model's cached-input price (MODEL_PRICES).",
    )
    reasoning_tokens: int = Field(
        default=0,
        description="Of completion_tokens, hidden reasoning: priced as output, shown apart.",
    )
    estimated_cost_usd: float
    estimated_tokens: int = Field(
        default=0,
        description="Of total_tokens, those the app estimated: streams cut before the "
        "service's usage chunk (usage documents with `estimated: true`).",
    )


class UsageReport(BaseModel):
    since: datetime
    until: datetime
    group_by: str
    groups: list[UsageGroup]
    total: UsageGroup
    unpriced_models: list[str] = Field(
        default_factory=list, description="Models with no price in MODEL_PRICES (cost 0)."
    )
    as_of: datetime | None = Field(
        default=None,
        description="When the oldest roll-up read was computed: calls after it are not in yet.",
    )


class ContentFilterEvent(BaseModel):
    """A filtered prompt or completion, in `content_filter_events` (partition `/day`)."""

    id: str
    day: str
    timestamp: datetime
    source: Literal["chat", "job", "batch", "gateway"]
    stage: Literal["prompt", "completion"]
    categories: dict[str, CategoryResult]
    deployment: str
    request_id: str | None = None
    client_request_id: str | None = None
    job_id: str | None = None
    item_id: str | None = None
    user_hash: str | None = None
    backend: str | None = Field(default=None, description="The backend whose filter fired.")
    team: str | None = Field(default=None, description="The team whose call was filtered.")
    text: str | None = Field(default=None, description="Only if CONTENT_FILTER_STORE_TEXT.")
