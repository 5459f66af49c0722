"""The benchmarks in a tiny configuration: each prints one JSON object of the expected
shape and loses nothing. Timings are not asserted (the machine is shared)."""

from __future__ import annotations

import cProfile
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench import _profile, chat_ttfb, gateway_latency
from bench._proc import child_pid, cpu_seconds, peak_rss_mib
from bench._summary import draw, small_items
from devstack.aoai_simulator.chat import rate_limit_estimate
from devstack.aoai_simulator.ratelimit import RateLimiter
from shared.core.settings import Settings
from tests.conftest import ROOT

SHAPE = {
    "windows_kept",
    "tokens_per_minute",
    "ceiling_tokens_per_minute",
    "binding_limit",
    "utilisation",
    "requests_per_minute",
    "share_429",
    "per_window_tokens",
}


# A few short windows of a small quota: enough to exercise a benchmark, not to measure.
SMALL_QUOTA = ("--window", "3", "--windows", "3", "--tpm", "6000", "--rpm", "60")


def run_bench(module: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, done.stdout
    result: dict[str, Any] = json.loads(lines[0])
    return result


@pytest.mark.timeout(400)  # two contenders, each a few short windows, plus start-up
def test_embedding_utilization_measures_both_and_ours_loses_nothing() -> None:
    result = run_bench(
        "bench.embedding_utilization",
        *SMALL_QUOTA,
        "--item-tokens",
        "50",
        "--jobs",
        "2",
        "--naive-concurrency",
        "2",
        "--hosts",
        "2",
        "--header-fed",
    )
    assert result["benchmark"] == "embedding_utilization"
    ours, naive = result["ours"], result["naive"]
    # The two hosts shared the quota through the ledger and said what it cost them; the
    # baseline ran them again on the rate-limit headers alone.
    ledger = ours["ledger"]
    assert ledger["hosts_reporting"] == 2
    assert ledger["round_trips"] >= ledger["holds_granted"] > 0
    assert ledger["round_trips_per_upstream_request"] > 0
    assert set(result["header_fed"]) >= SHAPE
    assert result["header_fed"]["items_by_outcome"]["lost"] == 0
    assert ours["hosts"] == 2  # two host processes shared the queues
    assert len(ours["host_peak_rss_mib"]) == 2
    assert ours["host_cpu_ms_per_item"] > 0
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
        "--sizes",
        "1,4",
        *SMALL_QUOTA,
    )
    assert result["benchmark"] == "classify_batching"
    sizes = result["sizes"]
    assert [s["items_per_request"] for s in sizes] == [1, 4]
    for size in sizes:
        assert size["items_failed"] == 0
        assert size["binding_limit"] in ("tpm", "rpm")
        assert size["items_per_minute"] > 0
        assert size["charged_tokens_per_item"] > 0


@pytest.mark.timeout(400)  # a host start, chat alone then under a job, a few short windows
def test_chat_under_jobs_measures_chat_with_and_without_a_job_and_the_jobs_share() -> None:
    result = run_bench(
        "bench.chat_under_jobs", "--window", "3", "--windows", "2", "--contenders", "policy"
    )
    assert result["benchmark"] == "chat_under_jobs"
    ours = result["policy"]
    for phase in ("chat_no_job", "chat_under_job"):
        chats = ours[phase]
        assert chats["sent"] > 10
        assert chats["answered"] + chats["refused_429"] + chats["other_errors"] == chats["sent"]
        assert chats["other_errors"] == 0
    assert ours["windows_kept"] == 2
    assert ours["job_items_per_minute"] > 0  # the job ran beside the chat
    assert 0 < ours["classify_utilization_under_chat"] <= 1.2
    assert isinstance(result["within_target"], bool)


@pytest.mark.timeout(400)  # two hosts one after the other, each warmed up on 100 answers
def test_chat_caps_sends_the_learned_cap_against_the_fixed_one_in_the_same_run() -> None:
    result = run_bench("bench.chat_caps", "--window", "3", "--windows", "2")
    learned, fixed = result["learned"], result["fixed_4096"]
    for variant in (learned, fixed):
        assert variant["admitted"] > 0
        assert variant["failed"] == 0
        assert 0 < variant["admitted_share_of_bound"] <= 1.5
        assert variant["truncated"] <= variant["admitted"]
    # The learning ran: past its warm-up the chats went out below the limit; the baseline not.
    assert learned["last_max_completion_tokens"] < 4096
    assert fixed["last_max_completion_tokens"] == 4096
    assert result["chat_admitted_share_of_bound"] == learned["admitted_share_of_bound"]
    assert result["baseline_admitted_share_of_bound"] == fixed["admitted_share_of_bound"]


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


@pytest.mark.timeout(300)  # the emulators' start-up, a host, a few dozen chats twice
def test_host_cpu_measures_chat_and_profiles_it_by_owner() -> None:
    result = run_bench("bench.host_cpu", "--requests", "20", "--concurrency", "2")
    assert result["host_cpu_ms_per_request"] > 0
    assert 0 < result["app_cpu_ms_per_request"] <= result["host_cpu_ms_per_request"]
    shares = result["profile"]["cpu_share_by_owner"]
    assert sum(shares.values()) == pytest.approx(1.0, abs=0.01)
    # The profile ran inside the host: the app, the SDK and the local host all show up.
    assert {"our app", "openai sdk", "local host (stand-in)"} <= set(shares)


def test_profile_charges_unowned_code_to_its_owned_callers(tmp_path: Path) -> None:
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    for _ in range(2000):
        json.loads(json.dumps({"a": [1, 2, 3]}))
    profiler.disable()
    target = tmp_path / "p.pstats"
    profiler.dump_stats(target)
    summary = _profile.summarise(target)
    shares = summary["cpu_share_by_owner"]
    assert sum(shares.values()) == pytest.approx(1.0, abs=0.01)
    assert max(shares, key=shares.__getitem__) == "json"
    assert _profile.owner("/x/site-packages/openai/_client.py", "f") == "openai sdk"
    assert _profile.owner("~", "<method 'do_handshake' of '_ssl._SSLSocket' objects>") == "tls"


def test_chat_ttfb_simulator_admits_every_request_of_a_300_request_run() -> None:
    # `--requests 300` stalled: each /api/chat request is charged its max_completion_tokens
    # (the app's default limit) on arrival, the default 1M TPM ran out after ~240 of them and
    # the SDK sat out a retry-after near a minute. All requests at one instant: the worst case.
    config = chat_ttfb.simulator_config(per_token_ms=0.0)
    deployment = config.deployment(chat_ttfb.CHAT_DEPLOYMENT)
    assert deployment is not None
    messages = [{"role": "user", "content": chat_ttfb.PROMPT}]
    max_tokens = Settings.model_fields["chat_max_tokens_limit"].default
    via_app = rate_limit_estimate({"messages": messages, "max_completion_tokens": max_tokens})
    straight = rate_limit_estimate({"messages": messages})
    limiter = RateLimiter()
    refused = [
        (i, charge)
        for i in range(300 + 20)
        for charge in (via_app, straight)
        if not limiter.check(deployment, charge, config.rate_limit).allowed
    ]
    assert refused == []


def test_proc_reads_a_child_process_cpu_and_peak_memory() -> None:
    marker = "bench-proc-smoke"
    code = f"x = bytearray(40 * 2**20); sum(range(3 * 10**6)); input()  # {marker}"
    with subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE) as child:
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and peak_rss_mib(child_pid(marker)) < 40:
                time.sleep(0.1)
            pid = child_pid(marker)
            assert pid == child.pid
            assert peak_rss_mib(pid) >= 40  # the 40 MiB it touched
            assert cpu_seconds(pid) > 0
        finally:
            child.kill()


def test_small_items_bound_ratio_follows_the_documented_formula() -> None:
    run = {
        "tpm": 2000,
        "rpm": 12,
        "item_tokens": 10,
        "ours": {"tokens_per_request": 200, "tokens_per_item": 10.0, "items_per_second": 3.0},
        "naive": {"items_per_second": 0.2},
    }
    figures = small_items(run)
    # naive: min(2000, 12 x 10) / 10 = 12 items/min; ours: min(2000, 12 x 200) / 10 = 200
    assert figures["small_items_bound_ratio"] == pytest.approx(200 / 12, abs=0.01)
    assert figures["small_items_speedup"] == pytest.approx(15.0)
    assert figures["small_items_target"] == pytest.approx(0.9 * 200 / 12, abs=0.01)


def test_the_chart_is_a_png(tmp_path: Path) -> None:
    def side(tokens: list[int]) -> dict[str, Any]:
        return {"per_window_tokens": tokens}

    runs = {
        "embedding_1_host": {
            "tpm": 30000,
            "rpm": 180,
            "item_tokens": 100,
            "window_seconds": 4.0,
            "ours": side([30000, 29000, 30000]),
            "naive": side([18000, 17000, 17500]),
        },
        "embedding_3_hosts": {"ours": side([30000, 27000, 29000])},
    }
    target = tmp_path / "performance.png"
    draw(runs, target)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.timeout(300)  # the emulators, the simulator and two hosts start first
def test_team_budget_admits_no_more_than_the_budget_and_measures_the_check() -> None:
    result = run_bench("bench.team_budget", "--runs", "1", "--callers", "12", "--calls", "50")
    assert result["benchmark"] == "team_budget"
    assert result["hosts"] == 2
    (run,) = result["runs_detail"]
    assert set(run["answers"]) <= {"200", "429 budget_exceeded"}
    assert run["upstream_requests"] == run["admitted"] == run["usage_documents"]
    # Spend passes the budget by the admitted calls' estimate error at most.
    assert 0 < result["budget_overshoot_ratio"] <= result["budget_bound_ratio"]
    assert result["baseline_overshoot_ratio"] > result["budget_overshoot_ratio"]
    assert result["store_round_trips_per_call"] < 1


@pytest.mark.timeout(300)
def test_make_bench_writes_results_with_the_headline_keys(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--only",
            "batch_ingest,chat_ttfb",
            "--out",
            str(out),
            "--png",
            str(tmp_path / "p.png"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(out.read_text())
    assert set(results["runs"]) == {"batch_ingest", "chat_ttfb"}
    assert results["chat_added_ttfb_p50_ms"] == results["runs"]["chat_ttfb"]["added_p50_ms"]
    assert results["batch_ingest_lines_per_second"] > 0
    assert results["conditions"]["quick"] is True
    assert "chat_added_ttfb_p50_ms" in done.stdout  # the table


@pytest.mark.timeout(300)  # emulators, the simulator and a host start-up, then 3 x 3 x 6 calls
def test_gateway_latency_measures_every_route_against_the_simulator() -> None:
    result = run_bench("bench.gateway_latency", "--requests", "5", "--warmup", "1")
    assert result["benchmark"] == "gateway_latency"
    for measure in gateway_latency.MEASURES:
        figures = result[measure]
        assert set(figures) == {"direct", "azure", "openai", "added"}
        for path in ("direct", "azure", "openai"):
            assert 0 < figures[path]["p50_ms"] <= figures[path]["p99_ms"]
        for shape in ("azure", "openai"):
            added = figures["added"][shape]
            assert added["p50_ms"] == round(
                figures[shape]["p50_ms"] - figures["direct"]["p50_ms"], 3
            )


def test_embed_memory_measures_capped_and_uncapped_hosts_and_loses_nothing() -> None:
    result = run_bench("bench.embed_memory", "--jobs", "1", "--items", "40", "--within", "120")
    for who in ("capped", "uncapped"):
        run = result[who]
        assert run["items_by_outcome"]["lost"] == 0
        assert run["host_peak_rss_mib"] >= run["host_idle_rss_mib"] > 0
    assert result["host_peak_rss_mib_embed_3072"] == result["capped"]["host_peak_rss_mib"]


@pytest.mark.timeout(200)  # the emulators, the simulator and two hosts start, then 2 x 2 rounds
def test_telemetry_cost_alternates_rounds_and_only_the_on_host_exports() -> None:
    result = run_bench(
        "bench.telemetry_cost",
        *("--rounds", "2", "--requests", "40", "--stream-requests", "20"),
        *("--export-ms", "1000", "--span-delay-ms", "200"),
    )
    assert result["benchmark"] == "telemetry_cost"
    assert result["requests"] == {
        "off": {"json": 80, "stream": 40},
        "on": {"json": 80, "stream": 40},
    }
    for kind in ("chat_json", "chat_stream"):
        figures = result[kind]
        for side in ("off", "on"):
            assert len(figures[side]["rounds_ms"]) == 2
            assert figures[side]["median_ms"] > 0
        assert len(figures["paired_added_ms"]["rounds_ms"]) == 2
        assert figures["added_ms"] == round(
            figures["on"]["median_ms"] - figures["off"]["median_ms"], 3
        )
    # Every CPU second of the run charged: the paired rounds plus what "on" spent between them.
    paired, between = result["chat_json"]["paired_added_ms"], result["between_rounds_ms_per_chat"]
    assert between["added_ms"] == round(between["on_ms"] - between["off_ms"], 3)
    added = result["telemetry_added_cpu_ms_per_chat"]
    assert added == round(paired["mean_ms"] + between["added_ms"], 3)
    low, high = result["telemetry_added_cpu_ms_per_chat_ci95"]
    assert low <= added <= high
    assert result["within_target"] is (high < result["target_added_ms"])
    got = result["receiver"]
    # Telemetry was on in one host (spans of the store writes at least), and off in the other.
    assert got["spans"] + got["metric_points"] > 0
    assert got["only_from_the_on_host"] is True


@pytest.mark.timeout(120)  # four interpreters, each importing the SDKs
def test_telemetry_calls_pairs_interpreters_and_states_the_mean_of_their_differences() -> None:
    result = run_bench("bench.telemetry_calls", "--rounds", "2", "--chats", "2000")
    off, on = result["off_us_per_chat"], result["on_us_per_chat"]
    assert len(off) == len(on) == 2
    assert all(value > 0 for value in off + on)
    added = result["telemetry_calls_added_us_per_chat"]
    assert abs(added - (on[0] - off[0] + on[1] - off[1]) / 2) <= 0.1
    low, high = result["telemetry_calls_added_us_per_chat_ci95"]
    assert low <= added <= high
