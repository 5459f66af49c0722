"""`/api/chat` on the wire: the request, the JSON answer and the stream's frames.

Size limits that depend on settings are checked with the settings passed as validation
context: `ChatRequest.model_validate_json(body, context={"settings": s})`. A stream sends one
JSON frame per `data:` line, then `data: [DONE]`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, ValidationInfo, model_validator

from shared.core.models import CategoryResult, ContentFilterInfo, ErrorDetail, Strict, Tags, Usage
from shared.core.settings import Settings


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


class ErrorFrame(BaseModel):
    type: Literal["error"] = "error"
    error: ErrorDetail
