"""Interactive calls first: how much of a deployment's quota a job may fill while people use it
(docs/jobs.md#interactive-calls-first).

Calls a person waits for (chat, the gateway routes) book what the quota charges them in the
deployment's limiter (shared/aoai/quota.py) as they go out, never waiting; the limiter counts
them here too, as tokens per minute decayed over the last quota minute. A job's acquisition may
fill the quota only up to its limit less a **headroom** for the interactive traffic to come:
`factor` x the recent interactive tokens per minute, at least `floor` tokens, and never more
than that recent use itself. So jobs give way at once when interactive use rises (each call
raises it as it is booked) and, when it stops, the headroom decays with it and the jobs take
the whole quota back. Interactive calls see the whole quota.

The headroom is on top of the interactive tokens already in the quota's window (the limiter
counts them like any other use): it covers the calls that arrive before the jobs' own requests
age out of the window, not the minute's whole interactive use again.

Requests get a headroom too, in the service's short request window (10 s): the interactive
calls expected in one such window and two standard deviations more, since people arrive as
they please (Poisson), not evenly. A job's requests come in bursts (room freed at once is taken
at once) and can fill a 10 s window; without it, a chat meets the service's 429 on requests
while tokens are plentiful. It costs jobs little: they are held by tokens, not requests.

Pure arithmetic on a clock: no I/O, nothing waits here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Below this many interactive tokens per minute the recent use counts as none: the headroom is
# 0 and the jobs have the whole quota (an exponential decay would otherwise never quite end).
QUIET_TOKENS_PER_MINUTE = 1.0


@dataclass(frozen=True)
class HeadroomPolicy:
    """The settings: JOB_HEADROOM_FACTOR and JOB_HEADROOM_MIN_TOKENS (0 and 0: off, jobs fill
    the whole quota as before)."""

    factor: float = 0.0
    floor: int = 0

    @property
    def enabled(self) -> bool:
        return self.factor > 0.0 or self.floor > 0

    def headroom(self, interactive_per_minute: float) -> int:
        """Tokens a job must leave free, for `interactive_per_minute` of recent interactive
        use: factor x it, raised to the floor, capped at the use itself; 0 when quiet."""
        if not self.enabled or interactive_per_minute < QUIET_TOKENS_PER_MINUTE:
            return 0
        wanted = max(float(self.floor), self.factor * interactive_per_minute)
        return math.ceil(min(interactive_per_minute, wanted))

    def requests(self, interactive_per_minute: float, requests_per_window: float) -> int:
        """Requests a job must leave free in the service's request window, for
        `requests_per_window` recent interactive requests in one: that many and two standard
        deviations more (sqrt of it), at least 1; 0 when quiet (by the tokens, as above)."""
        if not self.enabled or interactive_per_minute < QUIET_TOKENS_PER_MINUTE:
            return 0
        expected = max(0.0, requests_per_window)
        return max(1, math.ceil(expected + 2.0 * math.sqrt(expected)))


class InteractiveRate:
    """Interactive tokens per minute, decayed exponentially over one quota `minute`: a steady
    use of r tokens a minute reads r; a call adds its tokens at once; a minute of quiet keeps
    1/e of the level, so the reading falls to nothing within minutes."""

    def __init__(self, minute: float, now: float) -> None:
        self._tau = minute
        self._level = 0.0
        self._at = now

    def add(self, now: float, tokens: int) -> None:
        self._decay(now)
        self._level += max(0, tokens)

    def remove(self, now: float, tokens: int) -> None:
        """A booking the service did not charge (a 429) comes off again."""
        self._decay(now)
        self._level = max(0.0, self._level - max(0, tokens))

    def per_minute(self, now: float) -> float:
        self._decay(now)
        return self._level

    def _decay(self, now: float) -> None:
        elapsed = now - self._at
        if elapsed > 0.0:
            self._level *= math.exp(-elapsed / self._tau)
            self._at = now
