"""Log lines in the Functions host's style, and the function table printed at start-up."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime

from devstack.functions_host.indexing import FunctionSpec
from devstack.functions_host.settings import HostConfigError, resolve_references

log = logging.getLogger("devstack.functions_host")


class _HostFormatter(logging.Formatter):
    """`[2026-01-01T00:00:00.000Z] message`, as Core Tools prints."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
        text = f"[{stamp[:-3]}Z] {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure_logging(level: int = logging.INFO) -> None:
    """Send the host's and the functions' logs to stderr in the host's format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_HostFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The SDKs log every HTTP request at INFO; the host shows them only as warnings.
    for noisy in ("azure", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def executing(name: str, reason: str, invocation_id: str) -> float:
    log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", name, reason, invocation_id)
    return time.perf_counter()


def executed(name: str, invocation_id: str, started: float, error: BaseException | None) -> None:
    duration = (time.perf_counter() - started) * 1000
    if error is None:
        log.info(
            "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)",
            name,
            invocation_id,
            duration,
        )
    else:
        log.error(
            "Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms)",
            name,
            invocation_id,
            duration,
            exc_info=error,
        )


def function_table(functions: Iterable[FunctionSpec], base_url: str, prefix: str) -> str:
    """The table printed at start-up: name, trigger, route / queue / schedule."""
    rows = []
    for spec in functions:
        detail = spec.describe()
        if spec.trigger_type == "httpTrigger":
            methods, route = detail.split(" ", 1)
            path = "/".join(p for p in (prefix, route) if p)
            level = str(spec.trigger.get("authLevel", "FUNCTION")).lower()
            detail = f"{methods} {base_url}/{path}  (auth: {level})"
        elif "%" in detail:
            with contextlib.suppress(HostConfigError):
                detail = f"{resolve_references(detail)}  ({detail})"
        rows.append((spec.name, spec.trigger_type, detail))
    width_name = max((len(r[0]) for r in rows), default=4)
    width_kind = max((len(r[1]) for r in rows), default=7)
    lines = ["Functions:"]
    lines += [f"  {n:<{width_name}}  {k:<{width_kind}}  {d}" for n, k, d in rows]
    return "\n".join(lines)
