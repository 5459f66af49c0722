"""What a host process costs, read from Linux's /proc: CPU time and peak memory.

The local Functions host runs the app in its own process (the Python worker and the host are
one process here), started by `devstack.hosted_app.run_app_host` as a child of the benchmark.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    text = (PROC / str(pid) / "stat").read_text()
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    return text[text.rindex(")") + 2 :].split()


def child_pid(marker: str) -> int:
    """The pid of this process's child whose command line holds `marker` (its app folder)."""
    me = os.getpid()
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int(_stat_fields(int(entry.name))[1])  # field 4: ppid
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
        if parent == me and marker in cmdline:
            return int(entry.name)
    raise LookupError(f"no child process with {marker!r} in its command line")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far (fields 14 and 15 of stat)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mib(pid: int) -> float:
    """The process's resident-set high-water mark (VmHWM), MiB."""
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)  # kB
    raise LookupError(f"no VmHWM for process {pid}")


def machine() -> dict[str, object]:
    """Where the figures come from: cores and CPU model."""
    model = "unknown"
    try:
        for line in (PROC / "cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cpus": os.cpu_count(), "cpu_model": model, "load_average_1m_at_start": load}
