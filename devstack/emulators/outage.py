"""Outages for tests: Cosmos DB (or any loopback service) gone for a while, data kept.

- :class:`FaultProxy`: a TCP proxy in front of a port. Point the app at `proxy.port`, then
  `cut()` (connection refused, or reset, or hang) and `restore()`. TLS passes through untouched.
- :func:`pause_cosmos` / :func:`resume_cosmos`: SIGSTOP / SIGCONT the server: connections are
  accepted by the kernel but nothing answers, so clients time out.
- :func:`restart_cosmos`: stop and start the server on the same port; its data is kept.
- :func:`restart_azurite`: the same for Azurite; its data is kept when the stack is persistent
  (`in_memory=False`: Azurite's in-memory store dies with its process).

As on Azure, the data outlives every kind of outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import signal
import socket
import struct
import threading
from collections.abc import Coroutine, Iterator
from types import TracebackType
from typing import Any, TypeVar

from devstack.emulators.processes import read_pid, terminate
from devstack.emulators.stack import HOST, EmulatorStack, azurite_spec, cosmos_spec, start_service

T = TypeVar("T")
CHUNK = 64 * 1024


class FaultMode(enum.StrEnum):
    REFUSE = "refuse"  # nothing listens: connection refused; open connections are reset
    RESET = "reset"  # connections are accepted and reset at once; open ones are reset
    HANG = "hang"  # connections are accepted, nothing flows either way until restore()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (linger 0), as a crashed or unplugged server looks to a client."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """A loopback TCP proxy to `target_host:target_port` that can be cut and restored.

    It runs its own event loop in a thread, so it serves sync and async tests alike and keeps
    working while the caller's loop is busy. Methods block until the change is in effect.
    """

    def __init__(self, target_port: int, *, target_host: str = HOST, port: int = 0) -> None:
        self.target = (target_host, target_port)
        self._port = port
        self._mode: FaultMode | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self.accepted = 0  # connections accepted so far (keep-alive checks count them)

    @property
    def port(self) -> int:
        return self._port

    @property
    def mode(self) -> FaultMode | None:
        """The current cut, or None while traffic flows."""
        return self._mode

    def endpoint(self, scheme: str = "https") -> str:
        """Where clients go instead of the target, e.g. the app's COSMOS_ENDPOINT."""
        return f"{scheme}://{HOST}:{self._port}"

    def start(self) -> FaultProxy:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        self._call(self._begin())
        return self

    def cut(self, mode: FaultMode = FaultMode.REFUSE) -> None:
        self._call(self._cut(FaultMode(mode)))

    def restore(self) -> None:
        self._call(self._restore())

    def stop(self) -> None:
        if self._loop is None:
            return
        self._call(self._end())
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("the proxy is not running: call start() first")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    async def _begin(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        await self._listen()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, HOST, self._port, reuse_address=True
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _cut(self, mode: FaultMode) -> None:
        assert self._flowing is not None
        self._mode = mode
        if mode is FaultMode.HANG:
            self._flowing.clear()  # open connections freeze where they are
            return
        self._flowing.set()
        if mode is FaultMode.REFUSE:
            await self._close_listener()
        for writer in list(self._open):
            _reset(writer)
        self._open.clear()

    async def _restore(self) -> None:
        assert self._flowing is not None
        if self._mode is FaultMode.REFUSE:
            await self._listen()
        self._mode = None
        self._flowing.set()

    async def _end(self) -> None:
        await self._close_listener()
        for writer in list(self._open):
            _reset(writer)
        self._open.clear()
        if self._flowing is not None:
            self._flowing.set()
        # Let the connections' tasks and aborted transports finish before the loop stops;
        # stopped mid-close, their transports would be collected unclosed.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await asyncio.sleep(0.05)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        self.accepted += 1
        if self._mode is FaultMode.RESET:
            _reset(writer)
            return
        self._open.add(writer)
        try:
            await self._flowing.wait()
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                _reset(writer)  # the target is down: the client sees what it would see
                return
            self._open.add(up_writer)
            try:
                await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
            finally:
                self._open.discard(up_writer)
        finally:
            self._open.discard(writer)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            while data := await source.read(CHUNK):
                await self._flowing.wait()
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            # HTTP and TLS need no half-close: when one side ends, end the other.
            if not sink.is_closing():
                sink.close()


def _cosmos_pid(stack: EmulatorStack) -> int:
    pid = read_pid(stack.state_dir / "cosmos.pid")
    if pid is None:
        raise RuntimeError(f"no Cosmos DB server was started from {stack.state_dir}")
    return pid


def pause_cosmos(stack: EmulatorStack) -> None:
    """Freeze the Cosmos DB server (SIGSTOP): clients connect but get no answer, and time out."""
    os.killpg(_cosmos_pid(stack), signal.SIGSTOP)


def resume_cosmos(stack: EmulatorStack) -> None:
    """Undo :func:`pause_cosmos`; requests waiting meanwhile are answered."""
    os.killpg(_cosmos_pid(stack), signal.SIGCONT)


@contextlib.contextmanager
def cosmos_paused(stack: EmulatorStack) -> Iterator[None]:
    """`with cosmos_paused(stack): ...`: resumed even when the block fails."""
    pause_cosmos(stack)
    try:
        yield
    finally:
        resume_cosmos(stack)


def restart_cosmos(stack: EmulatorStack, *, timeout: float = 60.0) -> None:
    """Stop the Cosmos DB server and start it again on the same port, with the same data.

    Works for in-memory stacks too: the server saves its store when stopped, and the restart
    loads it. Connections open during the restart are dropped.
    """
    _cosmos_pid(stack)  # refuse early if this stack's server is not ours to restart
    terminate("cosmos", stack.state_dir, grace=timeout)
    spec = cosmos_spec(stack.ports, stack.state_dir, in_memory=stack.in_memory, fresh=False)
    start_service(spec, stack.state_dir, timeout=timeout)


def restart_azurite(stack: EmulatorStack, *, timeout: float = 60.0) -> None:
    """Stop Azurite and start it again on the same ports, with the same data (persistent stacks
    only). Open connections are dropped; queue messages, leases and blobs are kept."""
    if stack.in_memory:
        raise RuntimeError("an in-memory Azurite loses its data when restarted")
    if read_pid(stack.state_dir / "azurite.pid") is None:
        raise RuntimeError(f"no Azurite was started from {stack.state_dir}")
    terminate("azurite", stack.state_dir, grace=timeout)
    spec = azurite_spec(stack.ports, stack.state_dir, in_memory=False)
    start_service(spec, stack.state_dir, timeout=timeout)
