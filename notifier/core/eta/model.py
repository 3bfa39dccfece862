"""Lane statistics and what they say about one parcel: its window, its lateness, its next scan."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple, Protocol

from notifier.core.eta import survival
from notifier.core.eta.prior import prior_for
from notifier.core.eta.survival import LaneTables, Survival
from notifier.core.eta.types import (
    Calibration,
    Estimate,
    Journey,
    Lane,
    LaneStats,
    Lateness,
    Window,
)
from notifier.core.stages import Stage

# The percentiles of the remaining time each calibration spans. Balanced aims at 90% of
# deliveries inside the window (the share vendors quote); conservative at 95%, aggressive at 80%.
PERCENTILES: Mapping[Calibration, tuple[float, float]] = {
    Calibration.CONSERVATIVE: (0.025, 0.975),
    Calibration.BALANCED: (0.05, 0.95),
    Calibration.AGGRESSIVE: (0.10, 0.90),
}
THRESHOLD = 10  # delivered parcels before a lane's history counts (Wonderment uses 10 in 60 days)
HALF_LIFE_DAYS = 60.0  # a parcel 60 days older than another weighs half as much
# Delivered parcels that outlasted the current wait: fewer, and the tail is too thin to trust.
MIN_TAIL = 8
# Gaps between scans a lane (or its service) needs before it says when the next scan comes.
MIN_GAPS = 10
# A parcel on its way back to the sender will not be delivered: no window, and its delivery
# observations stop there (censored, not counted as slow).
_WITHDRAWN = frozenset({Stage.RETURNING, Stage.RETURNED})
_EPOCH = dt.datetime(2000, 1, 1)
_DAY = 86400.0


def days(at: dt.datetime) -> float:
    """A printed time as days on the model's clock."""
    return (at - _EPOCH).total_seconds() / _DAY


def moment(value: float) -> dt.datetime:
    """The inverse of days()."""
    return _EPOCH + dt.timedelta(days=value)


class Point(NamedTuple):
    """One scan on the model's clock (a tuple: lane_stats makes one per scan of every journey)."""

    at: dt.datetime
    t: float
    stage: Stage


def timeline(journey: Journey) -> list[Point]:
    """The journey's scans in page order, up to its first delivery, with time never running back.

    Japan Post prints local times: a scan abroad can print earlier than the departure scan in
    Japan before it. Taking the running maximum keeps "known by `as_of`" a prefix of the scans.
    """
    points: list[Point] = []
    latest: dt.datetime | None = None
    t = 0.0
    for scan in journey.scans:
        if latest is None or scan.at > latest:
            latest = scan.at
            t = (latest - _EPOCH).total_seconds() / _DAY
        points.append(Point(latest, t, scan.stage))
        if scan.stage is Stage.DELIVERED:
            break
    return points


@dataclasses.dataclass(frozen=True, slots=True)
class Facts:
    """One journey as observations, independent of any moment (build() applies `as_of`)."""

    lane: Lane
    first: float
    delivered: float | None
    stop: float | None  # when it turned back to the sender
    runs: tuple[tuple[Stage, float], ...]  # (stage, entered) of every run before delivery
    dwell: tuple[tuple[Stage, float, float | None], ...]  # (stage, entered, left)
    gaps: tuple[tuple[Stage, float, float | None], ...]  # (stage, scanned, next scan)


def facts(journey: Journey) -> Facts | None:
    """The observations one journey gives; None for a journey without scans."""
    points = timeline(journey)
    if not points:
        return None
    delivered = points[-1].t if points[-1].stage is Stage.DELIVERED else None
    stop = next((p.t for p in points if p.stage in _WITHDRAWN), None)
    runs: list[tuple[Stage, float]] = []
    for point in points:
        if point.stage is Stage.DELIVERED:
            break
        if not runs or runs[-1][0] is not point.stage:
            runs.append((point.stage, point.t))
    ends = [start for _, start in runs[1:]] + [delivered]
    dwell = tuple((stage, start, end) for (stage, start), end in zip(runs, ends, strict=True))
    gaps = tuple(
        (point.stage, point.t, points[index + 1].t if index + 1 < len(points) else None)
        for index, point in enumerate(points)
        if point.stage is not Stage.DELIVERED
    )
    return Facts(journey.lane, points[0].t, delivered, stop, tuple(runs), dwell, gaps)


def tables(
    items: Sequence[Facts],
    *,
    as_of: float,
    half_life: float,
    censor_at: float | None = None,
    gaps_only: bool = False,
) -> LaneTables:
    """Every table of one lane at `as_of` (only the gaps between scans: a pooled group's)."""
    remaining: dict[Stage, list[survival.Observation]] = {}
    dwell: dict[Stage, list[survival.Observation]] = {}
    gaps: dict[Stage, list[survival.Observation]] = {}
    for item in items:
        for stage, start, end in item.gaps:
            gaps.setdefault(stage, []).append((start, end, None))
        if gaps_only:
            continue
        for stage, start in item.runs:
            remaining.setdefault(stage, []).append((start, item.delivered, item.stop))
        for stage, start, end in item.dwell:
            dwell.setdefault(stage, []).append((start, end, None))

    def per_stage(groups: dict[Stage, list[survival.Observation]]) -> dict[Stage, Survival]:
        return {
            stage: survival.build(obs, as_of=as_of, half_life=half_life, censor_at=censor_at)
            for stage, obs in groups.items()
        }

    if gaps_only:
        return LaneTables(delivered=0, gaps=per_stage(gaps))
    return LaneTables(
        delivered=sum(1 for item in items if item.delivered is not None and item.delivered <= as_of),
        total=survival.build(
            ((item.first, item.delivered, item.stop) for item in items),
            as_of=as_of,
            half_life=half_life,
            censor_at=censor_at,
        ),
        remaining=per_stage(remaining),
        dwell=per_stage(dwell),
        gaps=per_stage(gaps),
    )


def lane_stats(
    journeys: Iterable[Journey],
    *,
    as_of: dt.datetime,
    threshold: int = THRESHOLD,
    half_life_days: float = HALF_LIFE_DAYS,
    censor_at: dt.datetime | None = None,
) -> LaneStats:
    """The statistics of every lane from what was known at `as_of` (later scans are ignored).

    Parcels still on their way count as having waited until `as_of`, or until `censor_at` when
    given: a caller that sets `as_of` ahead of the present (to take in every scan printed in a
    time zone ahead of its clock) passes the earliest present any zone can have, so that no
    parcel is credited with a wait nobody has seen.
    """
    clock = days(as_of)
    censor = None if censor_at is None else days(censor_at)
    by_lane: dict[Lane, list[Journey]] = {}
    found: dict[Lane, list[Facts]] = {}
    for journey in journeys:
        item = facts(journey)
        if item is None or item.first > clock:
            continue
        if journey.scans[-1].at > as_of or any(scan.at > as_of for scan in journey.scans):
            known = tuple(scan for scan in journey.scans if scan.at <= as_of)
            journey = dataclasses.replace(journey, scans=known)
        by_lane.setdefault(journey.lane, []).append(journey)
        found.setdefault(journey.lane, []).append(item)
    by_service: dict[str, list[Facts]] = {}
    for lane, items in found.items():
        by_service.setdefault(lane.service, []).extend(items)
    return LaneStats(
        as_of=as_of,
        journeys={lane: tuple(items) for lane, items in by_lane.items()},
        tables={
            lane: tables(items, as_of=clock, half_life=half_life_days, censor_at=censor)
            for lane, items in found.items()
        },
        pooled={
            service: tables(items, as_of=clock, half_life=half_life_days, censor_at=censor, gaps_only=True)
            for service, items in by_service.items()
        },
        threshold=threshold,
        half_life_days=half_life_days,
    )


class TableSource(Protocol):
    """Where estimate() finds a lane's tables: a LaneStats, or the backtest's lazy builder."""

    def delivered(self, lane: Lane) -> int: ...
    def remaining(self, lane: Lane, stage: Stage) -> Survival | None: ...
    def total(self, lane: Lane) -> Survival | None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class _StatsSource:
    stats: LaneStats

    def delivered(self, lane: Lane) -> int:
        found = self.stats.tables.get(lane)
        return found.delivered if found else 0

    def remaining(self, lane: Lane, stage: Stage) -> Survival | None:
        found = self.stats.tables.get(lane)
        return found.remaining.get(stage) if found else None

    def total(self, lane: Lane) -> Survival | None:
        found = self.stats.tables.get(lane)
        return found.total if found else None


def window_days(
    points: Sequence[Point], lane: Lane, source: TableSource, *, threshold: int, calibration: Calibration
) -> tuple[float, float, str] | str:
    """(earliest, latest, basis) on the model's clock for a parcel in transit, or why not.

    The window is taken at the last scan, from the time the parcel had then spent in its stage
    (lane history) or since its first scan (the lane's totals, then the prior): it changes when
    news comes, not at every poll, and a quiet parcel's window can pass (then it runs late).
    """
    low_q, high_q = PERCENTILES[calibration]
    last = points[-1]
    entered = last.t
    for point in reversed(points):
        if point.stage is not last.stage:
            break
        entered = point.t
    delivered = source.delivered(lane)
    if delivered >= threshold:
        # The stage's table first, then the lane's totals (asked for only when needed: the
        # backtest builds each table it is asked for).
        choices: tuple[tuple[Callable[[], Survival | None], float], ...] = (
            (lambda: source.remaining(lane, last.stage), last.t - entered),
            (lambda: source.total(lane), last.t - points[0].t),
        )
        for ask, elapsed in choices:
            table = ask()
            if table is None or table.events < threshold or table.events_after(elapsed) < MIN_TAIL:
                continue
            low, high = table.quantile_given(elapsed, low_q), table.quantile_given(elapsed, high_q)
            if low is not None and high is not None:
                start = last.t - elapsed
                return start + low, start + high, "lane"
    prior = prior_for(lane)
    if prior is not None:
        elapsed = last.t - points[0].t
        return (
            points[0].t + prior.quantile_given(elapsed, low_q),
            points[0].t + prior.quantile_given(elapsed, high_q),
            "prior",
        )
    return "thin_data" if delivered else "no_prior"


def estimate_with(
    journey: Journey,
    source: TableSource,
    *,
    now: dt.datetime,
    threshold: int = THRESHOLD,
    calibration: Calibration = Calibration.BALANCED,
) -> Estimate:
    """estimate() against any TableSource (the backtest builds only the tables it asks for)."""
    points = timeline(journey)
    if not points or points[-1].stage in _WITHDRAWN:
        return Estimate(window=None, withheld="not_in_transit")
    if points[-1].stage is Stage.DELIVERED:
        return Estimate(window=None, withheld="delivered")
    found = window_days(points, journey.lane, source, threshold=threshold, calibration=calibration)
    if isinstance(found, str):
        return Estimate(window=None, withheld=found)
    low, high, basis = found
    window = Window(earliest=moment(low).date(), latest=moment(high).date(), basis=basis, lane=journey.lane)
    if window.latest < now.date():
        return Estimate(window=None, withheld="passed", running_late=True)
    return Estimate(window=window, withheld=None)


def estimate(
    journey: Journey,
    stats: LaneStats,
    *,
    now: dt.datetime,
    calibration: Calibration = Calibration.BALANCED,
) -> Estimate:
    """The delivery window for `journey` at `now` (naive, in the calendar of its last scan).

    Withheld (Estimate.withheld says why) when delivered, sent back, or when neither the lane's
    history nor Japan Post's published figures can support a window; never shown once its
    latest date is before `now`'s date: the parcel is then running late.
    """
    return estimate_with(
        journey, _StatsSource(stats), now=now, threshold=stats.threshold, calibration=calibration
    )


def lateness(journey: Journey, stats: LaneStats, *, now: dt.datetime) -> Lateness | None:
    """How the parcel's time in its current stage compares with the lane's parcels that passed it.

    None when the lane cannot judge (fewer than `stats.threshold` parcels left this stage, or the
    parcel is delivered or sent back): callers then use the fixed stall rules. Otherwise a
    Lateness whatever the quiet: `Lateness.late` says whether it exceeds the lane's p90.
    """
    points = timeline(journey)
    if not points or points[-1].stage is Stage.DELIVERED or points[-1].stage in _WITHDRAWN:
        return None
    found = stats.tables.get(journey.lane)
    table = found.dwell.get(points[-1].stage) if found else None
    if table is None or table.events < stats.threshold:
        return None
    p90 = table.quantile_given(0.0, 0.9)
    if p90 is None:
        return None
    entered = points[-1]
    for point in reversed(points):
        if point.stage is not entered.stage:
            break
        entered = point
    quiet = max(now - entered.at, dt.timedelta(0))
    quicker = 1.0 - table.survival(quiet.total_seconds() / _DAY)
    return Lateness(
        stage=entered.stage,
        quiet=quiet,
        lane_p90=dt.timedelta(days=p90),
        quicker_out_of_ten=min(10, math.floor(quicker * 10 + 1e-9)),
    )


def change_probability(
    journey: Journey, stats: LaneStats, *, now: dt.datetime, within: dt.timedelta
) -> float | None:
    """The chance the next scan comes within `within` of `now`, given the quiet since the last scan.

    From the gaps between scans in the parcel's stage: the lane's own once it has `MIN_GAPS`
    of them, else those of its service over every destination (the waits between scans are
    mostly Japan Post's and the airlines', alike across countries), else None. Two dictionary
    lookups and two bisections: cheap enough for every poll.
    """
    points = timeline(journey)
    if not points or points[-1].stage is Stage.DELIVERED or points[-1].stage is Stage.RETURNED:
        return None
    stage = points[-1].stage
    quiet = max(days(now) - points[-1].t, 0.0)
    horizon = quiet + max(within.total_seconds(), 0.0) / _DAY
    for found in (stats.tables.get(journey.lane), stats.pooled.get(journey.lane.service)):
        table = found.gaps.get(stage) if found else None
        if table is None or table.events < MIN_GAPS:
            continue
        chance = table.cdf_given(quiet, horizon)
        if chance is not None:
            return chance
    return None
