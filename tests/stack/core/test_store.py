"""Cosmos DB access against the real local Cosmos DB server."""

from __future__ import annotations

import uuid

import pytest

from devstack.emulators.outage import FaultProxy
from devstack.emulators.stack import EmulatorStack
from shared.core.settings import load_settings
from shared.core.store import CONTAINERS, JOBS, RESULTS, USAGE, Store, create_store


async def test_schema_has_every_container_with_its_partition_key(store: Store) -> None:
    await store.ensure_schema()  # a second time is harmless
    for name, path in CONTAINERS.items():
        props = await store.container(name).read()
        assert props["partitionKey"]["paths"] == [path], name


async def test_upsert_by_deterministic_id_is_idempotent(store: Store) -> None:
    job_id = str(uuid.uuid4())
    doc = {"id": f"{job_id}:item-1", "job_id": job_id, "label": "a"}
    await store.upsert(RESULTS, doc)
    await store.upsert(RESULTS, {**doc, "label": "b"})  # a redelivered message
    rows = await store.query(
        RESULTS,
        "SELECT * FROM c WHERE c.job_id = @job_id",
        {"@job_id": job_id},
        partition_key=job_id,
    )
    assert [(r["id"], r["label"]) for r in rows] == [(f"{job_id}:item-1", "b")]


async def test_read_missing_item_is_none_not_an_error(store: Store) -> None:
    assert await store.read(JOBS, "no-such-job", "no-such-job") is None


async def test_read_returns_the_stored_document(store: Store) -> None:
    job_id = str(uuid.uuid4())
    await store.upsert(JOBS, {"id": job_id, "job_id": job_id, "status": "queued"})
    found = await store.read(JOBS, job_id, job_id)
    assert found is not None
    assert found["status"] == "queued"


async def test_upsert_without_id_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="deterministic 'id'"):
        await store.upsert(USAGE, {"day": "2026-11-26"})


async def test_query_filters_by_partition_value_in_the_text(store: Store) -> None:
    day_a, day_b = "2001-01-01", "2001-01-02"
    for day in (day_a, day_a, day_b):
        await store.upsert(USAGE, {"id": str(uuid.uuid4()), "day": day, "tokens": 1})
    rows = await store.query(
        USAGE, "SELECT * FROM c WHERE c.day = @day", {"@day": day_a}, partition_key=day_a
    )
    assert len(rows) == 2
    assert {r["day"] for r in rows} == {day_a}


async def test_ping_answers_when_up(store: Store) -> None:
    await store.ping()


async def test_one_store_reuses_its_connections_across_calls(
    store: Store, emulators: EmulatorStack, app_environ: dict[str, str]
) -> None:
    """A new connection per call costs a TCP connect and a TLS handshake each time (the local
    server used to answer `connection: close`): 40 calls must ride on a couple of them."""
    with FaultProxy(emulators.ports.cosmos) as proxy:
        settings = load_settings({**app_environ, "COSMOS_ENDPOINT": proxy.endpoint()})
        proxied = create_store(settings)
        try:
            job_id = str(uuid.uuid4())
            for n in range(20):
                doc = {"id": f"{job_id}:{n}", "job_id": job_id, "n": n}
                await proxied.upsert(RESULTS, doc)
                assert await proxied.read(RESULTS, doc["id"], job_id) is not None
        finally:
            await proxied.aclose()
        # The SDK reads the account first; then one connection serves sequential calls.
        assert 1 <= proxy.accepted <= 3, proxy.accepted
