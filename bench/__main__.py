"""`python -m bench`: run every benchmark; each prints one JSON object on its own line."""

from __future__ import annotations

import sys

from bench import (
    batch_ingest,
    chat_ttfb,
    classify_batching,
    embedding_utilization,
    simulator_throughput,
    usage_report,
)

BENCHMARKS = (
    simulator_throughput.main,
    chat_ttfb.main,
    batch_ingest.main,
    embedding_utilization.main,
    classify_batching.main,
    usage_report.main,
)


def main() -> int:
    for run in BENCHMARKS:
        run([])
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
