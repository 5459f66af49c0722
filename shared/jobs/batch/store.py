"""The `batches` container: creating part documents, paging through the open ones, and the
ETag lease a poller (or the worker submitting a job) holds while it works on one.

Every write of a claimed document goes through :meth:`BatchDocs.save`, which re-reads the
document, checks that the lease is still ours and replaces it under the ETag of that read
(the local Cosmos DB server answers a write with an ETag it does not keep, so the ETag always
comes from a read). A run that lost its lease (it expired, someone else claimed it) gets
:class:`LeaseLost` and stops touching the batch.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from azure.cosmos.exceptions import CosmosAccessConditionFailedError

from shared.core.clock import now
from shared.core.store import BATCHES, Store
from shared.jobs.batch.models import FINISHED, BatchDoc

log = logging.getLogger(__name__)

PAGE_SIZE = 100
OPEN_ORDER = {"submitted": 0, "creating": 1, "waiting": 2}


class LeaseLost(Exception):
    """Someone else holds the batch now; the run stops working on it."""


class BatchDocs:
    def __init__(self, store: Store, lease_seconds: float) -> None:
        self._store = store
        self._lease = timedelta(seconds=lease_seconds)

    async def create(self, doc: BatchDoc) -> bool:
        """Insert `doc` unless its id exists (a redelivered job message); True if inserted."""
        return await self._store.create(BATCHES, _dump(doc)) is not None

    async def get(self, batch_doc_id: str) -> BatchDoc | None:
        raw = await self._store.read(BATCHES, batch_doc_id, batch_doc_id)
        return BatchDoc.model_validate(raw) if raw is not None else None

    async def of_job(self, job_id: str) -> list[BatchDoc]:
        rows = await self._store.query(
            BATCHES, "SELECT * FROM c WHERE c.job_id = @job_id", {"@job_id": job_id}
        )
        return sorted((BatchDoc.model_validate(r) for r in rows), key=lambda d: d.part)

    async def open_ids(self) -> AsyncIterator[str]:
        """Ids of the documents not done yet, page by page (Cosmos DB continuation tokens):
        running parts first (their finished batches free room in the quota), then those
        being created, then the waiting ones, oldest first (they take the room in turn)."""
        rows: list[tuple[int, str, str]] = []
        token: str | None = None
        while True:
            page, token = await self._store.query_page(
                BATCHES,
                "SELECT c.id, c.state, c.created_at FROM c WHERE c.state != 'done'",
                page_size=PAGE_SIZE,
                continuation=token,
            )
            rows.extend(
                (OPEN_ORDER.get(str(r.get("state")), 0), str(r.get("created_at")), str(r["id"]))
                for r in page
            )
            if not token:
                break
        for *_, batch_doc_id in sorted(rows):
            yield batch_doc_id

    async def enqueued(self, deployment: str, *, besides: str) -> int:
        """Estimated tokens the deployment's parts other than `besides` hold in its
        enqueued-token quota: those being created, and those whose batch has not finished."""
        rows = await self._store.query(
            BATCHES,
            "SELECT c.id, c.tokens, c.batch_status FROM c WHERE c.deployment = @deployment "
            "AND (c.state = 'creating' OR c.state = 'submitted')",
            {"@deployment": deployment},
        )
        return sum(
            int(row.get("tokens") or 0)
            for row in rows
            if row["id"] != besides and row.get("batch_status") not in FINISHED
        )

    async def claim(self, batch_doc_id: str, owner: str) -> BatchDoc | None:
        """Take the lease on an open document; None when it is done, gone, or someone else's
        lease has not expired (or they claimed it a moment before us)."""
        raw = await self._store.read(BATCHES, batch_doc_id, batch_doc_id)
        if raw is None:
            return None
        doc = BatchDoc.model_validate(raw)
        if doc.state == "done" or _held_by_other(doc, owner, now()):
            return None
        doc.lease_owner, doc.lease_until = owner, now() + self._lease
        try:
            stored = await self._store.replace_if_unchanged(BATCHES, _dump(doc), raw["_etag"])
        except CosmosAccessConditionFailedError:
            return None
        return BatchDoc.model_validate(stored)

    async def save(self, doc: BatchDoc, owner: str, **changes: Any) -> BatchDoc:
        """Write `changes` to a document we hold, renewing the lease. Raises LeaseLost."""
        raw = await self._store.read(BATCHES, doc.id, doc.id)
        if raw is None:
            raise LeaseLost(f"batch document {doc.id} is gone")
        current = BatchDoc.model_validate(raw)
        if current.lease_owner != owner:
            raise LeaseLost(f"batch document {doc.id} is claimed by {current.lease_owner}")
        renewed = {"lease_until": now() + self._lease, **changes, "updated_at": now()}
        changed = current.model_copy(update=renewed)
        try:
            stored = await self._store.replace_if_unchanged(BATCHES, _dump(changed), raw["_etag"])
        except CosmosAccessConditionFailedError:
            raise LeaseLost(f"batch document {doc.id} changed under us") from None
        return BatchDoc.model_validate(stored)

    async def take_booking(self, doc: BatchDoc, owner: str) -> tuple[BatchDoc, BatchDoc | None]:
        """Clear a document's team booking and what its lines used, under its ETag and our
        lease: the document now, and as it was when it held a booking (None: it held none,
        so a repeated run settles nothing). Raises LeaseLost."""
        raw = await self._store.read(BATCHES, doc.id, doc.id)
        if raw is None:
            raise LeaseLost(f"batch document {doc.id} is gone")
        current = BatchDoc.model_validate(raw)
        if current.lease_owner != owner:
            raise LeaseLost(f"batch document {doc.id} is claimed by {current.lease_owner}")
        if current.booking is None:
            return current, None
        cleared = {"booking": None, "used_tokens": 0, "used_micros": 0, "updated_at": now()}
        changed = current.model_copy(update=cleared)
        try:
            stored = await self._store.replace_if_unchanged(BATCHES, _dump(changed), raw["_etag"])
        except CosmosAccessConditionFailedError:
            raise LeaseLost(f"batch document {doc.id} changed under us") from None
        return BatchDoc.model_validate(stored), current

    async def release(self, doc: BatchDoc, owner: str) -> None:
        """Give the lease back, so the next run need not wait for it to expire."""
        with contextlib.suppress(LeaseLost):
            await self.save(doc, owner, lease_owner=None, lease_until=None)


def _held_by_other(doc: BatchDoc, owner: str, moment: datetime) -> bool:
    return (
        doc.lease_owner is not None
        and doc.lease_owner != owner
        and doc.lease_until is not None
        and doc.lease_until > moment
    )


def _dump(doc: BatchDoc) -> dict[str, Any]:
    return doc.model_dump(mode="json", exclude={"etag"})
