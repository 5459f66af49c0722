"""Embeddings: float and base64 (the SDK default), dimensions, Azure's input validation."""

from __future__ import annotations

import base64
import math
from array import array

import httpx
import openai
import pytest
from openai import AsyncAzureOpenAI, AzureOpenAI

from .conftest import Control

MODEL = "text-embedding-3-small"


def _norm(values: list[float]) -> float:
    return math.sqrt(sum(v * v for v in values))


def test_sdk_default_base64_is_decoded(client: AzureOpenAI) -> None:
    raw = client.embeddings.with_raw_response.create(model=MODEL, input=["alpha", "beta"])
    assert raw.http_request.read().find(b'"encoding_format":"base64"') >= 0
    result = raw.parse()
    assert [d.index for d in result.data] == [0, 1]
    for item in result.data:
        assert len(item.embedding) == 1536
        assert _norm(item.embedding) == pytest.approx(1.0, abs=1e-5)
    assert result.usage.prompt_tokens == 3  # ceil(5/4) + ceil(4/4)
    assert raw.headers["x-ratelimit-remaining-requests"].isdigit()


def test_explicit_base64_is_little_endian_float32(client: AzureOpenAI) -> None:
    result = client.embeddings.create(model=MODEL, input="alpha", encoding_format="base64")
    encoded = result.data[0].embedding
    assert isinstance(encoded, str)
    values = array("f", base64.b64decode(encoded)).tolist()
    floats = client.embeddings.create(model=MODEL, input="alpha", encoding_format="float")
    assert values == pytest.approx(floats.data[0].embedding, abs=1e-6)


def test_same_text_same_vector_and_dimensions(client: AzureOpenAI) -> None:
    a = client.embeddings.create(model=MODEL, input="same", encoding_format="float")
    b = client.embeddings.create(model=MODEL, input="same", encoding_format="float")
    c = client.embeddings.create(model=MODEL, input="other", encoding_format="float")
    assert a.data[0].embedding == b.data[0].embedding
    assert a.data[0].embedding != c.data[0].embedding
    short = client.embeddings.create(model=MODEL, input="same", dimensions=256)
    assert len(short.data[0].embedding) == 256
    assert _norm(short.data[0].embedding) == pytest.approx(1.0, abs=1e-5)


def test_large_model_default_size(client: AzureOpenAI, control: Control) -> None:
    control.patch(
        {"deployments": {"large": {"model": "text-embedding-3-large", "kind": "embedding"}}}
    )
    result = client.embeddings.create(model="large", input="x")
    assert len(result.data[0].embedding) == 3072


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("", "'$.input' is invalid"),
        ([], "'$.input' is invalid"),
        (["ok", ""], "'$.input' is invalid"),
        (["x"] * 2049, "Too many inputs. The max number of inputs is 2048."),
    ],
)
def test_invalid_input_is_azure_400(client: AzureOpenAI, given: object, message: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=MODEL, input=given)  # type: ignore[arg-type]
    assert message in caught.value.message
    assert caught.value.type == "invalid_request_error"


def test_invalid_dimensions(client: AzureOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=MODEL, input="x", dimensions=5000)
    assert caught.value.param == "dimensions"


def test_dimensions_above_the_models_size_are_a_request_wide_400(client: AzureOpenAI) -> None:
    # text-embedding-3-small makes 1,536 floats at most: 3,072 (a job's upper bound, the large
    # model's size) is refused for the whole request, naming the parameter, not an input.
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=MODEL, input=["a", "b"], dimensions=3072)
    assert caught.value.body == {
        "message": "Invalid value for 'dimensions' = 3072. Must be between 1 and 1536.",
        "type": "invalid_request_error",
        "param": "dimensions",
        "code": None,
    }


def test_dimensions_on_ada_002_are_refused_without_a_param(
    client: AzureOpenAI, control: Control
) -> None:
    # As Azure answers it: {"message": ..., "type": "invalid_request_error", "param": null,
    # "code": null} (reported verbatim in several SDKs' issue trackers).
    ada = {"name": "ada", "model": "text-embedding-ada-002", "kind": "embedding"}
    deployments = httpx.get(f"{control.url}/sim/config").json()["deployments"]
    control.patch({"deployments": [*deployments, ada]})
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="ada", input="x", dimensions=256)
    assert caught.value.body == {
        "message": "This model does not support specifying dimensions.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


def test_stats_count_the_inputs_of_answered_requests(client: AzureOpenAI, control: Control) -> None:
    client.embeddings.create(model=MODEL, input=["a", "b", "c"])
    client.embeddings.create(model=MODEL, input="d")
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=MODEL, input=["e"] * 5, dimensions=5000)
    stats = control.stats()["deployments"][MODEL]
    assert (stats["requests"], stats["inputs"], stats["max_inputs"]) == (3, 4, 3)


def test_chat_deployment_refuses_embeddings(client: AzureOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="gpt-4o", input="x")
    assert caught.value.code == "OperationNotSupported"


async def test_async_embeddings(aclient: AsyncAzureOpenAI) -> None:
    result = await aclient.embeddings.create(model=MODEL, input=["a"] * 2048)
    assert len(result.data) == 2048
    assert len(result.data[-1].embedding) == 1536


def test_request_over_the_token_cap_is_400(client: AzureOpenAI) -> None:
    # 38 inputs of 8,000 tokens each: every input fits, the request (304,000) does not.
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=MODEL, input=["x" * 32_000] * 38)
    assert caught.value.code == "max_tokens_per_request"
    assert caught.value.type == "max_tokens_per_request"
    assert caught.value.message.endswith("Requested 304000 tokens, max 300000 tokens per request")


def test_input_over_the_token_cap_is_400(client: AzureOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=MODEL, input=["ok", "x" * (8193 * 4)])
    assert "maximum context length is 8192 tokens" in caught.value.message
    assert "you requested 8193 tokens" in caught.value.message
    assert caught.value.param == "input"


def test_caps_are_settings_and_come_before_the_quota(client: AzureOpenAI, control: Control) -> None:
    control.patch(
        {
            "embeddings": {"max_inputs": 3, "max_request_tokens": 10},
            "deployments": {MODEL: {"tpm": 5}},
        }
    )
    once = client.with_options(max_retries=0).embeddings
    with pytest.raises(openai.BadRequestError) as many:
        once.create(model=MODEL, input=["a", "b", "c", "d"])
    assert "The max number of inputs is 3." in many.value.message
    with pytest.raises(openai.BadRequestError) as large:
        once.create(model=MODEL, input=["x" * 40, "abcd"])  # 10 + 1 tokens
    assert large.value.message.endswith("Requested 11 tokens, max 10 tokens per request")
    assert once.create(model=MODEL, input=["x" * 20]).usage.total_tokens == 5  # quota intact
    stats = control.stats()["deployments"][MODEL]
    assert stats["status"] == {"400": 2, "200": 1}


async def test_async_request_over_the_token_cap(
    aclient: AsyncAzureOpenAI, control: Control
) -> None:
    control.patch({"embeddings": {"max_request_tokens": 100}})
    with pytest.raises(openai.BadRequestError) as caught:
        await aclient.embeddings.create(model=MODEL, input=["x" * 200, "y" * 204])
    assert caught.value.message.endswith("Requested 101 tokens, max 100 tokens per request")
    ok = await aclient.embeddings.create(model=MODEL, input=["x" * 200, "y" * 200])
    assert ok.usage.prompt_tokens == 100
