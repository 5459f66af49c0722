"""Typed errors raised inside the app, and the one translation of SDK errors into them.

Nothing in here knows HTTP frameworks: `shared/http.py` turns an :class:`AppError` into a
response at the boundary, and job code turns it into a failed-job record.
"""

from __future__ import annotations

from typing import Any

import openai

from shared.aoai import error_retry_after
from shared.models import ErrorDetail


class AppError(Exception):
    """An error a caller sees: HTTP status, stable code, message, optional details."""

    status = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        details: Any | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}

    def detail(self) -> ErrorDetail:
        return ErrorDetail(code=self.code, message=self.message, details=self.details)


class InvalidRequest(AppError):
    status, code = 400, "invalid_request"


class ContentFiltered(AppError):
    status, code = 400, "content_filter"


class NotFound(AppError):
    status, code = 404, "not_found"


class TooLarge(AppError):
    status, code = 413, "too_large"


class RateLimited(AppError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        seconds = max(1, round(retry_after)) if retry_after is not None else 1
        super().__init__(
            message,
            details={"retry_after_seconds": retry_after},
            headers={"Retry-After": str(seconds)},
        )
        self.retry_after = retry_after


class UpstreamError(AppError):
    status, code = 502, "upstream_error"


class UpstreamTimeout(AppError):
    status, code = 504, "upstream_timeout"


def from_openai(error: openai.OpenAIError) -> AppError:
    """Translate an SDK error (after the SDK's own retries) into what the caller sees.

    Messages name the failure, never a key, token or the upstream's raw body.
    """
    if isinstance(error, openai.APITimeoutError):
        return UpstreamTimeout("Azure OpenAI did not answer in time")
    if isinstance(error, openai.APIConnectionError):
        return UpstreamError("Azure OpenAI could not be reached")
    if isinstance(error, openai.RateLimitError):
        return RateLimited(
            "Azure OpenAI rate limit reached; retry later",
            retry_after=error_retry_after(error),
        )
    if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
        return UpstreamError(
            "Azure OpenAI refused the app's credentials "
            f"(HTTP {error.status_code}); check the app identity's role assignment"
        )
    if isinstance(error, openai.NotFoundError):
        return UpstreamError("the Azure OpenAI deployment was not found upstream")
    if isinstance(error, openai.BadRequestError | openai.UnprocessableEntityError):
        return InvalidRequest(
            "Azure OpenAI rejected the request", details={"upstream_code": error.code}
        )
    if isinstance(error, openai.APIStatusError):
        return UpstreamError(f"Azure OpenAI answered HTTP {error.status_code}")
    return UpstreamError("Azure OpenAI call failed")
