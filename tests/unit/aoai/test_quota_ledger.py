"""The quota ledger's arithmetic (shared/aoai/quota_ledger.py): holds, reports, expiry, waits,
and the promise the design rests on: instances that send only from their holds never take the
service's sliding-window count past the quota."""

from __future__ import annotations

import random
from collections import deque

import pytest

from shared.aoai.priority import HeadroomPolicy
from shared.aoai.quota_ledger import Ledger, Quota

QUOTA = Quota(tokens=1000, requests=10, token_window=60.0, request_window=10.0)


def test_a_grant_takes_what_is_asked_when_it_fits_and_records_the_hold() -> None:
    ledger = Ledger("primary|emb")
    grant = ledger.grant("a", 100.0, QUOTA, need=(300, 1), ask=(400, 3))
    assert (grant.tokens, grant.requests, grant.wait) == (400, 3, 0.0)
    assert grant.until == pytest.approx(100.0 + QUOTA.hold)
    assert ledger.holds["a"][:2] == [400, 3]


def test_another_instance_s_hold_counts_until_a_window_after_it_ends() -> None:
    ledger = Ledger("x")
    first = ledger.grant("a", 100.0, QUOTA, need=(800, 1), ask=(800, 1))
    refused = ledger.grant("b", 100.5, QUOTA, need=(300, 1), ask=(300, 1))
    assert refused.tokens == 0
    # The service may count a send made at the end of a's hold for a whole window after it.
    assert refused.wait == pytest.approx(first.until + 60.0 - 100.5)
    assert ledger.grant("b", first.until + 60.01, QUOTA, need=(300, 1), ask=(300, 1)).tokens == 300


def test_a_report_replaces_the_hold_with_what_was_sent_and_frees_the_rest() -> None:
    ledger = Ledger("x")
    ledger.grant("a", 100.0, QUOTA, need=(800, 1), ask=(800, 1))
    ledger.report({QUOTA.slot_of(100.2): (200, 1)})
    ledger.grant("a", 101.0, QUOTA, need=(0, 0), ask=(0, 0))  # hands the hold back
    assert "a" not in ledger.holds
    assert ledger.used(101.0, QUOTA) == (200, 1)
    # Past the request window (the pace, below), the minute's room is all that binds.
    assert ledger.grant("b", 112.0, QUOTA, need=(800, 1), ask=(900, 1)).tokens == 800


def test_sends_count_until_their_slot_has_left_the_window() -> None:
    ledger = Ledger("x")
    slot = QUOTA.slot_of(100.1)  # ends at 100.5
    ledger.report({slot: (600, 1)})
    assert ledger.used(100.5 + 60.0 - 0.01, QUOTA)[0] == 600  # a window after the slot's end
    assert ledger.used(100.5 + 60.0 + 0.01, QUOTA)[0] == 0
    assert ledger.used(100.5 + 10.0 - 0.01, QUOTA)[1] == 1  # requests: 10 s
    assert ledger.used(100.5 + 10.0 + 0.01, QUOTA)[1] == 0


def test_the_wait_is_until_enough_has_left_the_window() -> None:
    ledger = Ledger("x")
    ledger.report({QUOTA.slot_of(10.0): (400, 1), QUOTA.slot_of(20.0): (400, 1)})
    grant = ledger.grant("a", 30.0, QUOTA, need=(500, 1), ask=(500, 1))
    assert grant.tokens == 0
    assert grant.wait == pytest.approx(10.0 + 60.0 - 30.0)


def test_requests_bind_as_well_as_tokens() -> None:
    ledger = Ledger("x")
    ledger.report({QUOTA.slot_of(50.0): (10, 10)})
    grant = ledger.grant("a", 51.0, QUOTA, need=(10, 1), ask=(10, 1))
    assert grant.tokens == 0
    assert grant.wait == pytest.approx(50.0 + 10.0 - 51.0)
    assert ledger.grant("a", 51.0, QUOTA, need=(10, 1), ask=(10, 1)).tokens == 0


def test_a_job_leaves_the_headroom_free() -> None:
    ledger = Ledger("x")
    ledger.report({QUOTA.slot_of(5.0): (500, 1)})
    room = (200, 0)
    # At 16 s the 500 have left the request window (the pace) and are still in the minute.
    assert ledger.grant("a", 16.0, QUOTA, need=(400, 1), ask=(400, 1), headroom=room).tokens == 0
    assert ledger.grant("a", 16.0, QUOTA, need=(300, 1), ask=(400, 1), headroom=room).tokens == 300


def test_a_job_leaves_the_request_headroom_free_too() -> None:
    ledger = Ledger("x")
    ledger.report({QUOTA.slot_of(5.0): (100, 7)})  # 7 of 10 requests in the window
    room = (0, 3)
    refused = ledger.grant("a", 6.0, QUOTA, need=(10, 1), ask=(10, 1), headroom=room)
    assert refused.tokens == 0
    assert refused.wait == pytest.approx(5.0 + 10.0 - 6.0)  # when the 7 leave the window
    granted = ledger.grant("a", 6.0, QUOTA, need=(10, 1), ask=(10, 5), headroom=(0, 2))
    assert (granted.tokens, granted.requests) == (10, 1)


def test_jobs_leave_headroom_for_every_instance_s_interactive_use() -> None:
    ledger = Ledger("x")
    policy = HeadroomPolicy(factor=0.25, floor=100)
    # Another instance's chats: 80 tokens in 2 requests at 5 s, 40 in 1 at 30 s; a job's 300.
    ledger.report({QUOTA.slot_of(5.0): (380, 3, 80, 2), QUOTA.slot_of(30.0): (40, 1, 40, 1)})
    assert ledger.interactive(31.0, QUOTA) == (120, 1)  # the 5 s ones left the request window
    assert ledger.headroom(31.0, QUOTA, policy) == (100, 3)  # the floor; 1 + 2 x sqrt(1)
    assert ledger.interactive(70.0, QUOTA) == (40, 0)
    assert ledger.interactive(91.0, QUOTA) == (0, 0)
    assert ledger.headroom(91.0, QUOTA, policy) == (0, 0)  # quiet: the job has it all
    again = Ledger.of("x", ledger.doc())
    assert again.slots == ledger.slots
    assert Ledger.of("x", {"slots": {"3": [10, 1]}}).slots == {3: [10, 1, 0, 0]}  # older docs


def test_jobs_get_a_request_window_s_share_of_the_quota_and_the_request_on_top() -> None:
    """The pace: a burst is a request window's share of the quota (1,000 / 6 = 166) and the
    one request it is for; what jobs sent counts in it for a request window."""
    ledger = Ledger("x")
    assert QUOTA.pace() == 166
    assert ledger.grant("a", 100.0, QUOTA, need=(100, 1), ask=(1000, 5)).tokens == 266
    ledger.report({QUOTA.slot_of(100.2): (266, 1)})
    ledger.grant("a", 100.6, QUOTA, need=(0, 0), ask=(0, 0))  # reported; the hold handed back
    refused = ledger.grant("b", 100.6, QUOTA, need=(100, 1), ask=(100, 1))
    assert refused.tokens == 0
    assert refused.wait == pytest.approx(100.5 + 10.0 - 100.6)  # the slot leaves the window
    assert ledger.grant("b", 110.6, QUOTA, need=(100, 1), ask=(100, 1)).tokens == 100
    assert ledger.used(110.6, QUOTA)[0] == 266 + 100  # both still in the minute


def test_interactive_tokens_do_not_count_in_the_jobs_pace() -> None:
    ledger = Ledger("x")
    ledger.report({QUOTA.slot_of(100.0): (300, 3, 300, 3)})  # chats, never held back
    assert ledger.grant("a", 100.5, QUOTA, need=(100, 1), ask=(100, 1)).tokens == 100


def test_a_headroom_lowers_the_pace_too() -> None:
    assert QUOTA.pace(400) == 100  # (1,000 - 400) / 6


def test_the_document_round_trips_and_prunes_what_no_window_counts() -> None:
    ledger = Ledger("primary|emb")
    ledger.grant("a", 100.0, QUOTA, need=(100, 1), ask=(100, 1))
    ledger.report({QUOTA.slot_of(39.0): (5, 1), QUOTA.slot_of(99.0): (7, 1)})
    again = Ledger.of("primary|emb", ledger.doc())
    assert again.slots == ledger.slots
    assert again.holds["a"][2] == pytest.approx(ledger.holds["a"][2])
    again.prune(100.0 + 0.1, QUOTA)
    assert QUOTA.slot_of(39.0) not in again.slots
    assert QUOTA.slot_of(99.0) in again.slots
    again.prune(ledger.holds["a"][2] + 60.0 + QUOTA.slot + 0.1, QUOTA)
    assert again.holds == {}


def test_instances_that_send_only_from_their_holds_never_pass_the_quota() -> None:
    """Five instances renew at random moments, send at random moments within their holds,
    report late; the service's own sliding count (sends in the last 60 s) stays within."""
    rng = random.Random(7)
    ledger = Ledger("x")
    holds: dict[str, list[float]] = {}  # instance -> [tokens left, requests left, until]
    unreported: dict[str, dict[int, tuple[int, int]]] = {k: {} for k in "abcde"}
    sent: deque[tuple[float, int]] = deque()
    granted = 0
    now = 0.0
    for _ in range(4000):
        now += rng.uniform(0.0, 0.4)
        who = rng.choice("abcde")
        hold = holds.get(who)
        size = rng.choice((50, 120, 300))
        if hold and now < hold[2] - QUOTA.slot and hold[0] >= size and hold[1] >= 1:
            hold[0] -= size
            hold[1] -= 1
            sent.append((now, size))
            cell = unreported[who].setdefault(QUOTA.slot_of(now), (0, 0))
            unreported[who][QUOTA.slot_of(now)] = (cell[0] + size, cell[1] + 1)
        else:
            ledger.report(unreported[who])
            unreported[who] = {}
            ledger.prune(now, QUOTA)
            grant = ledger.grant(who, now, QUOTA, need=(size, 1), ask=(rng.choice((size, 400)), 2))
            holds[who] = [grant.tokens, grant.requests, grant.until]
            granted += grant.tokens > 0
        while sent and sent[0][0] <= now - 60.0:
            sent.popleft()
        assert sum(tokens for _, tokens in sent) <= QUOTA.tokens
        # ...and in any request window no more than its share and one request.
        recent = sum(tokens for stamp, tokens in sent if stamp > now - QUOTA.request_window)
        assert recent <= QUOTA.pace() + 300  # the largest request
    assert granted > 100  # the instances did get room, often
