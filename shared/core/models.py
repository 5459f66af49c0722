"""The few models every feature shares: errors, token usage, content-filter annotations, tags.

Requests are strict (`extra="forbid"`): a misspelt field is a 400 naming it, not a silent
default.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TagKey = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
TagValue = Annotated[str, Field(max_length=256)]
Tags = Annotated[dict[TagKey, TagValue], Field(max_length=20)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any | None = None


class ErrorResponse(BaseModel):
    """Every error answer: `{"error": {"code", "message", ...}}`."""

    error: ErrorDetail
