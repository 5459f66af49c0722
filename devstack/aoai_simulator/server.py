"""Run the simulator inside the calling process: uvicorn on a background thread."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn
from starlette.applications import Starlette

from .app import create_app
from .config import SimulatorConfig


class RunningSimulator:
    """A simulator serving on `url`; `stop()` (or leaving the `with` block) shuts it down."""

    def __init__(
        self,
        app: Starlette,
        server: uvicorn.Server,
        thread: threading.Thread,
        host: str,
        port: int,
        api_key: str,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.url = f"http://{host}:{port}"
        self.api_key = api_key
        self._server = server
        self._thread = thread

    @property
    def config(self) -> SimulatorConfig:
        """The live config (PATCH /sim/config changes it)."""
        config = self.app.state.sim.config
        assert isinstance(config, SimulatorConfig)
        return config

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> RunningSimulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_simulator(
    config: SimulatorConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    log_level: str = "warning",
    startup_timeout: float = 10.0,
) -> RunningSimulator:
    """Start serving on `host:port` (0 = a free port); return once connections are accepted."""
    config = config or SimulatorConfig()
    app = create_app(config)
    # IPPROTO_TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose proto
    # says TCP, and a listening socket's proto passes to the sockets it accepts. With proto 0,
    # a response head and its first body chunk wait ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level=log_level,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
    )
    thread = threading.Thread(
        target=server.run,
        kwargs={"sockets": [sock]},
        name=f"aoai-simulator-{bound_port}",
        daemon=True,
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"the Azure OpenAI simulator did not start on {host}:{bound_port}")
        time.sleep(0.01)
    key = config.api_keys[0] if config.api_keys else ""
    return RunningSimulator(app, server, thread, host, bound_port, key)
