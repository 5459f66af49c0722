"""The upstream counters across two backends: a 429 from the first (a simulator's fault) counts
as `throttled` for that backend and as one spill-over to the second, which answers (`ok`); the
call's trace holds both attempts, the refused one marked with `error.type` 429."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from devstack.aoai_simulator import RunningSimulator
from devstack.hosted_app import AppHost
from devstack.otlp_receiver import OtlpReceiver
from shared.telemetry import names
from tests.stack.telemetry.conftest import exporting_to
from tests.support.hosts import HOST_SETTINGS, app_host
from tests.support.simulator import backends_setting, control_plane, two_simulators


@pytest.fixture(scope="module")
def sims() -> Iterator[tuple[RunningSimulator, RunningSimulator]]:
    with two_simulators() as both:
        yield both


@pytest.fixture(scope="module")
def host(
    otlp: OtlpReceiver,
    app_environ: dict[str, str],
    sims: tuple[RunningSimulator, RunningSimulator],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AppHost]:
    environ = {
        **app_environ,
        **HOST_SETTINGS,
        "AOAI_BACKENDS": backends_setting(*sims),
        "AOAI_BACKEND_COOLDOWN_SECONDS": "1",
        **exporting_to(otlp),
    }
    with app_host(environ, tmp_path_factory.mktemp("spill")) as running:
        yield running


@pytest.fixture
async def first_refuses(
    sims: tuple[RunningSimulator, RunningSimulator],
) -> AsyncIterator[None]:
    async with control_plane(sims[0]) as first:
        refusing = {"faults": {"chat": {"error_429": 1.0, "retry_after_ms": 500}}}
        (await first.patch("/sim/config", json=refusing)).raise_for_status()
        yield


def total(otlp: OtlpReceiver, metric: str, **attributes: str) -> float:
    return sum(
        p.value or 0
        for p in otlp.latest(metric)
        if all(p.attributes.get(key) == value for key, value in attributes.items())
    )


async def test_a_429_is_throttled_for_its_backend_and_a_spillover_to_the_next(
    http: httpx.AsyncClient, otlp: OtlpReceiver, first_refuses: None
) -> None:
    model = {names.DEPLOYMENT: "gpt-4o"}
    outcome = names.OUTCOME
    traceparent = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
    r = await http.post(
        "/chat",
        json={"messages": [{"role": "user", "content": "hi"}]},
        headers={"traceparent": traceparent},
    )
    assert r.status_code == 200, r.text
    requests = names.UPSTREAM_REQUESTS
    assert otlp.wait_for(
        lambda: (
            total(otlp, requests, **model, **{names.BACKEND: "first", outcome: "throttled"}) == 1
            and total(otlp, requests, **model, **{names.BACKEND: "second", outcome: "ok"}) == 1
            and total(otlp, names.SPILLOVERS, **{names.BACKEND: "first", names.SPILL_TO: "second"})
            == 1
        )
    ), [(p.metric, p.attributes, p.value) for p in otlp.points() if p.metric.startswith("app.")]
    assert total(otlp, requests, **{names.BACKEND: "first", outcome: "ok"}) == 0
    trace_id = traceparent.split("-")[1]
    assert otlp.wait_for(
        lambda: len([s for s in otlp.spans() if s.trace_id == trace_id and s.kind == "client"]) >= 2
    )
    attempts = {
        s.attributes[names.BACKEND]: s
        for s in otlp.spans()
        if s.trace_id == trace_id and s.kind == "client" and names.OPERATION in s.attributes
    }
    assert set(attempts) == {"first", "second"}
    assert attempts["first"].attributes[names.ERROR_TYPE] == "429"
    assert names.ERROR_TYPE not in attempts["second"].attributes
