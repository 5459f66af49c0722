"""Per-deployment quotas counted as Azure counts them.

Tokens are charged on arrival (prompt estimate + `max_tokens`) against TPM over a sliding
window of `window_seconds` (60; tests shrink it). Requests are counted against RPM in a
window six times shorter (10 s by default), allowing RPM/6 in it: Azure evaluates the
request rate over 1-10 s periods, so a burst of a minute's requests is refused even when
the minute as a whole would fit. A refused request is not charged.

`x-ratelimit-remaining-requests` is what is left in the current request window (Azure's
figure is per 10 s: a 480 RPM deployment answers 79 after one request), and
`x-ratelimit-remaining-tokens` is what is left of the token window.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from .config import DeploymentConfig, RateLimitConfig

# Azure's request window is a sixth of its token window: 10 s against 60 s.
REQUEST_WINDOW_DIVISOR = 6


@dataclass
class Decision:
    allowed: bool
    remaining_requests: int
    remaining_tokens: int
    retry_after_ms: int = 0
    by_tokens: bool = False


@dataclass
class _Window:
    requests: deque[float] = field(default_factory=deque)
    tokens: deque[tuple[float, int]] = field(default_factory=deque)
    spent: int = 0


@dataclass(frozen=True)
class Limits:
    """The quota of one deployment over the configured windows; 0 = unlimited."""

    request_window: float
    requests: int
    token_window: float
    tokens: int

    @classmethod
    def of(cls, deployment: DeploymentConfig, settings: RateLimitConfig) -> Limits:
        token_window = settings.window_seconds
        request_window = token_window / REQUEST_WINDOW_DIVISOR
        # Quotas are per minute; a window of another length scales them proportionally.
        requests = deployment.rpm * request_window / 60.0
        tokens = deployment.tpm * token_window / 60.0
        return cls(
            request_window=request_window,
            requests=max(1, math.floor(requests)) if deployment.rpm else 0,
            token_window=token_window,
            tokens=max(1, math.floor(tokens)) if deployment.tpm else 0,
        )


class RateLimiter:
    """Thread-safe: the batch runner and the HTTP routes share it."""

    def __init__(self) -> None:
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()

    def check(
        self, deployment: DeploymentConfig, tokens: int, settings: RateLimitConfig
    ) -> Decision:
        """Charge `tokens` and one request if both fit, else say how long to wait."""
        limits = Limits.of(deployment, settings)
        now = time.monotonic()
        with self._lock:
            window = self._windows.setdefault(deployment.name, _Window())
            while window.requests and window.requests[0] <= now - limits.request_window:
                window.requests.popleft()
            while window.tokens and window.tokens[0][0] <= now - limits.token_window:
                _, spent = window.tokens.popleft()
                window.spent -= spent
            over_requests = limits.requests > 0 and len(window.requests) + 1 > limits.requests
            over_tokens = limits.tokens > 0 and window.spent + tokens > limits.tokens
            if over_requests or over_tokens:
                wait = 0
                if over_requests:
                    wait = _request_wait(window, now, limits)
                if over_tokens:
                    wait = max(wait, _token_wait(window, now, limits, tokens))
                if settings.retry_after_ms is not None:
                    wait = settings.retry_after_ms
                return Decision(
                    allowed=False,
                    remaining_requests=_left(limits.requests, len(window.requests)),
                    remaining_tokens=_left(limits.tokens, window.spent),
                    retry_after_ms=wait,
                    by_tokens=over_tokens and not over_requests,
                )
            window.requests.append(now)
            window.tokens.append((now, tokens))
            window.spent += tokens
            return Decision(
                allowed=True,
                remaining_requests=_left(limits.requests, len(window.requests)),
                remaining_tokens=_left(limits.tokens, window.spent),
            )


def _left(limit: int, used: int) -> int:
    """What is left of `limit`; -1 for an unlimited quota (no header is sent)."""
    return max(0, limit - used) if limit else -1


def _request_wait(window: _Window, now: float, limits: Limits) -> int:
    """Milliseconds until enough requests leave the request window for one more."""
    oldest = window.requests[len(window.requests) - limits.requests]
    return max(1, math.ceil((oldest + limits.request_window - now) * 1000))


def _token_wait(window: _Window, now: float, limits: Limits, tokens: int) -> int:
    """Milliseconds until enough of the token window has expired for `tokens` to fit."""
    needed = window.spent + tokens - limits.tokens
    freed = 0
    for stamp, spent in window.tokens:
        freed += spent
        if freed >= needed:
            return max(1, math.ceil((stamp + limits.token_window - now) * 1000))
    return math.ceil(limits.token_window * 1000)  # larger than the whole quota: wait a window
