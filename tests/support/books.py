"""Bookkeeping that fails on purpose, for the metered call's error paths, and a meter over it.

Each keeps the real Cosmos DB server and outbox: only the one write named fails, as a bug of
ours or both stores failing at once would.
"""

from __future__ import annotations

from shared.core.models import ContentFilterInfo, Usage
from shared.metering.bookkeeper import Bookkeeper, CallSite, Status
from shared.metering.call import CallMeter
from shared.metering.models import UsageRecord
from shared.runtime import Runtime


class BrokenFilterBooks(Bookkeeper):
    """Bookkeeping whose filter-event write fails with an error that is not the SDK's."""

    async def filtered(
        self,
        site: CallSite,
        info: ContentFilterInfo,
        text: str | None,
        *,
        item_id: str | None = None,
    ) -> None:
        raise RuntimeError("recording the filter event failed")


class BrokenUsageBooks(Bookkeeper):
    """Bookkeeping whose usage write fails, as Cosmos DB and the outbox both failing would."""

    async def usage(
        self,
        site: CallSite,
        *,
        model: str | None,
        usage: Usage | None,
        started: float,
        status: Status = "ok",
        record_id: str | None = None,
        estimated: bool = False,
    ) -> UsageRecord:
        raise RuntimeError("recording the usage failed")


def meter_with(runtime: Runtime, books: type[Bookkeeper]) -> CallMeter:
    """The runtime's meter (same backends, same caller limiter) over `books`."""
    settings = runtime.settings
    bookkeeper = books(
        runtime.outbox,
        user_hash_secret=settings.user_hash_secret.get_secret_value(),
        answer_timeout=settings.store_answer_timeout,
    )
    return CallMeter(settings, runtime.backends, bookkeeper, runtime.chat.meter.caller_limiter)
