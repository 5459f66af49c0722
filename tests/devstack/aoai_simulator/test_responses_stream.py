"""Streamed Responses: the event sequence, its sequence numbers and `event:` lines, and a
stream that fails half way (`response.failed`)."""

from __future__ import annotations

import json

import httpx
from openai import AzureOpenAI, OpenAI

from devstack.aoai_simulator import RunningSimulator

from .conftest import API_VERSION, Control

TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


def test_stream_event_order_and_sequence_numbers(v1: OpenAI) -> None:
    with v1.responses.stream(model="gpt-4o", input="echo: one two three") as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas == ["one", " two", " three"]
    assert final.output_text == "one two three"
    assert final.usage is not None
    assert final.usage.output_tokens == 3
    created = events[0]
    assert created.type == "response.created"
    assert created.response.status == "in_progress"
    assert created.response.usage is None
    # a streamed response is stored like any other
    assert v1.responses.retrieve(final.id).output_text == "one two three"


def test_create_stream_in_the_preview_shape(client: AzureOpenAI) -> None:
    events = list(client.responses.create(model="gpt-4o", input="echo: a b", stream=True))
    last = events[-1]
    assert last.type == "response.completed"
    assert last.response.output_text == "a b"
    assert last.response.usage is not None
    assert last.response.usage.total_tokens == last.response.usage.input_tokens + 2


def test_wire_format_names_each_event(sim: RunningSimulator) -> None:
    url = f"{sim.url}/openai/responses?api-version={API_VERSION}"
    body = {"model": "gpt-4o", "input": "echo: wire", "stream": True}
    with httpx.stream("POST", url, json=body, headers={"api-key": sim.api_key}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    blocks = [b for b in raw.split("\n\n") if b]
    for number, block in enumerate(blocks):
        event_line, data_line = block.split("\n")
        data = json.loads(data_line.removeprefix("data: "))
        assert event_line == f"event: {data['type']}"
        assert data["sequence_number"] == number
    assert "[DONE]" not in raw  # the Responses stream ends with its last event


def test_function_call_streams_its_arguments(v1: OpenAI) -> None:
    events = list(
        v1.responses.create(
            model="gpt-4o",
            input="get_weather for Paris",
            tools=[TOOL],  # type: ignore[list-item]
            stream=True,
        )
    )
    kinds = [e.type for e in events]
    assert kinds[2:-1] == [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ]
    done = events[4]
    assert done.type == "response.function_call_arguments.done"
    assert json.loads(done.arguments).keys() == {"city"}


def test_a_stream_failing_half_way_ends_with_response_failed(v1: OpenAI, control: Control) -> None:
    control.patch({"faults": {"responses": {"stream_failure": 1.0}}})
    events = list(
        v1.responses.create(model="gpt-4o", input="echo: one two three four", stream=True)
    )
    last = events[-1]
    assert last.type == "response.failed"
    assert last.response.status == "failed"
    assert last.response.error is not None
    assert last.response.error.code == "server_error"
    assert "response.completed" not in [e.type for e in events]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert v1.responses.retrieve(last.response.id).status == "failed"  # as stored


def test_a_streamed_background_response_is_answered_as_it_streams(v1: OpenAI) -> None:
    events = list(
        v1.responses.create(model="gpt-4o", input="echo: bg", background=True, stream=True)
    )
    last = events[-1]
    assert last.type == "response.completed"
    assert last.response.background is True
    assert v1.responses.retrieve(last.response.id).output_text == "bg"
