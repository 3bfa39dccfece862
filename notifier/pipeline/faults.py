"""Crash points for recovery tests: `NOTIFIER_CRASHPOINT=name` makes the process die there, as kill -9 would."""

from __future__ import annotations

import os

CRASHPOINT_ENV = "NOTIFIER_CRASHPOINT"


def crashpoint(name: str) -> None:
    """Die at once, without cleanup, if the environment names this point.

    os._exit skips finally blocks, atexit and buffered writes: the closest a test can get to
    a power cut or SIGKILL at an exact line.
    """
    if os.environ.get(CRASHPOINT_ENV) == name:
        os._exit(137)
