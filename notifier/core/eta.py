"""The model of time: delivery windows, lane statistics, running late, when a change is likely.

Interface first: the types and signatures below are what the pipeline, the store, the CLI, the
web face and the templates build on. Times are the wall-clock times Japan Post prints (naive
datetimes, local to where the scan happened); windows are dates in that same calendar.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Iterable, Mapping, Sequence

from notifier.core.stages import Stage


class Calibration(enum.StrEnum):
    """How wide a window is: which percentiles of the remaining time it spans."""

    CONSERVATIVE = "conservative"
    BALANCED = "balanced"
    AGGRESSIVE = "aggressive"


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class Lane:
    """A route whose parcels behave alike: the service (ems, air, sal, surface, epacket,
    registered, domestic, unknown) and the destination country (ISO 3166 alpha-2, "JP" at home)."""

    service: str
    destination: str

    def __str__(self) -> str:
        return f"{self.service}:{self.destination}"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Scan:
    """One stage-bearing event as the model sees it."""

    at: dt.datetime  # naive, as printed
    stage: Stage


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Journey:
    """One shipment's history as known at some moment: its lane and its scans in time order."""

    number: str
    lane: Lane
    scans: tuple[Scan, ...]

    @property
    def delivered_at(self) -> dt.datetime | None:
        """The first delivery scan, if any."""
        for scan in self.scans:
            if scan.stage is Stage.DELIVERED:
                return scan.at
        return None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    """Earliest and latest delivery date, never a single date."""

    earliest: dt.date
    latest: dt.date
    basis: str  # "prior" (Japan Post's standard days, widened) or "lane" (this shop's history)
    lane: Lane


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Lateness:
    """A parcel quieter in its stage than the lane's parcels usually are."""

    stage: Stage
    quiet: dt.timedelta
    # The lane's 90th percentile of time in this stage; None: judged by the fixed stall rules.
    lane_p90: dt.timedelta | None
    # Out of every 10 parcels of this lane that passed this stage, how many were quicker.
    quicker_out_of_ten: int | None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Estimate:
    """What may be said about a parcel's arrival now: a window, or why there is none."""

    window: Window | None
    # None when a window is shown; else "delivered", "no_prior", "thin_data", "passed",
    # "not_in_transit" or "disabled".
    withheld: str | None
    running_late: bool = False


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LaneStats:
    """Everything learnt from history up to one moment, per lane: built once, asked many times."""

    as_of: dt.datetime
    journeys: Mapping[Lane, tuple[Journey, ...]]


def lane_of(*, number: str, item_type: str | None, origin: str, destination: str | None) -> Lane:
    """The lane of a shipment from what the page and the watch say (refined by the model)."""
    kind = (item_type or "").strip().casefold()
    prefix = number[:1].upper()
    if origin.upper() == "JP" and (destination or "JP").upper() == "JP" and not number[-2:].isalpha():
        service = "domestic"
    elif kind == "ems" or prefix == "E":
        service = "ems"
    elif prefix == "L":
        service = "epacket"
    elif prefix == "C":
        service = "parcel"
    elif prefix == "R":
        service = "registered"
    else:
        service = "unknown"
    return Lane(service=service, destination=(destination or "").upper() or "??")


def lane_stats(journeys: Iterable[Journey], *, as_of: dt.datetime) -> LaneStats:
    """The statistics of every lane from what was known at `as_of` (later scans are ignored)."""
    by_lane: dict[Lane, list[Journey]] = {}
    for journey in journeys:
        known = tuple(scan for scan in journey.scans if scan.at <= as_of)
        if known:
            by_lane.setdefault(journey.lane, []).append(dataclasses.replace(journey, scans=known))
    return LaneStats(as_of=as_of, journeys={lane: tuple(items) for lane, items in by_lane.items()})


def estimate(
    journey: Journey,
    stats: LaneStats,
    *,
    now: dt.datetime,
    calibration: Calibration = Calibration.BALANCED,
) -> Estimate:
    """The delivery window for `journey` at `now` (naive, in the calendar of its last scan)."""
    if journey.delivered_at is not None:
        return Estimate(window=None, withheld="delivered")
    return Estimate(window=None, withheld="no_prior")


def lateness(journey: Journey, stats: LaneStats, *, now: dt.datetime) -> Lateness | None:
    """Whether the parcel has been quiet in its stage for longer than the lane's p90."""
    return None


def change_probability(
    journey: Journey, stats: LaneStats, *, now: dt.datetime, within: dt.timedelta
) -> float | None:
    """The chance the next scan comes within `within` of `now`; None: the lane cannot say."""
    return None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """One backtest point: the window that would have been shown at a stage-changing scan."""

    number: str
    lane: Lane
    at: dt.datetime
    stage: Stage
    window: Window | None
    delivered_on: dt.date


def backtest(
    journeys: Sequence[Journey],
    *,
    since: dt.datetime | None = None,
    calibration: Calibration = Calibration.BALANCED,
) -> tuple[Checkpoint, ...]:
    """Replay history in time order: one checkpoint per stage-changing scan of every delivered
    journey, each computed only from what was known at that scan."""
    return ()
