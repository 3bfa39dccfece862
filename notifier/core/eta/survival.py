"""Weighted Kaplan–Meier tables: built once per lane and stage, asked by bisection at every poll."""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Iterable, Mapping

from notifier.core.stages import Stage

# An observation: when it started, when it ended (None: not yet), and when it stopped being
# watched for that end (None: never; a parcel sent back will not be delivered), in days on one
# clock (eta.model converts the printed times).
Observation = tuple[float, float | None, float | None]


@dataclasses.dataclass(frozen=True, slots=True)
class Survival:
    """S(t) = P(T > t) of one duration (days), with the unweighted events behind each step.

    `times` are the distinct durations at which an event happened, ascending; `surv[i]` is S
    just after `times[i]`; `events_upto[i]` counts the events at or before `times[i]`.
    """

    times: tuple[float, ...]
    surv: tuple[float, ...]
    events_upto: tuple[int, ...]
    events: int
    observations: int
    _negated: tuple[float, ...] = dataclasses.field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        # -S is ascending, which lets a quantile be found by bisection.
        object.__setattr__(self, "_negated", tuple(-value for value in self.surv))

    def survival(self, t: float) -> float:
        """P(T > t)."""
        index = bisect.bisect_right(self.times, t)
        return 1.0 if index == 0 else self.surv[index - 1]

    def events_after(self, t: float) -> int:
        """How many observed events lasted longer than `t`: the evidence behind a tail."""
        index = bisect.bisect_right(self.times, t)
        return self.events - (self.events_upto[index - 1] if index else 0)

    def quantile_given(self, elapsed: float, q: float) -> float | None:
        """The q-quantile of T given T > elapsed; None when the observed tail does not reach it."""
        alive = self.survival(elapsed)
        if alive <= 0.0:
            return None
        target = alive * (1.0 - q)
        start = bisect.bisect_right(self.times, elapsed)
        # A tolerance: S is a product of floats and must count as reaching a target it equals.
        index = bisect.bisect_left(self._negated, -target - 1e-12, lo=start)
        return self.times[index] if index < len(self.times) else None

    def cdf_given(self, elapsed: float, t: float) -> float | None:
        """P(T <= t | T > elapsed); None when nothing observed lasted beyond `elapsed`."""
        alive = self.survival(elapsed)
        if alive <= 0.0:
            return None
        return 1.0 - self.survival(t) / alive


EMPTY = Survival(times=(), surv=(), events_upto=(), events=0, observations=0)


# At most this many observations per table, the most recent: enough for a 5th and a 95th
# percentile (50 observations beyond each), and it bounds the cost of a busy lane's tables.
LATEST = 1000


def recent(known: list[Observation], latest: int = LATEST) -> list[Observation]:
    """The `latest` most recently started of `known`, and every one tied with the oldest kept
    (a tie is broken by nothing that was not known when they started)."""
    if len(known) <= latest:
        return known
    cutoff = sorted(start for start, _, _ in known)[-latest]
    return [item for item in known if item[0] >= cutoff]


def build(
    observations: Iterable[Observation], *, as_of: float, half_life: float, censor_at: float | None = None
) -> Survival:
    """The weighted Kaplan–Meier estimate from what was known at `as_of`.

    An observation started after `as_of` is unknown and left out, and of the others only the
    LATEST most recent count. One whose end is unknown at `as_of` is right-censored there (or
    where it stopped being watched, if that was known by then): it is known to have lasted at
    least that long. Each observation weighs 2 ** (-(as_of - start) / half_life), so a lane's
    recent parcels count more when its timings drift (a seasonal peak, a new exchange office)
    without old ones being dropped at once.

    `censor_at` (at most `as_of`) moves the censoring of open observations earlier: when
    `as_of` runs ahead of the present to take in scans printed in time zones ahead, censoring
    there would claim waits nobody has seen yet. Censoring early only loses information.
    """
    censor = as_of if censor_at is None else min(censor_at, as_of)
    # (duration, 0 for a delivery or 1 for a censoring, weight): sorting the tuples puts events
    # before censorings at the same duration, as Kaplan–Meier wants (a censored parcel was still
    # at risk then).
    items: list[tuple[float, int, float]] = []
    decay = math.log(2.0) / half_life
    exp = math.exp
    for start, end, stop in recent([item for item in observations if item[0] <= as_of]):
        weight = exp(-(as_of - start) * decay)
        if end is not None and end <= as_of:
            items.append((end - start if end > start else 0.0, 0, weight))
        else:
            until = stop if stop is not None and stop <= as_of else censor
            items.append((until - start if until > start else 0.0, 1, weight))
    items.sort()
    at_risk = sum(item[2] for item in items)
    times: list[float] = []
    surv: list[float] = []
    upto: list[int] = []
    value, events, index, size = 1.0, 0, 0, len(items)
    while index < size:
        duration = items[index][0]
        died = left = 0.0
        count = 0
        while index < size and items[index][0] == duration:
            _, censored, weight = items[index]
            left += weight
            if not censored:
                died += weight
                count += 1
            index += 1
        if count and at_risk > 0.0:
            # The last ones at risk all delivered: exactly 0, not the residue of the running sum.
            value = 0.0 if died >= at_risk * (1.0 - 1e-9) else value * (1.0 - died / at_risk)
            events += count
            times.append(duration)
            surv.append(value)
            upto.append(events)
        at_risk -= left
    return Survival(
        times=tuple(times), surv=tuple(surv), events_upto=tuple(upto), events=events, observations=len(items)
    )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LaneTables:
    """One lane's tables at one moment (durations in days)."""

    # Delivered parcels known (unweighted): the lane's history counts once this reaches the threshold.
    delivered: int
    # First scan -> delivery.
    total: Survival = EMPTY
    # Entering a stage -> delivery, per stage.
    remaining: Mapping[Stage, Survival] = dataclasses.field(default_factory=dict)
    # Entering a stage -> entering the next one, per stage.
    dwell: Mapping[Stage, Survival] = dataclasses.field(default_factory=dict)
    # A scan in a stage -> the next scan, per stage.
    gaps: Mapping[Stage, Survival] = dataclasses.field(default_factory=dict)
