"""The job benchmarks in a tiny configuration: each prints one JSON object of the expected
shape and loses nothing. Timings are not asserted (the machine is shared)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import ROOT

SHAPE = {"windows_kept", "tokens_per_minute", "ceiling_tokens_per_minute", "binding_limit",
         "utilisation", "requests_per_minute", "share_429", "per_window_tokens"}  # fmt: skip


def run_bench(module: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, done.stdout
    result: dict[str, Any] = json.loads(lines[0])
    return result


@pytest.mark.timeout(400)  # two contenders, each a few short windows, plus start-up
def test_embedding_utilization_measures_both_and_ours_loses_nothing() -> None:
    result = run_bench(
        "bench.embedding_utilization",
        "--window", "3", "--windows", "3", "--tpm", "6000", "--rpm", "60",
        "--item-tokens", "50", "--jobs", "2", "--naive-concurrency", "2",
    )  # fmt: skip
    assert result["benchmark"] == "embedding_utilization"
    ours, naive = result["ours"], result["naive"]
    assert set(ours) >= SHAPE
    assert set(naive) >= SHAPE
    assert ours["windows_kept"] == len(ours["per_window_tokens"]) - 2
    assert ours["items_by_outcome"]["total"] == ours["items"]
    assert ours["items_by_outcome"]["succeeded"] == ours["items"]
    assert ours["items_by_outcome"]["lost"] == 0
    counted = naive["items_by_outcome"]
    assert counted["succeeded"] + counted["lost"] == counted["total"]
    assert sum(naive["per_window_tokens"]) > 0
    assert isinstance(result["within_target"], bool)


@pytest.mark.timeout(400)  # a host start per size
def test_classify_batching_reports_each_size_without_failures() -> None:
    result = run_bench(
        "bench.classify_batching",
        "--sizes", "1,4", "--window", "3", "--windows", "3", "--tpm", "6000", "--rpm", "60",
    )  # fmt: skip
    assert result["benchmark"] == "classify_batching"
    sizes = result["sizes"]
    assert [s["items_per_request"] for s in sizes] == [1, 4]
    for size in sizes:
        assert size["items_failed"] == 0
        assert size["binding_limit"] in ("tpm", "rpm")
        assert size["items_per_minute"] > 0
        assert size["charged_tokens_per_item"] > 0


@pytest.mark.timeout(300)  # the Cosmos DB server's start-up, a few hundred writes
def test_usage_report_counts_every_call_from_one_roll_up_per_day() -> None:
    result = run_bench("bench.usage_report", "--records", "140", "--synthetic", "7000")
    measured, synthetic = result["measured"], result["synthetic"]
    assert measured["former_report"]["documents_read"] == 140
    assert measured["report"]["calls_counted"] == 140
    assert synthetic["report"]["calls_counted"] == synthetic["records"] == 7000
    for run in (measured, synthetic):
        assert run["report"]["rollup_documents_read"] == result["days"]
        assert run["report"]["day_cells_read"] <= result["days"] * result["teams"] * 2
