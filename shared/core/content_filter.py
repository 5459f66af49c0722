"""Azure OpenAI content-filter results, read from SDK objects and errors.

A filtered prompt arrives as a 400 whose body has `code: "content_filter"` and
`innererror.content_filter_result`; a filtered completion as `finish_reason: "content_filter"`
with the choice's `content_filter_results`. Storing them as events is
`shared/metering/filter_events.py`'s job. This lives in `core/` because `core/errors.py`
translates a filtered prompt's 400 into `ContentFiltered`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import openai
from pydantic import BaseModel, ValidationError

from shared.core.models import CategoryResult, ContentFilterInfo

Stage = Literal["prompt", "completion"]


def is_prompt_filtered(error: openai.APIStatusError) -> bool:
    return error.status_code == 400 and error.code == "content_filter"


def parse_categories(raw: Any) -> dict[str, CategoryResult]:
    """`{"violence": {"filtered": true, "severity": "medium"}, ...}` -> typed, skipping any
    entry that is not a category result (Azure adds e.g. `custom_blocklists`)."""
    out: dict[str, CategoryResult] = {}
    if not isinstance(raw, Mapping):
        return out
    for name, value in raw.items():
        if isinstance(value, Mapping) and "filtered" in value:
            try:
                out[str(name)] = CategoryResult.model_validate(value)
            except ValidationError:
                continue
    return out


def prompt_filter(error: openai.APIStatusError) -> ContentFilterInfo:
    """The categories of a prompt the service refused: chat's `innererror.
    content_filter_result`, or the Responses API's top-level `content_filters` list (its
    `source_type: prompt` entries, merged)."""
    body = error.body if isinstance(error.body, Mapping) else {}
    inner = body.get("innererror") or {}
    raw = inner.get("content_filter_result") if isinstance(inner, Mapping) else None
    categories = parse_categories(raw)
    verdicts = body.get("content_filters")
    for verdict in verdicts if isinstance(verdicts, list) else []:
        if isinstance(verdict, Mapping) and verdict.get("source_type", "prompt") == "prompt":
            categories.update(parse_categories(verdict.get("content_filter_results")))
    return ContentFilterInfo(stage="prompt", filtered=True, categories=categories)


def completion_filter(choice: BaseModel) -> ContentFilterInfo | None:
    """The choice's filter results (an Azure extension field on the SDK model), if any."""
    raw = (choice.model_extra or {}).get("content_filter_results")
    categories = parse_categories(raw)
    if not categories:
        return None
    filtered = any(c.filtered for c in categories.values())
    return ContentFilterInfo(stage="completion", filtered=filtered, categories=categories)


def completion_flag(choice: BaseModel) -> ContentFilterInfo | None:
    """The filter verdict on a finished choice when it was filtered, else None.

    `finish_reason: "content_filter"` without category details still counts as filtered."""
    info = completion_filter(choice)
    if info is not None and info.filtered:
        return info
    if getattr(choice, "finish_reason", None) == "content_filter":
        return ContentFilterInfo(stage="completion", filtered=True, categories={})
    return None


def filtered_only(info: ContentFilterInfo) -> dict[str, CategoryResult]:
    return {name: c for name, c in info.categories.items() if c.filtered}
