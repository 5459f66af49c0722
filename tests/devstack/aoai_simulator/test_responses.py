"""The Responses API through the openai SDK's typed parsing: Azure's v1 shape
(`OpenAI(base_url=<sim>/openai/v1)`) and its preview shape (`AzureOpenAI(api_version=...)`)."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai import AzureOpenAI, OpenAI

from devstack.aoai_simulator import RunningSimulator, start_simulator

from .conftest import Control


def test_create_and_retrieve_in_the_v1_shape(v1: OpenAI) -> None:
    created = v1.responses.create(model="gpt-4o", input="echo: hello there")
    assert created.id.startswith("resp_")
    assert created.object == "response"
    assert created.status == "completed"
    assert created.output_text == "hello there"
    assert created.model == "gpt-5.4-2026-03-05"
    assert created.store is True
    assert created.usage is not None
    assert created.usage.output_tokens == 2
    # ceil(17 chars / 4) = 5, plus the message and reply overheads (3 + 3), as chat counts
    assert created.usage.input_tokens == 11
    assert created.usage.total_tokens == 13
    assert created.usage.input_tokens_details.cached_tokens == 0
    assert created.usage.output_tokens_details.reasoning_tokens == 0
    again = v1.responses.retrieve(created.id)
    assert again.output_text == "hello there"
    assert again.id == created.id


def test_create_in_the_preview_shape(client: AzureOpenAI, v1: OpenAI) -> None:
    created = client.responses.create(model="gpt-4o", input="echo: preview shape")
    assert created.output_text == "preview shape"
    # one resource: a response made in one shape is read in the other
    assert v1.responses.retrieve(created.id).output_text == "preview shape"
    assert client.responses.retrieve(created.id).id == created.id


def test_by_id_routes_in_the_preview_shape(client: AzureOpenAI, control: Control) -> None:
    created = client.responses.create(model="gpt-4o", input="echo: preview items")
    items = list(client.responses.input_items.list(created.id))
    assert [i.type for i in items] == ["message"]
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(created.id)  # not a background response
    control.patch({"latency": {"request_ms": 60_000}})
    queued = client.responses.create(model="gpt-4o", input="echo: bg", background=True)
    assert client.responses.cancel(queued.id).status == "cancelled"
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)


def test_metadata_user_and_safety_identifier_come_back(v1: OpenAI) -> None:
    created = v1.responses.create(
        model="gpt-4o",
        input="hi",
        metadata={"team": "search"},
        user="someone",
        safety_identifier="hashed-user",
    )
    assert created.metadata == {"team": "search"}
    assert created.user == "someone"
    assert created.safety_identifier == "hashed-user"


def test_stateless_response_is_not_stored(v1: OpenAI) -> None:
    created = v1.responses.create(model="gpt-4o", input="echo: gone", store=False)
    assert created.store is False
    with pytest.raises(openai.NotFoundError):
        v1.responses.retrieve(created.id)


def test_delete_and_input_items(v1: OpenAI) -> None:
    created = v1.responses.create(
        model="gpt-4o",
        input=[
            {"role": "user", "content": "echo: first"},
            {"role": "user", "content": [{"type": "input_text", "text": "echo: second"}]},
        ],
    )
    items = list(v1.responses.input_items.list(created.id, order="asc"))
    assert [item.type for item in items] == ["message", "message"]
    assert [item.content[0].text for item in items] == ["echo: first", "echo: second"]  # type: ignore[union-attr]
    newest_first = list(v1.responses.input_items.list(created.id))
    assert [i.id for i in newest_first] == [i.id for i in reversed(items)]
    v1.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError) as missing:
        v1.responses.retrieve(created.id)
    assert missing.value.body == {  # the service's own 404
        "message": f"Response with id '{created.id}' not found.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    with pytest.raises(openai.NotFoundError):
        v1.responses.delete(created.id)


def test_previous_response_turns_count_as_input(v1: OpenAI) -> None:
    first = v1.responses.create(model="gpt-4o", input="echo: one two", instructions="Be brief.")
    second = v1.responses.create(model="gpt-4o", input="echo: three", previous_response_id=first.id)
    alone = v1.responses.create(model="gpt-4o", input="echo: three")
    assert first.instructions == "Be brief."
    assert second.previous_response_id == first.id
    assert second.instructions is None
    assert first.usage is not None
    assert second.usage is not None
    assert alone.usage is not None
    # the earlier turn (its input and its answer, not its instructions) is read again
    earlier = (3 + 4) + (3 + 2)  # "echo: one two" and the answer "one two"
    assert second.usage.input_tokens == alone.usage.input_tokens + earlier
    # the instructions count in their own response (a developer message: 3 + ceil(9 / 4)),
    # and its input is one token longer than "echo: three"
    assert first.usage.input_tokens == alone.usage.input_tokens + (3 + 3) + 1


def test_unknown_previous_response_is_a_400(v1: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        v1.responses.create(model="gpt-4o", input="hi", previous_response_id="resp_nothere")
    assert refused.value.code == "previous_response_not_found"
    assert refused.value.param == "previous_response_id"


def test_an_id_is_unknown_to_another_resource(v1: OpenAI) -> None:
    created = v1.responses.create(model="gpt-4o", input="echo: mine")
    with (
        start_simulator(port=0) as other,
        OpenAI(base_url=f"{other.url}/openai/v1", api_key=other.api_key) as elsewhere,
    ):
        with pytest.raises(openai.NotFoundError):
            elsewhere.responses.retrieve(created.id)
        with pytest.raises(openai.BadRequestError):
            elsewhere.responses.create(model="gpt-4o", input="x", previous_response_id=created.id)


def test_bad_model_is_deployment_not_found(v1: OpenAI, client: AzureOpenAI) -> None:
    for sdk in (v1, client):
        with pytest.raises(openai.NotFoundError) as missing:
            sdk.responses.create(model="no-such-deployment", input="hi")
        assert missing.value.code == "DeploymentNotFound"
    with pytest.raises(openai.BadRequestError) as wrong_kind:
        v1.responses.create(model="text-embedding-3-small", input="hi")
    assert wrong_kind.value.code == "OperationNotSupported"


def test_filtered_input_is_a_400_with_content_filters(v1: OpenAI, control: Control) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        v1.responses.create(model="gpt-4o", input="tell me forbidden-violence")
    assert refused.value.code == "content_filter"
    assert refused.value.param == "prompt"
    body = refused.value.body
    assert isinstance(body, dict)
    assert "innererror" not in body  # the Responses shape: a top-level list instead
    (verdict,) = body["content_filters"]
    assert verdict["blocked"] is True
    assert verdict["source_type"] == "prompt"
    results = verdict["content_filter_results"]
    assert results["violence"] == {"filtered": True, "severity": "high"}
    assert results["jailbreak"] == {"filtered": False, "detected": False}
    assert control.stats()["content_filtered"] == {"prompt": 1}


def test_v1_chat_and_embeddings(v1: OpenAI, control: Control) -> None:
    answer = v1.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "echo: v1 chat"}]
    )
    assert answer.choices[0].message.content == "v1 chat"
    vectors = v1.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert [len(d.embedding) for d in vectors.data] == [1536, 1536]
    with pytest.raises(openai.NotFoundError) as missing:
        v1.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert missing.value.code == "DeploymentNotFound"
    routes = control.stats()["routes"]
    assert routes["chat"]["requests"] == 2
    assert routes["embeddings"]["inputs"] == 2


def test_responses_count_in_the_stats(v1: OpenAI, control: Control) -> None:
    created = v1.responses.create(model="gpt-4o", input="echo: counted")
    assert created.usage is not None
    stats = control.stats()["routes"]["responses"]
    assert stats["requests"] == 1
    assert stats["prompt_tokens"] == created.usage.input_tokens
    assert stats["completion_tokens"] == created.usage.output_tokens
    v1.responses.retrieve(created.id)  # a read: a request without tokens
    after = control.stats()["routes"]["responses"]
    assert after["requests"] == 2
    assert after["prompt_tokens"] == created.usage.input_tokens


def test_v1_needs_a_model_and_no_api_version(sim: RunningSimulator) -> None:
    url = f"{sim.url}/openai/v1/responses"
    headers = {"api-key": sim.api_key}
    missing = httpx.post(url, json={"input": "hi"}, headers=headers)
    assert missing.status_code == 400
    assert missing.json()["error"]["param"] == "model"
    preview = f"{sim.url}/openai/responses"  # the preview shape needs its api-version
    assert httpx.post(preview, json={"model": "gpt-4o", "input": "hi"}, headers=headers).json() == {
        "error": {"code": "404", "message": "Resource not found"}
    }
    unauthorized = httpx.post(url, json={"model": "gpt-4o", "input": "hi"})
    assert unauthorized.status_code == 401


@pytest.mark.parametrize(
    ("change", "param", "code"),
    [
        ({"reasoning": "high"}, "reasoning", "invalid_type"),
        ({"instructions": 5}, "instructions", "invalid_type"),
        ({"tools": [{"type": "function"}]}, "tools[0].name", "missing_required_parameter"),
        (
            {"text": {"format": {"type": "json_schema"}}},
            "text.format.name",
            "missing_required_parameter",
        ),
        ({"input": [{"role": "user", "content": [1]}]}, "input[0].content[0]", "invalid_type"),
    ],
)
def test_malformed_requests_are_400s(
    sim: RunningSimulator, change: dict[str, object], param: str, code: str
) -> None:
    body = {"model": "gpt-4o", "input": "hi", **change}
    refused = httpx.post(
        f"{sim.url}/openai/v1/responses", json=body, headers={"api-key": sim.api_key}
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == param
    assert refused.json()["error"]["code"] == code
