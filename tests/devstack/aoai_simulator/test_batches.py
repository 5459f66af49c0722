"""The Batch API through the SDK: validation, lifecycle, output/error files, cancel, expiry."""

from __future__ import annotations

import json
import time
from typing import Any

import openai
import pytest
from openai import AsyncAzureOpenAI, AzureOpenAI
from openai.types import Batch

from .conftest import Control

TERMINAL = {"completed", "failed", "cancelled", "expired"}


def _chat_line(custom_id: str, text: str, model: str = "gpt-4o-batch") -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": text}]},
    }


def _upload(client: AzureOpenAI, lines: list[Any]) -> str:
    raw = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    return client.files.create(file=("in.jsonl", raw.encode()), purpose="batch").id


def _wait(client: AzureOpenAI, batch_id: str, until: set[str] = TERMINAL) -> Batch:
    deadline = time.monotonic() + 20
    seen = []
    while time.monotonic() < deadline:
        batch = client.batches.retrieve(batch_id)
        seen.append(batch.status)
        if batch.status in until:
            return batch
        time.sleep(0.03)
    raise AssertionError(f"batch stuck; statuses seen {seen}")


def _jsonl(client: AzureOpenAI, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    return [json.loads(x) for x in client.files.content(file_id).read().splitlines()]


def test_chat_batch_runs_to_completion(client: AzureOpenAI, control: Control) -> None:
    control.patch({"batch": {"in_progress_seconds": 1}})  # long enough to be seen
    lines = [_chat_line("a", "echo: hello"), _chat_line("b", "forbidden-violence please")]
    lines.append(_chat_line("c", "echo: fine forbidden-selfharm"))
    created = client.batches.create(
        input_file_id=_upload(client, lines), endpoint="/chat/completions", completion_window="24h"
    )
    assert created.status == "validating"
    assert created.model == "gpt-4o-batch"
    after_validating = {"in_progress", "finalizing", *TERMINAL}
    assert _wait(client, created.id, after_validating).status == "in_progress"
    done = _wait(client, created.id)
    assert done.status == "completed"
    assert done.request_counts is not None
    assert (
        done.request_counts.total,
        done.request_counts.completed,
        done.request_counts.failed,
    ) == (3, 2, 1)
    assert done.completed_at is not None
    assert done.in_progress_at is not None
    output = {x["custom_id"]: x for x in _jsonl(client, done.output_file_id)}
    assert set(output) == {"a", "c"}
    answer = output["a"]["response"]
    assert answer["status_code"] == 200
    assert answer["request_id"]
    assert answer["body"]["choices"][0]["message"]["content"] == "hello"
    assert output["a"]["error"] is None
    assert output["c"]["response"]["body"]["choices"][0]["finish_reason"] == "content_filter"
    errors = _jsonl(client, done.error_file_id)
    assert [e["custom_id"] for e in errors] == ["b"]
    assert errors[0]["response"]["status_code"] == 400
    assert errors[0]["response"]["body"]["error"]["code"] == "content_filter"
    assert client.files.retrieve(done.output_file_id or "").purpose == "batch_output"
    assert control.stats()["routes"]["batch"]["requests"] == 3


EMBEDDING_LINE = {
    "custom_id": "e1",
    "method": "POST",
    "url": "/embeddings",
    "body": {"model": "text-embedding-3-small-batch", "input": "vector me"},
}


def test_embedding_batch_is_refused_as_on_azure(client: AzureOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(
            input_file_id=_upload(client, [EMBEDDING_LINE]),
            endpoint="/embeddings",
            completion_window="24h",
        )
    assert caught.value.param == "endpoint"
    assert caught.value.code == "invalid_value"
    assert "Supported values are: '/chat/completions'." in caught.value.message


def test_embedding_batch_when_allowed(client: AzureOpenAI, control: Control) -> None:
    control.patch({"batch": {"allow_embeddings": True}})  # the OpenAI API's shape
    created = client.batches.create(
        input_file_id=_upload(client, [EMBEDDING_LINE]),
        endpoint="/embeddings",
        completion_window="24h",
    )
    done = _wait(client, created.id)
    assert done.status == "completed"
    body = _jsonl(client, done.output_file_id)[0]["response"]["body"]
    assert len(body["data"][0]["embedding"]) == 1536


def test_all_lines_failed_leaves_no_output_file(client: AzureOpenAI) -> None:
    lines = [_chat_line("a", "forbidden-violence"), _chat_line("b", "forbidden-hate")]
    created = client.batches.create(
        input_file_id=_upload(client, lines), endpoint="/chat/completions", completion_window="24h"
    )
    done = _wait(client, created.id)
    assert done.status == "completed"
    assert done.output_file_id is None
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (0, 2)
    assert {e["custom_id"] for e in _jsonl(client, done.error_file_id)} == {"a", "b"}


def test_absent_file_ids_as_empty_strings_and_an_empty_error_file(
    client: AzureOpenAI, control: Control
) -> None:
    control.patch({"batch": {"empty_file_ids": True, "empty_error_file": True}})
    good = client.batches.create(
        input_file_id=_upload(client, [_chat_line("a", "x")]),
        endpoint="/chat/completions",
        completion_window="24h",
    )
    bad = client.batches.create(
        input_file_id=_upload(client, [_chat_line("b", "forbidden-violence")]),
        endpoint="/chat/completions",
        completion_window="24h",
    )
    assert good.output_file_id == ""  # not written yet
    done_good, done_bad = _wait(client, good.id), _wait(client, bad.id)
    assert done_good.error_file_id
    assert client.files.content(done_good.error_file_id).read() == b""
    assert done_bad.output_file_id == ""


def _fill_quota(client: AzureOpenAI, control: Control, limit: int) -> None:
    control.patch(
        {
            "deployments": {"gpt-4o-batch": {"enqueued_token_limit": limit}},
            "batch": {"in_progress_seconds": 30},
        }
    )


def test_token_limit_exceeded_at_create(client: AzureOpenAI, control: Control) -> None:
    # One chat line of "x" is 7 input tokens (3 + 3 + 1); the quota holds two such lines.
    _fill_quota(client, control, 14)
    first = client.batches.create(
        input_file_id=_upload(client, [_chat_line("a", "x"), _chat_line("b", "x")]),
        endpoint="/chat/completions",
        completion_window="24h",
    )
    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(
            input_file_id=_upload(client, [_chat_line("c", "x")]),
            endpoint="/chat/completions",
            completion_window="24h",
        )
    body = caught.value.body
    assert isinstance(body, dict)
    problem = body["errors"]["data"][0]
    assert problem["code"] == "token_limit_exceeded"
    assert "configured limit of 14 for the deployment 'gpt-4o-batch'" in problem["message"]
    client.batches.cancel(first.id)
    assert _wait(client, first.id).status == "cancelled"  # a finished batch frees its tokens
    again = client.batches.create(
        input_file_id=_upload(client, [_chat_line("c", "x")]),
        endpoint="/chat/completions",
        completion_window="24h",
    )
    assert again.status == "validating"


def test_token_limit_exceeded_after_validating(client: AzureOpenAI, control: Control) -> None:
    _fill_quota(client, control, 10)
    created = client.batches.create(
        input_file_id=_upload(client, [_chat_line("a", "x"), _chat_line("b", "x")]),
        endpoint="/chat/completions",
        completion_window="24h",
    )
    assert created.status == "validating"
    done = _wait(client, created.id)
    assert done.status == "failed"
    assert done.errors is not None
    assert done.errors.data is not None
    problem = done.errors.data[0]
    assert (problem.code, problem.line) == ("token_limit_exceeded", None)
    assert "limit of 10 " in (problem.message or "")
    assert done.output_file_id is None
    # It held no tokens: a batch that fits is accepted beside it.
    fits = client.batches.create(
        input_file_id=_upload(client, [_chat_line("c", "x")]),
        endpoint="/chat/completions",
        completion_window="24h",
    )
    assert fits.status == "validating"


def test_reset_frees_the_enqueued_tokens(client: AzureOpenAI, control: Control) -> None:
    _fill_quota(client, control, 7)
    client.batches.create(
        input_file_id=_upload(client, [_chat_line("a", "x")]),
        endpoint="/chat/completions",
        completion_window="24h",
    )
    control.reset(config=False)
    again = client.batches.create(
        input_file_id=_upload(client, [_chat_line("b", "x")]),
        endpoint="/chat/completions",
        completion_window="24h",
    )
    assert _wait(client, again.id, {"in_progress", *TERMINAL}).status == "in_progress"


async def test_async_token_limit_exceeded_at_create(
    aclient: AsyncAzureOpenAI, control: Control
) -> None:
    control.patch({"deployments": {"gpt-4o-batch": {"enqueued_token_limit": 960}}})
    control.patch({"batch": {"in_progress_seconds": 30}})
    lines = "\n".join(json.dumps(_chat_line(str(i), "y" * 40)) for i in range(60)).encode()
    uploaded = await aclient.files.create(file=("big.jsonl", lines), purpose="batch")
    first = await aclient.batches.create(
        input_file_id=uploaded.id, endpoint="/chat/completions", completion_window="24h"
    )
    assert first.status == "validating"  # 60 x (3 + 3 + 10) = 960 tokens: just fits
    with pytest.raises(openai.BadRequestError) as caught:
        await aclient.batches.create(
            input_file_id=uploaded.id, endpoint="/chat/completions", completion_window="24h"
        )
    assert "token_limit_exceeded" in str(caught.value.body)


def test_cancel(client: AzureOpenAI, control: Control) -> None:
    control.patch({"batch": {"in_progress_seconds": 30}})
    created = client.batches.create(
        input_file_id=_upload(client, [_chat_line("a", "x")]),
        endpoint="/chat/completions",
        completion_window="24h",
    )
    cancelling = client.batches.cancel(created.id)
    assert cancelling.status == "cancelling"
    assert cancelling.cancelling_at is not None
    done = _wait(client, created.id)
    assert done.status == "cancelled"
    assert done.cancelled_at is not None
    with pytest.raises(openai.ConflictError):
        client.with_options(max_retries=0).batches.cancel(created.id)


def test_expiry(client: AzureOpenAI, control: Control) -> None:
    control.patch({"batch": {"in_progress_seconds": 30, "expire_after_seconds": 0.2}})
    created = client.batches.create(
        input_file_id=_upload(client, [_chat_line("a", "x"), _chat_line("b", "y")]),
        endpoint="/chat/completions",
        completion_window="24h",
    )
    done = _wait(client, created.id)
    assert done.status == "expired"
    errors = _jsonl(client, done.error_file_id)
    assert {e["error"]["code"] for e in errors} == {"batch_expired"}
    assert done.output_file_id is None


@pytest.mark.parametrize(
    ("lines", "code", "line"),
    [
        (["{not json"], "invalid_json_line", 1),
        ([_chat_line("a", "x"), _chat_line("a", "y")], "duplicate_custom_id", 2),
        ([_chat_line("a", "x"), _chat_line("b", "y", model="other")], "model_mismatch", 2),
        ([{**_chat_line("a", "x"), "url": "/embeddings"}], "url_mismatch", 1),
        ([{"custom_id": "a", "method": "POST", "url": "/chat/completions"}], "invalid_request", 1),
    ],
)
def test_invalid_input_fails_after_validating(
    client: AzureOpenAI, lines: list[Any], code: str, line: int
) -> None:
    if code == "invalid_json_line":
        lines = [_chat_line("ok", "x"), *lines]
        line += 1
    created = client.batches.create(
        input_file_id=_upload(client, lines), endpoint="/chat/completions", completion_window="24h"
    )
    done = _wait(client, created.id)
    assert done.status == "failed"
    assert done.failed_at is not None
    assert done.errors is not None
    assert done.errors.data
    problem = done.errors.data[0]
    assert (problem.code, problem.line) == (code, line)


def test_completion_window_must_be_24h(client: AzureOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(
            input_file_id=_upload(client, [_chat_line("a", "x")]),
            endpoint="/chat/completions",
            completion_window="1h",  # type: ignore[arg-type]
        )
    assert caught.value.param == "completion_window"


def test_unknown_or_realtime_deployment_is_model_not_found(client: AzureOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(
            input_file_id=_upload(client, [_chat_line("a", "x", model="gpt-4o")]),
            endpoint="/chat/completions",
            completion_window="24h",
        )
    body = caught.value.body
    assert isinstance(body, dict)
    problem = body["errors"]["data"][0]
    assert problem["code"] == "model_not_found"
    assert "Valid deployments are 'gpt-4o-batch'" in problem["message"]


def test_missing_input_file_is_404(client: AzureOpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.batches.create(
            input_file_id="file-missing", endpoint="/chat/completions", completion_window="24h"
        )


def test_list_with_after_and_limit(client: AzureOpenAI) -> None:
    file_id = _upload(client, [_chat_line("a", "x")])
    ids = [
        client.batches.create(
            input_file_id=file_id, endpoint="/chat/completions", completion_window="24h"
        ).id
        for _ in range(3)
    ]
    page = client.batches.list(limit=2)
    assert [b.id for b in page.data] == ids[::-1][:2]  # newest first
    assert page.has_more is True
    after = client.batches.list(limit=2, after=ids[1])
    assert after.data[0].id == ids[0]


async def test_async_batch_lifecycle(aclient: AsyncAzureOpenAI) -> None:
    raw = json.dumps(_chat_line("a", "echo: async")).encode()
    uploaded = await aclient.files.create(file=("in.jsonl", raw), purpose="batch")
    created = await aclient.batches.create(
        input_file_id=uploaded.id, endpoint="/chat/completions", completion_window="24h"
    )
    retrieved = await aclient.batches.retrieve(created.id)
    assert retrieved.status in {"validating", "in_progress", "finalizing", "completed"}
    listed = [b.id async for b in aclient.batches.list()]
    assert created.id in listed


def test_metadata_is_kept_returned_and_listed(client: AzureOpenAI) -> None:
    file_id = _upload(client, [_chat_line("a", "x")])
    meta = {"job_id": "j" * 128, "part": "3"}
    created = client.batches.create(
        input_file_id=file_id,
        endpoint="/chat/completions",
        completion_window="24h",
        metadata=meta,
    )
    assert created.metadata == meta
    assert client.batches.retrieve(created.id).metadata == meta
    listed = {b.id: b.metadata for b in client.batches.list(limit=100)}
    assert listed[created.id] == meta


@pytest.mark.parametrize(
    "metadata",
    [
        {f"k{i}": "v" for i in range(17)},  # more than 16 pairs
        {"k" * 65: "v"},  # a key over 64 characters
        {"k": "v" * 513},  # a value over 512 characters
        {"k": 3},  # not a string
    ],
)
def test_metadata_outside_the_limits_is_a_400(client: AzureOpenAI, metadata: Any) -> None:
    file_id = _upload(client, [_chat_line("a", "x")])
    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(
            input_file_id=file_id,
            endpoint="/chat/completions",
            completion_window="24h",
            metadata=metadata,
        )
    assert caught.value.param == "metadata"  # type: ignore[attr-defined]
