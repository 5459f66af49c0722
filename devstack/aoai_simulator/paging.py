"""Cursor pages (`after`, `limit`) as the Files and Batch list routes answer them."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from . import errors


def page(items: list[dict[str, Any]], after: str | None, limit: int) -> dict[str, Any]:
    """A cursor page `{object, data, first_id, last_id, has_more}` starting after `after`."""
    if after is not None:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    data = items[:limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(items) > limit,
    }


def query_limit(request: Request, default: int, maximum: int) -> int:
    """The `limit` query parameter, between 1 and `maximum`; else a 400."""
    raw = request.query_params.get("limit", str(default))
    try:
        value = int(raw)
    except ValueError:
        raise errors.invalid_request(f"Invalid value for 'limit': {raw!r}.", "limit") from None
    if not 1 <= value <= maximum:
        raise errors.invalid_request(
            f"Invalid value for 'limit': must be between 1 and {maximum}.", "limit"
        )
    return value
