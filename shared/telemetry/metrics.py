"""The app's instruments, one of each, on the global MeterProvider (shared/telemetry/setup.py).

Created on first use from the OpenTelemetry API: with no provider configured they are the
API's no-op instruments. Names and attribute keys come from shared/telemetry/names.py only.
Bucket boundaries follow the GenAI semantic conventions' advice.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from opentelemetry import metrics
from opentelemetry.metrics import Counter, Histogram, Meter, _Gauge

from shared.telemetry import names

# gen_ai.client.token.usage: powers of 4 from 1 to 4^13 tokens.
TOKEN_BUCKETS = tuple(float(4**k) for k in range(14))
# gen_ai.client.operation.duration and time to first chunk: 10 ms doubling to ~82 s.
SECONDS_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip


@dataclass(frozen=True)
class Instruments:
    token_usage: Histogram
    operation_duration: Histogram
    time_to_first_chunk: Histogram
    upstream_requests: Counter
    spillovers: Counter
    job_items: Counter
    limiter_wait: Histogram
    limiter_queue_depth: _Gauge


def _meter() -> Meter:
    return metrics.get_meter("shared.telemetry")


@functools.cache
def instruments() -> Instruments:
    """The process's instruments (the global provider's, or no-ops before one is set)."""
    meter = _meter()
    return Instruments(
        token_usage=meter.create_histogram(
            names.TOKEN_USAGE,
            unit="{token}",
            description="Tokens per Azure OpenAI call, by gen_ai.token.type.",
            explicit_bucket_boundaries_advisory=list(TOKEN_BUCKETS),
        ),
        operation_duration=meter.create_histogram(
            names.OPERATION_DURATION,
            unit="s",
            description="Seconds from a call's start to its last byte, failovers included.",
            explicit_bucket_boundaries_advisory=list(SECONDS_BUCKETS),
        ),
        time_to_first_chunk=meter.create_histogram(
            names.TIME_TO_FIRST_CHUNK,
            unit="s",
            description="Seconds from a streamed call's start to its first content chunk.",
            explicit_bucket_boundaries_advisory=list(SECONDS_BUCKETS),
        ),
        upstream_requests=meter.create_counter(
            names.UPSTREAM_REQUESTS,
            unit="{request}",
            description="HTTP requests sent to Azure OpenAI, each attempt, by app.outcome.",
        ),
        spillovers=meter.create_counter(
            names.SPILLOVERS,
            unit="{request}",
            description="Calls moved from one backend (app.backend) to another (app.backend.to).",
        ),
        job_items=meter.create_counter(
            names.JOB_ITEMS, unit="{item}", description="Job items ended, by app.outcome."
        ),
        limiter_wait=meter.create_histogram(
            names.LIMITER_WAIT,
            unit="s",
            description="Seconds a call waited for the deployment's quota in this instance.",
            explicit_bucket_boundaries_advisory=list(SECONDS_BUCKETS),
        ),
        limiter_queue_depth=meter.create_gauge(
            names.LIMITER_QUEUE_DEPTH,
            unit="{request}",
            description="Calls waiting for the deployment's quota in this instance.",
        ),
    )
