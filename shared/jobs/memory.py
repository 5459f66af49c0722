"""What job answers in flight may hold in memory, per process (one Flex Consumption instance).

An embeddings answer is decoded by the openai SDK into Python floats (it asks for base64 on the
wire, 4 bytes a float, then `array("f", ...).tolist()`), and each vector is copied once more
into its result document: about `BYTES_PER_FLOAT` bytes a float until the results are
written (measured: 2,048 x 1,536 floats peak at 160 MiB over the process's baseline). Two
bounds follow:

- per request, `EMBEDDING_MAX_FLOATS_PER_REQUEST` floats (inputs x dimensions), applied when
  items are packed (shared/jobs/embeddings.py);
- per process, `JOB_MEMORY_BUDGET_MIB`: a `MemoryBudget` held by every job request from before
  it is sent until its results are written (shared/jobs/runner.py), shared by all the
  messages the instance runs at once (host.json `batchSize` per queue, two queues), so the sum
  of the answers in flight stays under it whatever the number of messages.
"""

from __future__ import annotations

import asyncio
from collections import deque

MIB = 1024 * 1024
BYTES_PER_FLOAT = 56  # a float (24) in the SDK's list (8) and ours (8), with the transients
LARGEST_DIMENSIONS = 3072  # text-embedding-3-large: assumed until a deployment's size is known


def answer_bytes(inputs: int, dimensions: int) -> int:
    """Estimated peak memory of one embeddings answer of `inputs` vectors."""
    return inputs * dimensions * BYTES_PER_FLOAT


class MemoryBudget:
    """A weighted semaphore of bytes, first come first served (a large request is not passed
    over forever by small ones). A request larger than the whole budget waits until nothing
    else holds any, then runs alone."""

    def __init__(self, mib: int) -> None:
        self.capacity = mib * MIB
        self.free = self.capacity
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    def _size(self, size: int) -> int:
        return max(0, min(size, self.capacity))

    async def acquire(self, size: int, max_wait: float) -> bool:
        """Hold `size` bytes; False when they are not free within `max_wait` seconds."""
        size = self._size(size)
        if not self._waiting and self.free >= size:
            self.free -= size
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (size, future)
        self._waiting.append(entry)
        try:
            async with asyncio.timeout(max(0.0, max_wait)):
                await future
            return True
        except BaseException as error:
            granted = future.done() and not future.cancelled()
            if entry in self._waiting:
                self._waiting.remove(entry)
                self._grant()  # the ones behind it may fit now
            if granted:
                self.release(size)
            if isinstance(error, TimeoutError):
                return False
            raise

    def release(self, size: int) -> None:
        self.free += self._size(size)
        self._grant()

    def _grant(self) -> None:
        while self._waiting and self.free >= self._waiting[0][0]:
            size, future = self._waiting.popleft()
            if future.done():
                continue
            self.free -= size
            future.set_result(None)

    @property
    def held(self) -> int:
        return self.capacity - self.free
