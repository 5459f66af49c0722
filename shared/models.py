"""Pydantic models for every HTTP request and answer, stream frame and stored document.

Requests are strict (`extra="forbid"`): a misspelt field is a 400 naming it, not a silent
default. Size limits that depend on settings are checked with the settings passed as
validation context: `ChatRequest.model_validate_json(body, context={"settings": s})`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from shared.settings import Settings

TagKey = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
TagValue = Annotated[str, Field(max_length=256)]
Tags = Annotated[dict[TagKey, TagValue], Field(max_length=20)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- chat --------------------------------------------------------------------------------


class ChatMessage(Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str = Field(min_length=1)


class ChatRequest(Strict):
    """`POST /api/chat` body."""

    messages: list[ChatMessage] = Field(min_length=1)
    model: str | None = Field(default=None, min_length=1, max_length=128, description="Alias.")
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    stream: bool = False
    user: str | None = Field(
        default=None, min_length=1, max_length=256, description="Caller id; stored hashed."
    )
    tags: Tags = Field(default_factory=dict, description="Cost attribution, e.g. team.")

    @model_validator(mode="after")
    def _within_limits(self, info: ValidationInfo) -> ChatRequest:
        settings = (info.context or {}).get("settings")
        if not isinstance(settings, Settings):
            return self
        if len(self.messages) > settings.chat_max_messages:
            raise ValueError(f"at most {settings.chat_max_messages} messages are allowed")
        chars = sum(len(m.content) for m in self.messages)
        if chars > settings.chat_max_input_chars:
            raise ValueError(
                f"messages hold {chars} characters; at most {settings.chat_max_input_chars}"
            )
        if self.max_tokens is not None and self.max_tokens > settings.chat_max_tokens_limit:
            raise ValueError(f"max_tokens must be at most {settings.chat_max_tokens_limit}")
        return self


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class CategoryResult(BaseModel):
    filtered: bool
    severity: str | None = None
    detected: bool | None = None


class ContentFilterInfo(BaseModel):
    """What Azure's content filter said about one stage of a call."""

    stage: Literal["prompt", "completion"]
    filtered: bool
    categories: dict[str, CategoryResult]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatResponse(BaseModel):
    """`POST /api/chat` answer (non-streamed)."""

    id: str
    model: str
    deployment: str
    message: AssistantMessage
    finish_reason: str | None
    usage: Usage
    content_filter: ContentFilterInfo | None = None


# --- stream frames (one JSON object per `data:` line, then `data: [DONE]`) ---------------


class DeltaFrame(BaseModel):
    type: Literal["delta"] = "delta"
    content: str


class DoneFrame(BaseModel):
    type: Literal["done"] = "done"
    id: str
    finish_reason: str | None
    usage: Usage | None


class ContentFilterFrame(BaseModel):
    type: Literal["content_filter"] = "content_filter"
    stage: Literal["prompt", "completion"]
    categories: dict[str, CategoryResult]


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any | None = None


class ErrorFrame(BaseModel):
    type: Literal["error"] = "error"
    error: ErrorDetail


class ErrorResponse(BaseModel):
    """Every error answer: `{"error": {"code", "message", ...}}`."""

    error: ErrorDetail


# --- usage -------------------------------------------------------------------------------

Operation = Literal["chat", "chat_stream", "embedding", "classification", "batch"]
Mode = Literal["realtime", "batch"]


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
    latency_ms: float
    status: Literal["ok", "content_filter", "error", "cancelled"] = "ok"
    tags: dict[str, str] = Field(default_factory=dict)
    request_id: str | None = None
    client_request_id: str | None = Field(default=None, description="The caller's x-request-id.")
    principal_id: str | None = Field(
        default=None, description="Entra object id of the signed-in caller (App Service auth)."
    )
    job_id: str | None = None
    user_hash: str | None = None  # HMAC of the caller's `user` (USER_HASH_SECRET), if sent
    backend: str | None = Field(
        default=None, description="The AOAI_BACKENDS entry that served the call (or refused it)."
    )


GROUP_BY_PATTERN = r"^(deployment|operation|model|principal_id|backend|tag:.+)$"


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
    estimated_cost_usd: float


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


# --- content filter events ---------------------------------------------------------------


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
    text: str | None = Field(default=None, description="Only if CONTENT_FILTER_STORE_TEXT.")


# --- health ------------------------------------------------------------------------------


class CheckResult(BaseModel):
    ok: bool
    latency_ms: float
    error: str | None = None


class HealthStatus(BaseModel):
    """What an anonymous caller of `/api/health` learns: no dependency names or errors."""

    status: Literal["ok", "unavailable"]


class HealthReport(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, CheckResult]
