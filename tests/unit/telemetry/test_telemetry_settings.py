"""Where telemetry goes, from the standard variables (shared/telemetry/settings.py)."""

from __future__ import annotations

import pytest

from shared.core.settings import SettingsError
from shared.telemetry.settings import load_telemetry_settings

CONNECTION = "InstrumentationKey=00000000-0000-0000-0000-000000000000"


def test_nothing_set_exports_nothing() -> None:
    assert not load_telemetry_settings({}).exporting
    assert not load_telemetry_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}).exporting


def test_either_destination_turns_it_on_and_the_sdk_switch_turns_it_off() -> None:
    otlp = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert load_telemetry_settings(otlp).exporting
    assert load_telemetry_settings({"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION}).exporting
    assert not load_telemetry_settings({**otlp, "OTEL_SDK_DISABLED": "true"}).exporting


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "10"),
    ],
)
def test_a_bad_value_stops_start_up_with_its_name(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_telemetry_settings({name: value})


def test_the_identity_comes_from_the_authentication_string_else_azure_client_id() -> None:
    both = {
        "APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION,
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "ClientId=abc-123;Authorization=AAD",
        "AZURE_CLIENT_ID": "other",
    }
    assert load_telemetry_settings(both).identity_client_id() == "abc-123"
    del both["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
    assert load_telemetry_settings(both).identity_client_id() == "other"


def test_the_connection_string_is_never_shown() -> None:
    settings = load_telemetry_settings({"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION})
    assert "InstrumentationKey" not in repr(settings)
