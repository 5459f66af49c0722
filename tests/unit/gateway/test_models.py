"""The gateway body: what is forwarded, refused and hashed (pure logic, no server)."""

from __future__ import annotations

import pytest

from shared.core.errors import InvalidRequest
from shared.gateway.models import ChatCompletionsBody

SEARCH = [{"type": "azure_search", "parameters": {"endpoint": "https://search.example"}}]


def hashed(value: str | None) -> str | None:
    return None if value is None else f"h({value})"


def body(**fields: object) -> ChatCompletionsBody:
    return ChatCompletionsBody.model_validate(
        {"messages": [{"role": "user", "content": "hi"}], **fields}
    )


def test_data_sources_goes_through_only_when_allowed() -> None:
    with pytest.raises(InvalidRequest) as refused:
        body(data_sources=SEARCH).upstream("d", hashed)
    assert refused.value.details == {"param": "data_sources"}
    sent = body(data_sources=SEARCH).upstream("d", hashed, ["data_sources"])
    assert sent["data_sources"] == SEARCH


def test_identifiers_are_hashed_and_everything_else_kept() -> None:
    sent = body(user="u", safety_identifier="s", prompt_cache_key="k", seed=7).upstream(
        "dep", hashed
    )
    assert sent == {
        "model": "dep",
        "messages": [{"role": "user", "content": "hi"}],
        "user": "h(u)",
        "safety_identifier": "h(s)",
        "prompt_cache_key": "h(k)",
        "seed": 7,
    }
    assert "user" not in body().upstream("dep", hashed)  # nothing made up
