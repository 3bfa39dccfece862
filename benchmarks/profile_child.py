"""`python -m notifier` under cProfile, switched on by SIGUSR1 and dumped by SIGUSR2 (daemon_cpu.py).

    NOTIFIER_BENCH_PROFILE=/tmp/cycle.prof python benchmarks/profile_child.py run --config …

Benchmark-only: the product has no profiling hook. The profiler sees the main thread, where the
daemon's event loop runs (SQLite's work in aiosqlite's thread shows as the awaits that wait
for it); the signals bracket one cycle, so start-up and idle ticks stay out.
"""

from __future__ import annotations

import cProfile
import os
import runpy
import signal
import sys
from types import FrameType

PROFILER = cProfile.Profile()
OUTPUT = os.environ["NOTIFIER_BENCH_PROFILE"]


def start(_signum: int, _frame: FrameType | None) -> None:
    PROFILER.enable()


def stop(_signum: int, _frame: FrameType | None) -> None:
    PROFILER.disable()
    PROFILER.dump_stats(OUTPUT)


if __name__ == "__main__":
    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.argv[0] = "notifier"
    runpy.run_module("notifier", run_name="__main__", alter_sys=True)
