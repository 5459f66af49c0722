"""Streamed chat: Azure's first prompt-filter event, chunks, usage chunk, `data: [DONE]`."""

from __future__ import annotations

from typing import Literal

import httpx
from openai import AsyncAzureOpenAI, AzureOpenAI
from pydantic import BaseModel

from devstack.aoai_simulator import RunningSimulator

from .conftest import API_VERSION

ECHO = [{"role": "user", "content": "echo: one two three four"}]


def test_stream_event_order(client: AzureOpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o",
            messages=ECHO,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    first = chunks[0]
    assert first.choices == []
    assert first.id == ""
    assert (first.model_extra or {})["prompt_filter_results"][0]["prompt_index"] == 0
    role = chunks[1].choices[0].delta
    assert role.role == "assistant"
    assert role.content == ""
    text = "".join(c.choices[0].delta.content or "" for c in chunks[1:] if c.choices)
    assert text == "one two three four"
    content_chunk = chunks[2].choices[0]
    assert (content_chunk.model_extra or {})["content_filter_results"]["violence"][
        "filtered"
    ] is False
    assert chunks[-2].choices[0].finish_reason == "stop"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == 4
    assert all(c.object == "chat.completion.chunk" for c in chunks[1:])


def test_stream_without_usage_has_no_usage_chunk(client: AzureOpenAI) -> None:
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=ECHO, stream=True))  # type: ignore[arg-type]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


def test_wire_format_ends_with_data_done(sim: RunningSimulator) -> None:
    url = f"{sim.url}/openai/deployments/gpt-4o/chat/completions?api-version={API_VERSION}"
    body = {"messages": ECHO, "stream": True}
    with httpx.stream("POST", url, json=body, headers={"api-key": sim.api_key}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert events[0].startswith('data: {"choices": [], ')


def test_completion_filter_mid_stream(client: AzureOpenAI) -> None:
    messages = [{"role": "user", "content": "echo: safe words then forbidden-selfharm and more"}]
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o",
            messages=messages,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "safe words then"  # the offending word never reaches the client
    stop = next(c for c in chunks if c.choices and c.choices[0].finish_reason).choices[0]
    assert stop.finish_reason == "content_filter"
    assert (stop.model_extra or {})["content_filter_results"]["self_harm"] == {
        "filtered": True,
        "severity": "high",
    }
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3


class Label(BaseModel):
    label: Literal["billing issue", "bug report", "other"]
    extras: list[Literal["urgent", "duplicate"]]


def test_stream_helper_parses_structured_output(client: AzureOpenAI) -> None:
    with client.chat.completions.stream(
        model="gpt-4o",
        messages=[{"role": "user", "content": "an urgent bug report"}],
        response_format=Label,
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.parsed == Label(label="bug report", extras=["urgent"])


async def test_async_stream(aclient: AsyncAzureOpenAI) -> None:
    stream = await aclient.chat.completions.create(model="gpt-4o", messages=ECHO, stream=True)  # type: ignore[arg-type]
    pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(pieces) == "one two three four"
