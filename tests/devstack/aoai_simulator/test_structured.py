"""Structured outputs: Azure's strict-schema 400s, and answers whose labels follow the text."""

from __future__ import annotations

import json
from typing import Any, Literal

import openai
import pytest
from openai import AsyncAzureOpenAI, AzureOpenAI
from pydantic import BaseModel, Field

from .conftest import Control

LABELS = ["billing issue", "bug report", "feature request", "other"]


def _strict(schema: dict[str, Any], name: str = "answer") -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}


def _closed(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _results_schema(multi: bool) -> dict[str, Any]:
    label: dict[str, Any] = {"type": "string", "enum": LABELS}
    field = {"labels": {"type": "array", "items": label}} if multi else {"label": label}
    item = _closed({"id": {"type": "string"}, **field})
    return _closed({"results": {"type": "array", "items": item}})


def _ask(client: AzureOpenAI, schema: dict[str, Any], text: str) -> Any:
    result = client.chat.completions.create(
        model="gpt-4o",
        messages=[
            {"role": "system", "content": f"Label each line with one of: {', '.join(LABELS)}."},
            {"role": "user", "content": text},
        ],
        response_format=_strict(schema),  # type: ignore[arg-type]
    )
    return json.loads(result.choices[0].message.content or "")


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("minLength", 1),
        ("maxLength", 5),
        ("pattern", "^a"),
        ("format", "email"),
        ("minimum", 0),
        ("maximum", 1),
        ("minItems", 1),
        ("maxItems", 3),
        ("uniqueItems", True),
        ("multipleOf", 2),
    ],
)
def test_strict_schema_refuses_unsupported_keywords(
    client: AzureOpenAI, keyword: str, value: Any
) -> None:
    kind = {"minItems": "array", "maxItems": "array", "uniqueItems": "array"}.get(keyword)
    field: dict[str, Any] = {"type": kind or "string", keyword: value}
    if kind == "array":
        field["items"] = {"type": "string"}
    elif keyword in ("minimum", "maximum", "multipleOf"):
        field["type"] = "number"
    with pytest.raises(openai.BadRequestError) as caught:
        _ask(client, _closed({"name": field}), "x")
    error = caught.value
    assert error.code == "invalid_json_schema"
    assert error.param == "response_format"
    assert error.message.endswith(
        f"Invalid schema for response_format 'answer': In context=('properties', 'name'), "
        f"'{keyword}' is not permitted."
    )


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            "In context=(), 'additionalProperties' is required to be supplied and to be false.",
        ),
        (
            {**_closed({"a": {"type": "string"}, "b": {"type": "string"}}), "required": ["a"]},
            "In context=(), 'required' is required to be supplied and to be an array including "
            "every key in properties. Missing 'b'.",
        ),
        (
            _closed({"inner": {"type": "object", "properties": {}}}),
            "In context=('properties', 'inner'), 'additionalProperties' is required",
        ),
        (
            {"anyOf": [_closed({"a": {"type": "string"}})]},
            "schema must be a JSON Schema of 'type: \"object\"'",
        ),
    ],
)
def test_strict_schema_refuses_open_objects(
    client: AzureOpenAI, schema: dict[str, Any], problem: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        _ask(client, schema, "x")
    assert caught.value.code == "invalid_json_schema"
    assert problem in caught.value.message


def test_non_strict_schema_is_not_checked(client: AzureOpenAI) -> None:
    result = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "x"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "loose", "schema": {"type": "object", "properties": {}}},
        },
    )
    assert json.loads(result.choices[0].message.content or "") == {}


class Constrained(BaseModel):
    code: str = Field(min_length=5)


def test_sdk_parse_with_a_constrained_model_is_refused(client: AzureOpenAI) -> None:
    # The SDK closes objects and requires every field, but sends pydantic's constraints as
    # they are; Azure refuses them.
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.parse(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}], response_format=Constrained
        )
    assert "'minLength' is not permitted." in caught.value.message


def test_strict_function_parameters_are_checked(client: AzureOpenAI) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "strict": True,
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "x"}],
            tools=[tool],  # type: ignore[list-item]
        )
    assert caught.value.param == "tools[0].function.parameters"
    assert "Invalid schema for function 'lookup'" in caught.value.message


def test_a_refused_schema_is_not_charged(client: AzureOpenAI, control: Control) -> None:
    control.patch({"deployments": {"gpt-4o": {"rpm": 6}}})  # one request per 10 s
    with pytest.raises(openai.BadRequestError):
        _ask(client, {"type": "object", "properties": {}}, "x")
    assert _ask(client, _closed({"a": {"type": "string"}}), "x")["a"]


def test_one_label_per_line_follows_the_text(client: AzureOpenAI) -> None:
    text = "\n".join(
        [
            "[t1] I was charged twice, a billing mistake on my invoice issue",
            "[t2] The app crashes: a bug in the report page",
            "[t3] Please add dark mode, a feature I request",
            "[t4] Good morning",
        ]
    )
    answer = _ask(client, _results_schema(multi=False), text)
    assert answer == {
        "results": [
            {"id": "t1", "label": "billing issue"},
            {"id": "t2", "label": "bug report"},
            {"id": "t3", "label": "feature request"},
            {"id": "t4", "label": "billing issue"},  # no shared word: the first value
        ]
    }


def test_multi_label_takes_every_value_with_a_shared_word(client: AzureOpenAI) -> None:
    text = "[a] billing bug\n[b] nothing in common\n[c] Feature requests and other things"
    answer = _ask(client, _results_schema(multi=True), text)
    assert answer == {
        "results": [
            {"id": "a", "labels": ["billing issue", "bug report"]},
            {"id": "b", "labels": ["billing issue"]},
            {"id": "c", "labels": ["feature request", "other"]},
        ]
    }


def test_ties_are_broken_by_share_then_order(client: AzureOpenAI) -> None:
    schema = _closed({"label": {"type": "string", "enum": ["red alert", "red", "blue"]}})
    assert _ask(client, schema, "a red car")["label"] == "red"  # 1 of 1 beats 1 of 2
    assert _ask(client, schema, "red alert now")["label"] == "red alert"  # 2 words beat 1
    assert _ask(client, schema, "green")["label"] == "red alert"  # nothing shared: first


class Item(BaseModel):
    id: str
    label: Literal["positive", "negative", "neutral"]


class Results(BaseModel):
    results: list[Item]


async def test_async_parse_follows_each_line(aclient: AsyncAzureOpenAI) -> None:
    lines = ["[7] a positive review", "[8] negative, very negative", "[9] neutral tone"]
    result = await aclient.chat.completions.parse(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Classify:\n" + "\n".join(lines)}],
        response_format=Results,
    )
    parsed = result.choices[0].message.parsed
    assert parsed is not None
    assert [(i.id, i.label) for i in parsed.results] == [
        ("7", "positive"),
        ("8", "negative"),
        ("9", "neutral"),
    ]
