"""Usage as the service reports it: cached and reasoning tokens, from the SDK's objects and
from the JSON the gateway passes through (pure logic)."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types import CompletionUsage, CreateEmbeddingResponse
from openai.types.completion_usage import CompletionTokensDetails, PromptTokensDetails

from shared.core.models import Usage

WIRE: dict[str, Any] = {
    "prompt_tokens": 2008,
    "completion_tokens": 700,
    "total_tokens": 2708,
    "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 600, "audio_tokens": 0},
}
EXPECTED = Usage(
    prompt_tokens=2008,
    completion_tokens=700,
    total_tokens=2708,
    cached_tokens=1920,
    reasoning_tokens=600,
)


def test_a_chat_answers_usage_carries_its_cached_and_reasoning_tokens() -> None:
    """Azure's shape: `prompt_tokens_details.cached_tokens` (of prompt_tokens) and
    `completion_tokens_details.reasoning_tokens` (of completion_tokens)."""
    sdk = CompletionUsage(
        prompt_tokens=2008,
        completion_tokens=700,
        total_tokens=2708,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=1920),
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=600),
    )
    assert Usage.of(sdk) == EXPECTED
    assert Usage.of(WIRE) == EXPECTED


@pytest.mark.parametrize(
    "details",
    [
        {},  # older API versions and models: no details at all
        {"prompt_tokens_details": None, "completion_tokens_details": None},
        {"prompt_tokens_details": {"cached_tokens": None}, "completion_tokens_details": {}},
    ],
)
def test_absent_or_null_details_are_zero(details: dict[str, Any]) -> None:
    raw = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12, **details}
    assert Usage.of(raw) == Usage(prompt_tokens=10, completion_tokens=2, total_tokens=12)
    assert Usage.of(CompletionUsage.model_validate(raw)) == Usage.of(raw)


def test_embeddings_usage_has_no_details_and_none_is_zero() -> None:
    answer = CreateEmbeddingResponse.model_validate(
        {
            "object": "list",
            "model": "text-embedding-3-small",
            "data": [],
            "usage": {"prompt_tokens": 8, "total_tokens": 8},
        }
    )
    assert Usage.of(answer.usage) == Usage(prompt_tokens=8, total_tokens=8)
    assert Usage.of(None) == Usage()


def test_sums_add_every_count() -> None:
    assert EXPECTED.plus(EXPECTED) == Usage(
        prompt_tokens=4016,
        completion_tokens=1400,
        total_tokens=5416,
        cached_tokens=3840,
        reasoning_tokens=1200,
    )
