"""Start-up's objects frozen out of garbage collection (shared/core/heap.py)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from shared.core.heap import freeze_startup_heap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the suite runs as before


def test_what_lives_at_start_up_is_frozen_and_what_was_garbage_is_not(unfrozen: None) -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the collector frees it

    live = Node()
    garbage = Node()
    gone = weakref.ref(garbage)
    del garbage
    assert gc.get_freeze_count() == 0
    freeze_startup_heap()
    assert gc.get_freeze_count() > 0
    assert gone() is None  # collected first, not frozen with the rest
    # Later collections leave frozen objects be: a frozen cycle that became garbage stays.
    # (The frozen count itself may fall: objects freed by their reference counts leave it.)
    kept = weakref.ref(live)
    del live
    gc.collect()
    assert kept() is not None
