"""Per-deployment quotas counted as Azure counts them.

Tokens are charged on arrival (prompt estimate + `max_tokens`) against TPM, requests against
RPM, over a sliding window (60 s; tests shrink it). A refused request is not charged.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from .config import DeploymentConfig, RateLimitConfig


@dataclass
class Decision:
    allowed: bool
    remaining_requests: int
    remaining_tokens: int
    retry_after_ms: int = 0
    by_tokens: bool = False


@dataclass
class _Window:
    entries: deque[tuple[float, int]] = field(default_factory=deque)
    tokens: int = 0


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
        window_s = settings.window_seconds
        now = time.monotonic()
        with self._lock:
            window = self._windows.setdefault(deployment.name, _Window())
            while window.entries and window.entries[0][0] <= now - window_s:
                _, spent = window.entries.popleft()
                window.tokens -= spent
            # Azure's quota is per minute; a shorter window scales it down proportionally.
            scale = window_s / 60.0
            rpm = max(1, math.floor(deployment.rpm * scale)) if deployment.rpm else 0
            tpm = max(1, math.floor(deployment.tpm * scale)) if deployment.tpm else 0
            over_requests = rpm > 0 and len(window.entries) + 1 > rpm
            over_tokens = tpm > 0 and window.tokens + tokens > tpm
            if over_requests or over_tokens:
                wait = self._wait(window, now, window_s, rpm, tpm, tokens, over_requests)
                if settings.retry_after_ms is not None:
                    wait = settings.retry_after_ms
                return Decision(
                    allowed=False,
                    remaining_requests=max(0, rpm - len(window.entries)) if rpm else -1,
                    remaining_tokens=max(0, tpm - window.tokens) if tpm else -1,
                    retry_after_ms=wait,
                    by_tokens=over_tokens and not over_requests,
                )
            window.entries.append((now, tokens))
            window.tokens += tokens
            return Decision(
                allowed=True,
                remaining_requests=rpm - len(window.entries) if rpm else -1,
                remaining_tokens=tpm - window.tokens if tpm else -1,
            )

    @staticmethod
    def _wait(
        window: _Window,
        now: float,
        window_s: float,
        rpm: int,
        tpm: int,
        tokens: int,
        over_requests: bool,
    ) -> int:
        """Milliseconds until enough of the window has expired for this request to fit."""
        if not window.entries:
            return math.ceil(window_s * 1000)  # larger than the whole quota: wait a window
        freed_tokens = 0
        needed_tokens = window.tokens + tokens - tpm if tpm else 0
        for count, (stamp, spent) in enumerate(window.entries, start=1):
            freed_tokens += spent
            requests_ok = not over_requests or len(window.entries) - count + 1 <= rpm
            if requests_ok and freed_tokens >= needed_tokens:
                return max(1, math.ceil((stamp + window_s - now) * 1000))
        return math.ceil(window_s * 1000)
