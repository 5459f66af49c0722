"""An interactive call's retries (shared/aoai/patience.py) and the router refusing a call at
once rather than holding it (shared/aoai/backends.py, `max_wait`). The wire:
tests/stack/chat/test_interactive_host.py."""

from __future__ import annotations

import httpx2
import openai
import pytest
from openai import AsyncAzureOpenAI

from shared.aoai import patience
from shared.aoai.backends import Cooling
from tests.support.clock import Clock

from .test_backends import Upstream, router, status_error


def connection_error() -> openai.APIConnectionError:
    request = httpx2.Request("POST", "http://backend/openai/deployments/d/chat/completions")
    return openai.APIConnectionError(request=request)


@pytest.mark.parametrize(
    ("status", "headers", "wait"),
    [
        (429, {"retry-after-ms": "400"}, 0.4),
        (429, {"retry-after": "30"}, 30.0),
        (503, {"retry-after": "2"}, 2.0),
        (400, {}, None),
        (404, {}, None),
        (429, {"retry-after": "121"}, None),  # the SDK does not wait past two minutes
        (429, {"x-should-retry": "false"}, None),
        (400, {"x-should-retry": "true", "retry-after": "1"}, 1.0),
    ],
)
def test_waits_as_the_sdk_would(status: int, headers: dict[str, str], wait: float | None) -> None:
    assert patience.retry_wait(status_error(status, headers), 0) == wait


def test_without_retry_after_it_backs_off_like_the_sdk() -> None:
    for retried, top in ((0, 0.5), (1, 1.0), (2, 2.0), (6, 8.0)):
        wait = patience.retry_wait(status_error(500), retried)
        assert wait is not None
        assert top * 0.75 <= wait <= top
    assert patience.retry_wait(connection_error(), 0) is not None


class Attempts:
    def __init__(self, *answers: BaseException | str) -> None:
        self.answers = list(answers)
        self.count = 0

    async def __call__(self, retried: int) -> str:
        assert retried == self.count
        answer = self.answers[min(self.count, len(self.answers) - 1)]
        self.count += 1
        if isinstance(answer, BaseException):
            raise answer
        return answer


async def test_a_short_retry_after_is_waited_for() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    attempt = Attempts(status_error(429, {"retry-after-ms": "300"}), "ok")
    assert await patience.attempts(attempt, retries=2, max_wait=5.0, sleep=sleep) == "ok"
    assert (attempt.count, slept) == (2, [0.3])


async def test_a_long_retry_after_is_raised_at_once() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    attempt = Attempts(status_error(429, {"retry-after": "30"}), "ok")
    with pytest.raises(openai.RateLimitError):
        await patience.attempts(attempt, retries=2, max_wait=5.0, sleep=sleep)
    assert (attempt.count, slept) == (1, [])


async def test_the_sleeps_together_stay_within_max_wait() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    attempt = Attempts(status_error(429, {"retry-after": "3"}))
    with pytest.raises(openai.RateLimitError):
        await patience.attempts(attempt, retries=5, max_wait=5.0, sleep=sleep)
    assert (attempt.count, slept) == (2, [3.0])  # a second 3 s sleep would make 6 s


async def test_retries_stop_at_the_sdk_count() -> None:
    async def sleep(seconds: float) -> None:
        return None

    attempt = Attempts(status_error(500))
    with pytest.raises(openai.APIStatusError):
        await patience.attempts(attempt, retries=2, max_wait=60.0, sleep=sleep)
    assert attempt.count == 3


async def test_a_route_with_max_wait_refuses_at_once_while_every_backend_cools_long(
    client: AsyncAzureOpenAI,
) -> None:
    clock = Clock()
    backends = router(client, clock, ("only", 1))
    backends.cool("only", "gpt-4o", status_error(429, {"retry-after": "30"}))
    upstream = Upstream()
    with pytest.raises(Cooling) as refused:
        await backends.route("gpt-4o", max_wait=5.0).send(upstream)
    assert refused.value.headers["Retry-After"] == "30"
    assert upstream.attempts == []
    clock.now += 26.0  # 4 s left: within the wait, the call goes
    assert await backends.route("gpt-4o", max_wait=5.0).send(upstream) == "ok from only"


async def test_a_route_with_max_wait_sends_its_last_attempt_without_sdk_retries(
    client: AsyncAzureOpenAI,
) -> None:
    backends = router(client, Clock(), ("only", 1))
    upstream = Upstream(only=status_error(429, {"retry-after": "30"}))
    with pytest.raises(openai.RateLimitError):
        await backends.route("gpt-4o", max_wait=5.0).send(upstream)
    assert [t.client.max_retries for t in upstream.attempts] == [0]
    # Without max_wait (as before): the last attempt uses the client with the SDK's retries.
    other = router(client, Clock(), ("only", 1))
    plain = Upstream()
    await other.route("gpt-4o").send(plain)
    assert [t.client.max_retries for t in plain.attempts] == [2]


async def test_a_5xx_cooldown_is_tried_not_refused(client: AsyncAzureOpenAI) -> None:
    backends = router(client, Clock(), ("only", 1))  # cooldown 10 s, past the 5 s wait
    backends.cool("only", "gpt-4o", status_error(503))
    upstream = Upstream()
    assert await backends.route("gpt-4o", max_wait=5.0).send(upstream) == "ok from only"
