"""Instances sharing one quota through the ledger in the local Cosmos DB server
(shared/aoai/quota_share.py), in compressed time: three shares of one deployment's ledger
take requests as fast as they are let, and what they took together never passes the quota
in any window while using most of it; with Cosmos DB cut, a share answers "on your own" within
its timeout and reports what was sent meanwhile once the server is back; an idle share hands
its hold back; a job on one instance leaves the headroom for chats served by another."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque

from devstack.emulators.outage import FaultProxy
from devstack.emulators.stack import EmulatorStack
from shared.aoai.priority import HeadroomPolicy
from shared.aoai.quota import DeploymentLimiter
from shared.aoai.quota_ledger import Quota
from shared.aoai.quota_share import QuotaShare
from shared.core.settings import load_settings
from shared.core.store import QUOTA_LEDGER, Store, create_store

WINDOW = 2.0  # seconds of a compressed minute
QUOTA = Quota(
    tokens=3000,
    requests=None,
    token_window=WINDOW,
    request_window=WINDOW / 6,
    scale=WINDOW / 60,
)
ITEM = 150


def most_in_a_window(taken: list[tuple[float, int]], window: float) -> int:
    """The most tokens taken in any `window` seconds (sliding, as the service counts)."""
    live: deque[tuple[float, int]] = deque()
    total = most = 0
    for stamp, tokens in sorted(taken):
        live.append((stamp, tokens))
        total += tokens
        while live[0][0] <= stamp - window:
            total -= live.popleft()[1]
        most = max(most, total)
    return most


async def test_three_instances_share_one_quota_without_passing_it(store: Store) -> None:
    doc_id = f"test|{uuid.uuid4().hex[:8]}"
    shares = [QuotaShare(store, doc_id, f"i{n}", timeout=2.0) for n in range(3)]
    taken: list[tuple[float, int]] = []
    deadline = time.time() + 3 * WINDOW

    async def instance(share: QuotaShare) -> None:
        while time.time() < deadline:
            ok = await share.take(ITEM, QUOTA, max_wait=WINDOW)
            if ok:
                taken.append((time.time(), ITEM))
            assert ok is not None, "the ledger was reachable the whole time"

    await asyncio.gather(*(instance(share) for share in shares))
    assert most_in_a_window(taken, WINDOW) <= QUOTA.tokens
    # Three windows' worth of quota, less the first window's ramp: most of it was used.
    assert sum(tokens for _, tokens in taken) >= 0.8 * 3 * QUOTA.tokens
    assert all(share.stats.grants > 0 for share in shares), "every instance got room"
    assert sum(share.stats.failures for share in shares) == 0


async def test_cosmos_db_away_the_share_says_so_and_reports_later(
    store: Store, emulators: EmulatorStack, app_environ: dict[str, str]
) -> None:
    doc_id = f"test|{uuid.uuid4().hex[:8]}"
    with FaultProxy(emulators.ports.cosmos) as proxy:
        proxied = create_store(load_settings({**app_environ, "COSMOS_ENDPOINT": proxy.endpoint()}))
        try:
            # Away for 30 Azure seconds: 1 s at this compression.
            share = QuotaShare(proxied, doc_id, "away", timeout=0.5, open_seconds=30.0)
            assert await share.take(ITEM, QUOTA, max_wait=1.0) is True
            proxy.cut()
            started = time.monotonic()
            # The hold runs out; the renewal fails: on its own, within the timeout.
            await asyncio.sleep(QUOTA.hold)
            assert await share.take(ITEM, QUOTA, max_wait=1.0) is None
            assert time.monotonic() - started < QUOTA.hold + 1.0
            assert not share.available
            share.sent(777, QUOTA)  # sent while away (a chat, which never waits)
            proxy.restore()
            await asyncio.sleep(1.0)  # open_seconds, compressed
            assert await share.take(ITEM, QUOTA, max_wait=1.0) is True
            await asyncio.sleep(4 * QUOTA.hold)  # the last request is reported, the hold back
            doc = await store.read(QUOTA_LEDGER, doc_id, doc_id)
            assert doc is not None
            reported = sum(cell[0] for cell in doc["slots"].values())
            assert reported == ITEM + 777 + ITEM
            assert share.stats.failures == 1
        finally:
            await proxied.aclose()


async def test_an_idle_instance_hands_its_hold_back(store: Store) -> None:
    doc_id = f"test|{uuid.uuid4().hex[:8]}"
    share = QuotaShare(store, doc_id, "idle", timeout=2.0)
    for _ in range(5):  # a pace: the next hold asks for more than one request
        assert await share.take(ITEM, QUOTA, max_wait=1.0) is True
    doc = await store.read(QUOTA_LEDGER, doc_id, doc_id)
    assert doc is not None
    assert "idle" in doc["holds"]
    await asyncio.sleep(4 * QUOTA.hold)
    doc = await store.read(QUOTA_LEDGER, doc_id, doc_id)
    assert doc is not None
    assert doc["holds"] == {}
    assert sum(cell[0] for cell in doc["slots"].values()) == 5 * ITEM


async def test_a_limiter_books_a_request_at_its_answer_and_takes_a_refused_one_back(
    store: Store,
) -> None:
    """The service counts a request from its arrival, which is before its answer but after
    the hold it came from: the limiter re-books it at the answer, at what was charged."""
    doc_id = f"test|{uuid.uuid4().hex[:8]}"
    share = QuotaShare(store, doc_id, "limiter", timeout=2.0)
    limiter = DeploymentLimiter(QUOTA.tokens, None, minute=WINDOW, share=share)
    sent_at = time.time()
    assert await limiter.acquire(500, max_wait=1.0, job=True)
    await asyncio.sleep(0.3)  # upstream
    limiter.settle(500, 450)
    assert await limiter.acquire(300, max_wait=1.0, job=True)
    limiter.settle(300, 0)  # refused (429): not charged, no request
    await asyncio.sleep(4 * QUOTA.hold)  # reported by the flush
    doc = await store.read(QUOTA_LEDGER, doc_id, doc_id)
    assert doc is not None
    booked = {int(slot): cell for slot, cell in doc["slots"].items() if any(cell)}
    assert list(booked.values()) == [[450, 1, 0, 0]]
    assert min(booked) >= QUOTA.slot_of(sent_at + 0.3)


async def chats_beside_a_job(store: Store, policy: HeadroomPolicy) -> list[tuple[float, int]]:
    """Two instances of one deployment, as Flex Consumption scales them: one serves chats
    (100 tokens every 0.4 s, 500 a window), the other runs a job that takes requests as fast
    as it is let, for three windows once the chats have run one alone (the headroom is for
    the use seen lately: docs/jobs.md). Every send, stamped."""
    doc_id = f"test|{uuid.uuid4().hex[:8]}"
    http, queue = (
        DeploymentLimiter(
            QUOTA.tokens,
            None,
            minute=WINDOW,
            headroom=policy,
            share=QuotaShare(store, doc_id, name, timeout=2.0),
        )
        for name in ("http", "queue")
    )
    sent: list[tuple[float, int]] = []
    deadline = time.time() + 4 * WINDOW

    async def chats() -> None:
        while time.time() < deadline:
            http.interactive(100)
            sent.append((time.time(), 100))
            await asyncio.sleep(0.4)

    async def job() -> None:
        await asyncio.sleep(WINDOW)  # the chats come first: the job starts beside them
        while time.time() < deadline:
            if await queue.acquire(ITEM, max_wait=WINDOW, job=True):
                sent.append((time.time(), ITEM))
                queue.settle(ITEM, ITEM)

    await asyncio.gather(chats(), job())
    await http.aclose()
    await queue.aclose()
    return sent


async def test_a_job_leaves_room_for_the_chats_another_instance_serves(store: Store) -> None:
    """The job's instance serves no chat, so only the ledger can tell it of them: it leaves
    the headroom for every instance's interactive use, and no window passes the quota. With
    the policy off, the job takes the chats' room and the service would refuse some."""
    policy = HeadroomPolicy(factor=0.25, floor=1000)
    sent = await chats_beside_a_job(store, policy)
    assert most_in_a_window(sent, WINDOW) <= QUOTA.tokens
    assert sum(t for _, t in sent) >= 0.7 * 3 * QUOTA.tokens  # the job still used the rest
    crowded = await chats_beside_a_job(store, HeadroomPolicy())
    assert most_in_a_window(crowded, WINDOW) > QUOTA.tokens
