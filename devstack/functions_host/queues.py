"""Queue triggers with the WebJobs SDK's listener semantics.

- Poll with exponential back-off from 100 ms up to `maxPollingInterval`; reset on a message.
- Fetch `batchSize` messages; fetch again only when in-flight invocations drop to
  `newBatchThreshold`, so at most `batchSize + newBatchThreshold` run at once per queue.
- A fetched message is leased (invisible) and the lease renewed at half its length while the
  invocation runs. Success deletes it; failure makes it visible again after
  `visibilityTimeout`; a failure at `maxDequeueCount` (or an undecodable body) copies the raw
  message to `<queue>-poison` (created if missing) and deletes the original.
- A queue whose name ends with `-poison` has no poison queue of its own (as in the SDK): a
  failed or over-delivered message is neither moved nor released. It stays invisible until
  its lease runs out, then comes back, until it expires.
- Stop: no new fetches; running invocations get a grace period; a message whose invocation did
  not finish is made visible again, never deleted.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage as FunctionQueueMessage
from azure.storage.queue import QueueMessage as StorageMessage

from devstack.functions_host.connections import (
    ClientPool,
    StorageConnection,
    describe,
    resolve_connection,
)
from devstack.functions_host.indexing import FunctionSpec
from devstack.functions_host.invocation import InvocationError, Invoker
from devstack.functions_host.logs import log
from devstack.functions_host.settings import QueueOptions, resolve_references

MIN_POLLING_INTERVAL = 0.1
# The SDK leases a fetched message for 10 minutes and renews at half that while it runs.
DEFAULT_LEASE = timedelta(minutes=10)
POISON_SUFFIX = "-poison"


class UndecodableMessage(ValueError):
    pass


def decode_body(content: str, encoding: str) -> bytes:
    if encoding == "none":
        return content.encode()
    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UndecodableMessage("message is not valid base64") from exc


@dataclass
class _Lease:
    message: StorageMessage
    pop_receipt: str
    abandoned: bool = False


class QueueListener:
    """Polls one queue for one function. `start()`, then `stop(grace)`."""

    def __init__(
        self,
        spec: FunctionSpec,
        invoker: Invoker,
        options: QueueOptions,
        clients: ClientPool,
        *,
        lease: timedelta = DEFAULT_LEASE,
    ) -> None:
        self.spec = spec
        self.queue_name = resolve_references(str(spec.trigger["queueName"])).lower()
        self.connection: StorageConnection = resolve_connection(
            spec.trigger.get("connection"), "queue"
        )
        self._invoker = invoker
        self._options = options
        self._client = clients.queue(self.connection, self.queue_name)
        # The SDK gives a `*-poison` queue no poison queue: never `<name>-poison-poison`.
        self._poison = (
            None
            if self.queue_name.endswith(POISON_SUFFIX)
            else clients.queue(self.connection, f"{self.queue_name}{POISON_SUFFIX}")
        )
        self._lease = lease.total_seconds()
        self._stopping = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._in_flight: dict[asyncio.Task[None], _Lease] = {}
        self._poller: asyncio.Task[None] | None = None

    def start(self) -> None:
        log.info("Listening on queue '%s' via %s", self.queue_name, describe(self.connection))
        self._poller = asyncio.create_task(self._poll(), name=f"queue:{self.queue_name}")

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def stop(self, grace: float) -> None:
        """Stop fetching; wait up to `grace` s for running invocations; release the rest."""
        self._stopping.set()
        self._slot_freed.set()
        if self._poller is not None:
            # Not cancelled: a receive cut short would leave its messages leased (invisible)
            # for the full lease. The poller sees the flag and releases what it just fetched.
            done, _ = await asyncio.wait({self._poller}, timeout=max(grace, 1.0))
            if not done:  # a receive hung (storage unreachable): give up on it
                self._poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._poller
        pending = set(self._in_flight)
        if pending:
            log.info(
                "Waiting up to %.0fs for %d invocation(s) of %s",
                grace,
                len(pending),
                self.spec.name,
            )
            _, pending = await asyncio.wait(pending, timeout=grace)
        abandoned = [self._in_flight[t] for t in pending if t in self._in_flight]
        for lease in abandoned:
            lease.abandoned = True
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for lease in abandoned:
            log.warning("Message %s was not processed; it is visible again", lease.message.id)
            await self._release(lease, 0)

    async def _poll(self) -> None:
        delay = MIN_POLLING_INTERVAL
        max_delay = max(self._options.max_polling_interval.total_seconds(), MIN_POLLING_INTERVAL)
        while not self._stopping.is_set():
            while self.in_flight > self._options.new_batch_threshold:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                if self._stopping.is_set():
                    return
            try:
                batch = await self._fetch()
            except Exception:
                log.exception("Polling queue '%s' failed; retrying", self.queue_name)
                batch = []
            if self._stopping.is_set():
                for message in batch:
                    await self._release(_Lease(message, message.pop_receipt or ""), 0)
                return
            for message in batch:
                lease = _Lease(message=message, pop_receipt=message.pop_receipt or "")
                task = asyncio.create_task(self._process(lease))
                self._in_flight[task] = lease
                task.add_done_callback(self._done)
            if batch:
                delay = MIN_POLLING_INTERVAL
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(delay * 2, max_delay)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        self._slot_freed.set()

    async def _fetch(self) -> list[StorageMessage]:
        size = self._options.batch_size
        try:
            return [
                m
                async for m in self._client.receive_messages(
                    messages_per_page=size, max_messages=size, visibility_timeout=int(self._lease)
                )
            ]
        except ResourceNotFoundError:
            return []  # the queue does not exist yet: nothing to do, as in the host

    async def _process(self, lease: _Lease) -> None:
        try:
            await self._handle(lease)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The lease runs out and the message comes back: nothing is lost.
            log.exception("Completing message %s on '%s' failed", lease.message.id, self.queue_name)

    async def _handle(self, lease: _Lease) -> None:
        message = lease.message
        if (message.dequeue_count or 0) > self._options.max_dequeue_count:
            # Delivered too often without completing (e.g. the host died mid-invocation each
            # time): poison it without another attempt, as the SDK's queue processor does.
            log.warning(
                "Message %s on '%s' was dequeued %d times; not running it again",
                message.id,
                self.queue_name,
                message.dequeue_count,
            )
            await self._move_to_poison(lease)
            return
        try:
            body = decode_body(message.content, self._options.message_encoding)
        except UndecodableMessage:
            log.error(
                "Message %s on '%s' cannot be decoded as %s",
                message.id,
                self.queue_name,
                self._options.message_encoding,
            )
            await self._move_to_poison(lease)
            return
        renew = asyncio.create_task(self._keep_alive(lease))
        succeeded = False
        try:
            await self._invoker.invoke(self.spec, self._argument(message, body), self._reason)
            succeeded = True
        except InvocationError:
            pass
        finally:
            renew.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renew
        if lease.abandoned:
            return
        if succeeded:
            await self._client.delete_message(message.id, lease.pop_receipt)
        elif self._poison is None:
            # Not released, as in the SDK: an immediate retry would spin on a message that
            # already failed its way here. It comes back when the lease runs out.
            log.warning(
                "Message %s on '%s' failed; it stays in the queue and comes back when "
                "its lease ends",
                message.id,
                self.queue_name,
            )
        elif (message.dequeue_count or 0) >= self._options.max_dequeue_count:
            log.warning(
                "Message %s on '%s' has reached MaxDequeueCount of %d",
                message.id,
                self.queue_name,
                self._options.max_dequeue_count,
            )
            await self._move_to_poison(lease)
        else:
            await self._release(lease, int(self._options.visibility_timeout.total_seconds()))

    @property
    def _reason(self) -> str:
        return f"New queue message detected on '{self.queue_name}'."

    def _argument(self, message: StorageMessage, body: bytes) -> Any:
        annotation = self.spec.annotations.get(self.spec.trigger_param)
        if annotation is str:
            return body.decode()
        if annotation is bytes:
            return body
        return FunctionQueueMessage(  # type: ignore[no-untyped-call]
            id=message.id,
            body=body,
            dequeue_count=message.dequeue_count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )

    async def _keep_alive(self, lease: _Lease) -> None:
        while True:
            await asyncio.sleep(self._lease / 2)
            try:
                updated = await self._client.update_message(
                    lease.message.id, lease.pop_receipt, visibility_timeout=int(self._lease)
                )
            except Exception:
                # The invocation goes on; at worst the message shows up again (at-least-once).
                log.warning("Renewing the lease of message %s failed", lease.message.id)
                continue
            lease.pop_receipt = updated.pop_receipt or lease.pop_receipt

    async def _release(self, lease: _Lease, visibility_timeout: int) -> None:
        try:
            await self._client.update_message(
                lease.message.id, lease.pop_receipt, visibility_timeout=visibility_timeout
            )
        except ResourceNotFoundError:
            log.warning("Message %s was gone before it could be released", lease.message.id)

    async def _move_to_poison(self, lease: _Lease) -> None:
        if self._poison is None:
            log.warning(
                "'%s' has no poison queue of its own: message %s stays until it expires",
                self.queue_name,
                lease.message.id,
            )
            return
        log.warning("Moving message %s to '%s'", lease.message.id, self._poison.queue_name)
        with contextlib.suppress(ResourceExistsError):
            await self._poison.create_queue()
        # The raw text is copied, still encoded, so a poison-queue trigger decodes it the same way.
        await self._poison.send_message(lease.message.content)
        await self._client.delete_message(lease.message.id, lease.pop_receipt)
