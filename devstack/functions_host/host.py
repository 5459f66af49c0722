"""`FunctionsHost`: load settings, index the app, serve HTTP, listen to queues and timers.

host = FunctionsHost(Path("."), port=0)
await host.start()          # settings into os.environ, import function_app, bind the port
host.url                    # "http://127.0.0.1:<port>"
await host.stop()           # stop polling, drain in-flight invocations, close clients
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import os
import re
import secrets
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import uvicorn
from azure.storage.blob.aio import BlobServiceClient
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from devstack.functions_host import logs
from devstack.functions_host.connections import (
    ClientPool,
    blob_service_client,
    resolve_connection,
)
from devstack.functions_host.http import HttpApp
from devstack.functions_host.indexing import IndexedApp, index_app
from devstack.functions_host.invocation import Invoker
from devstack.functions_host.logs import log
from devstack.functions_host.queues import DEFAULT_LEASE, QueueListener
from devstack.functions_host.settings import (
    FUNCTION_KEY_SETTING,
    MASTER_KEY_SETTING,
    HostConfigError,
    HostSettings,
    apply_values,
    load_settings,
)
from devstack.functions_host.timers import ScheduleMonitor, TimerListener

DEFAULT_PORT = 7071
LOOPBACK = "127.0.0.1"


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The host owns SIGINT/SIGTERM: it must drain queues before the process exits.
        yield


def host_id(app_dir: Path) -> str:
    """`AzureFunctionsWebHost__hostid`, or one derived from the app folder (max 32 chars)."""
    configured = os.environ.get("AzureFunctionsWebHost__hostid")  # noqa: SIM112
    if configured:
        return configured
    name = re.sub(r"[^a-z0-9-]", "-", app_dir.resolve().name.lower()).strip("-")
    return (name or "functions-app")[:32]


class FunctionsHost:
    """Runs one function app in this process. Not reusable: start once, stop once."""

    def __init__(
        self,
        app_dir: Path,
        *,
        port: int | None = None,
        host: str = LOOPBACK,
        shutdown_grace: float = 30.0,
        message_lease: timedelta = DEFAULT_LEASE,
        on_stop: Sequence[str | Callable[[], Any]] = (),
    ) -> None:
        self.app_dir = app_dir.resolve()
        self._port = port
        self._host = host
        self.shutdown_grace = shutdown_grace
        self._lease = message_lease
        self._on_stop = list(on_stop)
        self.settings: HostSettings | None = None
        self.app: IndexedApp | None = None
        self.function_key = ""
        self.master_key = ""
        self.queue_listeners: list[QueueListener] = []
        self.timer_listeners: list[TimerListener] = []
        self._clients = ClientPool()
        self._invoker: Invoker | None = None
        self._server: _Server | None = None
        self._serve_task: asyncio.Task[None] | None = None
        self._bound_port = 0
        self._blobs: BlobServiceClient | None = None

    @property
    def port(self) -> int:
        return self._bound_port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._bound_port}"

    @property
    def api_url(self) -> str:
        prefix = self.settings.route_prefix if self.settings else "api"
        return f"{self.url}/{prefix}" if prefix else self.url

    async def start(self) -> None:
        settings = self.settings = load_settings(self.app_dir)
        apply_values(settings.values, os.environ)
        app, disabled = index_app(self.app_dir).without_disabled(os.environ)
        self.app = app
        for name in disabled:
            log.info("function %s is disabled (AzureWebJobs.%s.Disabled)", name, name)
        _check_http_streams(app)
        self.function_key = os.environ.get(FUNCTION_KEY_SETTING, "")
        if not self.function_key:
            self.function_key = secrets.token_urlsafe(24)
            log.warning(
                "%s is not set in local.settings.json: using a key made up for this run",
                FUNCTION_KEY_SETTING,
            )
        # Unset, admin routes take a key nobody knows: closed, as they should be by default.
        self.master_key = os.environ.get(MASTER_KEY_SETTING, "") or secrets.token_urlsafe(32)
        invoker = self._invoker = Invoker(
            self.app_dir,
            self._clients,
            message_encoding=settings.queues.message_encoding,
            function_timeout=settings.function_timeout,
            max_threads=int(os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT") or 0) or None,
        )
        self.queue_listeners = [
            QueueListener(spec, invoker, settings.queues, self._clients, lease=self._lease)
            for spec in app.of_type("queueTrigger")
        ]
        timers = app.of_type("timerTrigger")
        monitor = None
        if timers:
            with contextlib.suppress(HostConfigError):
                blobs = blob_service_client(resolve_connection(None, "blob"))
                monitor = ScheduleMonitor(blobs, host_id(self.app_dir))
                self._blobs = blobs
        self.timer_listeners = [TimerListener(spec, invoker, monitor) for spec in timers]
        await self._serve_http(settings, app, invoker)
        log.info("%s", logs.function_table(app.functions, self.url, settings.route_prefix))
        if app.of_type("httpTrigger"):
            self._announce_key()
        for listener in self.queue_listeners:
            listener.start()
        for timer in self.timer_listeners:
            timer.start()
        log.info("Host started: %s", self.url)

    def _announce_key(self) -> None:
        """The key goes to the terminal once, never into a log (logs end up in files:
        `make run` sends this host's output to .devstack/functions-host.log)."""
        if os.environ.get(FUNCTION_KEY_SETTING):
            log.info(
                "Function key: %s from local.settings.json (header x-functions-key)",
                FUNCTION_KEY_SETTING,
            )
        elif sys.stdout.isatty():
            print(
                f"Function key for this run (header x-functions-key): {self.function_key}",
                flush=True,
            )
        else:
            log.warning(
                "the made-up function key is not shown (output is not a terminal): "
                "set %s to know it",
                FUNCTION_KEY_SETTING,
            )

    async def _serve_http(self, settings: HostSettings, app: IndexedApp, invoker: Invoker) -> None:
        port = self._port
        if port is None:
            port = settings.local_http_port or DEFAULT_PORT
        http_app = HttpApp(
            app.of_type("httpTrigger"),
            settings.route_prefix,
            invoker,
            self.function_key,
            self.master_key,
        )
        asgi: ASGIApp = http_app
        if settings.cors_origins:
            # Host.CORS of local.settings.json, as Core Tools applies it.
            asgi = CORSMiddleware(
                http_app,
                allow_origins=list(settings.cors_origins),
                allow_methods=["*"],
                allow_headers=["*"],
                allow_credentials=settings.cors_credentials,
            )
        config = uvicorn.Config(
            asgi,
            host=self._host,
            port=port,
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=int(self.shutdown_grace),
        )
        sock = _bind(self._host, port)
        self._bound_port = int(sock.getsockname()[1])
        server = self._server = _Server(config)
        self._serve_task = asyncio.create_task(server.serve(sockets=[sock]), name="http")
        while not server.started:
            if self._serve_task.done():
                self._serve_task.result()
                raise HostConfigError(f"the HTTP server on {self._host}:{port} did not start")
            await asyncio.sleep(0.02)

    async def _run_stop_hooks(self) -> None:
        # The Python worker has no shutdown hook (the process just exits); these let a caller
        # close the app's clients on the loop they were opened on.
        for hook in self._on_stop:
            try:
                await _call_hook(hook)
            except Exception:
                log.exception("on-stop hook %s failed", hook)

    async def stop(self) -> None:
        """Stop polling, give in-flight invocations `shutdown_grace` s, then close everything."""
        log.info("Stopping host: draining in-flight invocations (grace %.0fs)", self.shutdown_grace)
        listeners = [q.stop(self.shutdown_grace) for q in self.queue_listeners]
        listeners += [t.stop(self.shutdown_grace) for t in self.timer_listeners]
        await asyncio.gather(*listeners)
        if self._server is not None and self._serve_task is not None:
            self._server.should_exit = True
            await self._serve_task
        await self._run_stop_hooks()
        await self._clients.close()
        if self._blobs is not None:
            await self._blobs.close()
        if self._invoker is not None:
            self._invoker.close()
        log.info("Host stopped")


def _bind(host: str, port: int) -> socket.socket:
    """Bind here rather than in uvicorn, which would exit the process on a busy port."""
    # IPPROTO_TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose proto
    # says TCP, and a listening socket's proto passes to the sockets it accepts. With proto 0,
    # a response head and its first body chunk wait ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise HostConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


async def _call_hook(hook: str | Callable[[], Any]) -> None:
    target: Callable[[], Any]
    if isinstance(hook, str):
        module_name, _, attr = hook.partition(":")
        target = getattr(importlib.import_module(module_name), attr)
    else:
        target = hook
    result = target()
    if inspect.isawaitable(result):
        await result


def _check_http_streams(app: IndexedApp) -> None:
    """HTTP streams need PYTHON_ENABLE_INIT_INDEXING=1 on Python 3.12 and older, on Azure too."""
    if not app.http_v2 or sys.version_info >= (3, 13):
        return
    if os.environ.get("PYTHON_ENABLE_INIT_INDEXING") != "1":
        raise HostConfigError(
            "the app uses HTTP streams (azurefunctions-extensions-http-fastapi): add "
            '"PYTHON_ENABLE_INIT_INDEXING": "1" to local.settings.json Values and to the app '
            "settings on Azure, or streamed responses will not work there"
        )
