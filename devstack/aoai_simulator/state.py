"""The simulator's run-time state, one object per app, reached from a request."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from .batch_store import BatchStore
from .config import SimulatorConfig
from .file_store import FileStore
from .prompt_cache import PromptCache
from .ratelimit import RateLimiter
from .responses_store import ResponseStore
from .stats import Stats


@dataclass
class SimState:
    config: SimulatorConfig
    files: FileStore
    batches: BatchStore
    prompt_cache: PromptCache
    limiter: RateLimiter = field(default_factory=RateLimiter)
    stats: Stats = field(default_factory=Stats)
    rng: random.Random = field(default_factory=random.Random)
    lock: threading.Lock = field(default_factory=threading.Lock)
    responses: ResponseStore = field(default_factory=ResponseStore)
    # deployment -> the JSON body of its last chat or embeddings request, as it arrived
    last_bodies: dict[str, Any] = field(default_factory=dict)


def get_state(request: Request) -> SimState:
    state = request.app.state.sim
    assert isinstance(state, SimState)
    return state
