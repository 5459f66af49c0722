"""Pure logic of the job services: packing, usage shares, the schema, answers, continuations."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.core.errors import ServiceUnavailable
from shared.core.models import Usage
from shared.core.settings import Settings, load_settings
from shared.jobs.classification import ClassificationService, label_results, parse_answers, schema
from shared.jobs.embeddings import EmbeddingService, estimate_tokens
from shared.jobs.models import ClassificationJob, EmbeddingJob, Item, JobSpec
from shared.jobs.results import request_usage_id, share_usage
from shared.jobs.retries import MIN_CONTINUATION_DELAY, Plan, continuation_plan
from shared.jobs.runner import SliceOutcome
from shared.metering.bookkeeper import CallSite

ENV = {
    "AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com",
    "CHAT_DEPLOYMENT": "chat",
    "USER_HASH_SECRET": "unit-test-user-hash-secret-0123456789",
    "TEAM_KEY_HASH_SECRET": "unit-test-team-key-hash-secret-0123456789",
    "EMBEDDING_DEPLOYMENT": "emb",
    "COSMOS_ENDPOINT": "https://x.documents.azure.com",
    "AzureWebJobsStorage__queueServiceUri": "https://x.queue.core.windows.net",
}


def settings(**overrides: str) -> Settings:
    return load_settings({**ENV, **overrides})


def make(n: int, chars: int = 40) -> list[Item]:
    return [Item(id=f"i{i}", text="x" * chars) for i in range(n)]


def test_embeddings_pack_up_to_the_input_cap() -> None:
    service = EmbeddingService(settings(EMBEDDING_MAX_INPUTS="3"), None, None)  # type: ignore[arg-type]
    groups = service.plan(make(7))
    assert [len(g) for g in groups] == [3, 3, 1]
    assert [i.id for g in groups for i in g] == [f"i{i}" for i in range(7)]


def test_embeddings_pack_up_to_the_token_cap_and_the_limiter_budget() -> None:
    service = EmbeddingService(settings(EMBEDDING_MAX_REQUEST_TOKENS="100"), None, None)  # type: ignore[arg-type]
    assert [len(g) for g in service.plan(make(10, chars=160))] == [2, 2, 2, 2, 2]  # 40 each
    assert [len(g) for g in service.plan(make(10, chars=160), token_budget=40)] == [1] * 10


def test_embeddings_pack_under_the_floats_an_answer_may_hold() -> None:
    # 1,048,576 floats (~56 MiB as Python objects) per answer by default: 2,048 vectors of
    # 1,536 floats were one answer of ~175 MB before, twice that at 3,072.
    service = EmbeddingService(settings(), None, None)  # type: ignore[arg-type]
    items = make(2048, chars=4)
    large = service.plan(items, spec=JobSpec(deployment="emb", dimensions=3072))
    assert max(len(g) for g in large) == 341
    assert len(large) == 7
    small = service.plan(items, spec=JobSpec(deployment="emb", dimensions=256))
    assert [len(g) for g in small] == [2048]  # Azure's cap binds first
    assert service.answer_bytes(large[0], JobSpec(deployment="emb", dimensions=3072)) < 60 * 2**20


def test_without_dimensions_the_largest_size_is_assumed_until_an_answer_shows_it() -> None:
    service = EmbeddingService(settings(), None, None)  # type: ignore[arg-type]
    spec = JobSpec(deployment="emb")
    assert service.max_inputs(spec) == 341  # 3,072 floats a vector until known
    service.sizes["emb"] = 1536  # what _call records from an answer
    assert service.max_inputs(spec) == 682
    assert service.max_inputs(JobSpec(deployment="other")) == 341


def test_estimate_is_chars_over_four_rounded_up() -> None:
    assert [estimate_tokens("x" * n) for n in (1, 4, 5, 400)] == [1, 1, 2, 100]


def test_classification_groups_by_items_per_request() -> None:
    service = ClassificationService(settings(CLASSIFY_ITEMS_PER_REQUEST="4"), None, None)  # type: ignore[arg-type]
    assert [len(g) for g in service.plan(make(10))] == [4, 4, 2]


def test_usage_shares_add_up_to_the_request() -> None:
    parts = share_usage(Usage(prompt_tokens=101, completion_tokens=7, total_tokens=108), [1, 2, 3])
    assert sum(p.prompt_tokens for p in parts) == 101
    assert sum(p.completion_tokens for p in parts) == 7
    assert [p.prompt_tokens for p in parts[:2]] == [16, 33]


@given(
    st.integers(0, 5000),
    st.integers(0, 5000),
    st.integers(0, 900),
    st.integers(0, 900),
    st.lists(st.integers(0, 50), min_size=1, max_size=12),
)
def test_usage_shares_split_cached_and_reasoning_tokens_too(
    uncached: int, cached: int, visible: int, reasoning: int, weights: list[int]
) -> None:
    """Each item's share of a request's cached (reasoning) tokens is within its share of the
    prompt (completion) tokens, and every count adds up to the request's."""
    whole = Usage(
        prompt_tokens=uncached + cached,
        completion_tokens=visible + reasoning,
        total_tokens=uncached + cached + visible + reasoning,
        cached_tokens=cached,
        reasoning_tokens=reasoning,
    )
    parts = share_usage(whole, weights)
    total = Usage()
    for part in parts:
        assert 0 <= part.cached_tokens <= part.prompt_tokens
        assert 0 <= part.reasoning_tokens <= part.completion_tokens
        assert part.total_tokens == part.prompt_tokens + part.completion_tokens
        total = total.plus(part)
    assert total == whole


def test_request_usage_ids_are_the_same_for_the_same_items_in_any_order() -> None:
    site = CallSite(operation="embedding", source="job", deployment="emb", job_id="j")
    assert request_usage_id(site, ["a", "b"]) == request_usage_id(site, ["b", "a"])
    assert request_usage_id(site, ["a", "b"]) != request_usage_id(site, ["a", "c"])


def strict_problems(node: object) -> list[str]:
    """Where a schema breaks Azure's strict-mode rules (closed, all-required objects)."""
    problems: list[str] = []
    if isinstance(node, dict):
        if node.get("type") == "object":
            if node.get("additionalProperties") is not False:
                problems.append("open object")
            if set(node.get("required", [])) != set(node.get("properties", {})):
                problems.append("not all required")
        for value in node.values():
            problems += strict_problems(value)
    elif isinstance(node, list):
        for value in node:
            problems += strict_problems(value)
    return problems


@pytest.mark.parametrize("multi", [False, True])
def test_the_schema_is_strict_with_ids_and_labels_as_enums(multi: bool) -> None:
    spec = JobSpec(deployment="d", labels=["a", "b"], multi_label=multi)
    built = schema(spec, ["i1", "i2"])
    assert strict_problems(built) == []
    item = built["properties"]["results"]["items"]["properties"]
    assert item["id"]["enum"] == ["i1", "i2"]
    answer = item["labels"]["items"] if multi else item["label"]
    assert answer["enum"] == ["a", "b"]


def test_answers_outside_the_labels_or_missing_fail_only_those_items() -> None:
    spec = JobSpec(deployment="d", labels=["a", "b"])
    answers = parse_answers(
        json.dumps({"results": [{"id": "i0", "label": "a"}, {"id": "i1", "label": "zzz"}]})
    )
    assert answers is not None
    results = label_results("j", make(3), spec, answers, [Usage()] * 3)
    assert [(r.item_id, r.status, r.error.code if r.error else None) for r in results] == [
        ("i0", "succeeded", None),
        ("i1", "failed", "invalid_label"),
        ("i2", "failed", "missing_answer"),
    ]


@pytest.mark.parametrize("content", ["not json", '{"results": 3}', "[]", None])
def test_malformed_answers_are_none(content: str | None) -> None:
    assert parse_answers(content) is None


def test_continuations_wait_for_retry_after_until_the_cap() -> None:
    s = settings(JOB_RETRY_AFTER_CAP_SECONDS="60")
    assert continuation_plan(s, 2, SliceOutcome(stop="rate_limited", retry_after=12.5)) == Plan(
        12.5, 2
    )
    assert continuation_plan(s, 2, SliceOutcome(stop="rate_limited", retry_after=61)) is None
    assert continuation_plan(s, 3, SliceOutcome(stop="slice")) == Plan(0.0, 3)


def test_a_rate_limited_continuation_is_due_its_lead_early_but_capped_on_the_full_wait() -> None:
    s = settings(JOB_RETRY_AFTER_CAP_SECONDS="60")
    early = SliceOutcome(stop="rate_limited", retry_after=12.5, lead=10)
    assert continuation_plan(s, 2, early) == Plan(2.5, 2)
    soon = SliceOutcome(stop="rate_limited", retry_after=5, lead=10)
    assert continuation_plan(s, 2, soon) == Plan(MIN_CONTINUATION_DELAY, 2)
    assert (
        continuation_plan(s, 2, SliceOutcome(stop="rate_limited", retry_after=65, lead=10)) is None
    )


def test_a_wait_for_the_team_s_budget_is_the_worker_s_not_capped_and_costs_no_attempt() -> None:
    """The worker decides a budget wait (JOB_BUDGET_MAX_WAIT, shared/metering/budget_wait.py);
    the plan takes it whole, past JOB_RETRY_AFTER_CAP_SECONDS, and spends no attempt."""
    s = settings(JOB_RETRY_AFTER_CAP_SECONDS="60")
    day = SliceOutcome(stop="budget", retry_after=40_000, lead=10)
    assert continuation_plan(s, 2, day) == Plan(40_000, 2)


def test_passing_failures_back_off_exponentially_within_the_budget() -> None:
    s = settings(JOB_BACKOFF_SECONDS="5", JOB_MAX_ATTEMPTS="4")
    failure = SliceOutcome(stop="passing", failure=ServiceUnavailable("down"))
    plans = [continuation_plan(s, attempt, failure) for attempt in range(4)]
    assert plans == [Plan(5, 1), Plan(10, 2), Plan(20, 3), Plan(40, 4)]


def test_past_the_budget_the_rest_is_parked_until_the_jobs_max_age() -> None:
    s = settings(JOB_MAX_ATTEMPTS="4", JOB_PARK_SECONDS="900", JOB_MAX_AGE="3600")
    failure = SliceOutcome(stop="passing", failure=ServiceUnavailable("down"))
    created = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)

    def plan(attempt: int, minutes: float) -> Plan | None:
        at = created + timedelta(minutes=minutes)
        return continuation_plan(s, attempt, failure, created=created, at=at)

    assert plan(4, 10) == Plan(900, 5, parked=True)
    assert plan(9, 30) == Plan(900, 10, parked=True)
    assert plan(12, 55) == Plan(300, 13, parked=True)  # never due past the max age
    assert plan(13, 60) is None  # then the rest fails
    assert plan(999, 10) == Plan(900, 1000, parked=True)  # the message model's bound


def test_limits_come_from_settings() -> None:
    s = settings(JOB_MAX_ITEMS="2", JOB_MAX_ITEM_CHARS="5", JOB_MAX_LABELS="2")
    context = {"settings": s}
    with pytest.raises(ValueError, match="at most 2 items per job"):
        EmbeddingJob.model_validate(
            {"items": [i.model_dump() for i in make(3, 1)]}, context=context
        )
    with pytest.raises(ValueError, match="at most 5"):
        EmbeddingJob.model_validate({"items": [{"id": "a", "text": "123456"}]}, context=context)
    with pytest.raises(ValueError, match="at most 2 labels"):
        ClassificationJob.model_validate(
            {"items": [{"id": "a", "text": "t"}], "labels": ["x", "y", "z"]}, context=context
        )
    with pytest.raises(ValueError, match="unique"):
        EmbeddingJob.model_validate({"items": [{"id": "a", "text": "t"}, {"id": "a", "text": "u"}]})
