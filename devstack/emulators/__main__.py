"""`python -m devstack.emulators start|stop|status [--state-dir DIR]`."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from devstack.emulators.processes import is_listening, pid_alive, read_pid
from devstack.emulators.stack import DEFAULT_STATE_DIR, HOST, EmulatorPorts, start_emulators
from devstack.emulators.stack import stop_emulators as stop


def reap_sessions(parent: Path) -> list[str]:
    """Stop and remove `session-<pid>` state folders whose owning process is gone."""
    reaped = []
    for folder in sorted(parent.glob("session-*")):
        owner = folder.name.removeprefix("session-")
        if owner.isdigit() and pid_alive(int(owner)):
            continue
        if stop(folder, grace=1.0):
            reaped.append(folder.name)
        shutil.rmtree(folder, ignore_errors=True)
    return reaped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.emulators")
    parser.add_argument(
        "command",
        choices=["start", "stop", "status", "reap"],
        help="reap: stop the services of test sessions (session-<pid> folders under "
        "--state-dir) whose pytest process has ended",
    )
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument(
        "--in-memory",
        action="store_true",
        help="start empty: Azurite keeps no files, Cosmos DB ignores its saved store",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ports = EmulatorPorts()
    if args.command == "start":
        stack = start_emulators(ports, args.state_dir, in_memory=args.in_memory)
        print(f"Azurite blob   {stack.blob_endpoint}")
        print(f"Azurite queue  {stack.queue_endpoint}")
        print(f"Azurite table  {stack.table_endpoint}")
        print(f"Cosmos DB      {stack.cosmos_endpoint}  (self-signed TLS, emulator key)")
        print(f"Logs and data  {args.state_dir}")
    elif args.command == "reap":
        for name in reap_sessions(args.state_dir):
            print(f"stopped services left by {name}")
    elif args.command == "stop":
        stopped = stop(args.state_dir)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    else:
        for name, port in (("azurite", ports.queue), ("cosmos", ports.cosmos)):
            pid = read_pid(args.state_dir / f"{name}.pid")
            state = "listening" if is_listening(HOST, port) else "down"
            print(f"{name:8} {state:10} pid={pid or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
