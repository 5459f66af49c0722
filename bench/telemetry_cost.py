"""What telemetry costs the host: CPU ms per chat with the app exporting metrics and traces to
a local OTLP receiver, against the same host settings with telemetry off, in the same run.

    .venv/bin/python -m bench.telemetry_cost [--rounds 10] [--requests 300] [--concurrency 4]

Two hosts run side by side on one stack (emulators, the simulator without quota): "off" has
no `OTEL_EXPORTER_OTLP_ENDPOINT` (the API's no-op meters and tracers), "on" exports over
OTLP/HTTP to devstack/otlp_receiver.py as deployed: metrics every `--export-ms` (60 s, the
SDK's default, which Azure keeps) and spans every `--span-delay-ms` (5 s), every trace sampled
(`OTEL_TRACES_SAMPLER=always_on`, the worst case) or, with `--sample R`, the share R of them
(`parentbased_traceidratio`; the deployed default is 0.1). Rounds alternate between the two
(off, on, on, off, off, on, ...) so drift on the machine hits both alike; each round sends
`--requests` non-streamed `/api/chat` calls (then as many streamed ones, `--stream-requests`)
and reads the host process's CPU time (utime + stime, /proc, every thread) before and after,
plus a short settle.

The figure, `telemetry_added_cpu_ms_per_chat` (target under 0.5 ms), charges every CPU second
of the run: the mean of the paired differences (round n "on" minus round n "off", which ran
next to each other), with its 95 % bootstrap interval, plus what "on" spent beyond "off"
between its rounds (the exports that fell while the other host ran), per chat of the run. A
round's CPU per chat moves by ~1 ms on a 2-core machine that also runs the simulator, the
emulators and the load, so only many rounds resolve a fraction of a millisecond; the target
counts as met when the interval's top is under it. median(on) - median(off) is printed beside.
Short intervals (`--export-ms 1000 --span-delay-ms 200`) charge exports 60 and 25 times as
often as deployed: a worst case, not the deployed cost.

The receiver's metric points and spans prove the "on" host exported (and only it: every
record names its process in `service.instance.id`). The timers are moved to once a day in
both hosts, so their work (and its spans) does not blur the rounds. The figure measures
whatever the app records at the time it runs: rerun it when metrics or spans are added.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from bench._jobs import Rig, Stack, print_result, rig
from bench._proc import cpu_seconds, machine
from bench._summary import TELEMETRY_TARGET_MS
from bench._timescale import TimeScale
from bench.chat_ttfb import simulator_config
from devstack.otlp_receiver import OtlpReceiver

PROMPT = "echo: " + " ".join(f"token{i}" for i in range(20))
WARM_UP = 20
SETTLE_SECONDS = 0.3  # a round's last answers written, its CPU counted
RARELY = "0 0 3 * * *"  # the timers, once a day: not during the run
QUIET_TIMERS = {
    "POISON_SWEEP_SCHEDULE": RARELY,
    "BATCH_POLL_SCHEDULE": RARELY,
    "USAGE_ROLLUP_SCHEDULE": RARELY,
}
SIDES = ("off", "on")


def exporting(
    endpoint: str, export_ms: int, span_delay_ms: int, ratio: float | None = None
) -> dict[str, str]:
    """The "on" host's settings beside the shared ones: every trace sampled (the worst
    case), or `ratio` of the traces that come without a caller's."""
    sampler = {"OTEL_TRACES_SAMPLER": "always_on"}
    if ratio is not None:
        sampler = {
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": str(ratio),
        }
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_METRIC_EXPORT_INTERVAL": str(export_ms),
        "OTEL_BSP_SCHEDULE_DELAY": str(span_delay_ms),
        **sampler,
    }


def order(rounds: int) -> list[str]:
    """off, on, on, off, off, on, ...: each side goes first in half the pairs."""
    out: list[str] = []
    for n in range(rounds):
        out.extend(SIDES if n % 2 == 0 else SIDES[::-1])
    return out


async def load(rig_: Rig, requests: int, concurrency: int, *, stream: bool) -> None:
    """`requests` chats, `concurrency` at a time; a streamed one is read to its end."""
    body: dict[str, Any] = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16}
    if stream:
        body["stream"] = True
    left = list(range(requests))
    async with rig_.app() as app:

        async def worker() -> None:
            while left:
                left.pop()
                if not stream:
                    (await app.post("/chat", json=body)).raise_for_status()
                    continue
                async with app.stream("POST", "/chat", json=body) as response:
                    response.raise_for_status()
                    async for _ in response.aiter_bytes():
                        pass

        await asyncio.gather(*(worker() for _ in range(concurrency)))


@dataclass
class Side:
    """One host's rounds: CPU ms per chat of each, per kind of chat."""

    rig: Rig
    rounds: dict[str, list[float]] = field(default_factory=lambda: {"json": [], "stream": []})
    requests: dict[str, int] = field(default_factory=lambda: {"json": 0, "stream": 0})
    in_rounds: float = 0.0  # CPU seconds charged to its rounds
    began: float = 0.0  # CPU seconds at the start of the run (`begin`)
    ended: float = 0.0  # and at its end (`end`)

    @property
    def pid(self) -> int:
        (pid,) = self.rig.pids
        return pid

    def begin(self) -> None:
        self.began = cpu_seconds(self.pid)

    def end(self) -> None:
        self.ended = cpu_seconds(self.pid)

    def measure(self, kind: str, requests: int, concurrency: int) -> None:
        before = cpu_seconds(self.pid)
        asyncio.run(load(self.rig, requests, concurrency, stream=kind == "stream"))
        time.sleep(SETTLE_SECONDS)
        spent = cpu_seconds(self.pid) - before
        self.in_rounds += spent
        self.rounds[kind].append(spent * 1000 / requests)
        self.requests[kind] += requests

    def between_rounds_ms_per_chat(self) -> float:
        """CPU ms per chat the host spent outside its own rounds (while the other host ran):
        its queue polling, and for the "on" host the exports that fell there."""
        chats = sum(self.requests.values())
        return (self.ended - self.began - self.in_rounds) * 1000 / chats


def between_rounds(off: Side, on: Side) -> dict[str, float]:
    """Both hosts' CPU per chat outside their rounds, and what "on" added there."""
    a, b = round(off.between_rounds_ms_per_chat(), 3), round(on.between_rounds_ms_per_chat(), 3)
    return {"off_ms": a, "on_ms": b, "added_ms": round(b - a, 3)}


def whole(paired: dict[str, Any], between: dict[str, float]) -> tuple[float, list[float]]:
    """The added CPU per chat with every CPU second of the run charged: the paired rounds'
    mean and interval, plus what "on" added between its rounds (taken as known)."""
    shift = between["added_ms"]
    low, high = paired["ci95_ms"]
    return round(paired["mean_ms"] + shift, 3), [round(low + shift, 3), round(high + shift, 3)]


def figures(off: list[float], on: list[float]) -> dict[str, Any]:
    """Both sides' median CPU ms per chat, each round's, their spread and the difference
    of the medians; the differences of the rounds run side by side too."""

    def side(rounds: list[float]) -> dict[str, Any]:
        return {
            "median_ms": round(statistics.median(rounds), 3),
            "rounds_ms": [round(r, 3) for r in rounds],
            "spread_ms": round(max(rounds) - min(rounds), 3),
        }

    # Round n of each side ran next to the other's round n (order()): their difference is
    # the added CPU with that stretch's drift taken out; its spread shows what the run resolves.
    paired = [b - a for a, b in zip(off, on, strict=True)]
    return {
        "off": side(off),
        "on": side(on),
        "added_ms": round(statistics.median(on) - statistics.median(off), 3),
        "paired_added_ms": {**side(paired), **mean_with_interval(paired)},
    }


def mean_with_interval(values: list[float], resamples: int = 10_000) -> dict[str, Any]:
    """The mean of `values` and its 95 % bootstrap interval (percentiles of the means of
    `resamples` resamples with replacement; seeded, so a run's figures can be recomputed from
    its rounds). One value has no interval: it is the mean at both ends."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return {"mean_ms": round(mean, 3), "ci95_ms": [round(mean, 3), round(mean, 3)]}
    draw = random.Random(0).choices
    means = sorted(statistics.fmean(draw(values, k=len(values))) for _ in range(resamples))
    low, high = means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]
    return {"mean_ms": round(mean, 3), "ci95_ms": [round(low, 3), round(high, 3)]}


def received(otlp: OtlpReceiver, on_pid: int) -> dict[str, Any]:
    """What the receiver got, and from which process (the "off" host must send nothing)."""
    points, spans = otlp.points(), otlp.spans()
    resources = [p.resource for p in points] + [s.resource for s in spans]
    senders = {str(r.get("service.instance.id", "")) for r in resources}
    return {
        "metric_points": len(points),
        "spans": len(spans),
        "metrics": sorted({p.metric for p in points}),
        "span_names": dict(Counter(s.name for s in spans).most_common(12)),
        "only_from_the_on_host": all(s.endswith(f"-{on_pid}") for s in senders),
    }


@contextmanager
def hosts(stack: Stack, otlp: OtlpReceiver, args: argparse.Namespace) -> Iterator[dict[str, Side]]:
    with ExitStack() as running:
        off = running.enter_context(stack.host(QUIET_TIMERS))
        telemetry = exporting(otlp.endpoint, args.export_ms, args.span_delay_ms, args.sample)
        on = running.enter_context(
            stack.host({**QUIET_TIMERS, **({} if args.control else telemetry)})
        )
        yield {"off": Side(off), "on": Side(on)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    kinds = ["json"] + (["stream"] if args.stream_requests else [])
    sizes = {"json": args.requests, "stream": args.stream_requests}
    with (
        OtlpReceiver() as otlp,
        rig(simulator_config(per_token_ms=0.0), TimeScale(60.0)) as stack,
        hosts(stack, otlp, args) as sides,
    ):
        for side in sides.values():  # connections opened, code paths warm, on both
            for kind in kinds:
                asyncio.run(load(side.rig, WARM_UP, 1, stream=kind == "stream"))
        started = time.monotonic()
        for side in sides.values():
            side.begin()
        for name in order(args.rounds):
            for kind in kinds:
                sides[name].measure(kind, sizes[kind], args.concurrency)
        for side in sides.values():
            side.end()
        seconds = time.monotonic() - started
        time.sleep(args.span_delay_ms / 1000 + 0.5)  # the run's last spans, for the receiver
        got = received(otlp, sides["on"].pid)
    off, on = sides["off"], sides["on"]
    out: dict[str, Any] = {
        "seconds": round(seconds, 1),
        "requests": {name: side.requests for name, side in sides.items()},
        "receiver": got,
        "between_rounds_ms_per_chat": between_rounds(off, on),
        "chat_json": figures(off.rounds["json"], on.rounds["json"]),
    }
    if "stream" in kinds:
        out["chat_stream"] = figures(off.rounds["stream"], on.rounds["stream"])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10, help="rounds per side")
    parser.add_argument("--requests", type=int, default=300, help="non-streamed chats a round")
    parser.add_argument(
        "--stream-requests", type=int, default=None, help="streamed chats a round (0: none)"
    )
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--export-ms",
        type=int,
        default=60_000,
        help="OTEL_METRIC_EXPORT_INTERVAL (default: the SDK's and Azure's, 60 s)",
    )
    parser.add_argument(
        "--span-delay-ms",
        type=int,
        default=5_000,
        help="OTEL_BSP_SCHEDULE_DELAY (default: the SDK's and Azure's, 5 s)",
    )
    parser.add_argument(
        "--sample",
        type=float,
        default=None,
        help="sample this share of the traces (parentbased_traceidratio); default: all",
    )
    parser.add_argument(
        "--control",
        action="store_true",
        help="telemetry off in both hosts (an A/A run): what the bench reads when nothing differs",
    )
    args = parser.parse_args(argv)
    if args.stream_requests is None:
        args.stream_requests = args.requests
    measured = run(args)
    added, interval = whole(
        measured["chat_json"]["paired_added_ms"], measured["between_rounds_ms_per_chat"]
    )
    print_result(
        {
            "benchmark": "telemetry_cost",
            "workload": "/api/chat, 20-token prompt, max_tokens 16, simulator at once; "
            + (
                "control: telemetry off in both hosts"
                if args.control
                else "on: OTLP/HTTP to a loopback receiver, every metric, "
                + (f"{args.sample:g} of the traces" if args.sample is not None else "every trace")
            ),
            "trace_sample": args.sample if args.sample is not None else 1.0,
            "control": args.control,
            **machine(),
            "rounds_each": args.rounds,
            "requests_per_round": args.requests,
            "stream_requests_per_round": args.stream_requests,
            "concurrency": args.concurrency,
            "export_interval_ms": args.export_ms,
            "span_schedule_delay_ms": args.span_delay_ms,
            **measured,
            "telemetry_added_cpu_ms_per_chat": added,
            "telemetry_added_cpu_ms_per_chat_ci95": interval,
            "telemetry_added_cpu_ms_per_streamed_chat": (
                whole(
                    measured["chat_stream"]["paired_added_ms"],
                    measured["between_rounds_ms_per_chat"],
                )[0]
                if "chat_stream" in measured
                else None
            ),
            "target_added_ms": TELEMETRY_TARGET_MS,
            "within_target": interval[1] < TELEMETRY_TARGET_MS,
        }
    )


if __name__ == "__main__":
    main()
