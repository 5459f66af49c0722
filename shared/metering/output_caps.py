"""Learned output caps: what a chat call that names no output cap reserves and sends.

Azure books prompt + `max_tokens` against the deployment's TPM when a request arrives and gives
back none of what the answer did not use, so a call sent with CHAT_MAX_TOKENS_LIMIT (4,096)
to answer 250 tokens holds 16 times the quota it needs. Instead, a call without a cap of its
caller's is sent with a high percentile (CHAT_CAP_PERCENTILE, 99.5) of the completion lengths
this process saw lately for its deployment and team (the team's own once it has
CHAT_CAP_MIN_SAMPLES answers, else the deployment's across teams, else the limit as before),
never above CHAT_MAX_TOKENS_LIMIT or the team's `max_tokens`.

Each key keeps the last CHAT_CAP_WINDOW lengths in a ring (4 bytes each: 4 KB at the default
1,000), and at most MAX_KEYS keys (the least recently used go), so memory is bounded whatever
the traffic. An answer cut by a learned cap (`finish_reason: length`) counts as twice the cap
it hit: its real length is unknown and longer, and a cap that cuts more than the percentile
allows must grow back rather than ratchet down on its own cut answers.

Why in-process and not shared (Cosmos DB): the percentile of one instance's answers is the
deployment's percentile (every instance sees the same kind of traffic); sharing would cost a
round trip per call for no better estimate; a new instance starts at the limit (as today)
until it has seen CHAT_CAP_MIN_SAMPLES answers, a few seconds of traffic.

Pure logic, no I/O; one event loop uses it (not thread-safe).
"""

from __future__ import annotations

import math
from array import array
from collections import OrderedDict
from dataclasses import dataclass

from shared.metering.bookkeeper import CallSite
from shared.metering.models import CapSource

MAX_KEYS = 4096  # (deployment, team) keys kept: 16 MB at most with the default window
REFRESH = 16  # new lengths before a key's percentile is computed again
CUT_GROWTH = 2  # a cut answer counts as this many times the cap it hit


@dataclass(frozen=True)
class OutputCap:
    tokens: int
    source: CapSource


def choose_cap(
    asked: int | None, learned: int | None, limit: int, team_max: int | None
) -> OutputCap:
    """The cap a chat call is sent with: the caller's `asked`, else the `learned` one (within
    `limit`), else `limit`; the team's `team_max` clamps any of them."""
    if asked:
        cap = OutputCap(asked, "caller")
    elif learned is not None:
        cap = OutputCap(max(1, min(learned, limit)), "learned")
    else:
        cap = OutputCap(limit, "limit")
    if team_max is not None and team_max < cap.tokens:
        return OutputCap(team_max, "team")
    return cap


class _Lengths:
    """The last `size` completion lengths of one key, and their percentile."""

    def __init__(self, size: int) -> None:
        self.values = array("I")
        self.size = size
        self.next = 0  # where the next length goes once the ring is full
        self.fresh = 0  # lengths since `cached` was computed
        self.cached: int | None = None

    def add(self, tokens: int) -> None:
        if len(self.values) < self.size:
            self.values.append(tokens)
        else:
            self.values[self.next] = tokens
            self.next = (self.next + 1) % self.size
        self.fresh += 1

    def percentile(self, share: float) -> int:
        if self.cached is None or self.fresh >= REFRESH:
            ordered = sorted(self.values)
            rank = max(1, math.ceil(share * len(ordered)))
            self.cached = ordered[rank - 1]
            self.fresh = 0
        return self.cached


class OutputCaps:
    """The learned caps of one process (shared/runtime.py makes it from settings)."""

    def __init__(
        self,
        *,
        enabled: bool = True,
        percentile: float = 99.5,
        min_samples: int = 100,
        window: int = 1000,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.enabled = enabled
        self.share = percentile / 100.0
        self.min_samples = min_samples
        self.window = max(window, min_samples)
        self.max_keys = max_keys
        self._keys: OrderedDict[tuple[str, str | None], _Lengths] = OrderedDict()

    def learned(self, deployment: str, team: str | None) -> int | None:
        """The cap learned for the team's calls to `deployment` (its own lengths once it has
        `min_samples`, else the deployment's), or None while too few answers were seen."""
        if not self.enabled:
            return None
        for key in ((deployment, team), (deployment, None)) if team else ((deployment, None),):
            lengths = self._keys.get(key)
            if lengths is not None and len(lengths.values) >= self.min_samples:
                return max(1, lengths.percentile(self.share))
        return None

    def answered(
        self, site: CallSite, cap: OutputCap, completion_tokens: int, status: str, cut: bool
    ) -> None:
        """A whole answer of `completion_tokens` sent with `cap` (`cut`: it ended there). A
        filtered or failed answer, or one cut by its caller's own cap, says nothing of how long
        answers are; one cut by a cap its caller did not set counts as longer than that."""
        if status != "ok" or (cut and cap.source == "caller"):
            return
        cut_at = cap.tokens if cut else None
        self.observe(site.deployment, site.team, completion_tokens, cut_at)

    def observe(
        self, deployment: str, team: str | None, completion_tokens: int, cut_at: int | None = None
    ) -> None:
        """One whole answer of `completion_tokens`; `cut_at`: the cap (not the caller's) that
        cut it, whose answer counts as CUT_GROWTH times that."""
        if not self.enabled:
            return
        tokens = (
            completion_tokens if cut_at is None else max(completion_tokens, cut_at * CUT_GROWTH)
        )
        keys = [(deployment, None)] + ([(deployment, team)] if team else [])
        for key in keys:
            lengths = self._keys.get(key)
            if lengths is None:
                lengths = self._keys[key] = _Lengths(self.window)
                while len(self._keys) > self.max_keys:
                    self._keys.popitem(last=False)
            else:
                self._keys.move_to_end(key)
            lengths.add(max(0, tokens))
