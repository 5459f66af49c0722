"""The quota ledger of one deployment on one backend, shared by every instance of the app: what
the instances sent in the last quota window, and what each may still send (its hold).

One Cosmos DB document per backend and deployment (container `quota_ledger`, changed under its
ETag by shared/aoai/quota_share.py). This module is its arithmetic, with no I/O:

- `slots`: tokens and requests sent, summed per slot of half an Azure second (an instance
  reports its sends stamped with the end of their slot, so a slot leaves the window no earlier
  than the service forgets the sends in it; the instances' clocks, which Azure keeps within
  milliseconds of each other, are trusted), and how much of them were calls a person waits
  for (interactive): the headroom jobs leave them is reckoned from every instance's
  interactive use (shared/aoai/priority.py). On Flex Consumption the HTTP functions and each
  queue function scale on instances of their own, so the instance running a job never serves
  the chats it must leave room for;
- `holds`: per instance, tokens and requests it may send until `until`. A hold counts in full
  until `until` + the window (the service counts a send made at `until` that long), or until
  its instance reports what it really sent and takes a new hold, whichever comes first.

The room an instance is granted is the quota less every slot still in the window and every
other instance's hold: then no send of anyone, at any moment of the new hold, can take the
service's count past the quota. Usage nobody holds (calls a person waits for, which never wait)
is in the slots from its instance's next report on.

Jobs are also paced: in any request window they are granted at most its share of the quota
(`Quota.pace`) and the one request a grant is for on top, their sends and holds counting in it
for a request window. Unpaced, jobs with more work than the quota fill each minute in its first
seconds and get its room back all at once a minute later, so they wait out most of every minute
(docs/jobs.md#instances-sharing-one-quota).

The document, as stored:
    {"id": "primary|gpt-4o-mini",
     "slots": {"<slot>": [tokens, requests, interactive tokens, interactive requests]},
     "holds": {"<instance>": [tokens, requests, until_ms]}}
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.aoai.priority import HeadroomPolicy

SLOT_SECONDS = 0.5  # Azure seconds per slot: 0.8 % of a minute, at most 122 slots in a doc
HOLD_SECONDS = 2.0  # Azure seconds a hold lasts; an instance reports and renews within it


@dataclass(frozen=True)
class Quota:
    """A deployment's quota over its windows, in the limiter's compressed time when tests and
    benchmarks shorten the minute (`scale` = minute / 60)."""

    tokens: int  # per token window (a minute)
    requests: int | None  # per request window (a sixth of it); None: not known
    token_window: float
    request_window: float
    scale: float = 1.0

    @property
    def slot(self) -> float:
        return SLOT_SECONDS * self.scale

    @property
    def hold(self) -> float:
        return HOLD_SECONDS * self.scale

    def pace(self, headroom: int = 0) -> int:
        """The jobs' tokens one request window holds at the quota's rate (a sixth of what
        they may have in a minute); a grant may pass it by the one request it is for."""
        return int((self.tokens - headroom) * self.request_window / self.token_window)

    def slot_of(self, stamp: float) -> int:
        """The slot a send at `stamp` (epoch seconds) is booked in: the one ending after it."""
        return math.ceil(stamp / self.slot)


@dataclass
class Grant:
    tokens: int
    requests: int
    until: float  # epoch seconds
    wait: float  # seconds until `need` would fit, when nothing was granted (else 0)


@dataclass
class Ledger:
    """The shared document, in memory."""

    id: str
    slots: dict[int, list[int]] = field(default_factory=dict)
    holds: dict[str, list[float]] = field(default_factory=dict)

    @classmethod
    def of(cls, doc_id: str, doc: Mapping[str, Any] | None) -> Ledger:
        if doc is None:
            return cls(doc_id)
        slots = {int(k): _cell(v) for k, v in (doc.get("slots") or {}).items()}
        holds = {
            str(k): [float(v[0]), float(v[1]), float(v[2]) / 1000.0]
            for k, v in (doc.get("holds") or {}).items()
        }
        return cls(doc_id, slots, holds)

    def doc(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "slots": {str(k): v for k, v in sorted(self.slots.items())},
            "holds": {k: [int(v[0]), int(v[1]), round(v[2] * 1000)] for k, v in self.holds.items()},
        }

    # --- changes ------------------------------------------------------------------------

    def report(self, sent: Mapping[int, tuple[int, ...]]) -> None:
        """Add what an instance sent, by slot: (tokens, requests) and, optionally, how much of
        it was interactive (negative amounts correct earlier reports)."""
        for slot, amounts in sent.items():
            cell = self.slots.setdefault(slot, [0, 0, 0, 0])
            for n, amount in enumerate(_cell(amounts)):
                cell[n] = max(0, cell[n] + amount)

    def prune(self, now: float, quota: Quota) -> None:
        """Drop slots and holds that no longer count in any window."""
        horizon = max(quota.token_window, quota.request_window) + quota.slot
        self.slots = {s: v for s, v in self.slots.items() if s * quota.slot > now - horizon}
        self.holds = {
            k: v for k, v in self.holds.items() if v[2] + quota.token_window > now - quota.slot
        }

    def grant(
        self,
        instance: str,
        now: float,
        quota: Quota,
        *,
        need: tuple[int, int],
        ask: tuple[int, int],
        headroom: tuple[int, int] = (0, 0),
    ) -> Grant:
        """Replace `instance`'s hold with a new one of up to `ask` (tokens, requests), if at
        least `need` fits under the quota (less `headroom`, the tokens and requests jobs leave
        for calls a person waits for); else drop it and say how long until `need` would fit."""
        self.holds.pop(instance, None)
        tokens, requests = self.used(now, quota)
        free_tokens = quota.tokens - headroom[0] - tokens
        free_paced = quota.pace(headroom[0]) + need[0] - self.paced(now, quota)
        free_requests = None if quota.requests is None else quota.requests - headroom[1] - requests
        fits = need[0] <= min(free_tokens, free_paced) and (
            free_requests is None or need[1] <= free_requests
        )
        if not fits or ask == (0, 0):
            wait = 0.0 if fits else self.wait(now, quota, need, headroom)
            return Grant(0, 0, now, wait)
        granted_tokens = min(max(ask[0], need[0]), free_tokens, free_paced)
        granted_requests = max(ask[1], need[1])
        if free_requests is not None:
            granted_requests = min(granted_requests, free_requests)
        until = now + quota.hold
        self.holds[instance] = [granted_tokens, granted_requests, until]
        return Grant(granted_tokens, granted_requests, until, 0.0)

    # --- what counts ----------------------------------------------------------------------

    def interactive(self, now: float, quota: Quota) -> tuple[int, int]:
        """Interactive tokens in the token window and requests in the request window, every
        instance's: a quota minute's tokens, and one request window's requests."""
        tokens = requests = 0
        for slot, cell in self.slots.items():
            end = slot * quota.slot  # a slot counts from its end, as in `_tokens`
            tokens += cell[2] if end + quota.token_window > now else 0
            requests += cell[3] if end + quota.request_window > now else 0
        return tokens, requests

    def headroom(self, now: float, quota: Quota, policy: HeadroomPolicy) -> tuple[int, int]:
        """The tokens and requests a job leaves free for the interactive use of every
        instance, by `policy`."""
        tokens, requests = self.interactive(now, quota)
        return policy.headroom(float(tokens)), policy.requests(float(tokens), float(requests))

    def used(self, now: float, quota: Quota) -> tuple[int, int]:
        """Tokens and requests counted against the quota at `now`: slots still in their
        window and every hold not yet expired."""
        tokens = sum(amount for amount, end in self._tokens(quota) if end > now)
        requests = sum(amount for amount, end in self._requests(quota) if end > now)
        return tokens, requests

    def paced(self, now: float, quota: Quota) -> int:
        """The jobs' tokens counted in the pace at `now`: sent in the last request window, or
        held for it."""
        return sum(amount for amount, end in self._paced(quota) if end > now)

    def wait(
        self, now: float, quota: Quota, need: tuple[int, int], headroom: tuple[int, int] = (0, 0)
    ) -> float:
        """Seconds until `need` fits, as what counts now leaves the windows (others' new
        holds aside): the window's length when it never would."""
        token_wait = _until_fits(
            self._tokens(quota), now, quota.tokens - headroom[0] - need[0], quota.token_window
        )
        pace_wait = _until_fits(
            self._paced(quota), now, quota.pace(headroom[0]), quota.request_window
        )
        token_wait = max(token_wait, pace_wait)
        if quota.requests is None:
            return token_wait
        request_wait = _until_fits(
            self._requests(quota), now, quota.requests - headroom[1] - need[1], quota.request_window
        )
        return max(token_wait, request_wait)

    def _tokens(self, quota: Quota) -> Iterable[tuple[int, float]]:
        """(amount, when it stops counting) of every token charge in the ledger: a slot a
        window after its end (after every send in it), a hold a window after it ends."""
        for slot, cell in self.slots.items():
            yield cell[0], slot * quota.slot + quota.token_window
        for held, _, until in self.holds.values():
            yield int(held), until + quota.token_window

    def _paced(self, quota: Quota) -> Iterable[tuple[int, float]]:
        """(amount, when it leaves the pace) of the jobs' tokens: a slot's less its
        interactive part a request window after its end, a hold a request window after it
        ends."""
        for slot, cell in self.slots.items():
            yield cell[0] - cell[2], slot * quota.slot + quota.request_window
        for held, _, until in self.holds.values():
            yield int(held), until + quota.request_window

    def _requests(self, quota: Quota) -> Iterable[tuple[int, float]]:
        for slot, cell in self.slots.items():
            yield cell[1], slot * quota.slot + quota.request_window
        for _, held, until in self.holds.values():
            yield int(held), until + quota.request_window


def _until_fits(
    charges: Iterable[tuple[int, float]], now: float, allowed: int, window: float
) -> float:
    """Seconds until the charges still counting sum to at most `allowed`."""
    live = sorted((end, amount) for amount, end in charges if amount and end > now)
    total = sum(amount for _, amount in live)
    if allowed < 0:
        return window
    for end, amount in live:
        if total <= allowed:
            break
        total -= amount
        if total <= allowed:
            return end - now
    return 0.0 if total <= allowed else window


def _cell(amounts: Iterable[Any]) -> list[int]:
    """A slot's four counts (documents written before the interactive ones have two)."""
    cell = [int(v) for v in amounts][:4]
    return cell + [0] * (4 - len(cell))
