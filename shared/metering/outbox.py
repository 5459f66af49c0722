"""The outbox: usage documents and filter events that Cosmos DB did not take at once, written
behind as messages on `OUTBOX_QUEUE` and upserted later by `drain_outbox`. It loses nothing:

- a document Cosmos DB failed, or did not answer within the caller's bound
  (STORE_ANSWER_TIMEOUT on the answer path), goes to the queue; every document has its id
  before it is written, so one drained twice (or written late by the server after all) is
  still one;
- a document too large for a queue message (64 KiB after base64) goes as a claim check: the
  document in a blob (`outbox/...`), the message naming it; the blob is deleted once stored;
- a drain that finds Cosmos DB still failing puts the message back, waiting longer each time;
  if Storage fails too, the drain raises and the host delivers the message again;
- a refusal that no retry can change (400, 409, 413: `PERMANENT_STATUS`) and a message that is
  not an outbox message are *parked*: a blob `outbox-parked/...` holding the reason, the
  container and the document (or the raw message), and a warning naming the id;
- what the host moved to `<OUTBOX_QUEUE>-poison` after five failed deliveries is swept on
  POISON_SWEEP_SCHEDULE (`sweep`): stored, parked, or left for the next run while Cosmos DB
  still fails.

Logs name containers, ids and reasons, never a document's fields: a filter event may hold the
filtered text (CONTENT_FILTER_STORE_TEXT) and a usage document the caller's tags.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
from datetime import timedelta
from typing import Any, Final, Literal
from urllib.parse import quote

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.cosmos.exceptions import CosmosHttpResponseError
from pydantic import BaseModel, Field, ValidationError, model_validator

from shared.core.clock import now
from shared.core.queues import POISON_SUFFIX, JobQueues, fits_in_message
from shared.core.store import USAGE, Store
from shared.metering.rollups import UsageRollups

log = logging.getLogger(__name__)

OutboxContainer = Literal["usage", "content_filter_events"]

# A drain that finds Cosmos DB still down puts the document back, waiting longer each time.
OUTBOX_FIRST_DELAY: Final = timedelta(seconds=5)
OUTBOX_MAX_DELAY: Final = timedelta(minutes=5)
# Cosmos DB answers that no retry changes: a malformed document (400), a conflict an upsert
# cannot resolve (409: a unique-key violation), a document over 2 MB (413). 401/403/404 are
# left to retry: a role assignment or a container can be fixed while the message waits.
PERMANENT_STATUS: Final = frozenset({400, 409, 413})
BODIES: Final = "outbox"
PARKED: Final = "outbox-parked"
SWEEP_MESSAGES: Final = 512
SWEEP_LEASE_SECONDS: Final = 120
REASON_CHARS: Final = 500


class OutboxMessage(BaseModel):
    """A document waiting for Cosmos DB: `{container, document | document_blob, attempt}`."""

    container: OutboxContainer
    document: dict[str, Any] | None = None
    document_blob: str | None = Field(
        default=None, description="The claim check of a document too large for a message."
    )
    attempt: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _one_document(self) -> OutboxMessage:
        if (self.document is None) == (self.document_blob is None):
            raise ValueError("an outbox message holds a document or names its blob, not both")
        return self


class Parked(BaseModel):
    """What `outbox-parked/...` holds: why it could not be stored, and what it was."""

    reason: str
    parked_at: str
    container: str | None = None
    document: dict[str, Any] | None = None
    raw: str | None = None


def permanent(error: Exception) -> bool:
    """True for a refusal no retry changes: Cosmos DB's `PERMANENT_STATUS`, or the SDK's
    ValueError for a document it will not send (an id with `/`, `\\`, `?` or `#`)."""
    if isinstance(error, ValueError):
        return True
    return isinstance(error, CosmosHttpResponseError) and error.status_code in PERMANENT_STATUS


def _refusal(error: Exception) -> str:
    if isinstance(error, CosmosHttpResponseError):
        sub = getattr(error, "sub_status", None)
        return f"Cosmos DB {error.status_code}" + (f"/{sub}" if sub else "")
    return type(error).__name__


def _reason(error: Exception) -> str:
    """The refusal and the service's message (for the parked blob, never the log)."""
    message = getattr(error, "message", None) or str(error)
    return f"{_refusal(error)}: {message}"[:REASON_CHARS]


def _safe(name: str) -> str:
    return quote(name, safe="")


class Outbox:
    """Writes documents to Cosmos DB or behind them; drains and sweeps what waits."""

    def __init__(
        self,
        store: Store,
        queues: JobQueues,
        queue_name: str,
        *,
        rollups: UsageRollups | None = None,
    ) -> None:
        self._store = store
        self._queues = queues
        self.queue_name = queue_name
        self._rollups = rollups

    async def write(
        self, container: OutboxContainer, document: dict[str, Any], *, within: float | None
    ) -> None:
        """Upsert `document`; when Cosmos DB fails or gives no answer within `within` seconds
        (None: the SDK's own timeouts), write it behind; park it when refused for good.
        Never raises for a store that fails."""
        try:
            async with asyncio.timeout(within):
                await self._store.upsert(container, document)
            return
        except TimeoutError:
            failure = f"no answer within {within:g} s"
        except (AzureError, ValueError) as error:
            if permanent(error):
                await self._park_or_log(container, document, _reason(error))
                return
            failure = _refusal(error)
        log.warning(
            "writing %s %s to Cosmos DB failed (%s); writing it behind",
            container,
            document["id"],
            failure,
        )
        try:
            await self._send(OutboxMessage(container=container, document=document))
        except Exception as error:
            # Both stores failed: nothing is left to hold the record. Its id, day and request
            # id let it be found in the upstream's own logs; its fields are not logged.
            log.error(
                "LOST %s %s (day %s, request %s): Cosmos DB and the outbox both failed (%s)",
                container,
                document.get("id"),
                document.get("day"),
                document.get("request_id"),
                type(error).__name__,
            )

    async def _send(self, message: OutboxMessage, delay: timedelta | None = None) -> None:
        """Enqueue `message`; a document too large for a message goes as a claim check."""
        text = message.model_dump_json(exclude_none=True)
        if message.document is not None and not fits_in_message(text):
            document = message.document
            blob = f"{BODIES}/{message.container}/{_safe(str(document['id']))}.json"
            await self._queues.put_payload(blob, json.dumps(document).encode("utf-8"))
            message = message.model_copy(update={"document": None, "document_blob": blob})
        seconds = int((delay or timedelta()).total_seconds())
        await self._queues.send(self.queue_name, message, delay_seconds=seconds)

    async def drain(self, body: bytes | str) -> None:
        """One message of OUTBOX_QUEUE (the `drain_outbox` trigger). Stored, put back later
        while Cosmos DB fails, or parked; raises only when Storage fails too, so the host
        delivers it again."""
        try:
            message = OutboxMessage.model_validate_json(body)
        except ValidationError as error:
            raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
            await self._park_raw(raw, f"not an outbox message: {error.error_count()} errors")
            return
        document = await self._document(message)
        if document is None:
            return
        try:
            await self._store_once(message, document)
        except (AzureError, ValueError) as error:
            if permanent(error):
                await self._park(message.container, document, _reason(error))
                await self._forget(message)
                return
            attempt = message.attempt + 1
            delay = min(OUTBOX_FIRST_DELAY * 2 ** (attempt - 1), OUTBOX_MAX_DELAY)
            log.warning(
                "outbox: %s %s still not written (%s); again in %ss",
                message.container,
                document["id"],
                _refusal(error),
                int(delay.total_seconds()),
            )
            await self._send(message.model_copy(update={"attempt": attempt}), delay)

    async def _document(self, message: OutboxMessage) -> dict[str, Any] | None:
        """The message's document, from its claim check if it has one. None when that blob is
        gone: it is deleted only once its document is stored, so this is a redelivery."""
        if message.document is not None:
            return message.document
        assert message.document_blob is not None
        try:
            data = await self._queues.get_payload(message.document_blob)
        except ResourceNotFoundError:
            log.info("outbox: %s already stored (its blob is gone)", message.document_blob)
            return None
        document: dict[str, Any] = json.loads(data)
        return document

    async def _store_once(self, message: OutboxMessage, document: dict[str, Any]) -> None:
        """Upsert; a usage document marks its day for the roll-up timer (that day may be
        closed); then the claim check's blob goes."""
        await self._store.upsert(message.container, document)
        if message.container == USAGE and self._rollups is not None:
            await self._rollups.mark_dirty(document["day"])
        await self._forget(message)

    async def _forget(self, message: OutboxMessage) -> None:
        if message.document_blob is not None:
            await self._queues.delete_payload(message.document_blob)

    async def _park(self, container: str, document: dict[str, Any], reason: str) -> None:
        blob = f"{PARKED}/{container}/{_safe(str(document.get('id')))}.json"
        parked = Parked(
            reason=reason, parked_at=now().isoformat(), container=container, document=document
        )
        await self._queues.put_payload(blob, parked.model_dump_json().encode("utf-8"))
        log.warning(
            "outbox: %s %s refused for good, parked as %s",
            container,
            document.get("id"),
            blob,
        )

    async def _park_or_log(self, container: str, document: dict[str, Any], reason: str) -> None:
        try:
            await self._park(container, document, reason)
        except Exception as error:
            log.error(
                "LOST %s %s (day %s, request %s): refused by Cosmos DB, and parking failed (%s)",
                container,
                document.get("id"),
                document.get("day"),
                document.get("request_id"),
                type(error).__name__,
            )

    async def _park_raw(self, raw: str, reason: str, name: str | None = None) -> None:
        name = name or hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]
        blob = f"{PARKED}/unreadable/{_safe(name)}.txt"
        parked = Parked(reason=reason, parked_at=now().isoformat(), raw=raw)
        await self._queues.put_payload(blob, parked.model_dump_json().encode("utf-8"))
        log.warning("outbox: an unreadable message parked as %s (%s)", blob, reason)

    async def sweep(self) -> int:
        """Store or park what the host moved to the outbox's poison queue; a message whose
        document Cosmos DB still fails stays for the next run. Returns how many were settled;
        never raises."""
        name = self.queue_name + POISON_SUFFIX
        # Raw text: a message the host could not decode is not base64 here either.
        client = self._queues.raw_queue(name)
        try:
            messages = [
                m
                async for m in client.receive_messages(
                    messages_per_page=32,
                    max_messages=SWEEP_MESSAGES,
                    visibility_timeout=SWEEP_LEASE_SECONDS,
                )
            ]
        except Exception:
            log.exception("reading %s failed; the next run tries again", name)
            return 0
        settled = 0
        for raw in messages:
            try:
                if await self._settle_poisoned(str(raw.content or ""), raw.id):
                    await client.delete_message(raw.id, raw.pop_receipt)
                    settled += 1
            except Exception:
                log.exception("outbox poison message %s not settled; it stays", raw.id)
        return settled

    async def _settle_poisoned(self, text: str, message_id: str) -> bool:
        """True once the message's document is stored or parked."""
        try:
            body = base64.b64decode(text, validate=True)
            message = OutboxMessage.model_validate_json(body)
        except (binascii.Error, ValueError):
            await self._park_raw(text, "not a base64 outbox message", message_id)
            return True
        document = await self._document(message)
        if document is None:
            return True
        try:
            await self._store_once(message, document)
        except (AzureError, ValueError) as error:
            if not permanent(error):
                log.warning(
                    "outbox poison: %s %s still not written (%s); the next run tries again",
                    message.container,
                    document.get("id"),
                    _refusal(error),
                )
                return False
            await self._park(message.container, document, _reason(error))
            await self._forget(message)
        log.info("outbox poison: %s %s settled", message.container, document.get("id"))
        return True
