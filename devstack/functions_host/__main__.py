"""`python -m devstack.functions_host [--app-dir .] [--port 7071] [--shutdown-grace 30]
[--message-lease 600]`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path

from devstack.functions_host.host import FunctionsHost
from devstack.functions_host.logs import configure_logging
from devstack.functions_host.queues import DEFAULT_LEASE
from devstack.functions_host.settings import HostConfigError

log = logging.getLogger("devstack.functions_host")


async def serve(host: FunctionsHost) -> None:
    """Run until SIGINT/SIGTERM, then stop gracefully (a second signal does not cut it short:
    the grace period bounds the wait)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await host.start()
    print(f"Functions host ready: {host.api_url}", flush=True)
    await stop.wait()
    await host.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.functions_host")
    parser.add_argument("--app-dir", type=Path, default=Path("."))
    parser.add_argument(
        "--port", type=int, default=None, help="default: Host.LocalHttpPort, else 7071"
    )
    parser.add_argument(
        "--shutdown-grace",
        type=float,
        default=30.0,
        help="seconds in-flight invocations get to finish on shutdown",
    )
    parser.add_argument(
        "--on-stop",
        action="append",
        default=[],
        metavar="MODULE:FUNC",
        help="call (await) this after draining, e.g. shared.runtime:close_runtime; repeatable",
    )
    parser.add_argument(
        "--message-lease",
        type=float,
        default=DEFAULT_LEASE.total_seconds(),
        metavar="SECONDS",
        help="how long a fetched queue message stays invisible (renewed at half); default 600."
        " A message of a killed host comes back after this: soak runs shorten it",
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    configure_logging(logging.DEBUG if args.verbose else logging.INFO)
    app_dir: Path = args.app_dir.resolve()
    # The worker runs with the app folder as working directory and on sys.path.
    sys.path.insert(0, str(app_dir))
    os.chdir(app_dir)
    if args.message_lease < 1:
        parser.error("--message-lease must be at least 1 second")
    host = FunctionsHost(
        app_dir,
        port=args.port,
        shutdown_grace=args.shutdown_grace,
        message_lease=timedelta(seconds=args.message_lease),
        on_stop=args.on_stop,
    )
    try:
        asyncio.run(serve(host))
    except HostConfigError as exc:
        log.error("Cannot start the host: %s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
