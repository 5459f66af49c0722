"""One instance per worker process: created on first use, reused, closed on shutdown."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from shared.settings import Settings

T = TypeVar("T")


class ProcessResource(Generic[T]):
    """A lazily created, process-wide resource (a client and its connection pool).

    The Functions Python worker runs every async invocation on one event loop, so one
    instance per process is shared by all invocations.
    """

    def __init__(
        self, create: Callable[[Settings], T], close: Callable[[T], Awaitable[None]]
    ) -> None:
        self._create = create
        self._close = close
        self._instance: T | None = None

    def get(self, settings: Settings) -> T:
        if self._instance is None:
            self._instance = self._create(settings)
        return self._instance

    async def close(self) -> None:
        instance, self._instance = self._instance, None
        if instance is not None:
            await self._close(instance)
