"""The soak's load: jobs of both kinds and both modes, half over HTTP (to any host that
answers), half as raw base64 queue messages, at a steady rate. Every job has an id chosen here,
so a submission that failed in an unclear way is simply sent again: the app must make the
second one harmless (HTTP is idempotent by `job_id`; a second queue message is a redelivery).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from azure.core.exceptions import AzureError
from azure.storage.queue import TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

from devstack.hosted_app import HostProcess

log = logging.getLogger(__name__)

Kind = Literal["embedding", "classification"]
Mode = Literal["realtime", "batch"]
Via = Literal["http", "queue"]

LABELS = ["billing", "shipping", "technical", "account", "other"]
WORDS = (
    "invoice parcel refund login password delivery charge router screen late broken".split()  # noqa: SIM905
)
FILTERED_TERM = "forbidden-violence"  # the simulator's default rule: a filtered prompt
RESUBMIT_SECONDS = 1.0
EMBEDDING_DIMENSIONS = 64
# What Azure's Batch API cannot do: a batch embedding job fails at once with this reason.
BATCH_EMBEDDING_CODE = "not_supported"


@dataclass
class Submission:
    job_id: str
    kind: Kind
    mode: Mode
    via: Via
    item_ids: list[str]
    accepted: bool = False
    attempts: int = 0

    @property
    def expected_failure(self) -> str | None:
        return BATCH_EMBEDDING_CODE if self.kind == "embedding" and self.mode == "batch" else None


@dataclass
class Load:
    """Submit jobs until `stop()`; `submissions` lists every job, accepted or not."""

    hosts: list[HostProcess]
    connection_string: str
    queues: dict[Kind, str]
    rate: float  # jobs per second
    rng: random.Random
    submissions: list[Submission] = field(default_factory=list)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def _job(self, n: int) -> tuple[Submission, dict[str, Any]]:
        draw = self.rng.random()
        kind: Kind = "embedding" if draw < 0.45 or draw >= 0.98 else "classification"
        mode: Mode = "batch" if draw >= 0.78 else "realtime"
        # Mostly small jobs; now and then a large one that moves on in slices.
        size = self.rng.randint(150, 300) if self.rng.random() < 0.03 else self.rng.randint(3, 30)
        items = []
        for i in range(size):
            words = " ".join(self.rng.choices(WORDS, k=self.rng.randint(4, 30)))
            if self.rng.random() < 0.01:
                words += f" {FILTERED_TERM}"
            items.append({"id": f"i{i}", "text": f"ticket {n}.{i}: {words}"})
        job_id = f"soak-{n:06d}-{self.rng.getrandbits(32):08x}"
        body: dict[str, Any] = {"job_id": job_id, "items": items, "mode": mode}
        body["tags"] = {"soak": "1", "kind": kind}
        if kind == "embedding":
            # Short vectors (text-embedding-3 shortens them): 12,000 results of 1,536 floats
            # would make the local Cosmos DB server's store (and the end checks) crawl.
            body["dimensions"] = EMBEDDING_DIMENSIONS
        if kind == "classification":
            body["labels"] = LABELS
        # A queue message holds 64 KiB after base64: large jobs go over HTTP (a claim check).
        via: Via = "http" if size > 100 or self.rng.random() < 0.5 else "queue"
        return Submission(job_id, kind, mode, via, [i["id"] for i in items]), body

    async def run(self) -> None:
        """Submit at `rate` until stopped; then wait for the submissions still retrying."""
        async with httpx.AsyncClient(timeout=20) as http:
            clients = {
                kind: QueueClient.from_connection_string(
                    self.connection_string, name, message_encode_policy=TextBase64EncodePolicy()
                )
                for kind, name in self.queues.items()
            }
            try:
                start, n = time.monotonic(), 0
                while not self._stopping.is_set():
                    submission, body = self._job(n)
                    self.submissions.append(submission)
                    task = asyncio.create_task(self._submit(http, clients, submission, body))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                    n += 1
                    wait = start + n / self.rate - time.monotonic()
                    if wait > 0:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._stopping.wait(), wait)
                if self._tasks:
                    await asyncio.gather(*self._tasks)
            finally:
                for client in clients.values():
                    await client.close()

    def stop(self) -> None:
        self._stopping.set()

    async def _submit(
        self,
        http: httpx.AsyncClient,
        clients: dict[Kind, QueueClient],
        submission: Submission,
        body: dict[str, Any],
    ) -> None:
        """Send until accepted; stop trying a minute after the load stops."""
        give_up: float | None = None
        while True:
            submission.attempts += 1
            if submission.via == "http":
                ok = await self._post(http, submission, body)
            else:
                ok = await self._enqueue(clients[submission.kind], body)
            if ok:
                submission.accepted = True
                return
            if self._stopping.is_set():
                give_up = give_up or time.monotonic() + 60
                if time.monotonic() > give_up:
                    log.warning("job %s never accepted", submission.job_id)
                    return
            await asyncio.sleep(RESUBMIT_SECONDS)

    async def _post(self, http: httpx.AsyncClient, submission: Submission, body: Any) -> bool:
        route = "embeddings" if submission.kind == "embedding" else "classifications"
        host = self.rng.choice(self.hosts).host
        try:
            response = await http.post(
                f"{host.url}/jobs/{route}", json=body, headers=host.headers()
            )
        except httpx.HTTPError:
            return False  # that host is down or slow: another one, a moment later
        if response.status_code == 202:
            return True
        if response.status_code < 500:
            raise RuntimeError(f"job {submission.job_id} refused: {response.text[:300]}")
        return False  # Cosmos DB or Storage away: the API says 503

    async def _enqueue(self, client: QueueClient, body: Any) -> bool:
        try:
            await client.send_message(json.dumps(body))
        except (AzureError, OSError):
            return False  # Azurite restarting
        return True
