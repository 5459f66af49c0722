"""The rig of the queue-job benchmarks: emulators, the simulator and the real app under the
local Functions host, each in its own process on free ports; jobs submitted over HTTP; the
simulator's per-deployment counters sampled in fixed windows.

Tokens are counted on the simulator's side (`GET /sim/stats`, per deployment): the tokens of
the requests it answered, so a refused request (429) counts for nothing.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench._proc import child_pid, cpu_seconds, peak_rss_mib
from bench._serve import ROOT, local_stack
from bench._timescale import TimeScale, host_json
from devstack.aoai_simulator import SimulatorConfig
from devstack.hosted_app import fresh_queues, make_app_dir, run_app_host
from devstack.provision import provision
from shared.core.settings import load_settings

API_VERSION = "2025-04-01-preview"
TERMINAL = {"succeeded", "partially_failed", "failed", "cancelled"}


@dataclass(frozen=True)
class Rig:
    app_url: str
    app_key: str  # a team's key: the data plane's credential
    sim_url: str
    sim_key: str
    log: Path
    pids: tuple[int, ...] = ()  # every host process sharing the queues (bench/_proc.py)
    logs: tuple[Path, ...] = ()  # every host's log, the first's included

    def app(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.app_url, headers={"api-key": self.app_key}, timeout=60
        )

    def sim(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.sim_url, timeout=30)

    def cpu_seconds(self) -> float:
        """CPU time all hosts have used so far."""
        return sum(cpu_seconds(pid) for pid in self.pids)

    def peak_rss_mib(self) -> list[float]:
        """Each host's resident-set high-water mark so far."""
        return [peak_rss_mib(pid) for pid in self.pids]


@dataclass(frozen=True)
class Stack:
    """Emulators and the simulator, running; `host()` starts the app on them."""

    tmp: Path
    environ: dict[str, str]
    scale: TimeScale

    @contextmanager
    def host(
        self,
        app_settings: dict[str, str],
        hosts: int = 1,
        process_env: dict[str, str] | None = None,
        per_host: Sequence[dict[str, str]] = (),
    ) -> Iterator[Rig]:
        """The app under `hosts` local Functions host processes with these settings, sharing
        fresh queues and the database as Flex Consumption instances do; the rig talks HTTP
        to the first. `process_env`: environment of the host processes (bench/_profile.py).
        `per_host`: app settings of each host on top (`per_function_scaling()`), and as many
        hosts as it has entries."""
        queues = fresh_queues("bench")
        suffix = queues["EMBEDDING_QUEUE"]
        environ = {
            **self.environ,
            **queues,
            **self.scale.app_settings(),
            **app_settings,
        }
        asyncio.run(provision(load_settings(environ)))
        with ExitStack() as running:
            started = []
            for n in range(max(hosts, len(per_host))):
                folder = self.tmp / f"app-{suffix}-{n}"
                host_json(folder, self.scale.window)
                own = per_host[n] if n < len(per_host) else {}
                app_dir = make_app_dir(folder, {**environ, **own})
                host = running.enter_context(run_app_host(app_dir, extra_env=process_env))
                started.append((host, child_pid(str(app_dir))))
            first = started[0][0]
            try:
                yield Rig(
                    first.url,
                    first.team_key,
                    environ["AZURE_OPENAI_ENDPOINT"],
                    environ["AZURE_OPENAI_API_KEY"],
                    first.log,
                    tuple(pid for _, pid in started),
                    tuple(host.log for host, _ in started),
                )
            finally:
                keep = os.environ.get("BENCH_HOST_LOG")
                for n, (host, _) in enumerate(started if keep else []):
                    # The hosts' logs outlive the temporary folder: PATH, PATH.1, PATH.2, ...
                    shutil.copyfile(host.log, f"{keep}.{n}" if n else str(keep))


def per_function_scaling() -> tuple[dict[str, str], dict[str, str]]:
    """The app settings of two hosts laid out as Flex Consumption scales one app: its HTTP
    functions on instances of their own, every other function on others (Azure gives each its
    own; one host runs them all here). The first host serves HTTP only: its queue and timer
    functions are disabled (`AzureWebJobs.<name>.Disabled`, which the local host reads as
    Azure does); the second runs them, and gets no HTTP traffic."""
    tree = ast.parse((ROOT / "function_app.py").read_text())
    triggered = [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and any(
            isinstance(d, ast.Call)
            and isinstance(d.func, ast.Attribute)
            and d.func.attr in ("queue_trigger", "timer_trigger")
            for d in node.decorator_list
        )
    ]
    return {f"AzureWebJobs.{name}.Disabled": "true" for name in triggered}, {}


@contextmanager
def rig(config: SimulatorConfig, scale: TimeScale) -> Iterator[Stack]:
    """Emulators and the simulator in a temporary folder, stopped after; quota windows of
    `scale.window` seconds on both sides (see bench/_timescale.py)."""
    with local_stack(config) as stack:
        yield Stack(stack.tmp, stack.environ, scale)


async def reset_sim(sim: httpx.AsyncClient) -> None:
    """Clear the simulator's counters and quota windows: each contender starts afresh."""
    (await sim.post("/sim/reset", json={})).raise_for_status()


async def deployment_stats(sim: httpx.AsyncClient, deployment: str) -> dict[str, Any]:
    response = await sim.get("/sim/stats")
    response.raise_for_status()
    empty = {"requests": 0, "throttled": 0, "total_tokens": 0, "errors": 0}
    return dict(response.json()["deployments"].get(deployment, empty))


@dataclass
class Sampler:
    """The deployment's counters at the end of each fixed window of `seconds`."""

    sim: httpx.AsyncClient
    deployment: str
    seconds: float
    on_sample: Callable[[], Awaitable[None]] | None = None  # read something else alongside
    samples: list[dict[str, Any]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        self.samples.append(await deployment_stats(self.sim, self.deployment))
        if self.on_sample is not None:
            await self.on_sample()

    async def __aenter__(self) -> Sampler:
        await self._sample()
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        start = time.monotonic()
        while True:
            # Sleep to the next window boundary from the start, so windows do not drift.
            boundary = start + self.seconds * len(self.samples)
            await asyncio.sleep(max(0.0, boundary - time.monotonic()))
            await self._sample()

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with suppress(asyncio.CancelledError):
            await self._task

    def windows(self) -> list[dict[str, int]]:
        """Per window: what the counters grew by in it."""
        keys = ("requests", "throttled", "total_tokens")
        return [
            {k: int(after[k]) - int(before[k]) for k in keys}
            for before, after in zip(self.samples, self.samples[1:], strict=False)
        ]


def utilisation(
    windows: list[dict[str, int]], tpm: int, rpm: int, tokens_per_request: float
) -> dict[str, Any]:
    """Tokens per minute achieved in the windows (first and last dropped) over
    min(TPM, RPM x tokens per request), with the 429 share and requests per minute. Each
    window is one (compressed) minute."""
    kept = windows[1:-1]
    if not kept:
        raise RuntimeError(f"too few windows to measure: {len(windows)}")
    per_minute = 1.0 / len(kept)
    tokens = sum(w["total_tokens"] for w in kept)
    answered = sum(w["requests"] - w["throttled"] for w in kept)
    sent = sum(w["requests"] for w in kept)
    by_requests = rpm * tokens_per_request
    ceiling = min(tpm, by_requests)
    return {
        "windows_kept": len(kept),
        "tokens_per_minute": round(tokens * per_minute),
        "ceiling_tokens_per_minute": round(ceiling),
        "binding_limit": "tpm" if tpm <= by_requests else "rpm",
        "utilisation": round(tokens * per_minute / ceiling, 4),
        "requests_per_minute": round(answered * per_minute, 1),
        "share_429": round(sum(w["throttled"] for w in kept) / sent, 4) if sent else 0.0,
        "per_window_tokens": [w["total_tokens"] for w in windows],
    }


async def submit(app: httpx.AsyncClient, route: str, body: dict[str, Any]) -> str:
    response = await app.post(f"/jobs/{route}", json=body)
    if response.status_code != 202:
        raise RuntimeError(f"submit answered {response.status_code}: {response.text}")
    return str(response.json()["job_id"])


async def wait_jobs(app: httpx.AsyncClient, job_ids: list[str], within: float) -> list[Any]:
    """Each job's view once all are terminal."""
    deadline = time.monotonic() + within
    views: dict[str, Any] = {}
    while time.monotonic() < deadline:
        for job_id in job_ids:
            if job_id in views:
                continue
            response = await app.get(f"/jobs/{job_id}", params={"page_size": 1})
            if response.status_code == 200 and response.json()["status"] in TERMINAL:
                views[job_id] = response.json()
        if len(views) == len(job_ids):
            return [views[j] for j in job_ids]
        await asyncio.sleep(0.5)
    raise RuntimeError(f"jobs not finished in {within:.0f}s: {sorted(set(job_ids) - set(views))}")


def job_totals(views: list[Any]) -> dict[str, int]:
    """Items over all jobs by outcome; `lost` is whatever did not succeed."""
    counts = {"total": 0, "succeeded": 0, "failed": 0, "content_filtered": 0, "pending": 0}
    for view in views:
        for key in counts:
            counts[key] += int(view["counts"][key])
    return {**counts, "lost": counts["total"] - counts["succeeded"]}


def print_result(result: dict[str, Any]) -> None:
    print(json.dumps(result))
