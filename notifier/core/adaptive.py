"""Adaptive polling [pure]: look again when the lane's history says a new scan is likely by then.

A fixed interval per stage spends the same requests on a parcel whose next scan is due in an
hour as on one that has just left Japan and will be silent for days. Given `chance(w)`, the
probability that the parcel's next scan comes within `w` of now (the time model's
`change_probability`, conditional on how long it has been quiet), the next poll is placed at
the smallest interval `w`, within the stage's bounds, at which a score reaches the shop's
`target`:

- "balanced" (the default): chance(w) x w / 1 hour. Where scans come at a steady rate h this
  gives w = sqrt(target / h): the interval grows with the square root of the expected wait,
  the allocation that minimises the average detection delay for the requests spent (a
  parcel's scans spread over stages of very different rates). Silent stretches are polled
  less, but not so little that an early scan waits long: the tail of the delays stays
  short.
- "frugal": chance(w) itself, so each poll has the same chance of finding news. Fewer
  requests still at the same median delay, but an early scan in a silent stretch can wait
  for the upper bound: a longer tail.

Without lane data (`chance` says None) the caller keeps the fixed interval: exactly the
schedule of before. benchmarks/polling.py measures both rules against the fixed schedule.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from notifier.core.stages import Stage

# The chance that the next scan comes within the given time from now; None: no data to say.
Chance = Callable[[dt.timedelta], float | None]

MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)

# Default bounds around a stage's fixed interval: a quarter of it (never under 15 minutes, the
# request budget's business) to four times it (never over a day: a parcel whose lane is wrong
# about it is seen at least daily). An explicit setting replaces either end.
SHORTEST = 15 * MINUTE
LONGEST = DAY
SHRINK = 4
GROW = 4

# Searching for the interval stops once it is known to within this factor, or this many
# minutes: finer placement is lost in the jitter (10%) anyway, and each step asks the model.
RESOLUTION = 1.1
RESOLUTION_FLOOR = 5 * MINUTE


class Rule(enum.StrEnum):
    """How the chance of news becomes an interval (see the module's docstring)."""

    BALANCED = "balanced"
    FRUGAL = "frugal"


# Each rule's default target: where benchmarks/polling.py finds it fewer requests than the
# fixed schedule with a shorter median delay (and, balanced, a shorter 90th percentile too).
DEFAULT_TARGETS = {Rule.BALANCED: 0.2, Rule.FRUGAL: 0.1}


@dataclass(frozen=True, slots=True, kw_only=True)
class AdaptivePolling:
    """The shop's settings for adaptive polling (`[polling] adaptive*`)."""

    enabled: bool = True
    rule: Rule = Rule.BALANCED
    # The score a poll waits for (None: the rule's default); lower polls sooner and more.
    target: float | None = None
    # Per-stage bounds; a stage not named gets bounds derived from its fixed interval.
    minimum: Mapping[Stage, dt.timedelta] = field(default_factory=dict)
    maximum: Mapping[Stage, dt.timedelta] = field(default_factory=dict)

    @property
    def wanted(self) -> float:
        return DEFAULT_TARGETS[self.rule] if self.target is None else self.target


def bounds(stage: Stage, fixed: dt.timedelta, adaptive: AdaptivePolling) -> tuple[dt.timedelta, dt.timedelta]:
    """The shortest and longest interval adaptive polling may choose in `stage`, whose fixed
    interval is `fixed`. The defaults always include the fixed interval."""
    low = adaptive.minimum.get(stage, min(fixed, max(SHORTEST, fixed / SHRINK)))
    high = adaptive.maximum.get(stage, max(fixed, min(LONGEST, fixed * GROW)))
    return low, max(low, high)


def adaptive_interval(
    stage: Stage, fixed: dt.timedelta, chance: Chance, adaptive: AdaptivePolling
) -> dt.timedelta | None:
    """The interval until the next poll: the shortest within the stage's bounds at which the
    rule's score of the chance of a new scan reaches the target; None when `chance` has no
    data (the caller keeps `fixed`). Longer when the target is higher, shorter when news is
    likelier sooner."""
    low, high = bounds(stage, fixed, adaptive)
    target = adaptive.wanted
    frugal = adaptive.rule is Rule.FRUGAL

    def score(seconds: float) -> float | None:
        found = chance(dt.timedelta(seconds=seconds))
        if found is None or frugal:
            return found
        return found * seconds / 3600

    lo, hi = max(1.0, low.total_seconds()), high.total_seconds()
    at_high = score(hi)
    if at_high is None:
        return None
    if at_high < target:
        return high
    at_low = score(lo)
    if at_low is None or at_low >= target:
        return low
    # The score does not decrease with the time asked about: bisect (on a log scale, as the
    # bounds span a factor of 16) for where it crosses the target.
    floor = RESOLUTION_FLOOR.total_seconds()
    while hi > lo * RESOLUTION and hi - lo > floor:
        middle = math.sqrt(lo * hi)
        found = score(middle)
        if found is not None and found >= target:
            hi = middle
        else:
            lo = middle
    return dt.timedelta(seconds=round(hi))
