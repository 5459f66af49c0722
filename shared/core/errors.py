"""Typed errors raised inside the app, and the one place where foreign errors become them.

Nothing in here knows HTTP frameworks or queues: `shared/http/boundary.py` turns an
:class:`AppError` into a response, and the queue boundary (`shared/jobs/worker.py`) turns it
into a job or item status. `retryable` tells the queue side whether waiting and trying again
can help (a 429, a 5xx, Cosmos DB unreachable) or not (a bad request, a filtered prompt, a
missing deployment).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx2
import openai
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from pydantic import ValidationError

from shared.core import content_filter
from shared.core.models import ErrorDetail


class UnknownModelError(ValueError):
    """A model alias that maps to no deployment. Answered as 400, never sent upstream."""

    def __init__(self, alias: str, known: list[str]) -> None:
        super().__init__(f"unknown model {alias!r}; known models: {', '.join(known)}")
        self.alias = alias
        self.known = known


def validation_details(error: ValidationError) -> list[dict[str, Any]]:
    """Where and what, without echoing the input back (it may be prompt text)."""
    return [
        {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
        for e in error.errors(include_url=False, include_input=False)
    ]


class AppError(Exception):
    """An error a caller sees: HTTP status, stable code, message, optional details."""

    status = 500
    code = "internal_error"
    retryable_by_default = False

    def __init__(
        self,
        message: str,
        *,
        details: Any | None = None,
        headers: dict[str, str] | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}
        self._retryable = retryable

    @property
    def retryable(self) -> bool:
        """True when the same work may succeed later (passing failure), False when not."""
        return self.retryable_by_default if self._retryable is None else self._retryable

    def detail(self) -> ErrorDetail:
        return ErrorDetail(code=self.code, message=self.message, details=self.details)


class InvalidRequest(AppError):
    status, code = 400, "invalid_request"

    def __init__(
        self, message: str, *, details: Any | None = None, upstream_message: str | None = None
    ) -> None:
        super().__init__(message, details=details)
        # Azure OpenAI's own words for a 400 (`error.message`; no prompt text), kept out of
        # HTTP answers: a queue job fails its items with it (shared/jobs/refusals.py).
        self.upstream_message = upstream_message


class ContentFiltered(AppError):
    status, code = 400, "content_filter"


class NotSupported(AppError):
    status, code = 400, "not_supported"


class Unauthorized(AppError):
    """No valid team credential on a data-plane route (docs/security.md): no key, a made-up
    or revoked one, a disabled team's, or a principal that is not a member of one team."""

    status, code = 401, "unauthorized"


class Forbidden(AppError):
    """Signed in, but without the app role the route needs."""

    status, code = 403, "forbidden"


class TeamDisabled(AppError):
    """A job's team was disabled (docs/teams.md): what the job has not done fails. Callers
    of a disabled team never get this (their keys are a 401); only its queued work does."""

    status, code = 403, "team_disabled"

    def __init__(self, team_id: str) -> None:
        super().__init__(
            f"team {team_id} is disabled: its jobs stop (submit the job again once the team "
            "is enabled; what was done is kept)"
        )


class NotFound(AppError):
    status, code = 404, "not_found"


class DeploymentNotFound(AppError):
    """An unknown deployment or model on the Azure OpenAI-compatible routes: Azure's own code,
    so the SDKs raise their usual NotFoundError."""

    status, code = 404, "DeploymentNotFound"


class Conflict(AppError):
    status, code = 409, "conflict"


class TooLarge(AppError):
    status, code = 413, "too_large"


class RateLimited(AppError):
    status, code = 429, "rate_limited"
    retryable_by_default = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        seconds = max(1, round(retry_after)) if retry_after is not None else 1
        super().__init__(
            message,
            details={"retry_after_seconds": retry_after},
            headers={"Retry-After": str(seconds)},
        )
        self.retry_after = retry_after


class BudgetExceeded(RateLimited):
    """A team's day or month budget is spent (shared/metering/team_limits.py): 429 with the
    wait until the next UTC day or month, when room returns."""

    code = "budget_exceeded"


class UpstreamError(AppError):
    status, code = 502, "upstream_error"
    retryable_by_default = True


class ServiceUnavailable(AppError):
    """A dependency of the app's own (Cosmos DB, Storage) did not answer."""

    status, code = 503, "unavailable"
    retryable_by_default = True


class UpstreamTimeout(AppError):
    status, code = 504, "upstream_timeout"
    retryable_by_default = True


def retry_after_seconds(headers: Mapping[str, str] | httpx2.Headers) -> float | None:
    """The server's requested wait: `retry-after-ms` first (Azure), then `retry-after` seconds."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            continue
        if seconds >= 0:
            return seconds
    return None


def translate(error: BaseException) -> AppError | None:
    """What the caller sees for `error`, or None for an error that is a bug of ours.

    The one translation in the app: SDK errors after their own retries, unknown model aliases,
    transport errors read mid-stream, and Cosmos DB / Storage failures. Messages name the
    failure, never a key, token, prompt or the upstream's raw body.
    """
    from shared.core.errors import (
        UnknownModelError,  # the client module imports us; not the reverse
    )

    if isinstance(error, AppError):
        return error
    if isinstance(error, BaseExceptionGroup):  # concurrent work (TaskGroup) failed
        for inner in error.exceptions:
            if (found := translate(inner)) is not None:
                return found
        return None
    if isinstance(error, openai.OpenAIError):
        return _from_openai(error)
    if isinstance(error, UnknownModelError):
        return InvalidRequest(str(error), details={"known_models": error.known})
    if isinstance(error, httpx2.HTTPError):
        # The SDK raises its transport's errors unwrapped while a stream is being read.
        return UpstreamError("the Azure OpenAI stream broke off")
    if isinstance(error, AzureError):
        return _from_azure(error)
    return None


def _from_openai(error: openai.OpenAIError) -> AppError:
    if isinstance(error, openai.APITimeoutError):
        return UpstreamTimeout("Azure OpenAI did not answer in time")
    if isinstance(error, openai.APIConnectionError):
        return UpstreamError("Azure OpenAI could not be reached")
    if isinstance(error, openai.RateLimitError):
        return RateLimited(
            "Azure OpenAI rate limit reached; retry later",
            retry_after=retry_after_seconds(error.response.headers),
        )
    if isinstance(error, openai.APIStatusError) and content_filter.is_prompt_filtered(error):
        info = content_filter.prompt_filter(error)
        return ContentFiltered(
            "the prompt was filtered by Azure OpenAI's content management policy",
            details={"stage": "prompt", "categories": content_filter.filtered_only(info)},
        )
    if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
        return UpstreamError(
            "Azure OpenAI refused the app's credentials "
            f"(HTTP {error.status_code}); check the app identity's role assignment",
            retryable=False,
        )
    if isinstance(error, openai.NotFoundError):
        return UpstreamError("the Azure OpenAI deployment was not found upstream", retryable=False)
    if isinstance(error, openai.BadRequestError | openai.UnprocessableEntityError):
        return InvalidRequest(
            "Azure OpenAI rejected the request",
            details={"upstream_code": error.code, "upstream_param": error.param},
            upstream_message=_service_message(error),
        )
    if isinstance(error, openai.APIStatusError):
        return UpstreamError(f"Azure OpenAI answered HTTP {error.status_code}")
    return UpstreamError("Azure OpenAI call failed")


def _service_message(error: openai.APIStatusError) -> str | None:
    """The `message` of the service's error body, at most 1,000 characters."""
    body = error.body
    message = body.get("message") if isinstance(body, dict) else None
    return message[:1000] if isinstance(message, str) and message else None


def _from_azure(error: AzureError) -> AppError | None:
    if isinstance(error, ResourceNotFoundError):
        return NotFound("not found")
    if isinstance(error, ServiceRequestError | ServiceResponseError):
        return ServiceUnavailable("a storage dependency (Cosmos DB or Storage) is unreachable")
    if isinstance(error, HttpResponseError):
        status = error.status_code or 0
        if status in (408, 429) or status >= 500:
            return ServiceUnavailable(f"a storage dependency answered HTTP {status}")
        return None  # another 4xx (a bad query, a lost ETag race) is ours to handle or fix
    return ServiceUnavailable("a storage dependency failed")
