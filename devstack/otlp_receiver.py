"""A local OTLP/HTTP receiver (http/protobuf): what the app exports, kept for a look.

For the tests, the benchmarks and `make run` (docs/telemetry.md): the app exports to
`OTEL_EXPORTER_OTLP_ENDPOINT`, and this decodes each request with the OpenTelemetry proto
package into plain records: metric points (`points(name)`) and spans (`spans()`). Every byte
received is kept too (`raw()`), so a test can search it for text that must never leave the app.

Loopback only, a thread of its own (it answers while the test's event loop waits), no
dependency beyond the proto package: `with OtlpReceiver() as otlp: ... otlp.endpoint`.

`python -m devstack.otlp_receiver --port 4318` prints what arrives, one line per metric point
or span, for a look at what `make run` exports.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

SPAN_KINDS = {
    0: "unspecified",
    1: "internal",
    2: "server",
    3: "client",
    4: "producer",
    5: "consumer",
}


@dataclass(frozen=True)
class Point:
    """One exported data point: a counter's or gauge's `value`, a histogram's `sum`/`count`."""

    metric: str
    unit: str
    attributes: dict[str, Any]
    value: float | None = None
    sum: float | None = None
    count: int | None = None
    resource: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Span:
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_span_id: str  # "" for a root span
    name: str
    kind: str
    attributes: dict[str, Any]
    links: list[tuple[str, str]]  # (trace_id, span_id) of each link
    status: int
    resource: dict[str, Any] = field(default_factory=dict)
    start_ns: int = 0  # Unix nanoseconds
    end_ns: int = 0


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for pair in pairs:
        assert isinstance(pair, KeyValue)
        found[pair.key] = _value(pair.value)
    return found


def _points(request: ExportMetricsServiceRequest) -> list[Point]:
    out: list[Point] = []
    for resource_metrics in request.resource_metrics:
        resource = _attributes(resource_metrics.resource.attributes)
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                data = metric.WhichOneof("data")
                if data in ("sum", "gauge"):
                    for p in getattr(metric, data).data_points:
                        number = p.as_double if p.WhichOneof("value") == "as_double" else p.as_int
                        out.append(
                            Point(
                                metric.name,
                                metric.unit,
                                _attributes(p.attributes),
                                value=number,
                                resource=resource,
                            )
                        )
                elif data == "histogram":
                    for h in metric.histogram.data_points:
                        out.append(
                            Point(
                                metric.name,
                                metric.unit,
                                _attributes(h.attributes),
                                sum=h.sum,
                                count=h.count,
                                resource=resource,
                            )
                        )
    return out


def _spans(request: ExportTraceServiceRequest) -> list[Span]:
    out: list[Span] = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope in resource_spans.scope_spans:
            for s in scope.spans:
                out.append(
                    Span(
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_span_id=s.parent_span_id.hex(),
                        name=s.name,
                        kind=SPAN_KINDS.get(s.kind, str(s.kind)),
                        attributes=_attributes(s.attributes),
                        links=[(link.trace_id.hex(), link.span_id.hex()) for link in s.links],
                        status=s.status.code,
                        resource=resource,
                        start_ns=s.start_time_unix_nano,
                        end_ns=s.end_time_unix_nano,
                    )
                )
    return out


class OtlpReceiver:
    """OTLP/HTTP with protobuf bodies on 127.0.0.1: `/v1/metrics` and `/v1/traces`."""

    def __init__(self, port: int = 0, on_receive: Callable[[str, list[Any]], None] | None = None):
        self._lock = threading.Lock()
        self._raw: list[bytes] = []
        self._points: list[Point] = []
        self._spans: list[Span] = []
        self._on_receive = on_receive
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        """The value for OTEL_EXPORTER_OTLP_ENDPOINT (the exporters add /v1/metrics...)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def raw(self) -> bytes:
        """Every request body received, decompressed, concatenated."""
        with self._lock:
            return b"".join(self._raw)

    def points(self, metric: str | None = None) -> list[Point]:
        with self._lock:
            return [p for p in self._points if metric is None or p.metric == metric]

    def latest(self, metric: str) -> list[Point]:
        """The newest point of each attribute set: with cumulative temporality (the OTLP
        default) every export repeats the totals so far, so this is the total per series."""
        newest: dict[tuple[tuple[str, str], ...], Point] = {}
        for point in self.points(metric):
            newest[tuple(sorted((k, repr(v)) for k, v in point.attributes.items()))] = point
        return list(newest.values())

    def spans(self) -> list[Span]:
        with self._lock:
            return list(self._spans)

    def wait_for(self, found: Callable[[], bool], timeout: float = 20.0) -> bool:
        """Poll `found` until it holds or `timeout` passes (exports come every interval)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found():
                return True
            time.sleep(0.1)
        return found()

    def clear(self) -> None:
        with self._lock:
            self._raw.clear()
            self._points.clear()
            self._spans.clear()

    def _keep(self, path: str, body: bytes) -> bytes | None:
        """Decode one export; the response body, or None for an unknown path or bad body."""
        try:
            if path == "/v1/metrics":
                metrics = ExportMetricsServiceRequest.FromString(body)
                points = _points(metrics)
                with self._lock:
                    self._raw.append(body)
                    self._points.extend(points)
                if self._on_receive is not None:
                    self._on_receive("metrics", points)
                answer: bytes = ExportMetricsServiceResponse().SerializeToString()
                return answer
            if path == "/v1/traces":
                traces = ExportTraceServiceRequest.FromString(body)
                spans = _spans(traces)
                with self._lock:
                    self._raw.append(body)
                    self._spans.extend(spans)
                if self._on_receive is not None:
                    self._on_receive("traces", spans)
                answer = ExportTraceServiceResponse().SerializeToString()
                return answer  # noqa: RET504 (typed: protobuf has no stubs)
        except DecodeError:
            return None
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                answer = receiver._keep(self.path.split("?")[0], body)
                if answer is None:
                    self.send_response(404 if self.path not in _PATHS else 400)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet: the tests read the records, not a log

        return Handler


_PATHS = ("/v1/metrics", "/v1/traces")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=4318)
    args = parser.parse_args()

    def show(kind: str, records: list[Any]) -> None:
        for record in records:
            if isinstance(record, Point):
                figure = record.value if record.value is not None else (record.sum, record.count)
                print(f"metric {record.metric} {figure} {record.attributes}", flush=True)
            else:
                print(f"span {record.name} [{record.kind}] trace {record.trace_id}", flush=True)

    with OtlpReceiver(args.port, on_receive=show) as receiver:
        print(f"OTLP receiver on {receiver.endpoint} (Ctrl-C stops)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
