"""Responses features through the openai SDK: function tools, structured output, reasoning,
the output cap, the completion filter, background mode, rate limits and prompt caching."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types.responses import Response
from pydantic import BaseModel

from devstack.aoai_simulator import RunningSimulator
from devstack.aoai_simulator.stats import input_key

from .conftest import Control
from .test_responses_stream import TOOL


def _poll(v1: OpenAI, response_id: str) -> Response:
    """The response once it left `queued`/`in_progress` (a bounded number of polls)."""
    for _ in range(200):
        found = v1.responses.retrieve(response_id)
        if found.status not in ("queued", "in_progress"):
            return found
        time.sleep(0.02)
    raise AssertionError(f"{response_id} never finished")


def test_function_tool_round_trip(v1: OpenAI) -> None:
    asked = v1.responses.create(
        model="gpt-4o",
        input="What is the get_weather in Paris?",
        tools=[TOOL],  # type: ignore[list-item]
    )
    (call,) = asked.output
    assert call.type == "function_call"
    assert call.name == "get_weather"
    assert call.call_id.startswith("call_")
    assert set(json.loads(call.arguments)) == {"city"}
    assert asked.output_text == ""
    answered = v1.responses.create(
        model="gpt-4o",
        previous_response_id=asked.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        tools=[TOOL],  # type: ignore[list-item]
    )
    assert answered.output[0].type == "message"
    assert answered.output_text
    items = list(v1.responses.input_items.list(answered.id))
    assert [i.type for i in items] == ["function_call_output"]
    # the same turn without stored state: the call and its output carried in the input
    stateless = v1.responses.create(
        model="gpt-4o",
        store=False,
        input=[
            {"role": "user", "content": "What is the get_weather in Paris?"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
        ],
        tools=[TOOL],  # type: ignore[list-item]
    )
    assert stateless.output[0].type == "message"
    with pytest.raises(openai.BadRequestError) as wrong_id:  # an item id is `fc_...`
        v1.responses.create(
            model="gpt-4o",
            store=False,
            input=[
                {
                    "type": "function_call",
                    "id": call.call_id,
                    "call_id": call.call_id,
                    "name": call.name,
                    "arguments": call.arguments,
                },
            ],
        )
    assert wrong_id.value.param == "input[0].id"


def test_tool_choice_required_and_none(v1: OpenAI) -> None:
    forced = v1.responses.create(
        model="gpt-4o",
        input="hello",
        tools=[TOOL],  # type: ignore[list-item]
        tool_choice="required",
    )
    assert forced.output[0].type == "function_call"
    named = v1.responses.create(
        model="gpt-4o",
        input="hello",
        tools=[TOOL],  # type: ignore[list-item]
        tool_choice={"type": "function", "name": "get_weather"},
    )
    assert named.output[0].type == "function_call"
    plain = v1.responses.create(
        model="gpt-4o",
        input="get_weather please",
        tools=[TOOL],  # type: ignore[list-item]
        tool_choice="none",
    )
    assert plain.output[0].type == "message"


class Verdict(BaseModel):
    label: str
    score: int


def test_json_schema_output_parses(v1: OpenAI) -> None:
    parsed = v1.responses.parse(model="gpt-4o", input="Rate this.", text_format=Verdict)
    assert isinstance(parsed.output_parsed, Verdict)
    assert parsed.text is not None
    assert parsed.text.format is not None
    assert parsed.text.format.type == "json_schema"
    assert set(json.loads(parsed.output_text)) == {"label", "score"}


def test_strict_mode_refuses_a_schema_outside_its_subset(v1: OpenAI) -> None:
    loose = {"type": "object", "properties": {"label": {"type": "string"}}}  # no required, ...
    with pytest.raises(openai.BadRequestError) as refused:
        v1.responses.create(
            model="gpt-4o",
            input="x",
            text={
                "format": {"type": "json_schema", "name": "Loose", "schema": loose, "strict": True}
            },
        )
    assert refused.value.param == "text.format.schema"
    assert "Loose" in refused.value.message
    with pytest.raises(openai.BadRequestError) as tool_refused:
        v1.responses.create(
            model="gpt-4o",
            input="x",
            tools=[{**TOOL, "parameters": loose}],  # type: ignore[list-item]
        )
    assert tool_refused.value.param == "tools[0].parameters"
    # not strict: the same schema is taken
    taken = v1.responses.create(
        model="gpt-4o",
        input="x",
        text={"format": {"type": "json_schema", "name": "Loose", "schema": loose, "strict": False}},
    )
    assert "label" in json.loads(taken.output_text)


def test_reasoning_tokens_count_within_max_output_tokens(v1: OpenAI) -> None:
    reasoned = v1.responses.create(
        model="gpt-4o", input="echo: one two", reasoning={"effort": "low"}
    )
    assert reasoned.usage is not None
    assert reasoned.usage.output_tokens_details.reasoning_tokens == 150  # a quarter of 600
    assert reasoned.usage.output_tokens == 152
    assert [o.type for o in reasoned.output] == ["reasoning", "message"]
    assert reasoned.reasoning is not None
    assert reasoned.reasoning.effort == "low"
    assert reasoned.output[0].type == "reasoning"
    assert reasoned.output[0].encrypted_content is None
    stateless = v1.responses.create(
        model="gpt-4o",
        input="echo: one two",
        reasoning={"effort": "low"},
        store=False,
        include=["reasoning.encrypted_content"],
    )
    carried = stateless.output[0]
    assert carried.type == "reasoning"
    assert carried.encrypted_content
    # handed back in the next input, as stateless clients do, it is accepted
    again = v1.responses.create(
        model="gpt-4o",
        store=False,
        input=[carried.model_dump(exclude_none=True), {"role": "user", "content": "echo: x"}],  # type: ignore[list-item]
    )
    assert again.output_text == "x"
    capped = v1.responses.create(
        model="gpt-4o", input="echo: one two", reasoning={"effort": "low"}, max_output_tokens=100
    )
    assert capped.status == "incomplete"
    assert capped.incomplete_details is not None
    assert capped.incomplete_details.reason == "max_output_tokens"
    assert capped.usage is not None
    assert capped.usage.output_tokens == 100
    assert capped.usage.output_tokens_details.reasoning_tokens == 100
    assert capped.output_text == ""
    with pytest.raises(openai.BadRequestError) as refused:
        v1.responses.create(model="gpt-4o", input="x", reasoning={"effort": "minimal"})
    assert refused.value.code == "unsupported_value"


def test_output_cap_without_reasoning(v1: OpenAI) -> None:
    capped = v1.responses.create(
        model="gpt-4o", input="echo: " + " ".join(["word"] * 40), max_output_tokens=16
    )
    assert capped.status == "incomplete"
    assert capped.usage is not None
    assert capped.usage.output_tokens == 16
    assert capped.output_text == " ".join(["word"] * 16)
    with pytest.raises(openai.BadRequestError) as refused:
        v1.responses.create(model="gpt-4o", input="x", max_output_tokens=8)
    assert refused.value.param == "max_output_tokens"
    assert refused.value.code == "integer_below_min_value"


def test_completion_filter_cuts_the_answer(v1: OpenAI, control: Control) -> None:
    cut = v1.responses.create(model="gpt-4o", input="echo: safe words then forbidden-selfharm")
    assert cut.status == "incomplete"
    assert cut.incomplete_details is not None
    assert cut.incomplete_details.reason == "content_filter"
    assert cut.output_text == "safe words then"
    assert control.stats()["content_filtered"] == {"completion": 1}


def test_background_response_is_polled_to_completion(v1: OpenAI) -> None:
    queued = v1.responses.create(model="gpt-4o", input="echo: later", background=True)
    assert queued.status == "queued"
    assert queued.background is True
    assert queued.output == []
    assert queued.usage is None
    done = _poll(v1, queued.id)
    assert done.status == "completed"
    assert done.output_text == "later"
    assert done.usage is not None
    with pytest.raises(openai.BadRequestError):
        v1.responses.cancel(queued.id)  # finished: nothing to cancel


def test_background_response_can_be_cancelled(v1: OpenAI, control: Control) -> None:
    control.patch({"latency": {"request_ms": 60_000}})
    queued = v1.responses.create(model="gpt-4o", input="echo: never", background=True)
    assert v1.responses.retrieve(queued.id).status in ("queued", "in_progress")
    cancelled = v1.responses.cancel(queued.id)
    assert cancelled.status == "cancelled"
    assert v1.responses.retrieve(queued.id).status == "cancelled"
    assert v1.responses.cancel(queued.id).status == "cancelled"  # again: the same answer
    control.patch({"latency": {"request_ms": 0}})
    plain = v1.responses.create(model="gpt-4o", input="echo: now")
    with pytest.raises(openai.BadRequestError):
        v1.responses.cancel(plain.id)  # not a background response
    with pytest.raises(openai.BadRequestError):
        v1.responses.create(model="gpt-4o", input="x", background=True, store=False)
    # a follow-up reads the cancelled turn's input, not the answer it never gave
    follow = v1.responses.create(model="gpt-4o", input="echo: now", previous_response_id=queued.id)
    assert follow.usage is not None
    assert plain.usage is not None
    assert follow.usage.input_tokens == plain.usage.input_tokens + 3 + 3  # + "echo: never"


def test_rate_limit_is_azures_429_with_retry_after(v1: OpenAI, control: Control) -> None:
    control.patch({"deployments": {"gpt-4o": {"rpm": 1}}})
    strict = v1.with_options(max_retries=0)
    strict.responses.create(model="gpt-4o", input="first")
    with pytest.raises(openai.RateLimitError) as limited:
        strict.responses.create(model="gpt-4o", input="second")
    assert int(limited.value.response.headers["retry-after"]) >= 1
    assert "Responses_Create" in limited.value.message
    assert control.stats()["routes"]["responses"]["throttled"] == 1


def test_prompt_cache_serves_the_earlier_turns(v1: OpenAI, control: Control) -> None:
    long_input = "echo: ok " + "filler words for a long prompt " * 160  # ~1,200 tokens
    first = v1.responses.create(model="gpt-4o", input=long_input)
    follow = v1.responses.create(model="gpt-4o", input="echo: more", previous_response_id=first.id)
    assert first.usage is not None
    assert follow.usage is not None
    assert first.usage.input_tokens_details.cached_tokens == 0
    assert follow.usage.input_tokens_details.cached_tokens >= 1024
    assert control.stats()["routes"]["responses"]["cached_tokens"] == (
        follow.usage.input_tokens_details.cached_tokens
    )


def test_sim_inputs_count_responses_calls(
    v1: OpenAI, sim: RunningSimulator, control: Control
) -> None:
    v1.responses.create(model="gpt-4o", input="echo: counted line")
    v1.responses.create(model="gpt-4o", input="echo: counted line")
    assert control.stats()["routes"]["responses"]["requests"] == 2
    key = input_key("echo: counted line")
    counted = httpx.post(f"{sim.url}/sim/inputs", json={"keys": [key]}).json()
    assert counted["counts"] == {key: 2}
