"""The OpenAI Agents SDK through the app, unchanged: `Agent` + `Runner.run` with the SDK's
default model and the Responses API, tracing off, its `AsyncOpenAI` pointed at the app's
Azure v1 shape (`<app>/api/openai/v1`) with a team's key, against the real function_app.py
under the local Functions host (the simulator, Azurite and the Cosmos DB server behind it).
Every model call of a run leaves one usage record: a run with a function tool call makes two.
"""

from __future__ import annotations

import uuid
from typing import Any

import agents
from openai import AsyncOpenAI

from devstack.hosted_app import AppHost
from shared.core.store import USAGE, Store
from tests.support.hosts import HOST_SETTINGS, host_fixture
from tests.support.records import docs_by_client_request_id, query_until

# The SDK's default model (openai-agents 0.24: gpt-5.6-luna) as an alias of the chat
# deployment, as docs/gateway.md tells an operator to add it.
DEFAULT_MODEL = agents.models.get_default_model()
host = host_fixture(
    "agents",
    {**HOST_SETTINGS, "AOAI_DEPLOYMENTS": f'{{"{DEFAULT_MODEL}": "gpt-4o"}}'},
)


@agents.function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


AGENT = agents.Agent(name="helper", instructions="Answer briefly.", tools=[get_weather])


async def run(host: AppHost, text: str, **kwargs: Any) -> tuple[Any, str]:
    """One `Runner.run` through the app on a client of its own, whose requests carry one
    `x-request-id`: the usage records of this run are the ones with it."""
    request_id = f"agents-{uuid.uuid4()}"
    client = AsyncOpenAI(
        base_url=host.url + "/openai/v1",
        api_key=host.team_key,
        default_headers={"x-request-id": request_id},
        max_retries=0,  # one request per model call: one usage record each
    )
    agents.set_tracing_disabled(True)
    agents.set_default_openai_api("responses")
    agents.set_default_openai_client(client, use_for_tracing=False)
    try:
        result = await agents.Runner.run(AGENT, text, **kwargs)
    finally:
        await client.close()
    return result, request_id


def assert_recorded(records: list[dict[str, Any]], count: int) -> None:
    assert len(records) == count
    for record in records:
        assert record["deployment"] == "gpt-4o"
        assert record["status"] == "ok"
        assert record["prompt_tokens"] > 0
        assert record["completion_tokens"] > 0


async def test_a_two_turn_conversation_leaves_one_usage_record_per_model_call(
    host: AppHost, store: Store
) -> None:
    first, first_id = await run(host, "echo: hello agent")
    assert first.final_output == "hello agent"
    second, second_id = await run(
        host, "echo: second turn", previous_response_id=first.last_response_id
    )
    assert second.final_output == "second turn"
    (one,) = await docs_by_client_request_id(store, USAGE, first_id)
    (two,) = await docs_by_client_request_id(store, USAGE, second_id)
    assert_recorded([one, two], 2)
    # The second turn was answered with the first in its context (previous_response_id).
    assert two["prompt_tokens"] > one["prompt_tokens"]


async def test_a_function_tool_call_is_two_model_calls_and_two_usage_records(
    host: AppHost, store: Store
) -> None:
    result, request_id = await run(host, "echo: get_weather done")
    kinds = [item.type for item in result.new_items]
    assert kinds == ["tool_call_item", "tool_call_output_item", "message_output_item"]
    assert result.new_items[1].output.startswith("sunny in ")
    assert result.final_output == "get_weather done"
    query = "SELECT * FROM c WHERE c.client_request_id = @rid"
    records = await query_until(store, USAGE, query, {"@rid": request_id}, count=2)
    assert_recorded(records, 2)
