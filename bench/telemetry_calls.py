"""What the telemetry calls of one chat cost in-process, without a host: the floor under
bench/telemetry_cost.py's figure, which also holds the exporters' threads and whatever else
differs between two host processes.

    .venv/bin/python -m bench.telemetry_calls [--rounds 10] [--chats 20000]

Each round runs two fresh interpreters (the SDK's providers are process-global and set once),
"off" with the OpenTelemetry API's no-op providers (the app with no destination) and "on" with
the SDK's as shared/telemetry/setup.py makes them on Azure: a tenth of the traces sampled
(parent-based), spans batched and encoded to OTLP protobuf as the exporter would send them
(not sent), every metric recorded (collected once at the end). Each interpreter makes, per chat,
the calls the app makes for a non-streamed chat with a team key (shared/http/boundary.py,
shared/aoai/backends.py, shared/metering/call.py): the call's span and its `traceresponse`
header, the team on the span, the upstream attempt's span and request count, the usage write's
store span, and the call's token and duration metrics; and charges its CPU time (process_time,
every thread, the span processor's included) over `--chats` of them after a warm-up. The figure
is the mean of the rounds' "on" minus "off" microseconds per chat, with its 95 % bootstrap
interval (bench/telemetry_cost.py `mean_with_interval`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench._jobs import print_result
from bench._proc import machine
from bench._serve import ROOT
from bench.telemetry_cost import mean_with_interval

WARM_UP = 2_000
SAMPLE = "0.1"  # TRACE_SAMPLE_RATIO's default in infra/main.bicep


def _providers() -> Any:
    """The SDK's providers as deployed, with an exporter that encodes and drops; the reader."""
    from opentelemetry import metrics, trace
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Encoding(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            encode_spans(spans).SerializePartialToString()
            return SpanExportResult.SUCCESS

    tracers = TracerProvider()  # the sampler from OTEL_TRACES_SAMPLER, as setup.py leaves it
    tracers.add_span_processor(BatchSpanProcessor(Encoding()))
    trace.set_tracer_provider(tracers)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return tracers, reader


def side(on: bool, chats: int) -> float:
    """Microseconds of CPU per chat in this interpreter, telemetry `on` or off."""
    if on:
        os.environ["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
        os.environ["OTEL_TRACES_SAMPLER_ARG"] = SAMPLE
        tracers, reader = _providers()
    import openai

    from shared.core.models import Usage
    from shared.telemetry import names, record, tracing

    client = openai.AsyncOpenAI(api_key="unused", base_url="http://127.0.0.1:9/openai/v1/")
    headers = {"content-type": "application/json", "api-key": "unused"}
    usage = Usage(prompt_tokens=30, completion_tokens=16, total_tokens=46)

    def chat() -> None:
        span = tracing.start_http_span("POST", "/api/chat", headers)
        with tracing.current(span):
            tracing.annotate({names.TEAM: "local"})
            with tracing.upstream_span("chat", "gpt-4o", "primary", client):
                pass
            with tracing.store_span("upsert_item", "usage"):
                pass
            attributes = record.call_attributes(
                operation="chat",
                source="chat",
                deployment="gpt-4o",
                backend="primary",
                team="local",
                outcome="ok",
            )
            record.record_call(attributes, usage, duration=0.012)
            tracing.response_header(span)
        tracing.end_http_span(span, 200, None)

    for _ in range(WARM_UP):
        chat()
    started = time.process_time()
    for _ in range(chats):
        chat()
    if on:
        tracers.force_flush()  # the batched spans encoded, charged to the run
        reader.get_metrics_data()  # one collection, as an export would make
    return (time.process_time() - started) * 1e6 / chats


def measure(on: bool, chats: int) -> float:
    command = ["-m", "bench.telemetry_calls", "--side", "on" if on else "off"]
    ran = subprocess.run(
        [sys.executable, *command, "--chats", str(chats)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=600,
    )
    return float(json.loads(ran.stdout)["us_per_chat"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10, help="pairs of interpreters")
    parser.add_argument("--chats", type=int, default=20_000, help="chats an interpreter makes")
    parser.add_argument("--side", choices=("on", "off"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side is not None:
        print(json.dumps({"us_per_chat": side(args.side == "on", args.chats)}))
        return
    off: list[float] = []
    on: list[float] = []
    for n in range(args.rounds):  # off first in half the rounds
        for is_on in (False, True) if n % 2 == 0 else (True, False):
            (on if is_on else off).append(measure(is_on, args.chats))
    added = mean_with_interval([b - a for a, b in zip(off, on, strict=True)])
    print_result(
        {
            "benchmark": "telemetry_calls",
            "workload": "the telemetry calls of one non-streamed chat with a team key, "
            f"in-process; on: the SDK as deployed ({SAMPLE} of the traces, spans encoded to "
            "OTLP, every metric)",
            **machine(),
            "rounds": args.rounds,
            "chats_per_round": args.chats,
            "off_us_per_chat": [round(v, 1) for v in off],
            "on_us_per_chat": [round(v, 1) for v in on],
            "telemetry_calls_added_us_per_chat": round(added["mean_ms"], 1),
            "telemetry_calls_added_us_per_chat_ci95": [round(v, 1) for v in added["ci95_ms"]],
        }
    )


if __name__ == "__main__":
    main()
