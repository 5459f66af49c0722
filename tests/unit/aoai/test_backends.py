"""The router's own logic on a fake clock: order, cooldowns, spill-over, the error the caller
sees. The wire (two simulators behind the real host) is tests/stack/aoai/test_backends_host.py."""

from __future__ import annotations

import httpx2
import openai
import pytest
from openai import AsyncAzureOpenAI

from shared.aoai.backends import MIN_COOLDOWN, Backend, Backends, NoBackend, Target
from shared.aoai.client import create_connection, deployment_map
from shared.core.errors import RateLimited, ServiceUnavailable, UpstreamError
from shared.core.settings import SettingsError, load_settings
from tests.support.clock import Clock
from tests.support.paths import REPO_ROOT
from tests.support.unit_env import BASE


def router(client: AsyncAzureOpenAI, clock: Clock, *spec: tuple[str, int]) -> Backends:
    retrying = client.with_options(max_retries=2)
    direct = client.with_options(max_retries=0)
    backends = [Backend(name, priority, retrying, direct) for name, priority in spec]
    return Backends(backends, cooldown=10.0, clock=clock)


def status_error(status: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    request = httpx2.Request("POST", "http://backend/openai/deployments/d/chat/completions")
    response = httpx2.Response(status, headers=headers or {}, request=request, json={})
    cls = openai.RateLimitError if status == 429 else openai.APIStatusError
    if status == 400:
        cls = openai.BadRequestError
    return cls("refused", response=response, body={})


class Upstream:
    """A fake call: each backend answers what `answers` says, the attempts are recorded."""

    def __init__(self, **answers: BaseException | str) -> None:
        self.answers = answers
        self.attempts: list[Target] = []

    async def __call__(self, target: Target) -> str:
        self.attempts.append(target)
        answer = self.answers.get(target.backend, "ok")
        if isinstance(answer, BaseException):
            raise answer
        return f"{answer} from {target.backend}"


def test_highest_priority_first_and_equal_priorities_take_turns(
    client: AsyncAzureOpenAI,
) -> None:
    clock = Clock()
    backends = router(client, clock, ("paygo-a", 2), ("ptu", 1), ("paygo-b", 2))
    firsts = []
    for _ in range(4):
        order = backends.candidates("gpt-4o")
        assert order[0].name == "ptu"
        backends.picked(order[0])
        second = order[1]
        backends.picked(second)
        firsts.append(second.name)
    assert firsts == ["paygo-a", "paygo-b", "paygo-a", "paygo-b"]


async def test_a_429_cools_the_backend_for_its_retry_after_and_the_call_moves_on_at_once(
    client: AsyncAzureOpenAI,
) -> None:
    clock = Clock()
    backends = router(client, clock, ("ptu", 1), ("paygo", 2))
    upstream = Upstream(ptu=status_error(429, {"retry-after-ms": "2500"}))
    route = backends.route("gpt-4o")
    assert await route.send(upstream) == "ok from paygo"
    assert route.backend == "paygo"
    # The first attempt had another backend behind it: no SDK retries (no sleep on the 429).
    assert upstream.attempts[0].client.max_retries == 0
    assert upstream.attempts[1].client.max_retries == 2  # the last resort keeps them
    assert backends.cooling_for("ptu", "gpt-4o") == pytest.approx(2.5)
    assert [b.name for b in backends.candidates("gpt-4o")] == ["paygo"]
    clock.now += 2.5  # the cooldown is over: the PTU takes traffic again
    again = Upstream()
    assert await backends.route("gpt-4o").send(again) == "ok from ptu"


@pytest.mark.parametrize(
    "error",
    [
        status_error(500),
        status_error(503),
        openai.APITimeoutError(request=httpx2.Request("POST", "http://backend")),
        openai.APIConnectionError(request=httpx2.Request("POST", "http://backend")),
    ],
)
async def test_5xx_timeouts_and_unreachable_cool_for_the_short_cooldown(
    client: AsyncAzureOpenAI, error: openai.OpenAIError
) -> None:
    clock = Clock()
    backends = router(client, clock, ("ptu", 1), ("paygo", 2))
    assert await backends.route("gpt-4o").send(Upstream(ptu=error)) == "ok from paygo"
    assert backends.cooling_for("ptu", "gpt-4o") == pytest.approx(10.0)


async def test_an_answer_that_is_not_an_outage_is_raised_without_failing_over(
    client: AsyncAzureOpenAI,
) -> None:
    backends = router(client, Clock(), ("ptu", 1), ("paygo", 2))
    upstream = Upstream(ptu=status_error(400))
    with pytest.raises(openai.BadRequestError):
        await backends.route("gpt-4o").send(upstream)
    assert [t.backend for t in upstream.attempts] == ["ptu"]
    assert backends.cooling_for("ptu", "gpt-4o") == 0.0


async def test_all_refusing_raises_the_429_with_the_shortest_retry_after(
    client: AsyncAzureOpenAI,
) -> None:
    clock = Clock()
    backends = router(client, clock, ("a", 1), ("b", 2), ("c", 3))
    upstream = Upstream(
        a=status_error(429, {"retry-after": "30"}),
        b=status_error(429, {"retry-after-ms": "1500"}),
        c=status_error(503),
    )
    route = backends.route("gpt-4o")
    with pytest.raises(openai.RateLimitError) as caught:
        await route.send(upstream)
    assert caught.value.response.headers["retry-after-ms"] == "1500"
    assert route.backend == "b"
    # All cooling: the next call goes to the one whose cooldown ends first, with retries.
    (soonest,) = backends.candidates("gpt-4o")
    assert soonest.name == "b"
    later = Upstream()
    assert await backends.route("gpt-4o").send(later) == "ok from b"
    assert later.attempts[0].client.max_retries == 2


async def test_one_backend_behaves_as_one_client(client: AsyncAzureOpenAI) -> None:
    """Today's settings: the only backend is always tried, with the SDK's retries."""
    backends = router(client, Clock(), ("default", 1))
    with pytest.raises(openai.RateLimitError):
        await backends.route("gpt-4o").send(Upstream(default=status_error(429)))
    upstream = Upstream()
    assert await backends.route("gpt-4o").send(upstream) == "ok from default"
    assert upstream.attempts[0].client.max_retries == 2


async def test_jobs_route_without_retries(client: AsyncAzureOpenAI) -> None:
    backends = router(client, Clock(), ("default", 1))
    upstream = Upstream()
    await backends.route("gpt-4o", retries=False).send(upstream)
    assert upstream.attempts[0].client.max_retries == 0


async def test_a_429_asking_for_no_wait_still_cools_a_little(client: AsyncAzureOpenAI) -> None:
    clock = Clock()
    backends = router(client, clock, ("ptu", 1), ("paygo", 2))
    upstream = Upstream(ptu=status_error(429, {"retry-after-ms": "0"}))
    assert await backends.route("gpt-4o").send(upstream) == "ok from paygo"
    assert backends.cooling_for("ptu", "gpt-4o") == pytest.approx(MIN_COOLDOWN)


def test_translated_job_failures_cool_too(client: AsyncAzureOpenAI) -> None:
    clock = Clock()
    backends = router(client, clock, ("ptu", 1), ("paygo", 2))
    assert backends.cool("ptu", "gpt-4o", RateLimited("429", retry_after=4.0))
    assert backends.cooling_for("ptu", "gpt-4o") == pytest.approx(4.0)
    assert backends.cool("paygo", "gpt-4o", UpstreamError("HTTP 500"))
    assert backends.cooling_for("paygo", "gpt-4o") == pytest.approx(10.0)
    # Cosmos DB down is not the backend's fault.
    assert not backends.cool("ptu", "gpt-4o", ServiceUnavailable("cosmos"))
    assert backends.ready("gpt-4o") == []


def test_deployment_maps_rename_and_restrict(client: AsyncAzureOpenAI) -> None:
    retrying, direct = client, client.with_options(max_retries=0)
    ptu = Backend("ptu", 1, retrying, direct, {"gpt-4o": "gpt-4o-ptu"})
    paygo = Backend("paygo", 2, retrying, direct)
    backends = Backends([ptu, paygo], cooldown=10.0)
    assert [b.name for b in backends.candidates("gpt-4o")] == ["ptu", "paygo"]
    assert [b.name for b in backends.candidates("text-embedding-3-small")] == ["paygo"]
    assert backends.target("ptu", "gpt-4o").deployment == "gpt-4o-ptu"
    only_ptu = Backends([ptu], cooldown=10.0)
    with pytest.raises(NoBackend):
        only_ptu.candidates("text-embedding-3-small")


BACKENDS = (
    '[{"name": "ptu", "endpoint": "https://ptu.openai.azure.com/", "priority": 1,'
    ' "deployments": {"chat": "gpt-4o-ptu", "text-embedding-3-small": "emb"}},'
    ' {"name": "paygo-eu", "endpoint": "https://eu.openai.azure.com/", "priority": 2},'
    ' {"name": "paygo-us", "endpoint": "https://us.openai.azure.com/", "priority": 2}]'
)


async def test_settings_build_one_client_per_backend_sharing_one_token_provider() -> None:
    settings = load_settings(
        {**BASE, "AOAI_BACKENDS": BACKENDS, "AOAI_DEPLOYMENTS": '{"chat": "gpt-4o"}'}
    )
    assert deployment_map(settings, settings.aoai_backends[0]) == {
        "chat": "gpt-4o-ptu",
        "gpt-4o": "gpt-4o-ptu",  # the alias key stands for the deployment it names
        "text-embedding-3-small": "emb",
    }
    connection = create_connection(settings)
    try:
        clients = [b.client for b in connection.backends.all]
        assert [str(c.base_url) for c in clients] == [
            "https://ptu.openai.azure.com/openai/v1/",
            "https://eu.openai.azure.com/openai/v1/",
            "https://us.openai.azure.com/openai/v1/",
        ]
        # The v1 client's api_key is the token provider: one for every backend.
        providers = {c._api_key_provider for c in clients}
        assert len(providers) == 1
        assert None not in providers
        assert connection.backends.batch.name == "ptu"
    finally:
        await connection.aclose()


def test_backend_settings_are_checked() -> None:
    with pytest.raises(SettingsError, match="names must be unique"):
        load_settings({**BASE, "AOAI_BACKENDS": BACKENDS.replace("paygo-us", "paygo-eu")})
    with pytest.raises(SettingsError, match="AOAI_BATCH_BACKEND"):
        load_settings({**BASE, "AOAI_BACKENDS": BACKENDS, "AOAI_BATCH_BACKEND": "nope"})
    only_ptu = BACKENDS.split(", {")[0] + "]"
    with pytest.raises(SettingsError, match="no backend serves deployment 'gpt-4o'"):
        load_settings({**BASE, "AOAI_BACKENDS": only_ptu})
    # Without AZURE_OPENAI_ENDPOINT, AOAI_BACKENDS is enough.
    assert not load_settings({**BASE, "AOAI_BACKENDS": BACKENDS}).uses_openai_api


def test_the_configuration_docs_example_loads_and_routes_as_it_says(
    client: AsyncAzureOpenAI,
) -> None:
    text = (REPO_ROOT / "docs" / "configuration.md").read_text()
    section = text.split("## Priority backends", 1)[1]
    example = section.split("```json\n", 1)[1].split("```", 1)[0]
    settings = load_settings(
        {**BASE, "CHAT_DEPLOYMENT": "gpt-5.1", "AOAI_BACKENDS": example.replace("\n", " ")}
    )
    backends = Backends(
        [
            Backend(c.name, c.priority, client, client, deployment_map(settings, c))
            for c in settings.aoai_backends
        ],
        cooldown=10.0,
    )
    chat = [b.name for b in backends.candidates("gpt-5.1")]
    assert chat[0] == "ptu-swc"
    assert sorted(chat[1:]) == ["paygo-eus2", "paygo-swc"]
    assert backends.target("ptu-swc", "gpt-5.1").deployment == "gpt-5.1-ptu"
    embeddings = [b.name for b in backends.candidates("text-embedding-3-small")]
    assert sorted(embeddings) == ["paygo-eus2", "paygo-swc"]


async def test_a_429_cools_only_the_deployment_it_was_for(client: AsyncAzureOpenAI) -> None:
    """Azure rate-limits each deployment on its own: jobs holding the embedding deployment
    at its quota must not push chat on the same account to the spill-over."""
    backends = router(client, Clock(), ("ptu", 1), ("paygo", 2))
    embedding = Upstream(ptu=status_error(429, {"retry-after": "30"}))
    assert await backends.route("text-embedding-3-small").send(embedding) == "ok from paygo"
    assert backends.cooling_for("ptu", "text-embedding-3-small") == pytest.approx(30.0)
    assert backends.cooling_for("ptu", "gpt-4o") == 0.0
    chat = Upstream()
    assert await backends.route("gpt-4o").send(chat) == "ok from ptu"
    assert [b.name for b in backends.candidates("text-embedding-3-small")] == ["paygo"]


async def test_a_pinned_route_asks_its_backend_only_cooling_or_not(
    client: AsyncAzureOpenAI,
) -> None:
    """A stored response's follow-up: the backend that created it, never the first choice,
    never a spill-over; its refusal is the caller's answer."""
    clock = Clock()
    backends = router(client, clock, ("ptu", 1), ("paygo", 2))
    upstream = Upstream()
    assert await backends.route("gpt-4o", pinned="paygo").send(upstream) == "ok from paygo"
    refusing = Upstream(paygo=status_error(429, {"retry-after-ms": "20"}))
    with pytest.raises(openai.RateLimitError):
        await backends.route("gpt-4o", pinned="paygo").send(refusing)
    assert backends.cooling_for("paygo", "gpt-4o") > 0
    # Cooling: still the pinned backend (after its cooldown), not the ready first choice.
    route = backends.route("gpt-4o", pinned="paygo")
    assert await route.send(upstream) == "ok from paygo"
    assert route.backend == "paygo"
    assert [t.backend for t in upstream.attempts + refusing.attempts] == ["paygo"] * 3
    with pytest.raises(NoBackend):
        await backends.route("gpt-4o", pinned="gone").send(upstream)
