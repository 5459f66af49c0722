"""Where the app's metrics and traces go: the standard OpenTelemetry and Application Insights
variables, read and checked once at start-up (docs/telemetry.md).

- `APPLICATIONINSIGHTS_CONNECTION_STRING` (the infra sets it): Azure Monitor, authenticated
  with the app's managed identity (the client id from `APPLICATIONINSIGHTS_AUTHENTICATION_
  STRING`, else `AZURE_CLIENT_ID`): the resource has local authentication off, so the key in the
  connection string alone would be refused.
- `OTEL_EXPORTER_OTLP_ENDPOINT`: any OTLP collector, `http/protobuf` (the one protocol
  installed: `grpc` is refused at start-up, not dropped silently).
- `OTEL_METRIC_EXPORT_INTERVAL` (ms), `OTEL_SERVICE_NAME`, `OTEL_SDK_DISABLED`; sampling is the
  SDK's own `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (default: parent-based, all).

Neither destination set: no exporter, and the OpenTelemetry API's no-op meters and tracers.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Literal

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.core.settings import SettingsError


class TelemetrySettings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    otel_sdk_disabled: bool = Field(default=False, description="true: export nothing.")
    otel_exporter_otlp_endpoint: AnyHttpUrl | None = Field(
        default=None,
        description="An OTLP/HTTP collector's base URL; /v1/metrics and /v1/traces are added.",
    )
    otel_exporter_otlp_protocol: Literal["http/protobuf"] = Field(
        default="http/protobuf",
        description="The OTLP protocol: http/protobuf only (grpc is not installed).",
    )
    otel_metric_export_interval: int = Field(
        default=60_000, ge=100, description="Milliseconds between metric exports."
    )
    otel_service_name: str = Field(
        default="aoai-functions", min_length=1, description="service.name (cloud_RoleName)."
    )
    applicationinsights_connection_string: SecretStr | None = Field(
        default=None, description="Application Insights: set by the infra."
    )
    applicationinsights_authentication_string: str | None = Field(
        default=None,
        description="'ClientId=<managed identity client id>;Authorization=AAD' (the infra's).",
    )
    azure_client_id: str | None = Field(default=None, description="The app's managed identity.")

    @property
    def exporting(self) -> bool:
        """Whether any destination is set (and the SDK not disabled)."""
        return not self.otel_sdk_disabled and (
            self.otel_exporter_otlp_endpoint is not None
            or self.applicationinsights_connection_string is not None
        )

    def identity_client_id(self) -> str | None:
        """The managed identity that sends to Application Insights."""
        pairs = dict(
            part.split("=", 1)
            for part in (self.applicationinsights_authentication_string or "").split(";")
            if "=" in part
        )
        found = {key.strip().lower(): value.strip() for key, value in pairs.items()}
        return found.get("clientid") or self.azure_client_id


def load_telemetry_settings(environ: Mapping[str, str]) -> TelemetrySettings:
    """The telemetry settings in `environ`; SettingsError naming a bad one."""
    wanted = {k: v for k, v in environ.items() if v != ""}
    try:
        return TelemetrySettings.model_validate(
            {k.lower(): v for k, v in wanted.items() if k.lower() in TelemetrySettings.model_fields}
        )
    except ValidationError as error:
        names = ", ".join(str(item["loc"][0]).upper() for item in error.errors() if item["loc"])
        raise SettingsError(f"invalid telemetry setting {names} (see docs/telemetry.md)") from None


@functools.cache
def get_telemetry_settings() -> TelemetrySettings:
    return load_telemetry_settings(os.environ)
