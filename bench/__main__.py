"""`python -m bench [--quick] [--only NAME,...]`: every benchmark, each in its own process,
then bench/results.json, a table, and docs/performance.png (`make bench`, BENCH_ARGS=--quick).
`--only` measures the runs it names again and keeps the other runs' figures in the file.

Each benchmark prints one JSON object; they are kept whole under `runs` in results.json, and
the headline figures (bench/_summary.py) sit at its top level.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._serve import ROOT
from bench._summary import conditions, draw, headline, table


@dataclass(frozen=True)
class Run:
    name: str
    module: str
    full: tuple[str, ...]
    quick: tuple[str, ...]


# Quota figures: Azure's 6 RPM per 1,000 TPM; 32 windows of a compressed minute (30 kept).
EMBEDDING = ("--tpm", "30000", "--rpm", "180", "--item-tokens", "100")
SMALL = ("--tpm", "2000", "--rpm", "12", "--item-tokens", "10")
QUICK_WINDOWS = ("--window", "3", "--windows", "6")
HOSTS_ONLY = ("--skip-naive", "--header-fed")
RUNS = (
    Run(
        "embedding_1_host",
        "bench.embedding_utilization",
        (*EMBEDDING, "--window", "4", "--windows", "32"),
        (*EMBEDDING, *QUICK_WINDOWS),
    ),
    # Hosts on one quota: sharing it through the ledger in Cosmos DB, then each on the
    # rate-limit headers alone (--header-fed, the baseline) in the same run.
    Run(
        "embedding_3_hosts",
        "bench.embedding_utilization",
        (*EMBEDDING, "--window", "4", "--windows", "32", "--hosts", "3", *HOSTS_ONLY),
        (*EMBEDDING, *QUICK_WINDOWS, "--hosts", "3", *HOSTS_ONLY),
    ),
    Run(
        "embedding_10_hosts",
        "bench.embedding_utilization",
        (*EMBEDDING, "--window", "4", "--windows", "32", "--hosts", "10", *HOSTS_ONLY),
        (*EMBEDDING, *QUICK_WINDOWS, "--hosts", "10", *HOSTS_ONLY),
    ),
    Run(
        "small_items",
        "bench.embedding_utilization",
        (*SMALL, "--window", "4", "--windows", "32"),
        (*SMALL, *QUICK_WINDOWS),
    ),
    Run(
        "classify_batching",
        "bench.classify_batching",
        ("--sizes", "1,10", "--window", "4", "--windows", "6"),
        ("--sizes", "1,10", "--window", "3", "--windows", "3"),
    ),
    # Interactive calls first: chat on the deployment a classification job fills, with the
    # policy and without it (its baseline) in the same run.
    Run(
        "chat_under_jobs",
        "bench.chat_under_jobs",
        ("--window", "6", "--windows", "8"),
        ("--window", "3", "--windows", "3"),
    ),
    # Learned output caps against the fixed 4,096, answers of median 250 / p99 1,500 tokens.
    Run(
        "chat_caps",
        "bench.chat_caps",
        ("--window", "6", "--windows", "20"),
        ("--window", "3", "--windows", "4"),
    ),
    Run("chat_ttfb", "bench.chat_ttfb", ("--requests", "300"), ("--requests", "40")),
    Run(
        "gateway_latency",
        "bench.gateway_latency",
        ("--requests", "200"),
        ("--requests", "40", "--warmup", "5"),
    ),
    Run("host_cpu", "bench.host_cpu", ("--requests", "300"), ("--requests", "60")),
    # The deployed default (TRACE_SAMPLE_RATIO 0.1 in infra/main.bicep: a tenth of the traces
    # that come without a caller's, every metric), then every trace sampled.
    Run(
        "telemetry_cost",
        "bench.telemetry_cost",
        ("--rounds", "40", "--requests", "300", "--sample", "0.1"),
        ("--rounds", "3", "--requests", "150", "--stream-requests", "60", "--sample", "0.1"),
    ),
    # The telemetry calls of one chat in-process: the floor under telemetry_cost's figure.
    Run(
        "telemetry_calls",
        "bench.telemetry_calls",
        ("--rounds", "10", "--chats", "20000"),
        ("--rounds", "2", "--chats", "2000"),
    ),
    # Telemetry off in both hosts: what the bench reads when nothing differs (its resolution).
    Run(
        "telemetry_cost_control",
        "bench.telemetry_cost",
        ("--rounds", "40", "--requests", "300", "--stream-requests", "0", "--control"),
        ("--rounds", "3", "--requests", "150", "--stream-requests", "0", "--control"),
    ),
    Run(
        "telemetry_cost_all_traces",
        "bench.telemetry_cost",
        ("--rounds", "40", "--requests", "300", "--stream-requests", "0"),
        ("--rounds", "3", "--requests", "150", "--stream-requests", "0"),
    ),
    Run("batch_ingest", "bench.batch_ingest", ("--lines", "100000"), ("--lines", "5000")),
    Run(
        "embed_memory",
        "bench.embed_memory",
        ("--jobs", "4", "--items", "2048"),
        ("--jobs", "4", "--items", "1024"),
    ),
    Run(
        "simulator_throughput",
        "bench.simulator_throughput",
        ("--requests", "2000"),
        ("--requests", "200"),
    ),
    Run(
        "usage_report",
        "bench.usage_report",
        ("--records", "2000", "--synthetic", "200000"),
        ("--records", "200", "--synthetic", "7000"),
    ),
    Run(
        "team_budget",
        "bench.team_budget",
        ("--runs", "5", "--calls", "2000"),
        ("--runs", "2", "--callers", "20", "--calls", "300"),
    ),
)


def run_one(run: Run, quick: bool) -> dict[str, Any]:
    args = run.quick if quick else run.full
    print(f"bench: {run.name} ({run.module} {' '.join(args)})", file=sys.stderr, flush=True)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", run.module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or len(lines) != 1:
        # One benchmark failing must not lose the others' figures: it is recorded, and the
        # run exits non-zero at the end.
        print(f"bench: {run.name} failed:\n{done.stderr[-3000:]}", file=sys.stderr, flush=True)
        return {"error": f"exit {done.returncode}: {done.stderr[-1500:]}", "args": list(args)}
    result: dict[str, Any] = json.loads(lines[0])
    result["bench_seconds"] = round(time.monotonic() - started, 1)
    result["args"] = list(args)
    return result


def kept_runs(out: Path, measured: set[str]) -> dict[str, Any]:
    """The runs of an earlier results file that this invocation does not measure again."""
    if not out.exists():
        return {}
    earlier: dict[str, Any] = json.loads(out.read_text()).get("runs", {})
    return {name: result for name, result in earlier.items() if name not in measured}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (smoke, not figures)")
    parser.add_argument("--only", default="", help="comma-separated run names")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "performance.png")
    args = parser.parse_args(argv)
    chosen = [r for r in RUNS if not args.only or r.name in args.only.split(",")]
    started = time.monotonic()
    about = conditions(quick=args.quick)
    # --only measures some runs again and keeps the others' figures as they were; each run so
    # measured carries its own conditions (the top level's are this invocation's).
    runs: dict[str, Any] = kept_runs(args.out, {r.name for r in chosen}) if args.only else {}
    for run in chosen:
        runs[run.name] = run_one(run, args.quick)
        if args.only:
            runs[run.name]["conditions"] = about
        done = {name: result for name, result in runs.items() if "error" not in result}
        results = {
            **headline(done),
            "failed": sorted(set(runs) - set(done)),
            "conditions": {**about, "total_seconds": round(time.monotonic() - started, 1)},
            "runs": runs,
        }
        args.out.write_text(json.dumps(results, indent=2) + "\n")  # after each: kept if cut
    table(results)
    if "embedding_1_host" in done:
        draw(done, args.png)
    print(f"bench: wrote {args.out}" + (f" and {args.png}" if "embedding_1_host" in done else ""))
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
