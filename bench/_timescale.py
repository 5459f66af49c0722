"""Compressed time for the quota benchmarks: a "minute" of `window` seconds on both sides.

Measuring quota use in at least ten fixed windows of the quota's own length takes ten
minutes at Azure's 60 s. So the simulator's `rate_limit.window_seconds` is shortened to
`window` (its request window is a sixth of it) and its TPM/RPM are scaled by 60 / `window`,
so each short window holds what a minute holds on Azure. The app keeps `AOAI_QUOTAS` as
Azure grants it (per minute), and its limiters count the same compressed minute through the
app's own setting `AOAI_QUOTA_WINDOW_SECONDS` (every limiter duration and the runner's longest
pacing wait scale with it). The host's queue `maxPollingInterval` is compressed too (a copy of
host.json). HTTP, Cosmos DB and queue round trips keep real time, so compression can only make
the pipeline look worse than on Azure, never better.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bench._serve import ROOT
from devstack.aoai_simulator import SimulatorConfig


@dataclass(frozen=True)
class TimeScale:
    window: float  # seconds of a compressed minute

    def app_settings(self) -> dict[str, str]:
        """The app's limiters count the same compressed minute (AOAI_QUOTA_WINDOW_SECONDS)."""
        return {"AOAI_QUOTA_WINDOW_SECONDS": str(self.window)}


def host_json(app_dir: Path, window: float) -> None:
    """The app's host.json with the queue polling interval compressed like the windows."""
    config = json.loads((ROOT / "host.json").read_text())
    queues = config["extensions"]["queues"]
    seconds = _seconds(queues["maxPollingInterval"]) * window / 60.0
    queues["maxPollingInterval"] = f"00:00:{max(seconds, 0.1):06.3f}"
    app_dir.mkdir(parents=True, exist_ok=True)
    (app_dir / "host.json").write_text(json.dumps(config))


def _seconds(span: str) -> float:
    hours, minutes, seconds = span.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def scaled(per_minute: int, window: float) -> int:
    """A per-minute quota for the simulator, so one `window` holds a minute's worth."""
    return round(per_minute * 60.0 / window)


def compressed_quota(
    deployment: str, tpm: int, rpm: int, window: float
) -> tuple[SimulatorConfig, str]:
    """The simulator's config with `deployment` granted `tpm` / `rpm` a minute in `window`-second
    minutes, and the app's `AOAI_QUOTAS` for it as Azure grants it (per real minute)."""
    config = SimulatorConfig.model_validate({})
    granted = config.deployment(deployment)
    if granted is None:
        raise LookupError(f"the simulator has no deployment {deployment!r}")
    granted.tpm = scaled(tpm, window)
    granted.rpm = scaled(rpm, window)
    config.rate_limit.window_seconds = window
    return config, json.dumps({deployment: {"tpm": tpm, "rpm": rpm}})
