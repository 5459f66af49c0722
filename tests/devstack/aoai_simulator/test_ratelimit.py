"""Quotas: Azure's 429 with retry-after(-ms), remaining headers, the SDK's own retries."""

from __future__ import annotations

import openai
import pytest
from openai import AsyncAzureOpenAI, AzureOpenAI

from .conftest import Control

HI = [{"role": "user", "content": "hi"}]


def test_remaining_headers_count_down(client: AzureOpenAI, control: Control) -> None:
    control.patch({"deployments": {"gpt-4o": {"rpm": 60, "tpm": 1000}}})  # 10 per 10 s
    first = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=HI, max_tokens=50
    )  # type: ignore[arg-type]
    second = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=HI, max_tokens=50
    )  # type: ignore[arg-type]
    assert first.headers["x-ratelimit-remaining-requests"] == "9"
    assert second.headers["x-ratelimit-remaining-requests"] == "8"
    # charged on arrival: prompt estimate (3 + 3 + ceil(2/4)) plus max_tokens
    assert int(first.headers["x-ratelimit-remaining-tokens"]) == 1000 - 57
    assert int(second.headers["x-ratelimit-remaining-tokens"]) == 1000 - 2 * 57


def test_429_body_and_headers(client: AzureOpenAI, control: Control) -> None:
    control.patch({"deployments": {"gpt-4o": {"rpm": 1}}})
    client.chat.completions.create(model="gpt-4o", messages=HI)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError) as caught:
        client.with_options(max_retries=0).chat.completions.create(model="gpt-4o", messages=HI)  # type: ignore[arg-type]
    error = caught.value
    assert error.code == "429"
    assert (
        "ChatCompletions_Create Operation under Azure OpenAI API version 2025-04-01-preview"
        in error.message
    )
    assert "exceeded call rate limit" in error.message
    retry_ms = int(error.response.headers["retry-after-ms"])
    assert 0 < retry_ms <= 60_000
    assert int(error.response.headers["retry-after"]) == -(-retry_ms // 1000)
    stats = control.stats()
    assert stats["deployments"]["gpt-4o"]["throttled"] == 1
    assert stats["deployments"]["gpt-4o"]["requests"] == 2


def test_requests_are_counted_in_ten_second_windows(client: AzureOpenAI, control: Control) -> None:
    # 12 RPM is 2 requests per 10 s: a third at once is refused though the minute has room,
    # and the wait is at most the 10 s request window, not the minute.
    control.patch({"deployments": {"gpt-4o": {"rpm": 12, "tpm": 1000}}})
    once = client.with_options(max_retries=0).chat.completions.with_raw_response
    first = once.create(model="gpt-4o", messages=HI)  # type: ignore[arg-type]
    second = once.create(model="gpt-4o", messages=HI)  # type: ignore[arg-type]
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    assert int(second.headers["x-ratelimit-remaining-tokens"]) == 1000 - 2 * 7
    with pytest.raises(openai.RateLimitError) as caught:
        once.create(model="gpt-4o", messages=HI)  # type: ignore[arg-type]
    assert "exceeded call rate limit" in caught.value.message
    headers = caught.value.response.headers
    assert 0 < int(headers["retry-after-ms"]) <= 10_000
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert int(headers["x-ratelimit-remaining-tokens"]) == 1000 - 2 * 7  # refused: not charged


def test_shorter_window_shrinks_the_request_window(client: AzureOpenAI, control: Control) -> None:
    # window_seconds 12: tokens over 12 s, requests over 2 s (12/6), 30 RPM is 1 per 2 s.
    control.patch({"deployments": {"gpt-4o": {"rpm": 30}}, "rate_limit": {"window_seconds": 12}})
    once = client.with_options(max_retries=0).chat.completions
    once.create(model="gpt-4o", messages=HI)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError) as caught:
        once.create(model="gpt-4o", messages=HI)  # type: ignore[arg-type]
    assert 0 < int(caught.value.response.headers["retry-after-ms"]) <= 2000


def test_token_quota_counts_max_tokens(client: AzureOpenAI, control: Control) -> None:
    control.patch({"deployments": {"gpt-4o": {"tpm": 100}}})
    with pytest.raises(openai.RateLimitError) as caught:
        client.with_options(max_retries=0).chat.completions.create(
            model="gpt-4o",
            messages=HI,  # type: ignore[arg-type]
            max_tokens=200,
        )
    assert "exceeded token rate limit" in caught.value.message


def test_sdk_retry_honours_retry_after_ms(client: AzureOpenAI, control: Control) -> None:
    # A 6 s window makes the request window 1 s, with 1 request in it: the second call is
    # refused with retry-after-ms of under 1000, the SDK waits that long (not its own
    # backoff) and the retry then succeeds.
    control.patch({"deployments": {"gpt-4o": {"rpm": 60}}, "rate_limit": {"window_seconds": 6}})
    client.chat.completions.create(model="gpt-4o", messages=HI)  # type: ignore[arg-type]
    result = client.chat.completions.create(model="gpt-4o", messages=HI)  # type: ignore[arg-type]
    assert result.choices[0].finish_reason == "stop"
    stats = control.stats()["deployments"]["gpt-4o"]
    assert stats["throttled"] == 1
    assert stats["retries"] == 1
    assert stats["status"] == {"200": 2, "429": 1}


async def test_async_sdk_gives_up_after_its_retries(
    aclient: AsyncAzureOpenAI, control: Control
) -> None:
    control.patch({"deployments": {"gpt-4o": {"rpm": 1}}, "rate_limit": {"retry_after_ms": 5}})
    await aclient.chat.completions.create(model="gpt-4o", messages=HI)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError):
        await aclient.chat.completions.create(model="gpt-4o", messages=HI)  # type: ignore[arg-type]
    stats = control.stats()["deployments"]["gpt-4o"]
    assert stats["throttled"] == 3  # the first try and the SDK's two retries
    assert stats["retries"] == 2
