"""One slice per job at a time: a lease on the job document, written under its ETag.

A message takes the job's lease before it reads which items are done, and its slice holds
it, renewed every third of `JOB_LEASE_SECONDS`, until its results are written and what
follows is decided. Then the lease is released, or handed to the continuation (whose
message names it in `lease`), which holds it from its due time. A message that finds a live
lease held by someone else is sent again, delayed to the lease's end; a host that died
holding one leaves it to expire. A slice starts no new request once its own lease may have
run out, while the others wait a grace period more before they take it: the holder's clock and
theirs differ, and the holder's requests in flight finish and their answers are written or put
away (shared/jobs/answers.py). The rules: docs/jobs.md#one-slice-at-a-time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from shared.core.clock import now
from shared.jobs.models import JobDoc, JobLease
from shared.jobs.store import JobStore

log = logging.getLogger(__name__)

RENEWALS_PER_LEASE = 3
# Of JOB_LEASE_SECONDS: how long past its `until` a lease still keeps the others out (15 s at
# 60). It covers the clocks of different hosts and the lapsed holder's last steps: its requests
# in flight finishing, their answers written or put away.
GRACE_SHARE = 0.25


def new_owner() -> str:
    return uuid.uuid4().hex


class Lease:
    """This message's claim on its job. `take` it; while `kept`, it is renewed; `lost` once
    it may have run out (no renewal for a lease's length, or someone else took it)."""

    def __init__(self, jobs: JobStore, job_id: str, seconds: float, handed: str | None) -> None:
        self.jobs = jobs
        self.job_id = job_id
        self.seconds = seconds
        self.handed = handed  # the lease id a continuation was handed, if any
        self.owner = new_owner()
        self.taken = False
        self._valid_until = 0.0  # monotonic: the start of the last successful write + seconds
        self._taken_over = False

    @property
    def lost(self) -> bool:
        return self._taken_over or time.monotonic() >= self._valid_until

    async def take(self) -> datetime | None:
        """Take the lease: None when taken, else when the live lease of another ends (its
        `until` and the grace period)."""
        held_until: datetime | None = None
        grace = timedelta(seconds=self.seconds * GRACE_SHARE)

        def decide(job: JobDoc) -> dict[str, Any] | None:
            nonlocal held_until
            lease = job.lease
            mine = lease is not None and lease.owner in (self.owner, self.handed)
            if lease is not None and not mine and lease.until + grace > now():
                held_until = lease.until + grace
                return None
            return {"lease": self._until(self.seconds)}

        started = time.monotonic()
        _, changed = await self.jobs.change(self.job_id, decide)
        if changed:
            self.taken = True
            self._valid_until = started + self.seconds
        return held_until if not changed else None

    async def renew(self) -> bool:
        """Extend the lease; False when someone else holds it now."""

        def decide(job: JobDoc) -> dict[str, Any] | None:
            if job.lease is None or job.lease.owner != self.owner:
                return None
            return {"lease": self._until(self.seconds)}

        started = time.monotonic()
        _, changed = await self.jobs.change(self.job_id, decide)
        if changed:
            self._valid_until = started + self.seconds
        else:
            self._taken_over = True
        return changed

    @contextlib.asynccontextmanager
    async def kept(self) -> AsyncIterator[Lease]:
        """Renew the lease in the background while the block runs."""
        task = asyncio.create_task(self._renewing())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _renewing(self) -> None:
        while not self._taken_over:
            await asyncio.sleep(self.seconds / RENEWALS_PER_LEASE)
            try:
                if not await self.renew():
                    log.warning("job %s: lease taken over; this slice stops", self.job_id)
            except Exception as error:  # Cosmos DB away: the lease runs out unless renewed
                log.warning("job %s: lease not renewed (%s)", self.job_id, type(error).__name__)

    async def hand_over(self, due_in: float) -> str | None:
        """Hand the lease to a continuation due in `due_in` seconds: the id its message
        carries, or None when this lease is not ours to hand (lost, or never taken)."""
        if not self.taken:
            return None
        successor = new_owner()

        def decide(job: JobDoc) -> dict[str, Any] | None:
            if job.lease is None or job.lease.owner != self.owner:
                return None
            until = now() + timedelta(seconds=due_in + self.seconds)
            return {"lease": JobLease(owner=successor, until=until)}

        try:
            _, changed = await self.jobs.change(self.job_id, decide)
        except Exception as error:  # the continuation waits for this lease to run out
            log.warning("job %s: lease not handed on (%s)", self.job_id, type(error).__name__)
            return None
        self.taken = False
        return successor if changed else None

    async def release(self) -> None:
        """Give the lease up (best effort: otherwise it runs out)."""
        if not self.taken:
            return

        def decide(job: JobDoc) -> dict[str, Any] | None:
            return {"lease": None} if job.lease and job.lease.owner == self.owner else None

        try:
            await self.jobs.change(self.job_id, decide)
        except Exception as error:
            log.warning("job %s: lease not released (%s)", self.job_id, type(error).__name__)
        self.taken = False

    def _until(self, seconds: float) -> JobLease:
        return JobLease(owner=self.owner, until=now() + timedelta(seconds=seconds))
