"""The local TCP ports a process (and its children) holds, read from /proc (Linux): the soak
notes a host's ports just before it kills it, so that an input the simulator answered to a
connection of that process, and which was then asked again, is known to be the killed host's
(an answer that died with the process), not a repeat by a living one."""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")


def _parents() -> dict[int, int]:
    """Every process's parent, read once from /proc/<pid>/stat."""
    parents: dict[int, int] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # pid (comm) state ppid ...: comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1:
            parents[int(entry.name)] = int(fields[1])
    return parents


def _descendants(pid: int) -> set[int]:
    parents = _parents()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    try:
        fds = os.listdir(PROC / str(pid) / "fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(PROC / str(pid) / "fd" / fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def local_ports(pid: int) -> set[int]:
    """The local ports of the TCP sockets `pid` and its descendants hold (empty off Linux)."""
    if not PROC.is_dir():
        return set()
    inodes: set[str] = set()
    for process in {pid, *_descendants(pid)}:
        inodes |= _socket_inodes(process)
    ports: set[int] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports
