"""`python -m bench --only`: the runs it measures again replace theirs; the others stay."""

from __future__ import annotations

import json
from pathlib import Path

from bench.__main__ import kept_runs


def test_only_keeps_the_runs_it_does_not_measure(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    out.write_text(json.dumps({"runs": {"a": {"x": 1}, "b": {"y": 2}}, "x": 1}))
    assert kept_runs(out, {"a"}) == {"b": {"y": 2}}
    assert kept_runs(out, {"a", "b"}) == {}


def test_only_without_an_earlier_file_starts_empty(tmp_path: Path) -> None:
    assert kept_runs(tmp_path / "none.json", {"a"}) == {}
