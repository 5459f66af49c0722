"""Content filtering: rules (terms or regex) -> Azure's `content_filter_results` annotations.

The severity categories (hate, sexual, violence, self_harm) carry `{filtered, severity}`;
the detection categories (jailbreak on prompts, protected material on completions) carry
`{filtered, detected}`. A severity hit at or above the configured threshold is filtered;
a detection hit is always filtered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from .config import FilterRule, Severity

Stage = Literal["prompt", "completion"]

_ORDER: dict[str, int] = {"safe": 0, "low": 1, "medium": 2, "high": 3}
_SEVERITY_CATEGORIES = ("hate", "self_harm", "sexual", "violence")


@dataclass(frozen=True)
class FilterVerdict:
    """The annotation for one text and whether anything in it is filtered."""

    results: dict[str, Any]
    filtered: bool
    hits: tuple[str, ...]


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def _matches(rule: FilterRule, text: str) -> bool:
    lowered = text.lower()
    if any(term.lower() in lowered for term in rule.terms if term):
        return True
    return rule.regex is not None and _compiled(rule.regex).search(text) is not None


def evaluate(
    text: str, stage: Stage, rules: list[FilterRule], threshold: Severity
) -> FilterVerdict:
    """Annotate `text` seen at `stage` with every rule that applies there."""
    severities: dict[str, str] = dict.fromkeys(_SEVERITY_CATEGORIES, "safe")
    detected: dict[str, bool] = {}
    hits: list[str] = []
    for rule in rules:
        if rule.applies_to not in (stage, "both") or not _matches(rule, text):
            continue
        hits.append(rule.name)
        if rule.category in _SEVERITY_CATEGORIES:
            if _ORDER[rule.severity] > _ORDER[severities[rule.category]]:
                severities[rule.category] = rule.severity
        else:
            detected[rule.category] = True
    results: dict[str, Any] = {}
    filtered = False
    for category, severity in severities.items():
        hit = severity != "safe" and _ORDER[severity] >= _ORDER[threshold]
        filtered = filtered or hit
        results[category] = {"filtered": hit, "severity": severity}
    detection = (
        ("jailbreak",)
        if stage == "prompt"
        else ("protected_material_code", "protected_material_text")
    )
    for category in detection:
        found = detected.get(category, False)
        filtered = filtered or found
        results[category] = {"filtered": found, "detected": found}
    return FilterVerdict(results=results, filtered=filtered, hits=tuple(hits))


def prompt_filter_results(verdict: FilterVerdict) -> list[dict[str, Any]]:
    return [{"prompt_index": 0, "content_filter_results": verdict.results}]
