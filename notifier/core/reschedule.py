"""Due times under a changed polling policy: which shipments to move, and where to."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence

from notifier.core.policy import PollingPolicy, adaptive_span, next_poll
from notifier.core.views import ScheduledRow

# Due times are written a little after the policy computed them (the poll's commit); moving a
# shipment by less than this would only churn the database.
TOLERANCE = dt.timedelta(seconds=2)


class _Edge(random.Random):
    """A random source pinned to one end of every range: the earliest or latest jitter."""

    def __init__(self, high: bool) -> None:
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


_LOW, _HIGH = _Edge(False), _Edge(True)


def window(row: ScheduledRow, policy: PollingPolicy) -> tuple[dt.datetime, dt.datetime] | None:
    """The earliest and latest next poll `policy` would have given at the shipment's last poll,
    or None when it would have stopped polling (the next poll decides that, with its alert)."""

    def at(rng: random.Random) -> dt.datetime | None:
        return next_poll(
            stage=row.stage,
            now=row.last_polled_at,
            created_at=row.created_at,
            last_changed_at=row.last_changed_at,
            stage_entered_at=row.stage_entered_at,
            consecutive_failures=row.consecutive_failures,
            policy=policy,
            rng=rng,
        ).at

    low, high = at(_LOW), at(_HIGH)
    if low is None or high is None:
        return None
    return low, high


def _placed_adaptively(row: ScheduledRow, policy: PollingPolicy) -> bool:
    """Whether the due time lies where adaptive polling may have put it from the lane's data
    (which this module does not have): within the stage's adaptive bounds after the last poll."""
    span = adaptive_span(row.stage, policy) if not row.consecutive_failures else None
    if span is None:
        return False
    low, high = row.last_polled_at + span[0], row.last_polled_at + span[1]
    return low - TOLERANCE <= row.next_poll_at <= high + TOLERANCE


def moves(
    rows: Sequence[ScheduledRow], policy: PollingPolicy, *, now: dt.datetime, rng: random.Random
) -> list[tuple[int, dt.datetime]]:
    """(shipment id, new due time) for each shipment whose due time the policy would not give:
    placed as if it had been in force at the last poll, and due now if that time has passed.
    Shipments already in their window stay put, so running this twice moves nothing; so do
    those adaptive polling may have placed (within the stage's adaptive bounds)."""
    out = []
    for row in rows:
        span = window(row, policy)
        if span is None:
            continue
        low, high = span
        if low - TOLERANCE <= row.next_poll_at <= high + TOLERANCE or _placed_adaptively(row, policy):
            continue
        due = low + (high - low) * rng.random()
        out.append((row.id, max(due, now)))
    return out
