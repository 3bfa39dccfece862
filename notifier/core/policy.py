"""When to poll a shipment next: adaptive by stage, jittered, with give-up rules."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from notifier.core.adaptive import AdaptivePolling, Chance, adaptive_interval, bounds
from notifier.core.stages import Stage, stage_info

HOUR = dt.timedelta(hours=1)
MINUTE = dt.timedelta(minutes=1)
DAY = dt.timedelta(days=1)

# Near delivery things change within hours and customers act on them; in the air or at sea
# nothing changes for days. The intervals follow that, so most requests go where news is.
DEFAULT_INTERVALS: Mapping[Stage, dt.timedelta] = {
    Stage.PENDING: 6 * HOUR,
    Stage.ACCEPTED: 2 * HOUR,
    Stage.IN_TRANSIT: 2 * HOUR,
    Stage.OUTWARD_EXCHANGE: 3 * HOUR,
    Stage.DEPARTED_ORIGIN: 8 * HOUR,
    Stage.INWARD_EXCHANGE: 4 * HOUR,
    Stage.CUSTOMS_PRESENTED: 3 * HOUR,
    Stage.CUSTOMS_CLEARED: 2 * HOUR,
    Stage.INLAND_TRANSIT: 2 * HOUR,
    Stage.AT_DELIVERY_OFFICE: 45 * MINUTE,
    Stage.OUT_FOR_DELIVERY: 30 * MINUTE,
    Stage.ATTEMPTED_DELIVERY: 45 * MINUTE,
    Stage.REDELIVERY_REQUESTED: HOUR,
    Stage.RETENTION: HOUR,
    Stage.READY_FOR_PICKUP: 2 * HOUR,
    Stage.DELIVERED: 12 * HOUR,
    Stage.RETURNING: 6 * HOUR,
    Stage.RETURNED: 12 * HOUR,
    Stage.INVESTIGATION: 4 * HOUR,
    Stage.FORWARDED: 2 * HOUR,
    Stage.UNKNOWN: 2 * HOUR,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class PollingPolicy:
    intervals: Mapping[Stage, dt.timedelta] = field(default_factory=lambda: dict(DEFAULT_INTERVALS))
    # Every shipment at this interval instead (tests and demos).
    fixed_interval: dt.timedelta | None = None
    # Spread polls so thousands of shipments added at once do not come due together.
    jitter: float = 0.1
    # "Not found" for this long after being added: stop, and tell the operator.
    pending_give_up: dt.timedelta = 14 * DAY
    # After a terminal stage, keep polling slowly this long: deliveries get corrected, and
    # hold-for-pickup items go on after "delivered".
    terminal_grace: dt.timedelta = 7 * DAY
    # No change at all for this long: stop, and tell the operator.
    stale_give_up: dt.timedelta = 60 * DAY
    # After failures, wait longer (doubling, capped) so a broken number does not eat the budget.
    failure_backoff_cap: dt.timedelta = 12 * HOUR
    # How long a claim on due shipments lasts before another instance may take them over
    # (None: long enough to work through the claim at the configured request pace).
    lease: dt.timedelta | None = None
    # Look when a change is likely: with lane history, the interval follows the chance of a
    # new scan within the stage's bounds (core/adaptive.py); without it, `intervals` as above.
    adaptive: AdaptivePolling = field(default_factory=AdaptivePolling)


@dataclass(frozen=True, slots=True, kw_only=True)
class NextPoll:
    at: dt.datetime | None
    give_up: str | None = None


def next_poll(
    *,
    stage: Stage,
    now: dt.datetime,
    created_at: dt.datetime | None,
    last_changed_at: dt.datetime | None,
    stage_entered_at: dt.datetime | None,
    consecutive_failures: int,
    policy: PollingPolicy,
    rng: random.Random,
    chance: Chance | None = None,
) -> NextPoll:
    """When to poll next, or why to stop (`at` None and `give_up` saying why).

    `chance` is the lane's chance of a new scan within a given time (the time model's); with
    it, and adaptive polling on, the interval follows it within the stage's bounds, jitter
    included. After failures, and without lane data, the fixed intervals apply."""
    since_change = now - (last_changed_at or created_at or now)
    if stage is Stage.PENDING and created_at is not None and now - created_at >= policy.pending_give_up:
        days = (now - created_at) // DAY
        return NextPoll(at=None, give_up=f"still not found at Japan Post {days} days after it was added")
    if (
        stage_info(stage).terminal
        and stage_entered_at is not None
        and now - stage_entered_at >= policy.terminal_grace
    ):
        return NextPoll(at=None, give_up=None)
    if stage is not Stage.PENDING and since_change >= policy.stale_give_up:
        return NextPoll(at=None, give_up=f"no change for {since_change // DAY} days")
    base = policy.fixed_interval or policy.intervals.get(stage, 2 * HOUR)
    if consecutive_failures and policy.fixed_interval is None:
        base = min(policy.failure_backoff_cap, base * 2 ** min(consecutive_failures, 10))
    elif chance is not None and policy.adaptive.enabled and policy.fixed_interval is None:
        chosen = adaptive_interval(stage, base, chance, policy.adaptive)
        if chosen is not None:
            low, high = bounds(stage, base, policy.adaptive)
            spread = 1 + rng.uniform(-policy.jitter, policy.jitter)
            return NextPoll(at=now + min(high, max(low, chosen * spread)))
    spread = 1 + rng.uniform(-policy.jitter, policy.jitter)
    return NextPoll(at=now + base * spread)


def adaptive_span(stage: Stage, policy: PollingPolicy) -> tuple[dt.timedelta, dt.timedelta] | None:
    """The shortest and longest interval adaptive polling may give in `stage` (None: it is
    off): what a due time may be without the lane's data at hand (core/reschedule.py)."""
    if not policy.adaptive.enabled or policy.fixed_interval is not None:
        return None
    return bounds(stage, policy.intervals.get(stage, 2 * HOUR), policy.adaptive)
