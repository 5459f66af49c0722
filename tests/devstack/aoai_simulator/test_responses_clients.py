"""Clients that speak the Responses API, pointed straight at the simulator's v1 shape:
LangChain's `ChatOpenAI(use_responses_api=True)` and the async openai SDK."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from openai import AsyncOpenAI

from devstack.aoai_simulator import RunningSimulator

from .conftest import Control


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return "sunny"


def _chat(sim: RunningSimulator, **extra: object) -> ChatOpenAI:
    return ChatOpenAI(
        model="gpt-4o",
        base_url=f"{sim.url}/openai/v1",
        api_key=sim.api_key,
        use_responses_api=True,
        max_retries=0,
        **extra,
    )


def test_langchain_invoke_stream_and_tools(sim: RunningSimulator, control: Control) -> None:
    llm = _chat(sim)
    answer = llm.invoke("echo: hi from langchain")
    assert answer.text == "hi from langchain"
    assert answer.usage_metadata is not None
    assert answer.usage_metadata["output_tokens"] == 3
    streamed = "".join(chunk.text for chunk in llm.stream("echo: streamed words"))
    assert streamed == "streamed words"
    called = llm.bind_tools([get_weather]).invoke("use get_weather for Paris")
    assert isinstance(called, AIMessage)
    assert [c["name"] for c in called.tool_calls] == ["get_weather"]
    assert set(called.tool_calls[0]["args"]) == {"city"}
    assert control.stats()["routes"]["responses"]["requests"] == 3


def test_langchain_previous_response_id(sim: RunningSimulator, control: Control) -> None:
    llm = _chat(sim, use_previous_response_id=True)
    first = llm.invoke("echo: one")
    second = llm.invoke([HumanMessage("echo: one"), first, HumanMessage("echo: two")])
    assert second.text == "two"
    last = control.last("gpt-4o")
    assert last is not None
    assert last["previous_response_id"] == first.response_metadata["id"]
    assert last["input"] == [{"content": "echo: two", "role": "user", "type": "message"}]


async def test_async_sdk_two_turns(sim: RunningSimulator, control: Control) -> None:
    async with AsyncOpenAI(base_url=f"{sim.url}/openai/v1", api_key=sim.api_key) as client:
        first = await client.responses.create(model="gpt-4o", input="echo: async one")
        second = await client.responses.create(
            model="gpt-4o", input="echo: async two", previous_response_id=first.id
        )
    assert second.output_text == "async two"
    assert first.usage is not None
    assert second.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens
