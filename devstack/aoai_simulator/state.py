"""The simulator's run-time state, one object per app, reached from a request."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import Request

from .config import SimulatorConfig
from .ratelimit import RateLimiter
from .stats import Stats

if TYPE_CHECKING:
    from .batches import BatchStore
    from .files import FileStore


@dataclass
class SimState:
    config: SimulatorConfig
    files: FileStore
    batches: BatchStore
    limiter: RateLimiter = field(default_factory=RateLimiter)
    stats: Stats = field(default_factory=Stats)
    rng: random.Random = field(default_factory=random.Random)
    lock: threading.Lock = field(default_factory=threading.Lock)


def get_state(request: Request) -> SimState:
    state = request.app.state.sim
    assert isinstance(state, SimState)
    return state
