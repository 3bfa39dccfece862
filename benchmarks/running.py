"""One `notifier run` for a benchmark: the schema upgraded, the daemon started and waited for."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

READY_LINE = "notifier running"


@contextlib.contextmanager
def started_daemon(config: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`notifier db upgrade`, then `notifier run` on `config` with its log in `log`; yields once
    the daemon says it is running, and stops it with SIGTERM on the way out (its exit code is
    then the process's `returncode`). No NOTIFIER_* variable of the caller leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    command = [sys.executable, "-m", "notifier"]
    subprocess.run([*command, "db", "upgrade", "--config", str(config)], check=True, env=env)
    with log.open("w") as handle:
        daemon = subprocess.Popen(
            [*command, "run", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=handle, env=env
        )
    try:
        deadline = time.monotonic() + 60
        while READY_LINE not in log.read_text(encoding="utf-8", errors="replace"):
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise RuntimeError(f"the daemon did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield daemon
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
