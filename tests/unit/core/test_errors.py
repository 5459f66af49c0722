"""SDK errors -> what the caller sees (pure logic on the SDK's own exception objects)."""

from __future__ import annotations

import httpx2
import openai
import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError

from shared.core.errors import (
    AppError,
    InvalidRequest,
    RateLimited,
    ServiceUnavailable,
    UnknownModelError,
    UpstreamError,
    UpstreamTimeout,
    retry_after_seconds,
    translate,
)

REQUEST = httpx2.Request("POST", "http://127.0.0.1:9/openai/deployments/d/chat/completions")


def status_error(status: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    client = openai.OpenAI(api_key="secret-key-xyz", base_url="http://127.0.0.1:9")
    response = httpx2.Response(
        status,
        json={"error": {"code": "X", "message": "upstream text secret-key-xyz"}},
        headers=headers,
        request=REQUEST,
    )
    error = client._make_status_error_from_response(response)
    client.close()
    return error


@pytest.mark.parametrize(
    ("error", "kind", "status"),
    [
        (status_error(429, {"retry-after-ms": "1500"}), RateLimited, 429),
        (status_error(401), UpstreamError, 502),
        (status_error(403), UpstreamError, 502),
        (status_error(404), UpstreamError, 502),
        (status_error(400), InvalidRequest, 400),
        (status_error(500), UpstreamError, 502),
        (status_error(503), UpstreamError, 502),
        (openai.APITimeoutError(request=REQUEST), UpstreamTimeout, 504),
        (openai.APIConnectionError(request=REQUEST), UpstreamError, 502),
    ],
)
def test_mapping(error: openai.OpenAIError, kind: type[AppError], status: int) -> None:
    mapped = translate(error)
    assert type(mapped) is kind
    assert mapped.status == status
    assert "secret-key-xyz" not in mapped.message
    assert "secret-key-xyz" not in str(mapped.details)


def test_rate_limit_carries_retry_after_rounded_up_to_a_second() -> None:
    mapped = translate(status_error(429, {"retry-after-ms": "1500"}))
    assert isinstance(mapped, RateLimited)
    assert mapped.retry_after == 1.5
    assert mapped.headers == {"Retry-After": "2"}


def test_rate_limit_without_header_still_says_when() -> None:
    mapped = translate(status_error(429))
    assert mapped.headers == {"Retry-After": "1"}


def test_detail_has_code_and_message() -> None:
    detail = InvalidRequest("bad", details=[1]).detail()
    assert detail.model_dump() == {"code": "invalid_request", "message": "bad", "details": [1]}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "250", "retry-after": "3"}, 0.25),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_prefers_milliseconds(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_seconds(headers) == expected


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (status_error(429), True),
        (status_error(500), True),
        (status_error(503), True),
        (openai.APITimeoutError(request=REQUEST), True),
        (openai.APIConnectionError(request=REQUEST), True),
        (status_error(400), False),
        (status_error(401), False),
        (status_error(404), False),
    ],
)
def test_retryable_tells_passing_failures_from_permanent_ones(
    error: openai.OpenAIError, retryable: bool
) -> None:
    mapped = translate(error)
    assert mapped is not None
    assert mapped.retryable is retryable


def test_storage_failures_are_passing_and_answer_503() -> None:
    mapped = translate(ServiceRequestError("connection refused"))
    assert isinstance(mapped, ServiceUnavailable)
    assert (mapped.status, mapped.retryable) == (503, True)
    throttled = HttpResponseError("busy")
    throttled.status_code = 429
    assert isinstance(translate(throttled), ServiceUnavailable)


def test_a_bug_of_ours_is_not_translated() -> None:
    assert translate(KeyError("x")) is None
    conflict = HttpResponseError("precondition failed")
    conflict.status_code = 412
    assert translate(conflict) is None


def test_unknown_model_is_invalid_request_listing_known_models() -> None:
    mapped = translate(UnknownModelError("gpt-5", ["a", "b"]))
    assert isinstance(mapped, InvalidRequest)
    assert mapped.details == {"known_models": ["a", "b"]}


def test_a_group_of_concurrent_failures_translates_to_its_first_known_one() -> None:
    group = ExceptionGroup("writes", [KeyError("x"), ServiceRequestError("refused")])
    assert isinstance(translate(group), ServiceUnavailable)
    assert translate(ExceptionGroup("bugs", [KeyError("x")])) is None
