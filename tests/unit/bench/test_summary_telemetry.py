"""The headline of `bench/results.json` from the telemetry_cost run: the host CPU telemetry adds
per chat (the mean of the paired rounds' differences, with its 95 % interval) against the 0.5 ms
target, met only when the interval's top is under it, and the streamed figure when the run
measured streams."""

from __future__ import annotations

from typing import Any

from bench._summary import _rows, headline
from bench.telemetry_cost import mean_with_interval, whole


def _side(median: float) -> dict[str, Any]:
    return {"median_ms": median, "rounds_ms": [median, median + 0.2], "spread_ms": 0.2}


def _paired(mean: float, high: float | None = None) -> dict[str, Any]:
    top = round(mean + 0.1, 3) if high is None else high
    return {"mean_ms": mean, "ci95_ms": [round(mean - 0.1, 3), top]}


def _run(
    added_json: float, added_stream: float | None, high: float | None = None
) -> dict[str, Any]:
    run: dict[str, Any] = {
        "rounds_each": 3,
        "trace_sample": 0.1,
        "receiver": {"metric_points": 12, "spans": 300},
        "chat_json": {
            "off": _side(5.0),
            "on": _side(5.0 + added_json),
            # median(on) - median(off) differs from the paired mean: the headline is the mean.
            "added_ms": added_json + 0.05,
            "paired_added_ms": _paired(added_json, high),
        },
        # The run's own figure (bench/telemetry_cost.py `whole`): here nothing between rounds.
        "telemetry_added_cpu_ms_per_chat": added_json,
        "telemetry_added_cpu_ms_per_chat_ci95": _paired(added_json, high)["ci95_ms"],
        "telemetry_added_cpu_ms_per_streamed_chat": added_stream,
    }
    if added_stream is not None:
        run["chat_stream"] = {
            "off": _side(8.0),
            "on": _side(8.4),
            "added_ms": added_stream + 0.05,
            "paired_added_ms": _paired(added_stream),
        }
    return run


def test_the_added_cpu_per_chat_is_the_headline_with_its_target() -> None:
    out = headline({"telemetry_cost": _run(0.31, 0.4)})
    assert out["telemetry_added_cpu_ms_per_chat"] == 0.31
    assert out["telemetry_added_cpu_ms_per_chat_ci95"] == [0.21, 0.41]
    assert out["telemetry_added_cpu_ms_per_chat_target"] == 0.5
    assert out["telemetry_within_target"] is True
    assert out["telemetry_added_cpu_ms_per_streamed_chat"] == 0.4


def test_over_the_target_is_said_and_a_run_without_streams_has_no_streamed_figure() -> None:
    out = headline({"telemetry_cost": _run(0.9, None)})
    assert out["telemetry_within_target"] is False
    assert "telemetry_added_cpu_ms_per_streamed_chat" not in out


def test_a_mean_under_the_target_with_an_interval_reaching_past_it_is_not_within() -> None:
    out = headline({"telemetry_cost": _run(0.4, None, high=0.55)})
    assert out["telemetry_added_cpu_ms_per_chat"] == 0.4
    assert out["telemetry_within_target"] is False


def test_the_table_shows_both_medians_and_what_the_receiver_got() -> None:
    runs = {"telemetry_cost": _run(0.31, 0.4)}
    results = {**headline(runs), "runs": runs}
    rows = {row[0]: row for row in _rows(results)}
    assert rows["telemetry_added_cpu_ms_per_chat"][1] == "0.31"
    _, value, why = rows["telemetry (0.1 of traces): host CPU ms/chat off vs on"]
    assert value == "5.0 vs 5.31"
    assert "12 metric points, 300 spans" in why
    assert "added 0.31 ms, 95 % interval [0.21, 0.41]" in why


def test_no_telemetry_run_no_telemetry_headline() -> None:
    assert not any(key.startswith("telemetry") for key in headline({}))


def test_every_trace_sampled_is_its_own_figure_beside_the_default() -> None:
    every = _run(1.0, None)
    every["trace_sample"] = 1.0
    out = headline({"telemetry_cost": _run(0.3, None), "telemetry_cost_all_traces": every})
    assert out["telemetry_added_cpu_ms_per_chat"] == 0.3
    assert out["telemetry_trace_sample"] == 0.1
    assert out["telemetry_within_target"] is True
    assert out["telemetry_added_cpu_ms_per_chat_all_traces"] == 1.0


def test_the_interval_holds_the_mean_and_narrows_with_more_rounds() -> None:
    rounds = [0.2, 0.6, -0.1, 0.4, 0.3, 0.0, 0.5, 0.1]
    few = mean_with_interval(rounds)
    many = mean_with_interval(rounds * 8)
    assert few["mean_ms"] == many["mean_ms"] == 0.25
    for figure in (few, many):
        low, high = figure["ci95_ms"]
        assert low < 0.25 < high
    assert many["ci95_ms"][1] - many["ci95_ms"][0] < (few["ci95_ms"][1] - few["ci95_ms"][0]) / 2
    assert mean_with_interval([0.3]) == {"mean_ms": 0.3, "ci95_ms": [0.3, 0.3]}
    assert mean_with_interval(rounds) == few  # seeded: a run's figures can be recomputed


def test_what_the_on_host_spent_between_its_rounds_is_added_to_the_rounds_figure() -> None:
    paired = {"mean_ms": 0.2, "ci95_ms": [0.1, 0.3]}
    assert whole(paired, {"off_ms": 0.5, "on_ms": 0.55, "added_ms": 0.05}) == (0.25, [0.15, 0.35])


def test_the_control_run_with_telemetry_off_in_both_hosts_is_shown_beside() -> None:
    out = headline({"telemetry_cost": _run(0.3, None), "telemetry_cost_control": _run(0.05, None)})
    assert out["telemetry_added_cpu_ms_per_chat"] == 0.3
    assert out["telemetry_control_added_cpu_ms_per_chat"] == 0.05
    assert out["telemetry_control_added_cpu_ms_per_chat_ci95"] == [-0.05, 0.15]
