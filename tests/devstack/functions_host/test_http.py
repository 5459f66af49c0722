"""HTTP triggers: routing, auth levels, classic and streamed (FastAPI extension) functions."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.storage.queue.aio import QueueClient

from devstack.functions_host import FunctionsHost, IndexingError
from devstack.functions_host.settings import HostConfigError
from tests.devstack.functions_host.conftest import FUNCTION_KEY, MASTER_KEY, MakeApp
from tests.devstack.functions_host.helpers import wait_until

StartHost = Callable[..., Any]


async def test_anonymous_route_binds_params_query_and_headers(
    make_app: MakeApp, start_host: StartHost
) -> None:
    host: FunctionsHost = await start_host(make_app())
    async with httpx.AsyncClient(base_url=host.api_url) as client:
        response = await client.get("/hello/ada", params={"x": "1"})
    assert response.status_code == 200
    assert response.text == "hello ada 1"
    assert response.headers["x-fixture"] == "yes"
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    ("path", "headers", "expected"),
    [
        ("/secret", {}, 401),
        ("/secret", {"x-functions-key": "wrong"}, 401),
        ("/secret", {"x-functions-key": FUNCTION_KEY}, 200),
        (f"/secret?code={FUNCTION_KEY}", {}, 200),
        ("/secret", {"x-functions-key": MASTER_KEY}, 200),
        ("/admin/thing", {}, 401),
        # As on Azure: an admin route takes the master key only, never a function key.
        ("/admin/thing", {"x-functions-key": FUNCTION_KEY}, 401),
        (f"/admin/thing?code={FUNCTION_KEY}", {}, 401),
        ("/admin/thing", {"x-functions-key": MASTER_KEY}, 200),
        ("/hello/anyone", {}, 200),
        ("/nowhere", {}, 404),
    ],
)
async def test_auth_levels(
    make_app: MakeApp, start_host: StartHost, path: str, headers: dict[str, str], expected: int
) -> None:
    host: FunctionsHost = await start_host(make_app())
    async with httpx.AsyncClient(base_url=host.api_url) as client:
        response = await client.get(path, headers=headers)
    assert response.status_code == expected


async def test_method_not_in_the_route_is_not_found(
    make_app: MakeApp, start_host: StartHost
) -> None:
    host: FunctionsHost = await start_host(make_app())
    async with httpx.AsyncClient(base_url=host.api_url) as client:
        response = await client.delete("/hello/ada")
    assert response.status_code == 404


async def test_invocations_are_logged_in_the_host_style(
    make_app: MakeApp, start_host: StartHost, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="devstack.functions_host")
    host: FunctionsHost = await start_host(make_app())
    async with httpx.AsyncClient(base_url=host.api_url) as client:
        await client.get("/hello/ada")
        await client.get("/boom")
    text = caplog.text
    reason = "Reason='This function was programmatically called via the host APIs.'"
    assert f"Executing 'Functions.hello' ({reason}, Id=" in text
    assert "Executed 'Functions.hello' (Succeeded, Id=" in text
    assert "Executed 'Functions.boom' (Failed, Id=" in text
    assert "Functions:\n  hello" in text  # the start-up table


async def test_function_error_is_a_bare_500(make_app: MakeApp, start_host: StartHost) -> None:
    host: FunctionsHost = await start_host(make_app())
    async with httpx.AsyncClient(base_url=host.api_url) as client:
        response = await client.get("/boom")
    assert response.status_code == 500
    assert "secret internals" not in response.text


async def test_queue_output_binding_sends_base64_message(
    make_app: MakeApp,
    start_host: StartHost,
    queue_names: dict[str, str],
    queue_factory: Callable[[str], QueueClient],
) -> None:
    host: FunctionsHost = await start_host(make_app())
    async with httpx.AsyncClient(base_url=host.api_url) as client:
        response = await client.post("/enqueue", content=b'{"id": "1"}')
    assert response.status_code == 202
    queue = queue_factory(queue_names["OUT_QUEUE"])  # created by the binding
    [message] = list(await queue.peek_messages())
    assert base64.b64decode(message.content) == b'{"id": "1"}'


async def test_streamed_response_sends_first_chunk_before_the_function_ends(
    make_app: MakeApp, start_host: StartHost
) -> None:
    host: FunctionsHost = await start_host(make_app("stream_app"))
    module = host.app.module  # type: ignore[union-attr]
    async with (
        httpx.AsyncClient(base_url=host.api_url) as client,
        client.stream("POST", "/stream", json={"n": 7}) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = response.aiter_raw()
        first = await anext(chunks)
        # The generator is parked on `release`: this chunk cannot come from a buffered body.
        assert first == b"data: first 7\n\n"
        assert module.state["finished"] is False
        module.release.set()
        rest = b"".join([chunk async for chunk in chunks])
    assert rest == b"data: last\n\n"
    await wait_until(lambda: module.state["finished"], what="generator finished")


async def test_http_streams_function_gets_route_params_and_needs_the_key(
    make_app: MakeApp, start_host: StartHost
) -> None:
    host: FunctionsHost = await start_host(make_app("stream_app"))
    async with httpx.AsyncClient(base_url=host.api_url) as client:
        denied = await client.get("/items/42")
        allowed = await client.get(
            "/items/42", params={"q": "x"}, headers={"x-functions-key": FUNCTION_KEY}
        )
    assert denied.status_code == 401
    assert allowed.status_code == 200
    assert allowed.json() == {"id": "42", "q": "x"}


def _with_extra_function(app_dir: Path, code: str) -> None:
    with (app_dir / "function_app.py").open("a") as source:
        source.write("\n\n" + code)


async def test_mixing_http_request_with_http_streams_is_refused_as_on_azure(
    make_app: MakeApp,
) -> None:
    app_dir = make_app("stream_app")
    _with_extra_function(
        app_dir,
        "@app.route(route='classic')\n"
        "def classic(req: func.HttpRequest) -> func.HttpResponse:\n"
        "    return func.HttpResponse('x')\n",
    )
    with pytest.raises(IndexingError, match="every HTTP trigger must take the extension"):
        await FunctionsHost(app_dir, port=0).start()


async def test_http_streams_without_init_indexing_setting_is_refused(
    make_app: MakeApp,
) -> None:
    app_dir = make_app("stream_app", values={"PYTHON_ENABLE_INIT_INDEXING": "0"})
    with pytest.raises(HostConfigError, match="PYTHON_ENABLE_INIT_INDEXING"):
        await FunctionsHost(app_dir, port=0).start()


async def test_unsupported_binding_stops_start_up_naming_it(make_app: MakeApp) -> None:
    app_dir = make_app()
    _with_extra_function(
        app_dir,
        "@app.blob_trigger(arg_name='blob', path='c/{name}', connection='AzureWebJobsStorage')\n"
        "def on_blob(blob: func.InputStream) -> None:\n"
        "    pass\n",
    )
    with pytest.raises(IndexingError, match=r"'on_blob'.*'blobTrigger' is not supported"):
        await FunctionsHost(app_dir, port=0).start()


async def test_port_in_use_is_a_clear_error(make_app: MakeApp, start_host: StartHost) -> None:
    first: FunctionsHost = await start_host(make_app())
    second = FunctionsHost(make_app(), port=first.port)
    with pytest.raises(HostConfigError, match="cannot listen"):
        await second.start()
    await second.stop()
