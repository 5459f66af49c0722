"""A sliding-window log of the usage a deployment's quota counts: ours as we sent it, and
what other hosts spent as the service's answers reveal it (docs/jobs.md#rate-limits-and-retries).

`shared/aoai/quota.py` keeps one for tokens, one for requests and one for request starts per
deployment; this module only counts, it never waits.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field

PHANTOM_PIECES = 10  # others' usage over a whole window is booked as this many entries


@dataclass
class Entry:
    stamp: float
    amount: int
    settled: bool = False  # ours: the service's answer corrected the reservation


@dataclass
class UsageWindow:
    """A sliding-window log: what was charged in the last `seconds`, ours and others'."""

    seconds: float
    margin: float
    entries: deque[Entry] = field(default_factory=deque)  # ours, in stamp order
    # Others' usage, booked from the service's counts (reconcile), in stamp order. What others
    # spent between two answers is spread evenly over that span, not stamped as one lump at
    # the later answer: the service ages it out bit by bit as it arrived, and a lump would
    # hold the whole of it for a full window after the room had come back.
    phantoms: deque[Entry] = field(default_factory=deque)
    total: int = 0
    # Our entries that left the window lately: an answer counted them if they were still in
    # the service's window when it arrived, so reconcile() must not take them for others'.
    gone: deque[Entry] = field(default_factory=deque)
    observed_at: float = -math.inf  # when the service's count was last reconciled

    def expire(self, now: float) -> None:
        while self.entries and self._left(self.entries[0], now):
            entry = self.entries.popleft()
            self.total -= entry.amount
            self.gone.append(entry)
        renewed = 0
        while self.phantoms and self._left(self.phantoms[0], now):
            entry = self.phantoms.popleft()
            self.total -= entry.amount
            # Others likely go on spending: assume half of it again until an answer says
            # how much (reconcile), rather than rushing into room that isn't free.
            renewed += entry.amount // 2
        if renewed > 0:
            self._book_others(now, renewed, now)
        while self.gone and self.gone[0].stamp + 2 * self.seconds <= now:
            self.gone.popleft()

    def _left(self, entry: Entry, now: float) -> bool:
        return entry.stamp + self.seconds + self.margin <= now

    def add(self, now: float, amount: int, *, settled: bool = False) -> Entry:
        """Book our own request (stamps only grow: appended); `settled`: no answer will
        correct it (an interactive call's, shared/aoai/priority.py)."""
        entry = Entry(now, amount, settled)
        self.entries.append(entry)
        self.total += amount
        return entry

    def void(self, now: float, entry: Entry) -> None:
        """Our `entry` was not charged after all (a 429): it counts for nothing. Call
        `expire(now)` first: an entry that has not left the window is then still in it."""
        if not self._left(entry, now):
            self.total -= entry.amount
        entry.amount = 0

    def _book_others(self, now: float, amount: int, since: float) -> None:
        """Book `amount` spent by others, spread evenly over (since, now], in pieces no
        closer than a PHANTOM_PIECES-th of the window: answers come many times a window on a
        busy deployment, and the log stays as short as the spread needs."""
        span = max(0.0, now - since)
        pieces = max(1, min(amount, math.ceil(span * PHANTOM_PIECES / self.seconds)))
        step = span / pieces
        base, extra = divmod(amount, pieces)
        for n in range(pieces):
            entry = Entry(since + step * (n + 1), base + (1 if n < extra else 0))
            at = len(self.phantoms)  # renewals may be newer than the span: keep stamp order
            while at > 0 and self.phantoms[at - 1].stamp > entry.stamp:
                at -= 1
            self.phantoms.insert(at, entry)
            self.total += entry.amount

    def delay(self, now: float, amount: int, limit: int) -> float:
        """Seconds until `amount` more fits under `limit` (more than the limit: an empty log)."""
        excess = self.total + min(amount, limit) - limit
        if excess <= 0:
            return 0.0
        freed = 0
        for entry in heapq.merge(self.entries, self.phantoms, key=lambda e: e.stamp):
            freed += entry.amount
            if freed >= excess:
                return max(0.0, entry.stamp + self.seconds + self.margin - now)
        return 0.0  # unreachable while total is the sum of the entries

    def settle(self, reserved: int, used: int) -> float | None:
        """Correct the oldest open reservation of `reserved`; its stamp, None if gone.

        The oldest, because calls of one size mostly come back in the order they went.
        """
        for entry in self.entries:
            if not entry.settled and entry.amount == reserved:
                entry.amount, entry.settled = used, True
                self.total += used - reserved
                return entry.stamp
        return None

    def reconcile(self, now: float, counted: int, seen_until: float | None) -> None:
        """Make the phantom entries add up to what the service counted beyond our own.

        Ours sent up to `seen_until` (the request the answer is for) had arrived when the
        service counted; later ones may not have. Phantoms go up (what others spent since the
        last count, spread over that span), or down, newest first, when others' old usage
        left the service's window before our phantom of it left ours.
        """
        own = 0
        for entry in self.entries:
            if seen_until is None or entry.stamp <= seen_until:
                own += entry.amount
        if seen_until is not None:
            since = seen_until - self.seconds
            own += sum(e.amount for e in self.gone if since < e.stamp <= seen_until)
        phantoms = sum(entry.amount for entry in self.phantoms)
        change = max(0, counted - own) - phantoms
        span_start = max(self.observed_at, now - self.seconds)
        self.observed_at = now
        if change > 0:
            self._book_others(now, change, span_start)
            return
        for entry in reversed(self.phantoms):
            if change == 0:
                break
            taken = min(entry.amount, -change)
            entry.amount -= taken
            self.total -= taken
            change += taken
