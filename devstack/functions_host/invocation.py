"""Call one function: bind its arguments, run it, send its outputs, log it like the host.

Async functions run on the host's event loop; sync ones in a thread pool (as the Python worker
does). Queue output bindings (`func.Out[...]` parameters or a `$return` queue binding) are sent
only after the function succeeded.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import functools
import json
import threading
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.core.exceptions import ResourceExistsError
from azure.functions._abc import RetryContext, RpcException, TraceContext

from devstack.functions_host import logs
from devstack.functions_host.connections import ClientPool, resolve_connection
from devstack.functions_host.indexing import FunctionSpec
from devstack.functions_host.settings import resolve_references


class InvocationError(Exception):
    """The function raised (or timed out); the original exception is the cause."""


class _TraceContext(TraceContext):
    def __init__(self, invocation_id: str) -> None:
        self._parent = f"00-{uuid.uuid4().hex}-{invocation_id.replace('-', '')[:16]}-01"

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return self._parent

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(RetryContext):
    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> RpcException:
        raise AttributeError("no retry policy: there is no previous exception")


class InvocationContext(func.Context):
    """What a `context: func.Context` parameter receives."""

    _local = threading.local()

    def __init__(self, invocation_id: str, function_name: str, function_directory: str) -> None:
        self._id = invocation_id
        self._name = function_name
        self._dir = function_directory
        self._trace = _TraceContext(invocation_id)

    @property
    def invocation_id(self) -> str:
        return self._id

    @property
    def thread_local_storage(self) -> type[threading.local]:
        return self._local  # type: ignore[return-value]

    @property
    def function_name(self) -> str:
        return self._name

    @property
    def function_directory(self) -> str:
        return self._dir

    @property
    def trace_context(self) -> TraceContext:
        return self._trace

    @property
    def retry_context(self) -> RetryContext:
        return _RetryContext()


class OutValue(func.Out[Any]):
    """The value behind a `func.Out[...]` parameter."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


def encode_queue_message(value: Any, encoding: str) -> str:
    """A queue output value as the text stored in the queue (base64 unless encoding is none)."""
    if isinstance(value, func.QueueMessage):
        value = value.get_body()
    if isinstance(value, bytes):
        raw = value
    elif isinstance(value, str):
        raw = value.encode()
    else:
        raw = json.dumps(value).encode()
    return base64.b64encode(raw).decode() if encoding == "base64" else raw.decode()


def _messages(value: Any) -> Iterable[Any]:
    if isinstance(value, list | tuple):
        return value
    return [value]


class Invoker:
    """Runs functions of one app. Create once per host; `close()` at stop."""

    def __init__(
        self,
        app_dir: Path,
        clients: ClientPool,
        *,
        message_encoding: str = "base64",
        function_timeout: timedelta | None = None,
        max_threads: int | None = None,
    ) -> None:
        self._app_dir = str(app_dir)
        self._clients = clients
        self._encoding = message_encoding
        self._timeout = function_timeout.total_seconds() if function_timeout else None
        # None: Python's default (min(32, cpus + 4)), as the worker without
        # PYTHON_THREADPOOL_THREAD_COUNT.
        self._executor = ThreadPoolExecutor(max_threads, thread_name_prefix="function")
        self._created_queues: set[tuple[str, str]] = set()

    async def invoke(self, spec: FunctionSpec, trigger_value: Any, reason: str) -> Any:
        """Run `spec` with its trigger argument; returns what the function returned."""
        invocation_id = str(uuid.uuid4())
        kwargs: dict[str, Any] = {spec.trigger_param: trigger_value}
        outs = {o["name"]: OutValue() for o in spec.outputs if o["name"] != "$return"}
        kwargs.update(outs)
        if spec.requires_context:
            kwargs["context"] = InvocationContext(invocation_id, spec.name, self._app_dir)
        started = logs.executing(spec.name, reason, invocation_id)
        try:
            result = await asyncio.wait_for(self._call(spec, kwargs), self._timeout)
            for binding in spec.outputs:
                if binding["type"] != "queue":
                    continue
                name = binding["name"]
                value = result if name == "$return" else outs[name].get()
                if value is not None:
                    await self._send(binding, value)
        except Exception as exc:
            logs.executed(spec.name, invocation_id, started, exc)
            raise InvocationError(f"function {spec.name} failed: {exc!r}") from exc
        logs.executed(spec.name, invocation_id, started, None)
        return result

    async def _call(self, spec: FunctionSpec, kwargs: dict[str, Any]) -> Any:
        if spec.is_async:
            return await spec.func(**kwargs)
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        return await loop.run_in_executor(
            self._executor, functools.partial(ctx.run, spec.func, **kwargs)
        )

    async def _send(self, binding: dict[str, Any], value: Any) -> None:
        queue_name = resolve_references(str(binding["queueName"])).lower()
        conn = resolve_connection(binding.get("connection"), "queue")
        client = self._clients.queue(conn, queue_name)
        if (conn.name, queue_name) not in self._created_queues:
            # The output binding creates its queue on first use, as the host does.
            with contextlib.suppress(ResourceExistsError):
                await client.create_queue()
            self._created_queues.add((conn.name, queue_name))
        for message in _messages(value):
            await client.send_message(encode_queue_message(message, self._encoding))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
