"""The process's OpenTelemetry providers, configured once from TelemetrySettings.

One MeterProvider and one TracerProvider, set as the global ones, with an exporter per
destination: OTLP/HTTP (`OTEL_EXPORTER_OTLP_ENDPOINT`) and Azure Monitor
(`APPLICATIONINSIGHTS_CONNECTION_STRING`, with the managed identity), either or both. The
store's calls are spans of the app's own (shared/telemetry/tracing.py `store_span`, wired in
by shared/runtime.py), made only inside a sampled trace; azure-core's OpenTelemetry plugin is
not used: it wraps every SDK call, sampled or not, in two spans (the method's and its HTTP
request's), which cost more host CPU per chat than the target allows (docs/telemetry.md).

No LoggerProvider: the Functions host already sends the app's log records to Application
Insights, and they are not sent twice. Nothing here records a prompt or a completion.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
from dataclasses import dataclass

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from shared.telemetry.settings import TelemetrySettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Telemetry:
    """The providers set up for this process; `shutdown` exports what is left."""

    meters: MeterProvider
    tracers: TracerProvider
    destinations: tuple[str, ...]

    def flush(self) -> None:
        self.meters.force_flush()
        self.tracers.force_flush()

    def shutdown(self) -> None:
        self.meters.shutdown()
        self.tracers.shutdown()


_configured: Telemetry | None = None


def configure_telemetry(settings: TelemetrySettings) -> Telemetry | None:
    """Set the global providers once (a second call returns the first's); None when no
    destination is set: the API's no-op meters and tracers then cost next to nothing."""
    global _configured
    if _configured is not None or not settings.exporting:
        return _configured
    resource = Resource.create(
        {
            "service.name": settings.otel_service_name,
            # One per Functions instance (the host's own id on Azure), as App Insights'
            # cloud_RoleInstance.
            "service.instance.id": os.environ.get("WEBSITE_INSTANCE_ID")
            or f"{socket.gethostname()}-{os.getpid()}",
        }
    )
    metric_exporters: list[MetricExporter] = []
    span_processors: list[SpanProcessor] = []
    destinations: list[str] = []
    if settings.otel_exporter_otlp_endpoint is not None:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        base = str(settings.otel_exporter_otlp_endpoint).rstrip("/")
        metric_exporters.append(OTLPMetricExporter(endpoint=f"{base}/v1/metrics"))
        span_processors.append(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces")))
        destinations.append("otlp")
    if settings.applicationinsights_connection_string is not None:
        from azure.identity import ManagedIdentityCredential
        from azure.monitor.opentelemetry.exporter import (
            AzureMonitorMetricExporter,
            AzureMonitorTraceExporter,
        )

        azure = {
            "connection_string": settings.applicationinsights_connection_string.get_secret_value(),
            "credential": ManagedIdentityCredential(client_id=settings.identity_client_id()),
        }
        metric_exporters.append(AzureMonitorMetricExporter(**azure))
        span_processors.append(BatchSpanProcessor(AzureMonitorTraceExporter(**azure)))
        destinations.append("azure_monitor")
    readers = [
        PeriodicExportingMetricReader(
            exporter, export_interval_millis=settings.otel_metric_export_interval
        )
        for exporter in metric_exporters
    ]
    meters = MeterProvider(resource=resource, metric_readers=readers)
    tracers = TracerProvider(resource=resource)  # sampler: OTEL_TRACES_SAMPLER, else all
    for processor in span_processors:
        tracers.add_span_processor(processor)
    metrics.set_meter_provider(meters)
    trace.set_tracer_provider(tracers)
    _configured = Telemetry(meters, tracers, tuple(destinations))
    atexit.register(_configured.shutdown)
    log.info("telemetry: exporting metrics and traces to %s", ", ".join(destinations))
    return _configured
