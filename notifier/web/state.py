"""What the web face may read of the running daemon: one narrow view, so routes stay thin."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from notifier.config import Settings
    from notifier.pipeline.activity import Activity
    from notifier.pipeline.cycle import CircuitBreaker
    from notifier.pipeline.poll import Notifier
    from notifier.store import Store


class DaemonView(Protocol):
    """The parts of a running `Daemon` the web face reads; a reload replaces `settings`."""

    store: Store
    settings: Settings
    breaker: CircuitBreaker
    notifier: Notifier
    # When the scheduler last started a poll job, and when a cycle last ended without an error
    # (both UTC, None until the first one).
    last_tick: dt.datetime | None
    last_good_cycle: dt.datetime | None
    # Counters since the process started, and whether a poll cycle is under way (for /metrics
    # and /healthz: a long cycle is not a stuck scheduler).
    activity: Activity
