"""Request validation: bounds, roles, limits from settings (pure logic)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shared.chat.models import ChatRequest
from shared.core.settings import load_settings

SETTINGS = load_settings(
    {
        "AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com",
        "CHAT_DEPLOYMENT": "gpt-4o",
        "USER_HASH_SECRET": "unit-test-user-hash-secret-0123456789",
        "TEAM_KEY_HASH_SECRET": "unit-test-team-key-hash-secret-0123456789",
        "EMBEDDING_DEPLOYMENT": "e",
        "COSMOS_ENDPOINT": "https://x.documents.azure.com",
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "CHAT_MAX_MESSAGES": "2",
        "CHAT_MAX_INPUT_CHARS": "10",
        "CHAT_MAX_TOKENS_LIMIT": "100",
    }
)
USER = {"role": "user", "content": "hi"}


def parse(body: dict[str, Any]) -> ChatRequest:
    return ChatRequest.model_validate(body, context={"settings": SETTINGS})


def errors_of(body: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        parse(body)
    return [(e["loc"], e["type"]) for e in caught.value.errors()]


def test_minimal_request_gets_defaults() -> None:
    req = parse({"messages": [USER]})
    assert req.stream is False
    assert req.tags == {}
    assert req.model is None


ROBOT = {"role": "robot", "content": "x"}
EMPTY = {"role": "user", "content": ""}


@pytest.mark.parametrize(
    ("body", "loc", "kind"),
    [
        ({"messages": []}, ("messages",), "too_short"),
        ({}, ("messages",), "missing"),
        ({"messages": [ROBOT]}, ("messages", 0, "role"), "literal_error"),
        ({"messages": [EMPTY]}, ("messages", 0, "content"), "string_too_short"),
        ({"messages": [USER], "temperature": 3}, ("temperature",), "less_than_equal"),
        ({"messages": [USER], "max_tokens": 0}, ("max_tokens",), "greater_than_equal"),
        ({"messages": [USER], "stream": "perhaps"}, ("stream",), "bool_parsing"),
        (
            {"messages": [USER], "tags": {"bad key": "v"}},
            ("tags", "bad key", "[key]"),
            "string_pattern_mismatch",
        ),
        ({"messages": [USER], "colour": "blue"}, ("colour",), "extra_forbidden"),
    ],
)
def test_invalid_fields_are_located(body: dict[str, Any], loc: tuple[Any, ...], kind: str) -> None:
    assert (loc, kind) in errors_of(body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"messages": [USER, USER, USER]}, "at most 2 messages"),
        ({"messages": [{"role": "user", "content": "x" * 11}]}, "at most 10"),
        ({"messages": [USER], "max_tokens": 101}, "max_tokens must be at most 100"),
    ],
)
def test_limits_from_settings(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse(body)


def test_limits_apply_only_with_settings_in_context() -> None:
    ChatRequest.model_validate({"messages": [USER, USER, USER]})
