"""Queue triggers against Azurite: poison, encodings, leases, concurrency cap, outputs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue.aio import QueueClient

from devstack.functions_host import FunctionsHost
from tests.devstack.functions_host.conftest import MakeApp, b64
from tests.devstack.functions_host.helpers import wait_until

QueueFactory = Callable[[str], QueueClient]
StartHost = Callable[..., Any]


async def _created(client: QueueClient) -> QueueClient:
    with contextlib.suppress(ResourceExistsError):
        await client.create_queue()
    return client


async def _visible(client: QueueClient) -> list[Any]:
    try:
        return list(await client.peek_messages(max_messages=32))
    except ResourceNotFoundError:
        return []


def _seen(host: FunctionsHost, key: str) -> list[Any]:
    assert host.app is not None
    seen: dict[str, list[Any]] = host.app.module.seen
    return seen[key]


async def test_failing_message_is_retried_then_poisoned_with_its_dequeue_counts(
    make_app: MakeApp,
    start_host: StartHost,
    queue_factory: QueueFactory,
    queue_names: dict[str, str],
) -> None:
    host = await start_host(make_app())
    name = queue_names["FAIL_QUEUE"]
    queue = await _created(queue_factory(name))
    poison = queue_factory(f"{name}-poison")
    await queue.send_message(b64('{"job": 1}'))

    await wait_until(lambda: len(_seen(host, "failing")) >= 3, what="three attempts")
    await wait_until(lambda: _visible(poison), what="poison message")

    assert _seen(host, "failing") == [1, 2, 3]
    [poisoned] = await _visible(poison)
    assert poisoned.content == b64('{"job": 1}')  # copied as it was: still base64
    assert await _visible(queue) == []
    props = await queue.get_queue_properties()
    assert props.approximate_message_count == 0


async def test_message_dequeued_too_often_elsewhere_is_poisoned_without_an_attempt(
    make_app: MakeApp,
    start_host: StartHost,
    queue_factory: QueueFactory,
    queue_names: dict[str, str],
) -> None:
    # Three deliveries that never completed (a crashing consumer), then the host starts.
    name = queue_names["FAIL_QUEUE"]
    queue = await _created(queue_factory(name))
    await queue.send_message(b64("crashy"))
    for _ in range(3):
        [message] = [m async for m in queue.receive_messages(visibility_timeout=1)]
        await queue.update_message(message, message.pop_receipt, visibility_timeout=0)
    poison = queue_factory(f"{name}-poison")

    host = await start_host(make_app())
    await wait_until(lambda: _visible(poison), what="poison message")

    assert _seen(host, "failing") == []
    [poisoned] = await _visible(poison)
    assert poisoned.content == b64("crashy")


async def test_a_poison_queue_has_no_poison_queue_of_its_own(
    make_app: MakeApp,
    start_host: StartHost,
    queue_factory: QueueFactory,
    queue_names: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # As on Azure: failures on `x-poison` never move the message to `x-poison-poison`; it is
    # not released either, so it comes back only when its (here 2 s) lease runs out.
    caplog.set_level(logging.INFO, logger="devstack.functions_host")
    name = f"{queue_names['FAIL_QUEUE']}-poison"
    queue = await _created(queue_factory(name))
    app = make_app(values={"FAIL_QUEUE": name})
    host = await start_host(app, message_lease=timedelta(seconds=2))
    sent = await queue.send_message(b64("poisoned already"))

    await wait_until(lambda: len(_seen(host, "failing")) >= 3, 60, what="three attempts")
    # The fourth delivery is over maxDequeueCount (3): skipped and left in place.
    await wait_until(
        lambda: f"Message {sent.id} on '{name}' was dequeued 4 times" in caplog.text,
        60,
        what="the fourth delivery",
    )

    assert _seen(host, "failing") == [1, 2, 3]
    assert await _visible(queue_factory(f"{name}-poison")) == []
    assert await _count(queue, 1)  # still there, until it expires
    assert f"'{name}' has no poison queue of its own" in caplog.text


async def test_base64_message_reaches_the_function_decoded(
    make_app: MakeApp,
    start_host: StartHost,
    queue_factory: QueueFactory,
    queue_names: dict[str, str],
) -> None:
    host = await start_host(make_app())
    queue = await _created(queue_factory(queue_names["RECORD_QUEUE"]))
    await queue.send_message(b64("héllo"))

    await wait_until(lambda: _seen(host, "record"), what="record invoked")

    assert _seen(host, "record") == [("héllo".encode(), 1, True)]
    await wait_until(lambda: _count(queue, 0), what="message deleted after success")


async def _count(queue: QueueClient, expected: int) -> bool:
    props = await queue.get_queue_properties()
    return props.approximate_message_count == expected


async def test_none_encoding_passes_the_text_through(
    make_app: MakeApp,
    start_host: StartHost,
    queue_factory: QueueFactory,
    queue_names: dict[str, str],
) -> None:
    host = await start_host(make_app(queues={"messageEncoding": "none"}))
    queue = await _created(queue_factory(queue_names["RECORD_QUEUE"]))
    await queue.send_message('{"plain": true}')

    await wait_until(lambda: _seen(host, "record"), what="record invoked")

    assert _seen(host, "record") == [(b'{"plain": true}', 1, True)]


async def test_undecodable_base64_goes_straight_to_poison(
    make_app: MakeApp,
    start_host: StartHost,
    queue_factory: QueueFactory,
    queue_names: dict[str, str],
) -> None:
    host = await start_host(make_app())
    name = queue_names["RECORD_QUEUE"]
    queue = await _created(queue_factory(name))
    poison = queue_factory(f"{name}-poison")
    await queue.send_message("this is not base64!")

    await wait_until(lambda: _visible(poison), what="poison message")

    [poisoned] = await _visible(poison)
    assert poisoned.content == "this is not base64!"
    assert _seen(host, "record") == []
    assert await _count(queue, 0)


async def test_message_stays_invisible_while_its_invocation_runs(
    make_app: MakeApp,
    start_host: StartHost,
    queue_factory: QueueFactory,
    queue_names: dict[str, str],
) -> None:
    # A 2 s lease forces renewals: the function below outlives several leases.
    host = await start_host(make_app(), message_lease=timedelta(seconds=2))
    queue = await _created(queue_factory(queue_names["BLOCK_QUEUE"]))
    await queue.send_message(b64("held"))
    await wait_until(lambda: _seen(host, "blocking"), what="blocking invoked")

    for _ in range(6):  # about three lease lengths
        assert await _visible(queue) == []
        assert await _count(queue, 1)  # still there, just invisible
        await asyncio.sleep(0.5)

    host.app.module.release.set()  # type: ignore[union-attr]
    await wait_until(lambda: _count(queue, 0), what="deleted after success")
    assert _seen(host, "blocking") == ["held"]  # never delivered twice


async def test_in_flight_invocations_never_exceed_batch_size_plus_threshold(
    make_app: MakeApp,
    start_host: StartHost,
    queue_factory: QueueFactory,
    queue_names: dict[str, str],
) -> None:
    # batchSize 4 + newBatchThreshold 2: a new batch of 4 is fetched only when in-flight work
    # drops to 2, so at most 6 run at once. Two quick messages let the first batch drop to 2.
    # The backlog is in place before the host starts, so batches are full.
    queue = await _created(queue_factory(queue_names["BLOCK_QUEUE"]))
    bodies = ["quick-0", "quick-1"] + [f"hold-{i}" for i in range(12)]
    for body in bodies:
        await queue.send_message(b64(body))
    host = await start_host(make_app())
    module = host.app.module  # type: ignore[union-attr]

    await wait_until(lambda: module.running["now"] == 6, what="six running")
    await asyncio.sleep(1.0)  # give a broken cap the chance to fetch more
    assert module.running["now"] == 6
    assert len(await _visible(queue)) == len(bodies) - 2 - 6  # the rest waits, visible

    module.release.set()
    await wait_until(lambda: len(_seen(host, "blocking")) == len(bodies), what="all processed")
    await wait_until(lambda: _count(queue, 0), what="queue drained")
    assert module.running["max"] == 6
    assert sorted(_seen(host, "blocking")) == sorted(bodies)


async def test_identity_style_connection_reaches_azurite_with_the_dev_key(
    make_app: MakeApp, start_host: StartHost
) -> None:
    # `record` binds connection "IdentityStorage", set only as IdentityStorage__queueServiceUri.
    host = await start_host(make_app())
    [listener] = [q for q in host.queue_listeners if q.spec.name == "record"]
    assert listener.connection.connection_string is None
    assert listener.connection.is_loopback


async def test_a_disabled_function_is_not_run_and_the_others_are(
    make_app: MakeApp,
    start_host: StartHost,
    queue_factory: QueueFactory,
    queue_names: dict[str, str],
) -> None:
    """`AzureWebJobs.<FUNCTION_NAME>.Disabled`, as Azure reads it: the bench runs an instance
    of HTTP functions only beside one of queue functions, as Flex Consumption scales them."""
    values = {"AzureWebJobs.record.Disabled": "true", "AzureWebJobs.hello.Disabled": "1"}
    host = await start_host(make_app(values=values))
    assert host.app is not None
    names = {f.name for f in host.app.functions}
    assert names.isdisjoint({"record", "hello"})
    assert "failing" in names
    queue = await _created(queue_factory(queue_names["RECORD_QUEUE"]))
    await queue.send_message(b64("nobody reads this"))
    async with httpx.AsyncClient(base_url=host.api_url) as client:
        assert (await client.get("/hello/you")).status_code == 404
        assert (await client.get("/boom")).status_code == 500  # enabled, and it raises
    await asyncio.sleep(2.0)  # several polls of an enabled listener
    assert len(await _visible(queue)) == 1
