"""The team's `max_tokens` clamps a gateway chat body's output cap (shared/metering/callers.py):
every token field the body sends above it is lowered, and the estimate counts `n` choices."""

from __future__ import annotations

from typing import Any

from shared.metering.callers import (
    cap_completion_tokens,
    chat_estimate,
    choices_of,
    clamp_completion_tokens,
)


def test_the_team_s_cap_lowers_every_field_sent_above_it() -> None:
    body: dict[str, Any] = {"max_tokens": 500, "max_completion_tokens": 400}
    asked = cap_completion_tokens(body, 1000)
    assert clamp_completion_tokens(body, asked, 50) == 50
    assert body == {"max_tokens": 50, "max_completion_tokens": 50}


def test_a_body_naming_no_cap_gets_the_limit_then_the_team_s() -> None:
    body: dict[str, Any] = {}
    asked = cap_completion_tokens(body, 1000)
    assert clamp_completion_tokens(body, asked, 50) == 50
    assert body == {"max_completion_tokens": 50}


def test_under_the_team_s_cap_or_without_one_nothing_changes() -> None:
    body: dict[str, Any] = {"max_tokens": 20}
    assert clamp_completion_tokens(body, 20, 50) == 20
    assert clamp_completion_tokens(body, 20, None) == 20
    assert body == {"max_tokens": 20}


def test_the_estimate_counts_each_choice() -> None:
    assert choices_of({"n": 3}) == 3
    assert choices_of({"n": True}) == 1
    assert choices_of({}) == 1
    assert chat_estimate("x" * 40, {"n": 2}, 50) == 10 + 100
