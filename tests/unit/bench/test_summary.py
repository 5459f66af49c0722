"""The headline of `bench/results.json` from the gateway_latency run: the chat routes' added p50,
and the Responses API's added p50 and p99 when the run measured it."""

from __future__ import annotations

from typing import Any

from bench._summary import headline


def _measure(p50: float, p99: float) -> dict[str, Any]:
    return {
        "added": {"azure": {"p50_ms": p50, "p99_ms": p99}, "openai": {"p50_ms": 0, "p99_ms": 0}}
    }


CHAT = {m: _measure(1.0, 2.0) for m in ("chat_json", "embeddings", "chat_stream_ttfb")}


def test_the_responses_route_s_added_latency_is_a_headline_beside_chat() -> None:
    run = {
        **CHAT,
        "responses_json": _measure(7.0, 29.0),
        "responses_stream_first_event": _measure(5.4, 36.0),
    }
    out = headline({"gateway_latency": run})
    assert out["gateway_added_p50_ms"] == {
        "chat_json": 1.0,
        "embeddings": 1.0,
        "chat_stream_ttfb": 1.0,
    }
    assert out["gateway_responses_added_ms"] == {
        "responses_json": {"p50_ms": 7.0, "p99_ms": 29.0},
        "responses_stream_first_event": {"p50_ms": 5.4, "p99_ms": 36.0},
    }


def test_an_earlier_run_without_the_responses_route_has_no_such_headline() -> None:
    assert "gateway_responses_added_ms" not in headline({"gateway_latency": CHAT})


def _chats(p99: float) -> dict[str, object]:
    return {"ttfb": {"p50_ms": p99 / 2, "p99_ms": p99, "mean_ms": p99 / 2}}


def test_chat_under_jobs_headline_is_the_policy_s_with_the_policy_off_beside_it() -> None:
    contender = {
        "chat_429_share": 0.0,
        "ttfb_p99_ratio": 1.2,
        "classify_utilization_under_chat": 0.9,
        "chat_no_job": _chats(20.0),
        "chat_under_job": _chats(24.0),
    }
    off = {**contender, "chat_429_share": 0.05, "ttfb_p99_ratio": 4.0}
    one_host = {**contender, "ttfb_p99_ratio": 2.1}
    run = {"policy": contender, "off": off, "policy_one_host": one_host, "within_target": True}
    out = headline({"chat_under_jobs": run})
    assert out["chat_429_share_under_jobs"] == 0.0
    assert out["chat_ttfb_p99_under_jobs_ms"] == 24.0
    assert out["chat_ttfb_p99_no_job_ms"] == 20.0
    assert out["classify_utilization_under_chat"] == 0.9
    assert out["chat_under_jobs_policy_off"] == {
        "chat_429_share": 0.05,
        "ttfb_p99_ratio": 4.0,
        "classify_utilization_under_chat": 0.9,
    }
    assert out["chat_under_jobs_one_host"]["ttfb_p99_ratio"] == 2.1
