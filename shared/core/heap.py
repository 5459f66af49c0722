"""The collector's view of a long-lived worker's heap: what is built at start-up is frozen out
of every later garbage collection.

CPython's oldest-generation collection walks every tracked object. In this worker that is
mostly what start-up built (modules, the SDKs, the runtime's clients), which lives as long as
the process: a full collection took ~90 ms here, and every request in flight waits for it, since
it runs on the event loop's thread. A classification job's slices allocate enough to trigger
one every few seconds, which made a chat's time to first byte under a job twice what it is
without (docs/performance.md, "Interactive calls first"). `gc.freeze()` moves the objects alive
now to a permanent generation that collections skip, the practice the CPython docs give for
long-lived pre-fork and start-up state; what is garbage at the time is collected first, so
nothing freed is kept.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)


def freeze_startup_heap() -> None:
    """Collect what start-up left behind, then leave the rest out of later collections."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    log.info(
        "heap: %d start-up objects frozen out of garbage collection (%.0f ms)",
        gc.get_freeze_count(),
        (time.perf_counter() - started) * 1000,
    )
