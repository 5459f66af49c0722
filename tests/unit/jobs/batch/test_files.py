"""Batch files without servers: the input lines, the split within Azure's limits, and how
output and error lines read back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devstack.aoai_simulator import batch_quota
from devstack.aoai_simulator.batch_input import BatchLine
from shared.jobs.batch.errors import error_codes, first_message
from shared.jobs.batch.files import endpoint_for, input_line, line_tokens, read_line, split
from shared.jobs.batch.models import item_of
from shared.jobs.classification import request_body
from shared.jobs.models import Item, JobSpec

SPEC = JobSpec(deployment="gpt-4o-batch", labels=["billing", "shipping"])


USAGE = {"prompt_tokens": 50, "completion_tokens": 9, "total_tokens": 59}


def answer_line(
    custom_id: str, content: str | None, usage: dict[str, Any] | None = None, **choice: Any
) -> str:
    body = {
        "id": "c",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-5.1",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": content},
                **choice,
            }
        ],
        "usage": usage or USAGE,
    }
    return json.dumps({"custom_id": custom_id, "response": {"status_code": 200, "body": body}})


def error_line(custom_id: str, status: int | None, error: dict[str, Any]) -> str:
    if status is None:
        return json.dumps({"custom_id": custom_id, "response": None, "error": error})
    response = {"status_code": status, "body": {"error": error}}
    return json.dumps({"custom_id": custom_id, "response": response, "error": None})


def test_a_line_is_the_realtime_request_for_one_item() -> None:
    item = Item(id="t1", text="billing é")
    raw = input_line("job:1", endpoint_for("classification", openai_api=False), SPEC, item)
    assert raw.endswith(b"\n")
    assert not raw.startswith(b"\xef\xbb\xbf")  # no BOM
    line = json.loads(raw.decode("utf-8"))
    assert (line["custom_id"], line["method"], line["url"]) == (
        "job:1:t1",
        "POST",
        "/chat/completions",
    )
    assert line["body"] == request_body(SPEC, [item])
    assert line["body"]["model"] == "gpt-4o-batch"
    assert "é".encode() in raw


def test_the_openai_api_gets_v1_paths_and_embeddings() -> None:
    assert endpoint_for("classification", openai_api=True) == "/v1/chat/completions"
    url = endpoint_for("embedding", openai_api=True)
    spec = JobSpec(deployment="text-embedding-3-small", dimensions=256)
    line = json.loads(input_line("j", url, spec, Item(id="a", text="hi")))
    assert line["body"] == {"model": "text-embedding-3-small", "input": "hi", "dimensions": 256}


@pytest.mark.parametrize(
    ("sizes", "max_lines", "max_bytes", "parts"),
    [
        ([10] * 7, 3, 1000, [(0, 3), (3, 6), (6, 7)]),
        ([10] * 7, 100, 25, [(0, 2), (2, 4), (4, 6), (6, 7)]),
        ([10, 50, 10], 100, 30, [(0, 1), (1, 2), (2, 3)]),  # an oversized line stands alone
        ([10] * 4, 4, 40, [(0, 4)]),
        ([], 3, 10, []),
    ],
)
def test_split_keeps_each_file_within_both_limits(
    sizes: list[int], max_lines: int, max_bytes: int, parts: list[tuple[int, int]]
) -> None:
    assert split(sizes, max_lines, max_bytes) == parts


@pytest.mark.parametrize(
    ("tokens", "max_tokens", "parts"),
    [
        ([50] * 7, 150, [(0, 3), (3, 6), (6, 7)]),
        ([50] * 7, 149, [(0, 2), (2, 4), (4, 6), (6, 7)]),
        ([50, 300, 50, 50], 150, [(0, 1), (1, 2), (2, 4)]),  # over the quota: a part of its own
        ([10] * 4, 1000, [(0, 4)]),
    ],
)
def test_split_keeps_each_file_within_the_enqueued_token_quota(
    tokens: list[int], max_tokens: int, parts: list[tuple[int, int]]
) -> None:
    assert split([10] * len(tokens), 100, 10_000, tokens, max_tokens) == parts
    # Lines and bytes still bind first when they are tighter.
    assert split([10] * len(tokens), 1, 10_000, tokens, max_tokens) == [
        (i, i + 1) for i in range(len(tokens))
    ]


@pytest.mark.parametrize(
    "text", ["hi", "my invoice shows a double billing charge", "x" * 4001, "ü" * 37]
)
def test_a_lines_token_estimate_covers_what_the_quota_counts(text: str) -> None:
    # The simulator counts enqueued tokens as Azure's limiter estimates a prompt; the app's
    # estimate must not fall below it, or a part it thinks fits would be refused.
    url = endpoint_for("classification", openai_api=False)
    item = Item(id="a", text=text)
    line = json.loads(input_line("j", url, SPEC, item))
    counted = batch_quota.line_tokens(BatchLine("j:a", url, line["body"], "gpt-4o-batch"))
    assert counted <= line_tokens(url, SPEC, item) <= counted + 4


def test_custom_ids_map_back_even_when_ids_hold_colons() -> None:
    assert item_of("a:b", "a:b:c:d") == "c:d"
    assert item_of("a:b", "a:bc:d") is None
    assert item_of("a", "a:") is None


def test_an_answer_line_becomes_the_items_labels_and_usage() -> None:
    outcome = read_line(
        answer_line("j:t1", '{"results": [{"id": "t1", "label": "billing"}]}'),
        "j",
        "classification",
        SPEC,
    )
    assert outcome is not None
    assert outcome.result is not None
    assert (outcome.item_id, outcome.result.status, outcome.result.labels) == (
        "t1",
        "succeeded",
        ["billing"],
    )
    assert (outcome.result.id, outcome.status, outcome.model) == ("j:t1", "ok", "gpt-5.1")
    assert outcome.usage is not None
    assert outcome.usage.total_tokens == 59


def test_an_answer_lines_cached_and_reasoning_tokens_are_ingested() -> None:
    """A batch output line carries the chat body's usage, details included: the item's share
    and the usage record get them."""
    usage = {
        **USAGE,
        "prompt_tokens": 1100,
        "total_tokens": 1109 + 64,
        "completion_tokens": 9 + 64,
        "prompt_tokens_details": {"cached_tokens": 1024},
        "completion_tokens_details": {"reasoning_tokens": 64},
    }
    outcome = read_line(
        answer_line("j:t1", '{"results": [{"id": "t1", "label": "billing"}]}', usage),
        "j",
        "classification",
        SPEC,
    )
    assert outcome is not None
    assert outcome.usage is not None
    assert (outcome.usage.cached_tokens, outcome.usage.reasoning_tokens) == (1024, 64)
    assert outcome.result is not None
    assert (outcome.result.usage.cached_tokens, outcome.result.usage.reasoning_tokens) == (1024, 64)


@pytest.mark.parametrize(
    ("content", "choice", "status", "code"),
    [
        ('{"results": [{"id": "t1", "label": "nope"}]}', {}, "failed", "invalid_label"),
        ("not json", {}, "failed", "invalid_answer"),
        (None, {"finish_reason": "content_filter"}, "content_filtered", "content_filter"),
        (
            None,
            {"message": {"role": "assistant", "content": None, "refusal": "no"}},
            "failed",
            "refusal",
        ),
    ],
)
def test_answers_that_are_not_labels_fail_the_item(
    content: str | None, choice: dict[str, Any], status: str, code: str
) -> None:
    outcome = read_line(answer_line("j:t1", content, **choice), "j", "classification", SPEC)
    assert outcome is not None
    assert outcome.result is not None
    assert outcome.result.status == status
    assert outcome.result.error is not None
    assert outcome.result.error.code == code


def test_error_lines_fail_with_the_services_reason() -> None:
    server = error_line("j:t2", 500, {"code": "internal_error", "message": "try again"})
    outcome = read_line(server, "j", "classification", SPEC)
    assert outcome is not None
    assert outcome.result is not None
    assert outcome.result.error is not None
    assert (outcome.result.status, outcome.result.error.code, outcome.status) == (
        "failed",
        "internal_error",
        "error",
    )
    filtered = error_line(
        "j:t3",
        400,
        {
            "code": "content_filter",
            "innererror": {
                "content_filter_result": {"violence": {"filtered": True, "severity": "high"}}
            },
        },
    )
    outcome = read_line(filtered, "j", "classification", SPEC)
    assert outcome is not None
    assert outcome.result is not None
    assert outcome.result.status == "content_filtered"
    assert outcome.filtered is not None
    assert list(outcome.filtered.categories) == ["violence"]


def test_an_expired_line_is_not_a_failure_and_foreign_lines_are_skipped() -> None:
    expired = error_line("j:t4", None, {"code": "batch_expired", "message": "window"})
    outcome = read_line(expired, "j", "classification", SPEC)
    assert outcome is not None
    assert outcome.result is None
    assert read_line(answer_line("other:t1", "{}"), "j", "classification", SPEC) is None
    assert read_line("", "j", "classification", SPEC) is None
    assert read_line("{broken", "j", "classification", SPEC) is None


def test_batch_error_bodies_give_their_codes_and_message() -> None:
    create_400 = {
        "errors": {
            "object": "list",
            "data": [
                {"code": "token_limit_exceeded", "message": "The number of enqueued tokens ..."}
            ],
        }
    }
    assert error_codes(create_400) == ["token_limit_exceeded"]
    assert first_message(create_400, "x").startswith("The number of enqueued tokens")
    assert error_codes({"error": {"code": "invalid_value"}}) == ["invalid_value"]
    assert error_codes(None) == []
    assert first_message({}, "fallback") == "fallback"
