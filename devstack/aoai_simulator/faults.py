"""Latency model and fault injection.

Faults are drawn per request and per route, in the order 429, 500, 503, hang, drop, lost. A
429 answers Azure's rate-limit error with the route's `retry_after_ms` whatever the quota (the
quota's own 429s wait what the window needs), so retry-after can be set long or short. A hang
waits `hang_seconds` and then answers 408 (what the gateway sends after its timeout); a
drop sends the response head and part of a body, then closes the connection. A lost answer
is a drop *after* the request was carried out: a write (POST, DELETE) takes effect and the
caller sees a cut connection, as when a gateway times out or a connection breaks after the
service acted; the caller cannot tell whether it happened. Reads are answered normally.
"""

from __future__ import annotations

import asyncio
import random
from typing import Literal

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from .config import FaultConfig, LatencyConfig

Fault = Literal["error_429", "error_500", "error_503", "hang", "drop", "lost"]
WRITES = frozenset({"POST", "DELETE"})


def draw_fault(settings: FaultConfig | None, rng: random.Random) -> Fault | None:
    if settings is None:
        return None
    chances: tuple[tuple[Fault, float], ...] = (
        ("error_429", settings.error_429),
        ("error_500", settings.error_500),
        ("error_503", settings.error_503),
        ("hang", settings.hang),
        ("drop", settings.drop),
        ("lost", settings.lost),
    )
    for name, probability in chances:
        if probability > 0 and rng.random() < probability:
            return name
    return None


def request_delay(settings: LatencyConfig, rng: random.Random) -> float:
    """Seconds to wait before the first byte of an answer."""
    jitter = rng.uniform(0, settings.jitter_ms) if settings.jitter_ms else 0.0
    return (settings.request_ms + jitter) / 1000.0


def token_delay(settings: LatencyConfig) -> float:
    """Seconds per completion token (the stream pace, or added to a whole answer)."""
    return settings.per_token_ms / 1000.0


async def sleep(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


async def hang(request: Request, seconds: float) -> bool:
    """Wait `seconds`, or until the client disconnects (then True: nobody is listening)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if await request.is_disconnected():
            return True
        await asyncio.sleep(0.05)
    return False


class DroppedResponse:
    """An ASGI response that promises a body and hangs up half way."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"choices": [', "more_body": True})
        # Returning without finishing makes the server close the connection mid-body.
