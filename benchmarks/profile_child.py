"""`python -m notifier` under cProfile, switched on by SIGUSR1 and dumped by SIGUSR2 (daemon_cpu.py).

    NOTIFIER_BENCH_PROFILE=/tmp/cycle.prof python benchmarks/profile_child.py run --config …

Benchmark-only: the product has no profiling hook. The profiler counts the CPU of the main
thread (`time.thread_time`), where the daemon's event loop runs; SQLite's work in aiosqlite's
thread is not in it. The signals bracket one cycle, so start-up and idle ticks stay out.
"""

from __future__ import annotations

import cProfile
import os
import runpy
import signal
import sys
import time
from types import FrameType

# CPU of the main thread, not wall: on a shared machine waiting for a core is not a cost.
PROFILER = cProfile.Profile(time.thread_time)
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
