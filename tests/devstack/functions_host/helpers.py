"""Waiting for something to become true (a deadline guards against hangs, not speed)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any


async def wait_until(
    condition: Callable[[], Any], deadline_s: float = 20.0, what: str = ""
) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or condition}")
