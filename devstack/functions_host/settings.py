"""Read `local.settings.json` and `host.json` the way the Functions host does.

`local.settings.json` `Values` become environment variables (before the app is imported, as on
Azure, where app settings are the environment). `host.json` gives the HTTP route prefix, the
queue options and the function timeout.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

# The setting that holds the function key (printed at start-up, checked on every
# `function` request).
FUNCTION_KEY_SETTING = "LOCAL_FUNCTION_KEY"
# The setting that holds the master key: the only key an `admin` route takes (as on Azure, where
# a function or host key is refused there); it opens `function` routes too.
MASTER_KEY_SETTING = "LOCAL_MASTER_KEY"


class HostConfigError(Exception):
    """The app's settings or host.json cannot be used; the message says which and why."""


@dataclass(frozen=True)
class QueueOptions:
    """`extensions.queues` of host.json, with the Functions host defaults."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_polling_interval: timedelta = timedelta(minutes=1)
    visibility_timeout: timedelta = timedelta(0)
    max_dequeue_count: int = 5
    message_encoding: str = "base64"

    @property
    def max_in_flight(self) -> int:
        return self.batch_size + self.new_batch_threshold


@dataclass(frozen=True)
class HostSettings:
    app_dir: Path
    values: Mapping[str, str]
    local_http_port: int | None = None
    route_prefix: str = "api"
    queues: QueueOptions = field(default_factory=QueueOptions)
    function_timeout: timedelta | None = None
    cors_origins: tuple[str, ...] = ()
    cors_credentials: bool = False
    host_json: Mapping[str, Any] = field(default_factory=dict)


_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?$")


def parse_timespan(text: str) -> timedelta:
    """A .NET TimeSpan as host.json writes it: `hh:mm:ss`, `d.hh:mm:ss` or `hh:mm:ss.fff`."""
    match = _TIMESPAN.match(text.strip())
    if match is None:
        raise HostConfigError(f"host.json: {text!r} is not a time span like '00:00:30'")
    days, hours, minutes, seconds, fraction = match.groups()
    return timedelta(
        days=int(days or 0),
        hours=int(hours),
        minutes=int(minutes),
        seconds=int(seconds),
        microseconds=int((fraction or "0").ljust(6, "0")[:6]),
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise HostConfigError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise HostConfigError(f"{path} must hold a JSON object")
    return data


def _queue_options(section: Mapping[str, Any]) -> QueueOptions:
    batch_size = int(section.get("batchSize", 16))
    if not 1 <= batch_size <= 32:
        raise HostConfigError("host.json: extensions.queues.batchSize must be 1..32")
    # The host's default is batchSize/2 per vCPU; locally one "vCPU" keeps the cap predictable.
    threshold = int(section.get("newBatchThreshold", batch_size // 2))
    encoding = str(section.get("messageEncoding", "base64")).lower()
    if encoding not in ("base64", "none"):
        raise HostConfigError("host.json: extensions.queues.messageEncoding must be base64|none")
    return QueueOptions(
        batch_size=batch_size,
        new_batch_threshold=max(threshold, 0),
        max_polling_interval=parse_timespan(section.get("maxPollingInterval", "00:01:00")),
        visibility_timeout=parse_timespan(section.get("visibilityTimeout", "00:00:00")),
        max_dequeue_count=int(section.get("maxDequeueCount", 5)),
        message_encoding=encoding,
    )


def load_settings(app_dir: Path) -> HostSettings:
    """Read both files of `app_dir`. host.json is required; local.settings.json is optional."""
    host_path = app_dir / "host.json"
    if not host_path.is_file():
        raise HostConfigError(f"{host_path} is missing: a function app needs a host.json")
    host_json = _read_json(host_path)
    if host_json.get("version") != "2.0":
        raise HostConfigError(f"{host_path}: 'version' must be \"2.0\"")
    values: dict[str, str] = {}
    local_port: int | None = None
    host_section: dict[str, Any] = {}
    local_path = app_dir / "local.settings.json"
    if local_path.is_file():
        local = _read_json(local_path)
        if local.get("IsEncrypted"):
            raise HostConfigError(f"{local_path} is encrypted; decrypt it or set IsEncrypted false")
        raw_values = local.get("Values") or {}
        values = {str(k): "" if v is None else str(v) for k, v in raw_values.items()}
        host_section = local.get("Host") or {}
        port = host_section.get("LocalHttpPort")
        local_port = int(port) if port is not None else None
    extensions = host_json.get("extensions") or {}
    prefix = str((extensions.get("http") or {}).get("routePrefix", "api")).strip("/")
    timeout = host_json.get("functionTimeout")
    return HostSettings(
        app_dir=app_dir,
        values=values,
        local_http_port=local_port,
        route_prefix=prefix,
        queues=_queue_options(extensions.get("queues") or {}),
        function_timeout=parse_timespan(timeout) if timeout else None,
        cors_origins=tuple(o.strip() for o in str(host_section.get("CORS", "")).split(",") if o),
        cors_credentials=bool(host_section.get("CORSCredentials", False)),
        host_json=host_json,
    )


def apply_values(values: Mapping[str, str], environ: MutableMapping[str, str]) -> None:
    """Put `Values` into the environment. As with Core Tools, a variable already set wins."""
    for key, value in values.items():
        environ.setdefault(key, value)


_APP_SETTING_REF = re.compile(r"%([^%]+)%")


def resolve_references(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace `%NAME%` with the app setting NAME, as the host does for binding attributes."""
    env = os.environ if environ is None else environ

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise HostConfigError(f"app setting {name!r} (referenced as %{name}%) is not set")
        return env[name]

    return _APP_SETTING_REF.sub(lookup, text)
