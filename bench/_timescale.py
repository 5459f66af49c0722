"""Compressed time for the quota benchmarks: a "minute" of `window` seconds on both sides.

Measuring quota use in at least ten fixed windows of the quota's own length takes ten
minutes at Azure's 60 s. So the simulator's `rate_limit.window_seconds` is shortened to
`window` (its request window is a sixth of it) and its TPM/RPM are scaled by 60 / `window`,
so each short window holds what a minute holds on Azure. The app keeps `AOAI_QUOTAS` as
Azure grants it (per minute), and its limiter's windows are shortened by the same factor:
shared/limiter.py has no setting for them (they are Azure's, 60 s and 10 s), so the host
process runs `sitecustomize` from a folder put first on its PYTHONPATH that rescales them
before the app starts. The other fixed delays that matter against a quota window are
compressed too: the limiter's margins, the runner's longest pacing wait
(shared/job_runner.py MAX_PACING_WAIT) and the host's queue `maxPollingInterval` (a copy of
host.json). HTTP, Cosmos DB and queue round trips keep real time, so compression can only
make the pipeline look worse than on Azure, never better.

`--diagnose headers,settle` (both benchmarks) runs the app without one or both suspected
faults of the limiter's feeding, to measure what they cost: `headers` makes the limiter deaf
to `x-ratelimit-remaining-*` (harmless with one host), `settle` keeps each reservation at the
estimate the quota charged instead of correcting it to the usage returned.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bench._serve import ROOT

HOOK = '''\
"""Written by bench/_timescale.py: the limiter's windows in compressed time."""
import os

_window = float(os.environ["BENCH_QUOTA_WINDOW_SECONDS"])
if _window != 60.0:
    import shared.limiter as _limiter

    _scale = _window / 60.0
    _limiter.TOKEN_WINDOW = _window
    _limiter.REQUEST_WINDOW = _limiter.REQUEST_WINDOW * _scale
    _limiter.RECOVERY_PER_SECOND = _limiter.RECOVERY_PER_SECOND / _scale
    _limiter.TOKEN_MARGIN = _limiter.TOKEN_MARGIN * _scale
    _limiter.REQUEST_MARGIN = _limiter.REQUEST_MARGIN * _scale
    import shared.job_runner as _runner

    _runner.MAX_PACING_WAIT = float(
        os.environ.get("BENCH_PACING_WAIT_SECONDS", _runner.MAX_PACING_WAIT)
    ) * _scale
    _init = _limiter.DeploymentLimiter.__init__

    def _scaled_init(self, *args, **kwargs):
        _init(self, *args, **kwargs)
        self._second = _limiter._Window(_scale, 0.0)  # its 1 s smoothing window

    _limiter.DeploymentLimiter.__init__ = _scaled_init

if os.environ.get("BENCH_DIAGNOSE"):  # what the limiter does without two suspected faults
    import shared.limiter as _limiter

    if "headers" in os.environ["BENCH_DIAGNOSE"]:  # deaf to the rate-limit headers
        _limiter.DeploymentLimiter.observe = lambda self, headers: None
    if "settle" in os.environ["BENCH_DIAGNOSE"]:  # reservations stay at the estimate charged
        _limiter.DeploymentLimiter.settle = lambda self, reserved, used: None
'''


@dataclass(frozen=True)
class TimeScale:
    window: float  # seconds of a compressed minute
    pacing_wait: float | None = None  # MAX_PACING_WAIT to try, in Azure seconds
    diagnose: str = ""  # "headers", "settle" or both, comma-separated


def host_env(folder: Path, scale: TimeScale) -> dict[str, str]:
    """Environment for the host process: the hook first on PYTHONPATH, then the repository."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(HOOK)
    env = {"PYTHONPATH": f"{folder}:{ROOT}", "BENCH_QUOTA_WINDOW_SECONDS": str(scale.window)}
    if scale.pacing_wait is not None:
        env["BENCH_PACING_WAIT_SECONDS"] = str(scale.pacing_wait)
    if scale.diagnose:
        env["BENCH_DIAGNOSE"] = scale.diagnose
    return env


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
