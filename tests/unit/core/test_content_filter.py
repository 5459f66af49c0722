"""Reading Azure's content-filter results and shaping events (pure logic)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import httpx2
import openai
import pytest
from openai.types.chat.chat_completion import Choice

from shared.core.content_filter import (
    completion_filter,
    filtered_only,
    is_prompt_filtered,
    parse_categories,
    prompt_filter,
)
from shared.core.models import ContentFilterInfo
from shared.metering.filter_events import build_event, hash_user

AZURE_PROMPT_FILTER_BODY = {
    "error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's "
        "content management policy.",
        "type": None,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
        "innererror": {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_result": {
                "hate": {"filtered": False, "severity": "safe"},
                "jailbreak": {"filtered": False, "detected": False},
                "self_harm": {"filtered": False, "severity": "safe"},
                "sexual": {"filtered": False, "severity": "safe"},
                "violence": {"filtered": True, "severity": "high"},
            },
        },
    }
}


def bad_request(body: dict[str, object]) -> openai.BadRequestError:
    """The exception the SDK raises for this body (built the way the SDK builds it)."""
    client = openai.OpenAI(api_key="x", base_url="http://127.0.0.1:9")
    request = httpx2.Request("POST", "http://127.0.0.1:9/chat/completions")
    response = httpx2.Response(400, json=body, request=request)
    error = client._make_status_error_from_response(response)
    client.close()
    assert isinstance(error, openai.BadRequestError)
    return error


def test_prompt_filter_reads_innererror_categories() -> None:
    error = bad_request(AZURE_PROMPT_FILTER_BODY)
    assert is_prompt_filtered(error)
    info = prompt_filter(error)
    assert info.stage == "prompt"
    assert info.categories["violence"].severity == "high"
    assert info.categories["jailbreak"].detected is False
    assert list(filtered_only(info)) == ["violence"]


def test_prompt_filter_reads_the_responses_api_s_content_filters_list() -> None:
    """The Responses API's refusal: no `innererror`, the verdicts in a top-level list."""
    body = {
        "error": {
            "message": "The response was filtered ...",
            "type": "invalid_request_error",
            "param": "prompt",
            "code": "content_filter",
            "content_filters": [
                {
                    "blocked": True,
                    "source_type": "prompt",
                    "content_filter_results": {
                        "violence": {"filtered": True, "severity": "medium"},
                        "hate": {"filtered": False, "severity": "safe"},
                    },
                }
            ],
        }
    }
    error = bad_request(body)
    assert is_prompt_filtered(error)
    info = prompt_filter(error)
    assert info.categories["violence"].severity == "medium"
    assert list(filtered_only(info)) == ["violence"]


def test_other_bad_requests_are_not_filter_hits() -> None:
    error = bad_request({"error": {"code": "context_length_exceeded", "message": "too long"}})
    assert not is_prompt_filtered(error)


def test_completion_filter_reads_the_choice_extension_field() -> None:
    choice = Choice.model_validate(
        {
            "index": 0,
            "finish_reason": "content_filter",
            "message": {"role": "assistant", "content": ""},
            "content_filter_results": {
                "violence": {"filtered": True, "severity": "medium"},
                "hate": {"filtered": False, "severity": "safe"},
                "custom_blocklists": [],
            },
        }
    )
    info = completion_filter(choice)
    assert info is not None
    assert info.filtered
    assert set(info.categories) == {"violence", "hate"}


def test_choice_without_results_has_no_filter_info() -> None:
    choice = Choice.model_validate(
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}
    )
    assert completion_filter(choice) is None


def test_parse_categories_skips_malformed_entries() -> None:
    parsed = parse_categories({"a": {"filtered": "maybe"}, "b": {"filtered": True}, "c": 3})
    assert list(parsed) == ["b"]


SECRET = "unit-test-user-hash-secret-0123456789"


def test_event_keeps_the_user_hash_and_drops_text_unless_asked() -> None:
    info = ContentFilterInfo(stage="prompt", filtered=True, categories={})
    now = datetime(2026, 11, 26, 23, 59, tzinfo=UTC)
    user_hash = hash_user("alice", SECRET)
    event = build_event(
        info, source="chat", deployment="d", user_hash=user_hash, text="secret prompt", now=now
    )
    assert event.day == "2026-11-26"
    assert event.text is None
    assert event.user_hash == user_hash
    kept = build_event(info, source="chat", deployment="d", text="t", store_text=True)
    assert kept.text == "t"


def test_user_hash_is_keyed_so_a_dictionary_of_addresses_does_not_reverse_it() -> None:
    """Finding: a plain SHA-256 of an email falls to a dictionary. With HMAC, the hash of
    the address is not the plain hash, and another secret gives another hash."""
    email = "alice@example.com"
    keyed = hash_user(email, SECRET)
    assert keyed is not None
    assert len(keyed) == 64
    assert keyed == hash_user(email, SECRET)  # stable: one caller, one id
    assert keyed != hashlib.sha256(email.encode()).hexdigest()
    assert keyed != hash_user(email, SECRET + "x")
    assert hash_user(None, SECRET) is None
    with pytest.raises(ValueError, match="USER_HASH_SECRET"):
        hash_user(email, "")
