"""Configurable answer lengths: a lognormal by median and p99, stable per prompt, cut at
`max_tokens` with `finish_reason: length` as Azure cuts them."""

from __future__ import annotations

import statistics

import pytest
from openai import AzureOpenAI
from pydantic import ValidationError

from devstack.aoai_simulator.chat import plan_chat
from devstack.aoai_simulator.config import AnswerLengthConfig, SimulatorConfig
from devstack.aoai_simulator.tokens import answer_length

from .conftest import Control


def _lengths(count: int, median: int, p99: int) -> list[int]:
    return sorted(answer_length(seed, median, p99, 100_000) for seed in range(count))


def test_lengths_follow_the_median_and_p99() -> None:
    lengths = _lengths(20_000, 250, 1500)
    assert 235 <= statistics.median(lengths) <= 265
    p99 = lengths[int(len(lengths) * 0.99)]
    assert 1300 <= p99 <= 1700


def test_a_length_is_stable_per_seed_and_bounded() -> None:
    assert answer_length(7, 250, 1500, 100_000) == answer_length(7, 250, 1500, 100_000)
    assert max(answer_length(seed, 250, 1500, 300) for seed in range(2000)) == 300
    assert min(answer_length(seed, 1, 1, 10) for seed in range(100)) == 1


def test_p99_below_the_median_is_refused() -> None:
    with pytest.raises(ValidationError):
        AnswerLengthConfig(median=300, p99=200)


def test_off_by_default_keeps_short_answers() -> None:
    config = SimulatorConfig()
    assert config.answer_length is None
    deployment = config.deployments[0]
    for index in range(50):
        body = {"messages": [{"role": "user", "content": f"question {index}"}]}
        plan = plan_chat(body, deployment, config)
        assert 12 <= plan.completion_tokens <= 48


def test_answer_is_cut_at_max_tokens_with_length() -> None:
    config = SimulatorConfig(answer_length=AnswerLengthConfig(median=400, p99=401))
    deployment = config.deployments[0]
    messages = [{"role": "user", "content": "a long answer please"}]
    whole = plan_chat({"messages": messages}, deployment, config)
    assert whole.choices[0].finish_reason == "stop"
    assert 390 <= whole.completion_tokens <= 410
    cut = plan_chat({"messages": messages, "max_completion_tokens": 100}, deployment, config)
    assert cut.choices[0].finish_reason == "length"
    assert cut.completion_tokens == 100
    assert cut.choices[0].pieces == whole.choices[0].pieces[:100]


def test_configured_through_the_control_plane(client: AzureOpenAI, control: Control) -> None:
    control.patch({"answer_length": {"median": 600, "p99": 601}})
    messages = [{"role": "user", "content": "How long is this answer?"}]
    first = client.chat.completions.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
    again = client.chat.completions.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
    assert first.usage is not None
    assert again.usage is not None
    assert 580 <= first.usage.completion_tokens <= 620
    assert first.usage.completion_tokens == again.usage.completion_tokens
    assert first.choices[0].finish_reason == "stop"
    cut = client.chat.completions.create(
        model="gpt-4o",
        messages=messages,  # type: ignore[arg-type]
        max_completion_tokens=50,
    )
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage is not None
    assert cut.usage.completion_tokens == 50
