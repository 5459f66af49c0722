"""The prompt cache itself, on a clock the test moves (no server)."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.aoai_simulator.config import PromptCacheConfig
from devstack.aoai_simulator.prompt_cache import PromptCache, cacheable_length
from devstack.aoai_simulator.tokens import prompt_tokens, prompt_units

from .test_prompt_cache import DOC, ask


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _units(question: str) -> list[str]:
    return prompt_units(ask(question))


CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": ""}],
        [{"role": "system", "content": "abcde"}, {"role": "user", "content": "x" * 4097}],
        [
            {
                "role": "user",
                "name": "ann",
                "content": [
                    {"type": "text", "text": "one"},
                    {"type": "image_url"},
                    {"type": "text", "text": "two"},
                ],
            }
        ],
        [
            {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
        ],
    ],
)
def test_prompt_units_are_the_prompt_tokens(messages: list[dict[str, Any]]) -> None:
    """The cache cuts prefixes out of the very tokens `usage.prompt_tokens` counts."""
    assert len(prompt_units(messages)) == prompt_tokens(messages)


def test_an_entry_lives_while_it_is_used_and_expires_after_inactivity() -> None:
    clock = Clock()
    cache = PromptCache(clock)
    config = PromptCacheConfig(ttl_seconds=300)
    assert cache.serve("d", _units("alpha"), "", config) == 0
    clock.now = 299
    assert cache.serve("d", _units("alpha"), "", config) == 1920  # and used again at 299
    clock.now = 598
    assert cache.serve("d", _units("alpha"), "", config) == 1920
    clock.now = 898
    assert cache.serve("d", _units("alpha"), "", config) == 0


def test_the_cache_keeps_at_most_max_entries_per_deployment() -> None:
    cache = PromptCache(Clock())
    config = PromptCacheConfig(max_entries=8)  # one prompt of 2,017 tokens stores 8 prefixes
    cache.serve("d", _units("alpha"), "", config)
    cache.serve("d", prompt_units(ask("alpha", "q" + DOC[1:])), "", config)  # evicts them all
    assert cache.size("d") == 8
    assert cache.serve("d", _units("alpha"), "", config) == 0


def test_cacheable_length_is_1024_then_steps_of_128() -> None:
    assert [cacheable_length(n) for n in (1023, 1024, 1151, 1152, 2017)] == [
        0,
        1024,
        1024,
        1152,
        1920,
    ]
