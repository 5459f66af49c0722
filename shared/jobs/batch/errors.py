"""The Batch API's error bodies: the codes and first message of a refused create (its 400) or a
failed batch's `errors`, what the submitter and the poller decide by."""

from __future__ import annotations

from typing import Any


def error_codes(body: Any) -> list[str]:
    """Codes in a Batch API error body: `{"errors": {"data": [{"code"}]}}` (create's 400 and
    a failed batch's `errors`), or `{"error": {"code"}}`."""
    if not isinstance(body, dict):
        return []
    errors = body.get("errors")
    rows = errors.get("data") if isinstance(errors, dict) else [body.get("error")]
    return [str(r["code"]) for r in rows or [] if isinstance(r, dict) and r.get("code")]


def first_message(body: Any, default: str) -> str:
    if isinstance(body, dict):
        errors = body.get("errors")
        rows = errors.get("data") if isinstance(errors, dict) else [body.get("error")]
        for row in rows or []:
            if isinstance(row, dict) and row.get("message"):
                return str(row["message"])
    return default
