"""The Responses API's wire details the gateway reads and writes: its usage in the usage
document's terms, a filtered output, the request's text, the output cap, and how a stream
that breaks off ends."""

from __future__ import annotations

import json

import pytest
from openai import AsyncAzureOpenAI, AsyncOpenAI, omit
from openai.types.responses import ResponseErrorEvent, ResponseFailedEvent

from shared.aoai.backends import Target
from shared.core.errors import InvalidRequest, UpstreamError
from shared.core.models import Usage
from shared.gateway.models import ResponsesBody
from shared.gateway.responses_wire import (
    StreamSeen,
    failed_events,
    filter_flag,
    output_text,
    upstream_path,
    usage_of,
)
from shared.metering.callers import (
    RESPONSES_MAX_TOKEN_FIELDS,
    cap_completion_tokens,
    clamp_completion_tokens,
)


def test_the_usage_maps_input_and_output_with_their_details() -> None:
    raw = {
        "input_tokens": 2000,
        "input_tokens_details": {"cached_tokens": 1920},
        "output_tokens": 70,
        "output_tokens_details": {"reasoning_tokens": 64},
        "total_tokens": 2070,
    }
    assert usage_of(raw) == Usage(
        prompt_tokens=2000,
        completion_tokens=70,
        total_tokens=2070,
        cached_tokens=1920,
        reasoning_tokens=64,
    )


@pytest.mark.parametrize("raw", [None, {}, {"input_tokens": "3", "output_tokens": 1}, []])
def test_no_usage_or_an_unreadable_one_is_none(raw: object) -> None:
    assert usage_of(raw) is None


def test_details_may_be_absent_or_null() -> None:
    raw = {"input_tokens": 5, "output_tokens": 2, "input_tokens_details": None}
    assert usage_of(raw) == Usage(prompt_tokens=5, completion_tokens=2, total_tokens=7)


def test_an_output_cut_by_the_filter_is_a_completion_flag() -> None:
    cut = {"status": "incomplete", "incomplete_details": {"reason": "content_filter"}}
    flag = filter_flag(cut)
    assert flag is not None
    assert (flag.stage, flag.filtered) == ("completion", True)
    assert filter_flag({"incomplete_details": {"reason": "max_output_tokens"}}) is None
    assert filter_flag({"status": "completed", "incomplete_details": None}) is None


def test_the_output_text_is_the_messages_text_only() -> None:
    response = {
        "output": [
            {"type": "reasoning", "summary": []},
            {"type": "message", "content": [{"type": "output_text", "text": "a "}]},
            {"type": "function_call", "arguments": "{}"},
            {"type": "message", "content": [{"type": "output_text", "text": "b"}]},
        ]
    }
    assert output_text(response) == "a b"


def test_the_request_text_is_instructions_and_input_parts() -> None:
    body = ResponsesBody.model_validate(
        {
            "model": "gpt-4o",
            "instructions": "be brief",
            "input": [
                {"role": "user", "content": "hello"},
                {"role": "user", "content": [{"type": "input_text", "text": "there"}]},
                {"type": "function_call_output", "call_id": "c1", "output": "42"},
                {"type": "input_image", "image_url": "data:,"},
            ],
        }
    )
    assert body.prompt_text() == "be brief\nhello\nthere\n42"
    assert ResponsesBody.model_validate({"input": "just text"}).prompt_text() == "just text"


def test_unknown_fields_pass_through_and_identifiers_are_hashed() -> None:
    body = ResponsesBody.model_validate(
        {"model": "a", "input": "x", "text": {"format": {"type": "json_object"}}, "user": "u"}
    )
    sent = body.upstream("deployment", lambda user: f"h({user})")
    assert sent == {
        "model": "deployment",
        "input": "x",
        "text": {"format": {"type": "json_object"}},
        "user": "h(u)",
    }


def test_the_output_cap_is_max_output_tokens() -> None:
    body: dict[str, object] = {"input": "x"}
    assert cap_completion_tokens(body, 400, RESPONSES_MAX_TOKEN_FIELDS) == 400
    assert body["max_output_tokens"] == 400
    assert "max_completion_tokens" not in body
    with pytest.raises(InvalidRequest):
        cap_completion_tokens({"max_output_tokens": 401}, 400, RESPONSES_MAX_TOKEN_FIELDS)
    clamped: dict[str, object] = {"max_output_tokens": 300}
    assert clamp_completion_tokens(clamped, 300, 100, RESPONSES_MAX_TOKEN_FIELDS) == 100
    assert clamped["max_output_tokens"] == 100


async def test_azure_clients_call_the_v1_shape_without_an_api_version() -> None:
    azure = AsyncAzureOpenAI(azure_endpoint="https://a.example", api_key="k", api_version="x")
    plain = AsyncOpenAI(base_url="https://b.example/v1", api_key="k")
    async with azure, plain:
        assert upstream_path(Target("a", "d", azure), "/responses/r1") == (
            "/v1/responses/r1",
            {"api-version": omit},
        )
        assert upstream_path(Target("b", "d", plain), "/responses") == ("/responses", {})


def test_a_broken_stream_ends_with_response_failed_once_a_response_was_seen() -> None:
    started = {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "model": "gpt-5.4",
        "status": "in_progress",
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }
    state = StreamSeen(response=started, sequence=4)
    (frame,) = failed_events(state, UpstreamError("the Azure OpenAI stream broke off"))
    head, data = frame.decode().split("\n", 1)
    assert head == "event: response.failed"
    event = ResponseFailedEvent.model_validate(json.loads(data.removeprefix("data: ")))
    assert event.sequence_number == 5
    assert event.response.status == "failed"
    assert event.response.error is not None
    assert event.response.error.code == "server_error"


def test_a_stream_broken_before_any_response_ends_with_an_error_event() -> None:
    (frame,) = failed_events(StreamSeen(), UpstreamError("the Azure OpenAI stream broke off"))
    data = frame.decode().split("\n", 1)[1].removeprefix("data: ")
    event = ResponseErrorEvent.model_validate(json.loads(data))
    assert event.sequence_number == 0
    assert frame.endswith(b"\n\n")
