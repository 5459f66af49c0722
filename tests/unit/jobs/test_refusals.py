"""Which 400s fail a job request's items at once and which split it (pure logic: the errors
are the SDK's own, built from Azure's bodies; no server)."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from shared.core.errors import InvalidRequest, ServiceUnavailable, translate
from shared.jobs import refusals
from shared.jobs.models import Item, ResultDoc
from shared.jobs.results import PartlyAnswered, answer_in_parts, failed_result

REQUEST = httpx.Request("POST", "https://aoai.example/openai/deployments/d/embeddings")


def refused(message: str, param: str | None = None, code: str | None = None) -> InvalidRequest:
    """What the app makes of Azure's 400 with this body."""
    body: dict[str, Any] = {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    }
    response = httpx.Response(400, json=body, request=REQUEST)
    error = openai.BadRequestError(
        f"Error code: 400 - {body}", response=response, body=body["error"]
    )
    failure = translate(error)
    assert isinstance(failure, InvalidRequest)
    return failure


@pytest.mark.parametrize(
    ("failure", "scope"),
    [
        (
            refused(
                "Invalid value for 'dimensions' = 3072. Must be between 1 and 1536.", "dimensions"
            ),
            "request",
        ),
        (
            refused("'x' is not one of ['float', 'base64'] - 'encoding_format'", "encoding_format"),
            "request",
        ),
        (
            refused("Unsupported parameter: 'temperature'", "temperature", "unsupported_parameter"),
            "request",
        ),
        (
            refused("The chatCompletion operation does not work", None, "OperationNotSupported"),
            "request",
        ),
        (refused("Too many inputs. The max number of inputs is 2048.", "input"), "items"),
        (
            refused(
                "Invalid 'messages[1].content': string too long.",
                "messages[1].content",
                "string_above_max_length",
            ),
            "items",
        ),
        (
            refused(
                "Requested 400000 tokens, max 300000 tokens per request",
                None,
                "max_tokens_per_request",
            ),
            "items",
        ),
        (
            refused(
                "This model's maximum context length is 8192 tokens",
                "messages",
                "context_length_exceeded",
            ),
            "items",
        ),
        (refused("This model does not support specifying dimensions."), "unknown"),
        (
            refused(
                "This model's maximum context length is 8192 tokens, however you requested 9000"
            ),
            "unknown",
        ),
    ],
)
def test_the_scope_of_a_400_comes_from_its_param_and_code(
    failure: InvalidRequest, scope: refusals.Scope
) -> None:
    assert refusals.scope(failure) == scope


def test_items_fail_with_the_services_message_and_http_answers_keep_the_apps() -> None:
    failure = refused(
        "Invalid value for 'dimensions' = 3072. Must be between 1 and 1536.", "dimensions"
    )
    assert failure.message == "Azure OpenAI rejected the request"  # what /api/chat answers
    assert failure.details == {"upstream_code": None, "upstream_param": "dimensions"}
    group = [Item(id="a", text="x"), Item(id="b", text="y")]
    results = refusals.fail_all("j", group, "embedding", failure, "d")
    assert [(r.item_id, r.status) for r in results] == [("a", "failed"), ("b", "failed")]
    assert {r.error.message for r in results if r.error} == {
        "Invalid value for 'dimensions' = 3072. Must be between 1 and 1536."
    }


def test_a_probe_refused_the_same_way_means_the_request() -> None:
    failure = refused("This model does not support specifying dimensions.")
    group = [Item(id="long", text="a longer text"), Item(id="short", text="hi")]
    alone = refusals.probe(group)
    assert alone.id == "short"  # the least likely to be too long
    same = refusals.fail_all("j", [alone], "embedding", failure, "d")
    assert refusals.same(same, failure)
    other = refused(
        "This model's maximum context length is 8192 tokens, however you requested 9000"
    )
    assert not refusals.same(refusals.fail_all("j", [alone], "embedding", other, "d"), failure)
    detail = refusals.detail(failure)
    assert not refusals.same([failed_result("j", "short", "embedding", detail, "d")] * 2, failure)


async def test_answers_before_a_failing_part_are_handed_on_with_it() -> None:
    # A probe answered, then the first half answered and the second met an outage: both
    # answers go on (PartlyAnswered), so a split request never asks them again.
    items = [Item(id=f"i{n}", text=f"text {n}") for n in range(3)]
    probe = failed_result("j", "i0", "embedding", refused("no").detail(), "d")

    async def run(part: list[Item]) -> list[ResultDoc]:
        if part[0].id == "i2":
            raise ServiceUnavailable("outage")
        return [
            failed_result("j", item.id, "embedding", refused("no").detail(), "d") for item in part
        ]

    with pytest.raises(PartlyAnswered) as caught:
        await answer_in_parts([[items[1]], [items[2]]], run, answered=[probe])
    assert [r.item_id for r in caught.value.results] == ["i0", "i1"]
    assert isinstance(caught.value.failure, ServiceUnavailable)
