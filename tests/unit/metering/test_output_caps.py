"""Learned output caps (shared/metering/output_caps.py): which cap a chat call is sent with,
the percentile of recent answer lengths, bounded memory, and cut answers growing the cap back.
The wire: tests/stack/chat/test_interactive_host.py."""

from __future__ import annotations

import random

from shared.metering.bookkeeper import CallSite
from shared.metering.output_caps import OutputCap, OutputCaps, choose_cap


def test_the_caller_first_then_learned_then_the_limit_and_the_team_clamps() -> None:
    assert choose_cap(300, 900, 4096, None) == OutputCap(300, "caller")
    assert choose_cap(None, 900, 4096, None) == OutputCap(900, "learned")
    assert choose_cap(None, 9000, 4096, None) == OutputCap(4096, "learned")
    assert choose_cap(None, None, 4096, None) == OutputCap(4096, "limit")
    assert choose_cap(None, 900, 4096, 500) == OutputCap(500, "team")
    assert choose_cap(None, None, 4096, 500) == OutputCap(500, "team")
    assert choose_cap(300, None, 4096, 500) == OutputCap(300, "caller")


def test_nothing_is_learned_before_min_samples() -> None:
    caps = OutputCaps(min_samples=100)
    for _ in range(99):
        caps.observe("gpt-4o", None, 200)
    assert caps.learned("gpt-4o", None) is None
    caps.observe("gpt-4o", None, 200)
    assert caps.learned("gpt-4o", None) == 200


def test_the_cap_is_the_percentile_of_the_recent_window() -> None:
    caps = OutputCaps(percentile=99.0, min_samples=10, window=1000)
    for tokens in range(1, 1001):  # 1..1000: p99 (nearest rank) is 990
        caps.observe("gpt-4o", None, tokens)
    assert caps.learned("gpt-4o", None) == 990
    for _ in range(1000):  # the window forgets the old lengths
        caps.observe("gpt-4o", None, 50)
    assert caps.learned("gpt-4o", None) == 50


def test_a_lognormal_at_p99_5_truncates_about_half_a_percent() -> None:
    rng = random.Random(1)
    caps = OutputCaps(percentile=99.5, min_samples=100, window=1000)
    cut = 0
    answers = 20_000
    for _ in range(answers):
        length = max(1, round(rng.lognormvariate(5.52, 0.77)))  # median 250, p99 ~1500
        learned = caps.learned("d", None)
        if learned is not None and length > learned:
            cut += 1
            caps.observe("d", None, learned, cut_at=learned)
        else:
            caps.observe("d", None, length)
    assert cut / answers < 0.01
    learned = caps.learned("d", None)
    assert learned is not None
    assert 1200 < learned < 3500  # far below 4,096, above the p99


def test_cut_answers_grow_the_cap_back() -> None:
    caps = OutputCaps(percentile=99.0, min_samples=10, window=100)
    for _ in range(100):
        caps.observe("d", None, 100)
    assert caps.learned("d", None) == 100
    for _ in range(20):  # every answer now runs into the cap
        caps.observe("d", None, 100, cut_at=100)
    learned = caps.learned("d", None)
    assert learned is not None
    assert learned >= 200


def test_a_team_uses_its_own_lengths_once_it_has_enough_else_the_deployments() -> None:
    caps = OutputCaps(percentile=99.0, min_samples=10, window=100)
    for _ in range(50):
        caps.observe("d", "long-team", 1000)
    assert caps.learned("d", "new-team") == 1000  # the deployment's, across teams
    for _ in range(10):
        caps.observe("d", "short-team", 40)
    assert caps.learned("d", "short-team") == 40
    assert caps.learned("d", "long-team") == 1000
    assert caps.learned("other", "long-team") is None


def test_keys_are_bounded() -> None:
    caps = OutputCaps(min_samples=1, window=10, max_keys=3)
    for index in range(10):
        caps.observe(f"d{index}", None, 5)
    assert caps.learned("d0", None) is None
    assert caps.learned("d9", None) == 5


def test_off_learns_nothing() -> None:
    caps = OutputCaps(enabled=False, min_samples=1)
    caps.observe("d", None, 5)
    assert caps.learned("d", None) is None


def test_answers_that_say_nothing_of_lengths_are_not_learned() -> None:
    caps = OutputCaps(percentile=100.0, min_samples=1)
    site = CallSite(operation="chat", source="chat", deployment="d", team="t")
    caps.answered(site, OutputCap(10, "caller"), 10, "ok", cut=True)  # the caller's own cap
    caps.answered(site, OutputCap(4096, "limit"), 3000, "content_filter", cut=False)
    assert caps.learned("d", "t") is None
    caps.answered(site, OutputCap(400, "learned"), 400, "ok", cut=True)
    assert caps.learned("d", "t") == 800
