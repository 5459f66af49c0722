"""The few models every feature shares: errors, token usage, content-filter annotations, tags.

Requests are strict (`extra="forbid"`): a misspelt field is a 400 naming it, not a silent
default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TagKey = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
TagValue = Annotated[str, Field(max_length=256)]
Tags = Annotated[dict[TagKey, TagValue], Field(max_length=20)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Usage(BaseModel):
    """Tokens of a call, or of several summed, as Azure counts them: cached tokens are among
    the prompt tokens and reasoning tokens among the completion tokens."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = Field(
        default=0,
        description="Of prompt_tokens, a prefix the service had computed lately (prompt "
        "caching): billed at the cached-input price.",
    )
    reasoning_tokens: int = Field(
        default=0,
        description="Of completion_tokens, the model's hidden reasoning: billed as output.",
    )

    @classmethod
    def of(cls, raw: Any) -> Usage:
        """The usage the service reported: the SDK's object or its JSON (what the gateway
        passes through); None is zeros. `prompt_tokens_details.cached_tokens` and
        `completion_tokens_details.reasoning_tokens` are absent or null in older API versions
        and models, and embeddings have neither: 0. A count that is no integer raises
        pydantic's ValidationError."""
        prompt_details = _field(raw, "prompt_tokens_details")
        completion_details = _field(raw, "completion_tokens_details")
        return cls.model_validate(
            {
                "prompt_tokens": _field(raw, "prompt_tokens") or 0,
                "completion_tokens": _field(raw, "completion_tokens") or 0,
                "total_tokens": _field(raw, "total_tokens") or 0,
                "cached_tokens": _field(prompt_details, "cached_tokens") or 0,
                "reasoning_tokens": _field(completion_details, "reasoning_tokens") or 0,
            }
        )

    def plus(self, other: Usage) -> Usage:
        """Both summed, every count."""
        return Usage.model_validate(
            {name: getattr(self, name) + getattr(other, name) for name in Usage.model_fields}
        )


def _field(raw: Any, name: str) -> Any:
    """`raw[name]` of JSON, `raw.name` of an SDK object; None when absent (or `raw` is None)."""
    return raw.get(name) if isinstance(raw, Mapping) else getattr(raw, name, None)


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
