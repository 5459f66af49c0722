"""The queue contract under fuzzing: hypothesis drops mixed valid and malformed job messages on
the real worker and poison sweep (Azurite, the Cosmos DB server, the Azure OpenAI simulator).

Every valid job must succeed with one result per item. Every malformed message must end as
exactly one failed-job record that says why. A message the Functions host cannot base64-decode
is moved by the host to `<queue>-poison` unread; here it is put there directly and the sweep
records it, which is the part of that path that is ours.

`FUZZ_QUEUE_EXAMPLES` sets how many batches hypothesis draws (default 60: about 1,500 messages
in `make test`; raise it for a longer run).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devstack.aoai_simulator import RunningSimulator, SimulatorConfig, start_simulator
from devstack.aoai_simulator.config import default_deployments
from devstack.provision import provision
from shared.core.queues import POISON_SUFFIX
from shared.core.settings import Settings, load_settings
from shared.core.store import JOBS, RESULTS, Store
from shared.jobs.models import ClaimCheck, JobKind
from shared.jobs.worker import Message
from shared.runtime import Runtime, create_runtime
from tests.support.jobs_stack import queue_names
from tests.support.samples import LABELS

EXAMPLES = int(os.environ.get("FUZZ_QUEUE_EXAMPLES", "60"))
CONCURRENCY = 8


@dataclass(frozen=True)
class Drop:
    """One message to drop: how, and what must come of it."""

    category: str
    kind: JobKind
    body: bytes
    valid: bool
    job_id: str | None = None  # a valid job's id
    items: int = 0
    claim_check_payload: bytes | None = None  # a valid job sent as a claim check
    raw_text: str | None = None  # not base64: goes to the poison queue as it is


@pytest.fixture(scope="module")
def fuzz_simulator() -> Any:
    """A simulator of our own with unlimited quotas: this test is about the contract, not 429s."""
    deployments = [d.model_copy(update={"tpm": 0, "rpm": 0}) for d in default_deployments()]
    with start_simulator(SimulatorConfig(deployments=deployments), port=0) as sim:
        yield sim


@pytest.fixture(scope="module")
async def runtime(
    app_environ: dict[str, str], fuzz_simulator: RunningSimulator, store: Store
) -> AsyncIterator[Runtime]:
    environ = {
        **app_environ,
        **queue_names("fz"),
        "AZURE_OPENAI_ENDPOINT": fuzz_simulator.url,
        "AZURE_OPENAI_API_KEY": fuzz_simulator.api_key,
    }
    app_settings: Settings = load_settings(environ)
    await provision(app_settings)
    rt = create_runtime(app_settings)
    yield rt
    await rt.aclose()


def uid() -> str:
    return uuid.uuid4().hex


# --- the messages ---------------------------------------------------------------------------

texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60
).filter(lambda t: t.strip() != "")


@st.composite
def valid_job(draw: st.DrawFn, kind: JobKind) -> dict[str, Any]:
    n = draw(st.integers(min_value=1, max_value=4))
    job: dict[str, Any] = {
        "job_id": f"fz-{uid()}",
        "items": [{"id": f"i{i}", "text": draw(texts)} for i in range(n)],
    }
    if draw(st.booleans()):
        job["kind"] = kind
    if draw(st.booleans()):
        job["tags"] = {"team": draw(st.sampled_from(["a", "b", "ünïcode"]))}
    if kind == "classification":
        job["labels"] = draw(st.lists(st.sampled_from(LABELS), min_size=2, max_size=3, unique=True))
        job["multi_label"] = draw(st.booleans())
    elif draw(st.booleans()):
        job["dimensions"] = draw(st.integers(min_value=8, max_value=256))
    return job


def encode(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


WRONG_TYPES: list[tuple[str, Any]] = [
    ("items", "not a list"),
    ("items", [{"id": 5, "text": "x"}]),
    ("items", [{"id": "a", "text": 7}]),
    ("items", []),
    ("items", [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]),
    ("tags", ["a"]),
    ("mode", 7),
    ("attempt", -1),
    ("model", 12),
    ("labels", "billing"),
    ("multi_label", "perhaps"),
    ("dimensions", "wide"),
    ("surprise", True),  # unknown fields are refused
]

HUGE_FIELDS: list[tuple[str, Any]] = [
    ("items", [{"id": "a", "text": "x" * 40_000}]),  # past JOB_MAX_ITEM_CHARS
    ("model", "m" * 5_000),
    ("reason", "r" * 5_000),
    ("instructions", "i" * 20_000),
    ("labels", [f"l{i}" * 60 for i in range(3)]),
]


@st.composite
def drops(draw: st.DrawFn) -> Drop:
    kind: JobKind = draw(st.sampled_from(["embedding", "classification"]))
    job = draw(valid_job(kind))
    category = draw(
        st.sampled_from(
            [
                "valid",
                "valid_claim_check",
                "truncated",
                "wrong_type",
                "huge",
                "invalid_utf8",
                "not_base64",
                "unknown_kind",
                "claim_check_nowhere",
                "not_an_object",
            ]
        )
    )
    if category == "valid":
        return Drop(category, kind, encode(job), True, job["job_id"], len(job["items"]))
    if category == "valid_claim_check":
        blob = f"{job['job_id']}/{uid()}.json"
        check = ClaimCheck(job_id=job["job_id"], kind=kind, items_blob=blob)
        return Drop(
            category,
            kind,
            check.model_dump_json().encode(),
            True,
            job["job_id"],
            len(job["items"]),
            claim_check_payload=encode(job),
        )
    if category == "truncated":
        whole = encode(job)
        cut = draw(st.integers(min_value=0, max_value=len(whole) - 1))
        # A unique tail, so two truncations never make the same message (a proper prefix of
        # an object and a tail is never valid JSON).
        return Drop(category, kind, whole[:cut] + f" {uid()}".encode(), False)
    if category == "wrong_type":
        field, value = draw(st.sampled_from(WRONG_TYPES))
        return Drop(category, kind, encode({**job, field: value}), False)
    if category == "huge":
        field, value = draw(st.sampled_from(HUGE_FIELDS))
        return Drop(category, kind, encode({**job, field: value}), False)
    if category == "invalid_utf8":
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80"]))
        body = b'{"job_id": "' + job["job_id"].encode() + b'", "items": [{"id": "a", "text": "'
        return Drop(category, kind, body + bad + b'"}]}', False)
    if category == "not_base64":
        text = draw(st.sampled_from(["{json but not base64 %s}", "plain text %s!", "%s ==="]))
        return Drop(category, kind, b"", False, raw_text=text % uid())
    if category == "unknown_kind":
        other = draw(st.sampled_from(["translation", "", 3, None, "embedding "]))
        return Drop(category, kind, encode({**job, "kind": other}), False)
    if category == "claim_check_nowhere":
        check = {"job_id": job["job_id"], "kind": kind, "items_blob": f"nowhere/{uid()}.json"}
        return Drop(category, kind, encode(check), False)
    other = draw(st.sampled_from([[uid(), 1], f"just a string {uid()}", [{"job_id": uid()}]]))
    return Drop(category, kind, encode(other), False)


# --- dropping them and checking what came of each -------------------------------------------


async def deliver(rt: Runtime, drop: Drop, message_id: str) -> None:
    queue = rt.settings.queue_for(drop.kind)
    if drop.raw_text is not None:
        return  # sent to the poison queue before the sweep
    if drop.claim_check_payload is not None:
        check = ClaimCheck.model_validate_json(drop.body)
        await rt.queues.put_payload(check.items_blob, drop.claim_check_payload)
    await rt.job_worker.handle(drop.kind, Message(queue=queue, id=message_id, body=drop.body))


async def drain(rt: Runtime) -> None:
    """Handle what the worker put back on the job queues (continuations), like the host."""
    for kind in ("embedding", "classification"):
        queue = rt.settings.queue_for(kind)
        client = rt.queues.queue(queue)
        while batch := [m async for m in client.receive_messages(max_messages=32)]:
            for m in batch:
                body = str(m.content).encode("utf-8")
                await rt.job_worker.handle(kind, Message(queue=queue, id=m.id, body=body))
                await client.delete_message(m.id, m.pop_receipt)


async def records_of(store: Store, message_id: str) -> list[dict[str, Any]]:
    return await store.query(
        JOBS, "SELECT * FROM c WHERE c.source.message_id = @m", {"@m": message_id}
    )


async def check_valid(store: Store, drop: Drop) -> None:
    assert drop.job_id is not None
    (doc,) = await store.query(JOBS, "SELECT * FROM c WHERE c.id = @id", {"@id": drop.job_id})
    assert doc["status"] == "succeeded", (drop.category, doc)
    assert doc["counts"]["succeeded"] == drop.items, doc
    results = await store.query(
        RESULTS, "SELECT c.item_id, c.status FROM c WHERE c.job_id = @j", {"@j": drop.job_id}
    )
    assert sorted(r["item_id"] for r in results) == [f"i{i}" for i in range(drop.items)]


async def check_malformed(store: Store, drop: Drop, message_id: str) -> None:
    records = await records_of(store, message_id)
    assert len(records) == 1, (drop.category, drop.body[:200], records)
    (record,) = records
    assert record["status"] == "failed", record
    assert record["error"]["code"], record
    assert record["error"]["message"], record


@pytest.mark.slow
@pytest.mark.timeout(900)  # ~45 s alone; several sessions share this machine's two cores
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # nothing written under the repository; a failure prints its seed
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batch=st.lists(drops(), min_size=10, max_size=40))
async def test_every_valid_message_succeeds_and_every_malformed_one_is_recorded_once(
    runtime: Runtime, store: Store, batch: list[Drop]
) -> None:
    ids = [f"fz-msg-{uid()}" for _ in batch]
    for kind in ("embedding", "classification"):
        poison = runtime.queues.raw_queue(runtime.settings.queue_for(kind) + POISON_SUFFIX)
        for i, drop in enumerate(batch):
            if drop.kind == kind and drop.raw_text is not None:
                ids[i] = str((await poison.send_message(drop.raw_text)).id)
    limiter = anyio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        async with limiter:
            await deliver(runtime, batch[i], ids[i])

    async with anyio.create_task_group() as tg:
        for i in range(len(batch)):
            tg.start_soon(one, i)
    await drain(runtime)
    if any(d.raw_text is not None for d in batch):
        assert await runtime.poison_sweeper.sweep() == sum(d.raw_text is not None for d in batch)
    for drop, message_id in zip(batch, ids, strict=True):
        if drop.valid:
            await check_valid(store, drop)
        else:
            await check_malformed(store, drop, message_id)
