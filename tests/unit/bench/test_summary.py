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
