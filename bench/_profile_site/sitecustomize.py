"""Profiles the host process when it runs with BENCH_PROFILE=<file> (bench/_profile.py puts
this folder first on the host's PYTHONPATH, so Python imports this module at start).

SIGUSR1 starts cProfile, SIGUSR2 stops it and writes the stats to <file> (whole, by a
rename): the benchmark profiles the load it sends, not the start-up. The clock is process CPU
time, so time spent waiting on the network is not counted. Signal handlers run in the main
thread, where the host's event loop and so the app's coroutines run.
"""

from __future__ import annotations

import cProfile
import os
import signal
import time
from types import FrameType

_target = os.environ.get("BENCH_PROFILE")
_profiler = cProfile.Profile(time.process_time)


def _start(_signum: int, _frame: FrameType | None) -> None:
    _profiler.enable()


def _stop(_signum: int, _frame: FrameType | None) -> None:
    _profiler.disable()
    if _target:
        # Written aside, then renamed: the benchmark reads the file as soon as it exists, and a
        # half-written one is an EOFError in pstats.
        _profiler.dump_stats(_target + ".part")
        os.replace(_target + ".part", _target)


if _target:
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
