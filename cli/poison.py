"""Poisoned messages: read raw from `<queue>-poison`, shown decoded, requeued base64-encoded.

The host moves two kinds of message to a poison queue: valid base64 that failed five times,
and text that was never base64 (sent without an encode policy), which the host could not
decode at all. Both are read raw here. Requeueing sends the decoded text, or the raw text
when it was not base64, base64-encoded onto the main queue, then deletes the poison copy.
Sending comes first: a crash in between leaves a duplicate, which the job workers skip
(results have deterministic ids), never a loss. The app's poison sweep records and deletes
what it finds, so these see only what it has not taken yet; what it took it keeps whole in a
blob named by the failed-job record, and `requeue_record` sends that (docs/jobs-cli.md).
"""

from __future__ import annotations

import binascii
import logging
from base64 import b64decode
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from azure.storage.queue import QueueMessage
from azure.storage.queue.aio import QueueClient

from shared.core.queues import POISON_SUFFIX, JobQueues, encoded_size, fits_in_message
from shared.core.store import JOBS, Store
from shared.jobs.models import JobDoc

log = logging.getLogger(__name__)

PEEK_MAX: Final = 32  # the most one peek returns (a Storage limit)
# Received messages stay hidden this long; a requeue of 32 messages ends well within it.
RECEIVE_VISIBILITY_SECONDS: Final = 120


@dataclass(frozen=True)
class PoisonMessage:
    queue: str  # the main queue, without -poison
    id: str
    encoding: Literal["base64", "raw"]
    text: str  # decoded when base64, else the raw text
    dequeue_count: int | None
    inserted_on: datetime | None


@dataclass(frozen=True)
class Requeued:
    message: PoisonMessage
    new_id: str | None  # None in a dry run or when it could not be sent
    problem: str | None = None


def decode(raw: str) -> tuple[Literal["base64", "raw"], str]:
    """The text a message carries: base64 of UTF-8 text is decoded, anything else is raw."""
    try:
        data = b64decode(raw, validate=True)
        return "base64", data.decode("utf-8")
    except (binascii.Error, ValueError):
        return "raw", raw


def _message(queue: str, msg: QueueMessage) -> PoisonMessage:
    encoding, text = decode(str(msg.content))
    return PoisonMessage(
        queue=queue,
        id=str(msg.id),
        encoding=encoding,
        text=text,
        dequeue_count=msg.dequeue_count,
        inserted_on=msg.inserted_on,
    )


async def peek(queues: JobQueues, queue: str, max_messages: int = PEEK_MAX) -> list[PoisonMessage]:
    """Up to 32 messages of `<queue>-poison`, without hiding or changing them."""
    client = queues.raw_queue(queue + POISON_SUFFIX)
    found = await client.peek_messages(max_messages=min(max_messages, PEEK_MAX))
    return [_message(queue, m) for m in found]


async def requeue(
    queues: JobQueues,
    queue: str,
    *,
    ids: Collection[str] = (),
    max_messages: int = PEEK_MAX,
    dry_run: bool = False,
) -> list[Requeued]:
    """Move poisoned messages (all, or those in `ids`) back onto `queue`, at most
    `max_messages` in one run. In a dry run nothing is sent, hidden or deleted."""
    if dry_run:
        peeked = await peek(queues, queue, max_messages)
        return [Requeued(m, None) for m in peeked if not ids or m.id in ids]
    done: list[Requeued] = []
    poison = queues.raw_queue(queue + POISON_SUFFIX)
    received = poison.receive_messages(
        messages_per_page=min(max_messages, PEEK_MAX),
        visibility_timeout=RECEIVE_VISIBILITY_SECONDS,
        max_messages=max_messages,
    )
    async for raw in received:
        message = _message(queue, raw)
        if ids and message.id not in ids:
            # Not asked for: visible again at once for the next reader.
            await poison.update_message(raw, visibility_timeout=0)
            continue
        done.append(await _move(queues, poison, raw, message))
    return done


async def _move(
    queues: JobQueues, poison: QueueClient, raw: QueueMessage, message: PoisonMessage
) -> Requeued:
    if not fits_in_message(message.text):
        await poison.update_message(raw, visibility_timeout=0)
        return Requeued(
            message, None, f"{encoded_size(message.text)} bytes once encoded: over 64 KiB"
        )
    new_id = await queues.send(message.queue, message.text)
    await poison.delete_message(raw)
    log.info("requeued poison message %s of %s as %s", message.id, message.queue, new_id)
    return Requeued(message, new_id)


async def requeue_record(
    store: Store, queues: JobQueues, job_id: str, *, dry_run: bool = False
) -> tuple[PoisonMessage, str | None]:
    """Send again the whole message the app's poison sweep kept for failed job `job_id`
    (its `raw_blob`), base64-encoded onto the queue it first came in on. Returns the message
    and its new id (None in a dry run). The worker runs such a job again."""
    found = await store.read(JOBS, job_id, job_id)
    record = JobDoc.model_validate(found) if found is not None else None
    if record is None or record.raw_blob is None or record.source is None:
        raise ValueError(f"job {job_id} keeps no poisoned message (no raw_blob)")
    queue = (record.source.queue or "").removesuffix(POISON_SUFFIX)
    content = (await queues.get_payload(record.raw_blob)).decode("utf-8", errors="replace")
    encoding, text = decode(content)
    message = PoisonMessage(
        queue=queue,
        id=record.source.message_id or "",
        encoding=encoding,
        text=text,
        dequeue_count=None,
        inserted_on=record.created_at,
    )
    if dry_run:
        return message, None
    if not fits_in_message(text):
        raise ValueError(f"{encoded_size(text)} bytes once encoded: over 64 KiB")
    return message, await queues.send(queue, text)
