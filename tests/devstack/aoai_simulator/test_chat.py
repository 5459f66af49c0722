"""Chat completions through AzureOpenAI / AsyncAzureOpenAI: shapes, determinism, parse()."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Literal

import openai
import pytest
from openai import AsyncAzureOpenAI, AzureOpenAI
from openai.types.chat import ChatCompletion
from pydantic import BaseModel

from .conftest import Control

USER = [{"role": "user", "content": "Tell me about the local stack."}]


def test_completion_has_azure_annotations_and_usage(client: AzureOpenAI) -> None:
    result = client.chat.completions.create(model="gpt-4o", messages=USER)  # type: ignore[arg-type]
    choice = result.choices[0]
    assert result.object == "chat.completion"
    # The model behind the local `gpt-4o` deployment: what infra/ deploys (model-version).
    assert result.model == "gpt-5.4-2026-03-05"
    assert choice.finish_reason == "stop"
    assert choice.message.content
    extra = result.model_extra or {}
    prompt_results = extra["prompt_filter_results"][0]
    assert prompt_results["prompt_index"] == 0
    assert prompt_results["content_filter_results"]["violence"] == {
        "filtered": False,
        "severity": "safe",
    }
    assert prompt_results["content_filter_results"]["jailbreak"] == {
        "filtered": False,
        "detected": False,
    }
    choice_results = (choice.model_extra or {})["content_filter_results"]
    assert set(choice_results) >= {"hate", "self_harm", "sexual", "violence"}
    assert choice_results["protected_material_text"]["detected"] is False
    usage = result.usage
    assert usage is not None
    # one token per word of the simulated text; the prompt is ceil(chars/4) + overheads
    assert usage.completion_tokens == len(choice.message.content.split(" "))
    assert usage.prompt_tokens == 3 + 3 + -(-len(USER[0]["content"]) // 4)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_text_is_deterministic_per_request(client: AzureOpenAI) -> None:
    first = client.chat.completions.create(model="gpt-4o", messages=USER)  # type: ignore[arg-type]
    again = client.chat.completions.create(model="gpt-4o", messages=USER)  # type: ignore[arg-type]
    other = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Something else entirely."}],
    )
    assert first.choices[0].message.content == again.choices[0].message.content
    assert first.choices[0].message.content != other.choices[0].message.content
    assert first.id != again.id


def test_max_tokens_cuts_with_length(client: AzureOpenAI) -> None:
    result = client.chat.completions.create(model="gpt-4o", messages=USER, max_tokens=3)  # type: ignore[arg-type]
    assert result.choices[0].finish_reason == "length"
    assert result.usage is not None
    assert result.usage.completion_tokens == 3
    assert len((result.choices[0].message.content or "").split(" ")) == 3


def test_echo_directive_sets_the_completion(client: AzureOpenAI) -> None:
    result = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "echo: exactly these words"}]
    )
    assert result.choices[0].message.content == "exactly these words"


def test_n_gives_distinct_choices(client: AzureOpenAI) -> None:
    result = client.chat.completions.create(model="gpt-4o", messages=USER, n=2)  # type: ignore[arg-type]
    assert [c.index for c in result.choices] == [0, 1]
    assert result.choices[0].message.content != result.choices[1].message.content


def test_n_is_capped_at_128_as_on_azure(client: AzureOpenAI) -> None:
    assert (
        len(
            client.chat.completions.create(
                model="gpt-4o",
                messages=USER,
                n=128,  # type: ignore[arg-type]
                max_completion_tokens=1,
            ).choices
        )
        == 128
    )
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="gpt-4o", messages=USER, n=129)  # type: ignore[arg-type]
    assert refused.value.param == "n"  # type: ignore[attr-defined]


class Priority(StrEnum):
    low = "low"
    urgent = "urgent"


class Address(BaseModel):
    city: str
    zip_code: str


class Ticket(BaseModel):
    label: Literal["billing issue", "bug report", "other"]
    priority: Priority
    confidence: float
    count: int
    escalate: bool
    tags: list[str]
    address: Address
    previous: Address | None


def test_parse_with_a_pydantic_model(client: AzureOpenAI) -> None:
    result = client.chat.completions.parse(
        model="gpt-4o",
        messages=[
            {"role": "system", "content": "Classify the ticket."},
            {"role": "user", "content": "This is urgent: I found a bug, please report it."},
        ],
        response_format=Ticket,
    )
    parsed = result.choices[0].message.parsed
    assert isinstance(parsed, Ticket)
    assert parsed.label == "bug report"  # the label whose words appear in the text
    assert parsed.priority is Priority.urgent
    assert isinstance(parsed.confidence, float)
    assert parsed.address.zip_code
    assert isinstance(parsed.previous, Address)  # $ref inside anyOf resolved


def test_parse_enum_defaults_to_first_value(client: AzureOpenAI) -> None:
    result = client.chat.completions.parse(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Nothing matches here."}],
        response_format=Ticket,
    )
    parsed = result.choices[0].message.parsed
    assert parsed is not None
    assert parsed.label == "billing issue"
    assert parsed.priority is Priority.low


def test_json_object_mode_returns_json(client: AzureOpenAI) -> None:
    result = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Answer in JSON."}],
        response_format={"type": "json_object"},
    )
    assert set(json.loads(result.choices[0].message.content or "")) == {"result"}


def test_required_tool_call_has_valid_arguments(client: AzureOpenAI) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
                "required": ["city", "unit"],
            },
        },
    }
    result = client.chat.completions.create(
        model="gpt-4o",
        messages=USER,  # type: ignore[arg-type]
        tools=[tool],  # type: ignore[list-item]
        tool_choice="required",
    )
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    arguments = json.loads(calls[0].function.arguments)  # type: ignore[union-attr]
    assert arguments["unit"] in ("c", "f")
    assert isinstance(arguments["city"], str)


async def test_async_client_chat(aclient: AsyncAzureOpenAI) -> None:
    result = await aclient.chat.completions.create(model="gpt-4o", messages=USER)  # type: ignore[arg-type]
    assert result.choices[0].finish_reason == "stop"
    parsed = await aclient.chat.completions.parse(
        model="gpt-4o",
        messages=[{"role": "user", "content": "a billing issue"}],
        response_format=Ticket,
    )
    assert parsed.choices[0].message.parsed is not None
    assert parsed.choices[0].message.parsed.label == "billing issue"


def test_the_last_body_per_deployment_is_kept_until_reset(
    client: AzureOpenAI, control: Control
) -> None:
    """What a proxy in front of the service sent, for tests of the app's gateway."""
    client.chat.completions.create(
        model="gpt-4o", messages=USER, safety_identifier="abc", extra_body={"x_field": 1}
    )
    client.embeddings.create(model="text-embedding-3-small", input="hello")
    last = control.last("gpt-4o")
    assert last is not None
    assert (last["safety_identifier"], last["x_field"], last["messages"]) == ("abc", 1, USER)
    embedded = control.last("text-embedding-3-small")
    assert embedded is not None
    assert embedded["input"] == "hello"
    control.reset()
    assert control.last("gpt-4o") is None


def hidden(completion: ChatCompletion) -> int:
    assert completion.usage is not None
    assert completion.usage.completion_tokens_details is not None
    return completion.usage.completion_tokens_details.reasoning_tokens or 0


def completion_tokens(completion: ChatCompletion) -> int:
    assert completion.usage is not None
    return completion.usage.completion_tokens


REASONING = {"o4-mini": {"model": "o4-mini", "kind": "chat", "model_version": "2025-04-16"}}


def test_a_reasoning_model_spends_hidden_tokens_out_of_max_completion_tokens(
    client: AzureOpenAI, control: Control
) -> None:
    """As Azure's o-series and gpt-5 models: a budget the reasoning uses up is `length` with
    empty content, every token billed as reasoning."""
    control.patch({"deployments": REASONING})
    cut = client.chat.completions.create(model="o4-mini", messages=USER, max_completion_tokens=100)  # type: ignore[arg-type]
    assert cut.choices[0].finish_reason == "length"
    assert cut.choices[0].message.content == ""
    assert completion_tokens(cut) == hidden(cut) == 100
    room = client.chat.completions.create(
        model="o4-mini", messages=USER, max_completion_tokens=5000
    )  # type: ignore[arg-type]
    assert room.choices[0].finish_reason == "stop"
    assert room.choices[0].message.content
    assert hidden(room) == 600  # medium, the default
    low = client.chat.completions.create(
        model="o4-mini",
        messages=USER,
        max_completion_tokens=5000,
        reasoning_effort="low",  # type: ignore[arg-type]
    )
    assert hidden(low) == 150
    # gpt-5.1 and later (the local `gpt-4o` runs gpt-5.4) reason only when asked.
    plain = client.chat.completions.create(model="gpt-4o", messages=USER)  # type: ignore[arg-type]
    assert hidden(plain) == 0


@pytest.mark.parametrize(
    ("deployment", "effort", "code"),
    [
        ("o4-mini", "minimal", "unsupported_value"),  # gpt-5 (not 5.1+) only
        ("gpt-4o", "minimal", "unsupported_value"),  # gpt-5.4 takes none/low/medium/high
        ("chat-4o", "low", "unsupported_parameter"),  # not a reasoning model
    ],
)
def test_an_effort_the_model_does_not_take_is_a_400(
    client: AzureOpenAI, control: Control, deployment: str, effort: str, code: str
) -> None:
    control.patch({"deployments": {**REASONING, "chat-4o": {"model": "gpt-4o", "kind": "chat"}}})
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=deployment,
            messages=USER,
            reasoning_effort=effort,  # type: ignore[arg-type]
        )
    assert refused.value.code == code
    assert control.stats()["total"]["prompt_tokens"] == 0  # refused before it was charged
