"""Where a host process spends its CPU: cProfile inside the host (bench/_profile_site), its
self time summed by who owns the code.

The owners separate what runs on Azure from the local stand-ins: on Azure the Functions host
(.NET) takes HTTP and hands the invocation to the Python worker over gRPC; here
`devstack.functions_host` does both with uvicorn and starlette in the app's process, so its
share is not part of the app's cost on Azure.
"""

from __future__ import annotations

import os
import pstats
import signal
from pathlib import Path
from typing import Any

from bench._serve import ROOT

SITE = Path(__file__).resolve().parent / "_profile_site"

# First match wins: (owner, substrings of the code's file name or of a built-in's name).
OWNERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("tls", ("ssl.py", "_ssl.", "'_ssl", "SSLObject", "SSLContext", "sslproto.py")),
    (
        "local host (stand-in)",
        ("/devstack/", "/uvicorn/", "/starlette/", "/fastapi/", "/h11/", "/httptools/", "/anyio/"),
    ),
    ("openai sdk", ("/openai/",)),
    ("httpx/httpcore", ("/httpx/", "/httpx2/", "/httpcore/", "/h2/")),
    ("azure cosmos sdk", ("/azure/cosmos/",)),
    (
        "azure core/storage sdk",
        ("/azure/core/", "/azure/storage/", "/azure/identity/", "/azure/functions/"),
    ),
    ("aiohttp", ("/aiohttp/", "/multidict/", "/yarl/", "/aiohappyeyeballs/")),
    ("pydantic", ("/pydantic/", "/pydantic_core/")),
    ("our app", ("/shared/", "function_app.py")),
    ("json", ("/json/", "_json.")),
    ("logging", ("/logging/",)),
    ("asyncio event loop", ("/asyncio/", "selectors.py", "'poll'", "'select'", "epoll")),
)


def environment(target: Path) -> dict[str, str]:
    """The host process's environment for a profile written to `target`."""
    return {"BENCH_PROFILE": str(target), "PYTHONPATH": f"{SITE}{os.pathsep}{ROOT}"}


def start(pid: int) -> None:
    os.kill(pid, signal.SIGUSR1)


def stop(pid: int) -> None:
    os.kill(pid, signal.SIGUSR2)


def owner(filename: str, function: str) -> str:
    where = f"{filename} {function}"
    for name, marks in OWNERS:
        if any(mark in where for mark in marks):
            return name
    return "other"


def summarise(stats_file: Path, top: int = 12) -> dict[str, Any]:
    """Share of CPU time per owner, and the functions with the most self time.

    Code nobody owns here (built-ins, the standard library's typing, a helper package) is
    charged to its callers in proportion to the time each call site spent in it, up the
    call graph to the nearest owned code: `isinstance` called by the openai SDK is the SDK's.
    """
    stats = pstats.Stats(str(stats_file))
    table: dict[Key, tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    total = sum(row[2] for row in table.values()) or 1.0
    memo: dict[Key, dict[str, float]] = {}
    shares: dict[str, float] = {}
    for key, row in table.items():
        for name, part in _owners(key, table, memo, set()).items():
            shares[name] = shares.get(name, 0.0) + row[2] * part
    hottest = sorted(table.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    return {
        "profiled_cpu_seconds": round(total, 3),
        "cpu_share_by_owner": {
            k: round(v / total, 3) for k, v in sorted(shares.items(), key=lambda kv: -kv[1])
        },
        "top_self_time": [
            {"function": f"{_short(f)}:{line}({name})", "share": round(row[2] / total, 3)}
            for (f, line, name), row in hottest
        ],
    }


Key = tuple[str, int, str]


def _owners(
    key: Key, table: dict[Key, tuple[Any, ...]], memo: dict[Key, dict[str, float]], seen: set[Key]
) -> dict[str, float]:
    """Owner -> fraction of `key`'s time, following callers while the code is unowned."""
    if key in memo:
        return memo[key]
    name = owner(key[0], key[2])
    callers: dict[Key, tuple[Any, ...]] = table[key][4] if key in table else {}
    if name != "other" or not callers or key in seen:
        return {name: 1.0}
    seen.add(key)
    weights = {caller: float(row[2]) for caller, row in callers.items()}
    spent = sum(weights.values())
    out: dict[str, float] = {}
    for caller, weight in weights.items():
        part = weight / spent if spent else 1.0 / len(weights)
        for who, share in _owners(caller, table, memo, seen).items():
            out[who] = out.get(who, 0.0) + part * share
    seen.discard(key)
    memo[key] = out
    return out


def _short(filename: str) -> str:
    for mark in ("site-packages/", "python3.11/", str(ROOT) + "/"):
        if mark in filename:
            return filename.split(mark, 1)[1]
    return filename
