"""The per-deployment limiter: pure logic on a fake clock, then real SDK calls to the simulator."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterator

import httpx
import openai
import pytest
from openai import AsyncAzureOpenAI

from devstack.aoai_simulator import RunningSimulator
from shared.aoai.limiters import Limiters
from shared.aoai.quota import (
    DECREASE,
    DEFAULT_PAUSE,
    RECOVERY_PER_SECOND,
    REQUEST_MARGIN,
    REQUEST_WINDOW,
    TOKEN_MARGIN,
    TOKEN_WINDOW,
    DeploymentLimiter,
)
from shared.aoai.usage_window import PHANTOM_PIECES
from shared.core.settings import DeploymentQuota


class FakeClock:
    """Time that moves only when told to; `sleep` moves it, so nothing really waits."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def limiter(clock: FakeClock, tpm: int | None, rpm: int | None) -> DeploymentLimiter:
    return DeploymentLimiter(tpm, rpm, clock=clock, sleep=clock.sleep)


def fill(lim: DeploymentLimiter, tokens: int) -> int:
    """Reserve requests of `tokens` while they fit now; how many did."""
    count = 0
    while lim.delay_for(tokens) == 0.0:
        lim._reserve(tokens)
        count += 1
    return count


# --- tokens and requests ---------------------------------------------------------------


def test_tokens_fill_the_minute_then_wait_for_the_oldest_to_age_out(clock: FakeClock) -> None:
    lim = limiter(clock, tpm=1000, rpm=None)
    for _ in range(3):
        lim._reserve(300)
        clock.now += 5
    clock.now += 5
    assert fill(lim, 100) == 1  # 900 + 100 = the whole quota
    # the first 300 leave the window at 60 s (+ margin) after they were sent
    assert lim.delay_for(300) == pytest.approx(TOKEN_WINDOW + TOKEN_MARGIN - 20)
    clock.now += TOKEN_WINDOW + TOKEN_MARGIN - 20
    assert lim.delay_for(300) == 0.0
    assert lim.delay_for(301) > 0.0


def test_requests_are_counted_per_10_seconds(clock: FakeClock) -> None:
    # 120 RPM is 20 per 10 s window, spread: at most 2 in any second
    lim = limiter(clock, tpm=None, rpm=120)
    assert lim.request_limit == 20
    assert fill(lim, 1) == 2
    assert lim.delay_for(1) == pytest.approx(1.0)
    started = 2
    while started < 20:
        clock.now += lim.delay_for(1)
        started += fill(lim, 1)
    assert started == 20
    # the 21st waits for the first to leave the 10 s window, not a minute
    wait = lim.delay_for(1)
    assert 0.5 < wait <= REQUEST_WINDOW + REQUEST_MARGIN


def test_a_request_larger_than_the_quota_goes_alone(clock: FakeClock) -> None:
    lim = limiter(clock, tpm=1000, rpm=None)
    assert lim.delay_for(5000) == 0.0  # an empty window never blocks forever
    lim._reserve(10)
    assert lim.delay_for(5000) == pytest.approx(TOKEN_WINDOW + TOKEN_MARGIN)


def test_no_quota_holds_nothing_back(clock: FakeClock) -> None:
    lim = limiter(clock, tpm=None, rpm=None)
    assert lim.delay_for(10**9) == 0.0
    for _ in range(100):
        lim._reserve(10**6)
    assert lim.delay_for(10**6) == 0.0


def test_sustained_load_uses_the_whole_quota(clock: FakeClock) -> None:
    """Ten simulated minutes at full demand: tokens per minute near TPM, never above it."""
    lim = limiter(clock, tpm=60_000, rpm=600)  # 100 per 10 s; 1,000-token requests bind TPM
    sent: list[tuple[float, int]] = []
    start = clock.now
    while clock.now < start + 600:
        delay = lim.delay_for(1000)
        if delay > 0:
            clock.now += delay
            continue
        lim._reserve(1000)
        sent.append((clock.now, 1000))
    for t0 in range(0, 540, 7):  # every sliding minute stays within the quota
        window = sum(n for t, n in sent if start + t0 <= t < start + t0 + 60)
        assert window <= 60_000
    minutes = [
        sum(n for t, n in sent if start + m * 60 <= t < start + (m + 1) * 60) for m in range(10)
    ]
    assert min(minutes[1:-1]) / 60_000 >= 0.95


def test_sustained_small_requests_use_the_whole_request_quota(clock: FakeClock) -> None:
    lim = limiter(clock, tpm=60_000, rpm=360)  # 60 per 10 s; 10-token requests bind RPM
    stamps: list[float] = []
    start = clock.now
    while clock.now < start + 120:
        delay = lim.delay_for(10)
        if delay > 0:
            clock.now += delay
            continue
        lim._reserve(10)
        stamps.append(clock.now)
    for t0 in [x / 4 for x in range(0, 440)]:
        assert sum(1 for t in stamps if start + t0 <= t < start + t0 + 10) <= 60
        assert sum(1 for t in stamps if start + t0 <= t < start + t0 + 1) <= 6
    per_minute = sum(1 for t in stamps if start + 60 <= t < start + 120)
    assert per_minute / 360 >= 0.95


# --- acquire ------------------------------------------------------------------------------


async def test_acquire_waits_when_the_room_comes_in_time(clock: FakeClock) -> None:
    lim = limiter(clock, tpm=1000, rpm=None)
    assert await lim.acquire(1000, max_wait=0)
    start = clock.now
    assert await lim.acquire(500, max_wait=120)
    assert clock.now - start == pytest.approx(TOKEN_WINDOW + TOKEN_MARGIN)
    assert clock.slept


async def test_acquire_refuses_without_reserving_when_the_room_comes_too_late(
    clock: FakeClock,
) -> None:
    lim = limiter(clock, tpm=1000, rpm=None)
    assert await lim.acquire(800, max_wait=0)
    before = lim.delay_for(300)
    assert not await lim.acquire(300, max_wait=before - 1)
    assert clock.slept == []
    assert lim.delay_for(200) == 0.0  # the refused 300 took nothing


# --- settle -------------------------------------------------------------------------------


async def test_settle_gives_back_an_overestimate_and_charges_an_underestimate(
    clock: FakeClock,
) -> None:
    lim = limiter(clock, tpm=1000, rpm=None)
    assert await lim.acquire(600, max_wait=0)
    assert lim.delay_for(500) > 0
    lim.settle(600, 400)
    assert lim.delay_for(600) == 0.0
    assert lim.delay_for(601) > 0
    lim.settle(400, 900)  # settled once: a second correction is not applied
    assert lim.delay_for(600) == 0.0
    assert await lim.acquire(100, max_wait=0)
    lim.settle(100, 500)
    assert lim.delay_for(100) == 0.0
    assert lim.delay_for(101) > 0


def test_settle_after_the_reservation_aged_out_changes_nothing(clock: FakeClock) -> None:
    lim = limiter(clock, tpm=1000, rpm=None)
    lim._reserve(600)
    clock.now += TOKEN_WINDOW + TOKEN_MARGIN + 1
    lim.settle(600, 5000)
    assert lim.delay_for(1000) == 0.0


# --- observe ------------------------------------------------------------------------------


def test_remaining_headers_book_what_others_spent(clock: FakeClock) -> None:
    lim = limiter(clock, tpm=10_000, rpm=600)  # 100 requests per 10 s
    lim._reserve(1000)
    # the service saw 1 request / 1,000 tokens of ours plus 4,000 / 30 from another host
    lim.observe({"X-RateLimit-Remaining-Tokens": "5000", "x-ratelimit-remaining-requests": "69"})
    assert lim.delay_for(5000) == 0.0
    assert lim.delay_for(5001) > 0.0
    # seen again, the same usage is not booked twice
    lim.observe(httpx.Headers({"x-ratelimit-remaining-tokens": "5000"}))
    assert lim.delay_for(5000) == 0.0
    # what others spent ages out like our own, fading (see the next test)
    clock.now += TOKEN_WINDOW + TOKEN_MARGIN
    assert lim.delay_for(8000) == 0.0


def test_reservations_still_in_flight_are_not_taken_for_others(clock: FakeClock) -> None:
    lim = limiter(clock, tpm=10_000, rpm=None)
    lim._reserve(1000)  # the request answered below
    clock.now += 0.01
    for _ in range(4):
        lim._reserve(1000)  # sent after it: the service had not counted them yet
    lim.settle(1000, 1000)
    lim.observe({"x-ratelimit-remaining-tokens": "8000"})  # ours 1,000 + others' 1,000
    assert lim.delay_for(4000) == 0.0  # 5,000 ours + 1,000 others'
    assert lim.delay_for(4001) > 0.0


def test_phantoms_shrink_when_the_service_counts_less(clock: FakeClock) -> None:
    lim = limiter(clock, tpm=10_000, rpm=None)
    lim.observe({"x-ratelimit-remaining-tokens": "4000"})  # others: 6,000
    assert lim.delay_for(4001) > 0.0
    clock.now += 30  # others' old usage left the service's window before our phantom left ours
    lim.observe({"x-ratelimit-remaining-tokens": "9000"})
    assert lim.delay_for(9000) == 0.0
    assert lim.delay_for(9001) > 0.0


def test_others_usage_fades_rather_than_vanishing_when_it_ages_out(clock: FakeClock) -> None:
    lim = limiter(clock, tpm=10_000, rpm=None)
    lim.observe({"x-ratelimit-remaining-tokens": "2000"})  # others: 8,000
    clock.now += TOKEN_WINDOW + TOKEN_MARGIN
    assert lim.delay_for(6000) == 0.0
    assert lim.delay_for(6001) > 0.0  # half is assumed still spent, until an answer says
    lim.observe({"x-ratelimit-remaining-tokens": "10000"})
    assert lim.delay_for(10_000) == 0.0


def test_frequent_answers_keep_the_log_short(clock: FakeClock) -> None:
    """A busy deployment answers many times a window: others' usage between two close answers
    is one entry, not PHANTOM_PIECES of them (the log, walked on every acquire, grew 5 times
    longer than the answers in a window)."""
    lim = limiter(clock, tpm=350_000, rpm=2100)
    per_second, others = 35, 0
    for _ in range(per_second * 120):  # two minutes; another host spends 100 tokens each time
        clock.now += 1 / per_second
        others += 100
        lim.observe({"x-ratelimit-remaining-tokens": str(350_000 - others % 350_000)})
    answers_in_a_window = per_second * TOKEN_WINDOW
    # one entry per answer, plus the half renewed as each leaves the window
    assert len(lim._tokens.phantoms) <= 2 * answers_in_a_window + PHANTOM_PIECES


def test_remaining_requests_book_others_requests(clock: FakeClock) -> None:
    lim = limiter(clock, tpm=None, rpm=60)  # 10 per 10 s
    lim._reserve(1)
    lim.observe({"x-ratelimit-remaining-requests": "1"})  # 8 by someone else
    clock.now += 1  # past the one-second smoothing
    assert lim.delay_for(1) == 0.0
    lim._reserve(1)
    assert lim.delay_for(1) > 0.0  # ten counted
    # Others' 8, assumed spread over the window before the answer, age out one by one: the
    # first an eighth of the window after that answer (1.35 s), not all a window after it.
    clock.now += 1
    assert lim.delay_for(1) == 0.0


def test_others_usage_between_two_answers_ages_out_as_it_came_not_as_one_lump(
    clock: FakeClock,
) -> None:
    lim = limiter(clock, tpm=10_000, rpm=None)
    lim.observe({"x-ratelimit-remaining-tokens": "10000"})  # nobody has spent anything
    clock.now += 30
    lim.observe({"x-ratelimit-remaining-tokens": "4000"})  # others: 6,000 in these 30 s
    # spread over the 30 s, the first 1,200 leave 6 s after the first answer plus a window;
    # booked as one lump at the second answer they would hold all 6,000 for a whole window
    assert lim.delay_for(5000) == pytest.approx(6 + TOKEN_WINDOW + TOKEN_MARGIN - 30)
    assert lim.delay_for(4000) == 0.0


def test_headers_that_say_nothing_are_ignored(clock: FakeClock) -> None:
    lim = limiter(clock, tpm=1000, rpm=None)
    lim.observe({"x-ratelimit-remaining-tokens": "-1", "x-ratelimit-remaining-requests": "x"})
    lim.observe({"x-ratelimit-remaining-tokens": "2000"})  # more free than the quota: nothing
    assert lim.delay_for(1000) == 0.0
    assert lim.token_limit == 1000


def test_unknown_quota_is_learnt_from_the_headers(clock: FakeClock) -> None:
    lim = limiter(clock, tpm=None, rpm=None)
    lim._reserve(300)
    lim.observe({"x-ratelimit-remaining-tokens": "700", "x-ratelimit-remaining-requests": "9"})
    assert lim.token_limit == 1000
    assert lim.request_limit == 10
    clock.now += 1  # a second apart: the 1 s spread of requests is not what is tested
    assert lim.delay_for(700) == 0.0
    assert lim.delay_for(701) > 0.0
    # a stated limit wins over what is inferred
    lim.observe({"x-ratelimit-limit-tokens": "4000", "x-ratelimit-remaining-tokens": "3700"})
    assert lim.token_limit == 4000


# --- throttled ----------------------------------------------------------------------------


def test_a_429_with_retry_after_pauses_exactly_that_long_and_keeps_the_rate(
    clock: FakeClock,
) -> None:
    """The retry-after says when room returns in the deployment's shared window; cutting the
    rate as well would cap every host below the quota (others' usage is in that window)."""
    lim = limiter(clock, tpm=10_000, rpm=600)
    lim.throttled(2.5)
    assert lim.delay_for(1) == pytest.approx(2.5)
    assert lim.rate_factor == 1.0
    assert lim.token_limit == 10_000
    clock.now += 2.5
    assert lim.delay_for(1) == 0.0


def test_a_429_without_retry_after_pauses_and_cuts_the_rate(clock: FakeClock) -> None:
    lim = limiter(clock, tpm=10_000, rpm=600)
    lim.throttled(None)
    assert lim.delay_for(1) == pytest.approx(DEFAULT_PAUSE)
    assert lim.rate_factor == pytest.approx(DECREASE)
    assert lim.token_limit == math.floor(10_000 * DECREASE)
    # more 429s of the same burst pause but do not cut again
    clock.now += 0.5
    lim.throttled(None)
    assert lim.delay_for(1) == pytest.approx(DEFAULT_PAUSE)
    assert lim.rate_factor == pytest.approx(DECREASE + 0.5 * RECOVERY_PER_SECOND)


def test_the_rate_recovers_linearly_after_429s(clock: FakeClock) -> None:
    lim = limiter(clock, tpm=10_000, rpm=None)
    for _ in range(3):
        lim.throttled(None)
        clock.now += DEFAULT_PAUSE
    factor = lim.rate_factor
    assert factor < DECREASE**2
    clock.now += 10
    assert lim.rate_factor == pytest.approx(factor + 10 * RECOVERY_PER_SECOND)
    clock.now += 1 / RECOVERY_PER_SECOND
    assert lim.rate_factor == 1.0


def test_a_429_without_retry_after_still_pauses(clock: FakeClock) -> None:
    lim = limiter(clock, tpm=None, rpm=None)
    lim.throttled(None)
    assert lim.delay_for(1) > 0.0


# --- several hosts on one quota (fake clock, a service counting as the simulator does) -----


class SlidingService:
    """A deployment's quota as the simulator counts it: sliding 60 s tokens, 10 s requests."""

    def __init__(self, tpm: int, rpm: int) -> None:
        self.tpm, self.per_window = tpm, rpm // 6
        self.tokens: list[tuple[float, int]] = []
        self.requests: list[float] = []

    def call(self, now: float, tokens: int) -> tuple[bool, dict[str, str], float]:
        self.tokens = [(t, n) for t, n in self.tokens if t > now - TOKEN_WINDOW]
        self.requests = [t for t in self.requests if t > now - REQUEST_WINDOW]
        used = sum(n for _, n in self.tokens)
        if used + tokens > self.tpm or len(self.requests) >= self.per_window:
            waits = [0.0]
            if used + tokens > self.tpm:
                waits.append(self.tokens[0][0] + TOKEN_WINDOW - now)
            if len(self.requests) >= self.per_window:
                waits.append(self.requests[0] + REQUEST_WINDOW - now)
            return False, self.headers(used, len(self.requests)), max(waits)
        self.tokens.append((now, tokens))
        self.requests.append(now)
        return True, self.headers(used + tokens, len(self.requests)), 0.0

    def headers(self, used: int, requests: int) -> dict[str, str]:
        return {
            "x-ratelimit-remaining-tokens": str(self.tpm - used),
            "x-ratelimit-remaining-requests": str(self.per_window - requests),
        }


def share(
    hosts: int, tokens: int, *, observe: bool, tpm: int = 60_000, rpm: int = 360
) -> tuple[float, int]:
    """Hosts of 4 concurrent 0.2 s calls each, 5 minutes at full demand on one quota.

    (tokens admitted per minute over minutes 2-4 / min(TPM, RPM x tokens), 429s).
    """
    clock = FakeClock()
    start = clock.now
    service = SlidingService(tpm, rpm)
    limiters = [limiter(clock, tpm, rpm) for _ in range(hosts)]
    in_flight: list[tuple[float, int, bool, dict[str, str], float]] = []
    admitted: list[float] = []
    refused = 0
    while clock.now < start + 300:
        for call in [c for c in in_flight if c[0] <= clock.now]:
            in_flight.remove(call)
            _, host, ok, headers, wait = call
            limiters[host].settle(tokens, tokens if ok else 0)
            if observe:
                limiters[host].observe(headers)
            if not ok:
                limiters[host].throttled(wait)
        for host, lim in enumerate(limiters):
            busy = sum(1 for c in in_flight if c[1] == host)
            while busy < 4 and lim.delay_for(tokens) == 0.0:
                lim._reserve(tokens)
                ok, headers, wait = service.call(clock.now + 0.1, tokens)
                admitted += [clock.now] if ok else []
                refused += 0 if ok else 1
                in_flight.append((clock.now + 0.2, host, ok, headers, wait))
                busy += 1
        clock.now += 0.01
    middle = sum(1 for t in admitted if start + 60 <= t < start + 240) * tokens / 3
    return middle / min(tpm, rpm * tokens), refused


def test_one_host_uses_its_quota_with_calls_in_flight_and_no_429s() -> None:
    assert share(1, 1000, observe=True) == (pytest.approx(1.0, abs=0.02), 0)  # TPM binds
    utilisation, refused = share(1, 100, observe=True)  # RPM binds
    assert refused == 0
    assert utilisation >= 0.97  # our own old requests are not mistaken for others'


def test_hosts_sharing_a_quota_are_kept_near_it_by_the_headers() -> None:
    utilisation, refused = share(2, 1000, observe=True)
    _, blind_refused = share(2, 1000, observe=False)
    assert utilisation >= 0.95
    assert refused < blind_refused
    assert refused <= 0.1 * 300


# --- the registry -------------------------------------------------------------------------


def test_limiters_give_one_limiter_per_deployment(clock: FakeClock) -> None:
    quotas = {"emb": DeploymentQuota(tpm=350_000), "chat": DeploymentQuota(tpm=1000, rpm=60)}
    limiters = Limiters(quotas, clock=clock)
    assert limiters.get("emb") is limiters.get("emb")
    assert limiters.get("emb").token_limit == 350_000
    assert limiters.get("emb").request_limit == 350_000 * 6 // 1000 // 6
    assert limiters.get("chat").request_limit == 10
    other = limiters.get("unknown")
    assert other.token_limit is None
    assert other.request_limit is None


def test_each_backend_has_its_own_limiter_and_may_have_its_own_quota(clock: FakeClock) -> None:
    quotas = {"ptu/chat": DeploymentQuota(tpm=90_000), "chat": DeploymentQuota(tpm=1000)}
    limiters = Limiters(quotas, clock=clock)
    ptu, paygo = limiters.get("chat", backend="ptu"), limiters.get("chat", backend="paygo")
    assert ptu is not paygo
    assert ptu is limiters.get("chat", backend="ptu")
    assert ptu.token_limit == 90_000  # `backend/deployment` first
    assert paygo.token_limit == 1000  # then the deployment's name on any backend
    ptu.throttled(5.0)
    assert ptu.delay_for(1) > 0
    assert paygo.delay_for(1) == 0.0  # a 429 from one account holds back no other


# --- against the simulator, through the real SDK ------------------------------------------

DEPLOYMENT = "text-embedding-3-small"
TPM = 6_000  # nothing ages out of the simulator's minute while a test runs
SIM_RPM = 60_000  # requests never bind here
TEXT = "quota " * 60  # 360 characters: 90 tokens as the simulator estimates


def estimate(text: str) -> int:
    return math.ceil(len(text) / 4)


@pytest.fixture
def quota(simulator: RunningSimulator) -> Iterator[str]:
    """A small embedding quota on the session's simulator, put back afterwards."""

    def patch(change: dict[str, object]) -> None:
        httpx.patch(f"{simulator.url}/sim/config", json=change).raise_for_status()

    httpx.post(f"{simulator.url}/sim/reset", json={"config": False}).raise_for_status()
    before = httpx.get(f"{simulator.url}/sim/config").json()
    patch({"deployments": {DEPLOYMENT: {"tpm": TPM, "rpm": SIM_RPM}}})
    yield simulator.url
    patch({"deployments": before["deployments"]})
    httpx.post(f"{simulator.url}/sim/reset", json={"config": False}).raise_for_status()


@pytest.fixture
async def aclient(simulator: RunningSimulator) -> AsyncIterator[AsyncAzureOpenAI]:
    async with AsyncAzureOpenAI(
        azure_endpoint=simulator.url,
        api_key=simulator.api_key,
        api_version="2025-04-01-preview",
        max_retries=0,  # as inside a queue invocation: a 429 comes back to the caller
    ) as client:
        yield client


async def drive(
    client: AsyncAzureOpenAI, lim: DeploymentLimiter, *, observe: bool
) -> tuple[int, int]:
    """Send embeddings while the limiter lets them go now; (tokens sent, 429s)."""
    sent = throttled = 0
    for _ in range(200):
        tokens = estimate(TEXT)
        if not await lim.acquire(tokens, max_wait=0.0):
            break
        try:
            raw = await client.embeddings.with_raw_response.create(model=DEPLOYMENT, input=TEXT)
        except openai.RateLimitError as error:
            throttled += 1
            lim.settle(tokens, 0)  # a refused request is not charged
            lim.throttled(float(error.response.headers["retry-after-ms"]) / 1000)
            continue
        used = raw.parse().usage.prompt_tokens
        lim.settle(tokens, used)
        if observe:
            lim.observe(raw.headers)
        sent += used
    return sent, throttled


async def spend_elsewhere(client: AsyncAzureOpenAI, tokens: int) -> None:
    """Another host: spends `tokens` of the same quota, knowing nothing of our limiter."""
    text = "x" * (4 * tokens)
    await client.embeddings.create(model=DEPLOYMENT, input=text)


async def test_limiter_fills_the_quota_without_429s(quota: str, aclient: AsyncAzureOpenAI) -> None:
    lim = Limiters({DEPLOYMENT: DeploymentQuota(tpm=TPM, rpm=SIM_RPM)}).get(DEPLOYMENT)
    sent, throttled = await drive(aclient, lim, observe=True)
    assert throttled == 0
    assert TPM - estimate(TEXT) < sent <= TPM


async def test_observe_accounts_for_another_client_on_the_same_quota(
    quota: str, aclient: AsyncAzureOpenAI
) -> None:
    await spend_elsewhere(aclient, 3000)
    lim = Limiters({DEPLOYMENT: DeploymentQuota(tpm=TPM, rpm=SIM_RPM)}).get(DEPLOYMENT)
    sent, throttled = await drive(aclient, lim, observe=True)
    assert throttled == 0
    assert TPM - 3000 - estimate(TEXT) < sent <= TPM - 3000


async def test_without_observe_the_other_client_causes_429s(
    quota: str, aclient: AsyncAzureOpenAI
) -> None:
    """The control case: the same run blind to the headers is throttled and waits."""
    await spend_elsewhere(aclient, 3000)
    lim = Limiters({DEPLOYMENT: DeploymentQuota(tpm=TPM, rpm=SIM_RPM)}).get(DEPLOYMENT)
    sent, throttled = await drive(aclient, lim, observe=False)
    assert throttled == 1  # the pause after the first 429 stops the loop (max_wait=0)
    assert sent <= TPM - 3000
    assert lim.delay_for(estimate(TEXT)) > 0.0  # the retry-after is obeyed


async def test_an_unlisted_deployment_learns_its_quota_from_the_headers(
    quota: str, aclient: AsyncAzureOpenAI
) -> None:
    lim = Limiters({}).get(DEPLOYMENT)
    sent, throttled = await drive(aclient, lim, observe=True)
    assert throttled == 0
    assert lim.token_limit == TPM
    assert TPM - estimate(TEXT) < sent <= TPM


async def test_concurrent_workers_share_one_limiter_with_few_429s(
    quota: str, aclient: AsyncAzureOpenAI
) -> None:
    await spend_elsewhere(aclient, 3000)
    lim = Limiters({DEPLOYMENT: DeploymentQuota(tpm=TPM, rpm=SIM_RPM)}).get(DEPLOYMENT)
    results = await asyncio.gather(*(drive(aclient, lim, observe=True) for _ in range(8)))
    sent = sum(r[0] for r in results)
    throttled = sum(r[1] for r in results)
    assert throttled <= 2
    assert sent <= TPM - 3000
