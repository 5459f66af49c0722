"""The local OTLP receiver decodes what the OpenTelemetry SDK's own OTLP/HTTP exporters send
(protobuf over loopback, no stack needed)."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from devstack.otlp_receiver import OtlpReceiver


def test_metrics_and_spans_from_the_sdk_exporters_are_decoded() -> None:
    with OtlpReceiver() as otlp:
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"{otlp.endpoint}/v1/metrics"),
            export_interval_millis=60_000,
        )
        meters = MeterProvider(metric_readers=[reader])
        counter = meters.get_meter("t").create_counter("app.test.things", unit="{thing}")
        counter.add(3, {"app.team": "search"})
        counter.add(4, {"app.team": "search"})
        histogram = meters.get_meter("t").create_histogram("app.test.seconds", unit="s")
        histogram.record(0.5)
        histogram.record(1.5)
        meters.force_flush()
        tracers = TracerProvider()
        tracers.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{otlp.endpoint}/v1/traces"))
        )
        tracer = tracers.get_tracer("t")
        with (
            tracer.start_as_current_span("outer") as outer,
            tracer.start_as_current_span("inner", attributes={"k": "marker-7f3a"}),
        ):
            pass
        meters.shutdown()
        tracers.shutdown()

        # Cumulative: the flush and the shutdown each export the totals so far.
        assert [p.value for p in otlp.points("app.test.things")] == [7, 7]
        things = otlp.latest("app.test.things")
        assert [(p.value, p.attributes) for p in things] == [(7, {"app.team": "search"})]
        seconds = otlp.latest("app.test.seconds")
        assert [(p.sum, p.count) for p in seconds] == [(2.0, 2)]
        spans = {s.name: s for s in otlp.spans()}
        assert spans["inner"].parent_span_id == spans["outer"].span_id
        assert spans["inner"].trace_id == f"{outer.get_span_context().trace_id:032x}"
        assert spans["inner"].attributes == {"k": "marker-7f3a"}
        assert b"marker-7f3a" in otlp.raw()
