"""Azure OpenAI content-filter results: read them from SDK objects, store them as events.

A filtered prompt arrives as a 400 whose body has `code: "content_filter"` and
`innererror.content_filter_result`; a filtered completion as `finish_reason: "content_filter"`
with the choice's `content_filter_results`. Either way one event document is stored, without
the text unless `CONTENT_FILTER_STORE_TEXT=true`, and with the caller's id hashed (HMAC). Storing
them is `shared/bookkeeping.py`'s job.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import openai
from pydantic import BaseModel, ValidationError

from shared.models import CategoryResult, ContentFilterEvent, ContentFilterInfo

Stage = Literal["prompt", "completion"]
Source = Literal["chat", "job", "batch", "gateway"]


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
    """The categories of a prompt the service refused."""
    body = error.body if isinstance(error.body, Mapping) else {}
    inner = body.get("innererror") or {}
    raw = inner.get("content_filter_result") if isinstance(inner, Mapping) else None
    return ContentFilterInfo(stage="prompt", filtered=True, categories=parse_categories(raw))


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


def hash_user(user: str | None, secret: str) -> str | None:
    """A stable id for the caller that cannot be reversed without `USER_HASH_SECRET`:
    HMAC-SHA256, hex. A plain hash of an email address falls to a dictionary of addresses."""
    if user is None:
        return None
    if not secret:
        raise ValueError("hash_user needs USER_HASH_SECRET")
    return hmac.new(secret.encode("utf-8"), user.encode("utf-8"), hashlib.sha256).hexdigest()


def build_event(
    info: ContentFilterInfo,
    *,
    source: Source,
    deployment: str,
    request_id: str | None = None,
    job_id: str | None = None,
    item_id: str | None = None,
    client_request_id: str | None = None,
    user_hash: str | None = None,
    backend: str | None = None,
    text: str | None = None,
    store_text: bool = False,
    now: datetime | None = None,
) -> ContentFilterEvent:
    """One event. A job item's event has the deterministic id `{job_id}:{item_id}`, so a
    redelivered message overwrites it instead of adding a second one."""
    now = now or datetime.now(UTC)
    event_id = f"{job_id}:{item_id}" if job_id and item_id else str(uuid.uuid4())
    return ContentFilterEvent(
        id=event_id,
        day=now.date().isoformat(),
        timestamp=now,
        source=source,
        stage=info.stage,
        categories=info.categories,
        deployment=deployment,
        request_id=request_id,
        client_request_id=client_request_id,
        job_id=job_id,
        item_id=item_id,
        user_hash=user_hash,
        backend=backend,
        text=text if store_text else None,
    )
