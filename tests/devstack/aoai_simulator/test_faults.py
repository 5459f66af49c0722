"""Fault injection per route and the latency model, as the SDK experiences them."""

from __future__ import annotations

import openai
import pytest
from openai import AzureOpenAI

from .conftest import Control

HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("fault", "error_type", "code"),
    [
        ("error_500", openai.InternalServerError, "InternalServerError"),
        ("error_503", openai.InternalServerError, "ServiceUnavailable"),
    ],
)
def test_server_errors(
    client: AzureOpenAI, control: Control, fault: str, error_type: type[Exception], code: str
) -> None:
    control.patch({"faults": {"chat": {fault: 1.0}}})
    with pytest.raises(error_type) as caught:
        client.with_options(max_retries=0).chat.completions.create(model="gpt-4o", messages=HI)  # type: ignore[arg-type]
    assert getattr(caught.value, "code", None) == code
    # other routes are untouched
    assert client.embeddings.create(model="text-embedding-3-small", input="x").data


def test_sdk_retries_server_errors(client: AzureOpenAI, control: Control) -> None:
    control.patch({"faults": {"embeddings": {"error_503": 1.0}}})
    with pytest.raises(openai.InternalServerError):
        client.with_options(max_retries=1).embeddings.create(
            model="text-embedding-3-small", input="x"
        )
    assert control.stats()["routes"]["embeddings"]["status"] == {"503": 2}
    assert control.stats()["routes"]["embeddings"]["retries"] == 1


@pytest.mark.parametrize("retry_after_ms", [1500, 45000])
def test_forced_429_carries_the_configured_retry_after(
    client: AzureOpenAI, control: Control, retry_after_ms: int
) -> None:
    control.patch({"faults": {"embeddings": {"error_429": 1.0, "retry_after_ms": retry_after_ms}}})
    with pytest.raises(openai.RateLimitError) as caught:
        client.with_options(max_retries=0).embeddings.create(
            model="text-embedding-3-small", input="x"
        )
    headers = caught.value.response.headers
    assert headers["retry-after-ms"] == str(retry_after_ms)
    assert headers["retry-after"] == str(-(-retry_after_ms // 1000))
    assert control.stats()["routes"]["embeddings"]["throttled"] == 1
    assert client.chat.completions.create(model="gpt-4o", messages=HI).choices  # type: ignore[arg-type]


def test_dropped_connection(client: AzureOpenAI, control: Control) -> None:
    control.patch({"faults": {"chat": {"drop": 1.0}}})
    with pytest.raises(openai.APIConnectionError):
        client.with_options(max_retries=0).chat.completions.create(model="gpt-4o", messages=HI)  # type: ignore[arg-type]


def test_hung_request_times_out(client: AzureOpenAI, control: Control) -> None:
    control.patch({"faults": {"chat": {"hang": 1.0, "hang_seconds": 5}}})
    with pytest.raises(openai.APITimeoutError):
        client.with_options(max_retries=0, timeout=0.2).chat.completions.create(
            model="gpt-4o",
            messages=HI,  # type: ignore[arg-type]
        )


def test_latency_settings_keep_answers_intact(client: AzureOpenAI, control: Control) -> None:
    control.patch({"latency": {"request_ms": 5, "per_token_ms": 1, "jitter_ms": 2}})
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "echo: a b c"}],
        stream=True,
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "a b c"


def test_unknown_fault_route_is_refused(control: Control) -> None:
    import httpx

    response = httpx.patch(f"{control.url}/sim/config", json={"faults": {"nope": {"drop": 1}}})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_config"


def test_a_lost_answer_carries_out_the_write(client: AzureOpenAI, control: Control) -> None:
    # The create happens, the caller only sees a cut connection: it cannot tell it happened.
    raw = b'{"custom_id": "a", "method": "POST", "url": "/chat/completions", "body": {"model": "gpt-4o-batch", "messages": [{"role": "user", "content": "x"}]}}\n'  # noqa: E501
    file_id = client.files.create(file=("in.jsonl", raw), purpose="batch").id
    before = {b.id for b in client.batches.list(limit=100)}
    control.patch({"faults": {"batches": {"lost": 1.0}}})
    with pytest.raises(openai.APIConnectionError):
        client.with_options(max_retries=0).batches.create(
            input_file_id=file_id,
            endpoint="/chat/completions",
            completion_window="24h",
            metadata={"part": "lost"},
        )
    # Reads are answered: the batch is there, exactly once.
    made = [b for b in client.batches.list(limit=100) if b.id not in before]
    assert [b.metadata for b in made] == [{"part": "lost"}]
