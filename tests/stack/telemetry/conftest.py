"""A host that exports its metrics and traces to a local OTLP receiver (devstack/
otlp_receiver.py) every half second: what the tests here read, never log lines."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from devstack.hosted_app import AppHost, fresh_queues
from devstack.otlp_receiver import OtlpReceiver
from tests.support.hosts import HOST_SETTINGS, app_host

EXPORT_MS = 500


def exporting_to(otlp: OtlpReceiver) -> dict[str, str]:
    """The settings that make a host export to `otlp` every EXPORT_MS."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_METRIC_EXPORT_INTERVAL": str(EXPORT_MS),
    }


@pytest.fixture(scope="module")
def otlp() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def host(
    otlp: OtlpReceiver, app_environ: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppHost]:
    environ = {
        **app_environ,
        **HOST_SETTINGS,
        # Queues of its own: no job message left by another module is counted here.
        **fresh_queues("tel"),
        **exporting_to(otlp),
    }
    with app_host(environ, tmp_path_factory.mktemp("telemetry")) as running:
        yield running


@pytest.fixture
async def http(host: AppHost) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=host.url, headers=host.headers(), timeout=60) as client:
        yield client
