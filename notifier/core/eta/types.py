"""The time model's types: lanes, journeys, windows, lateness, lane statistics, checkpoints."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Mapping

from notifier.core.eta.survival import LaneTables
from notifier.core.stages import Stage


class Calibration(enum.StrEnum):
    """How wide a window is: which percentiles of the remaining time it spans."""

    CONSERVATIVE = "conservative"
    BALANCED = "balanced"
    AGGRESSIVE = "aggressive"


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class Lane:
    """A route whose parcels behave alike: the service (ems, air, sal, surface, parcel (carriage
    not named), epacket, registered, domestic, unknown) and the destination country (ISO 3166
    alpha-2, "JP" at home, "??" unknown)."""

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
    """How a parcel's quiet in its stage compares with the lane's parcels that passed that stage.

    eta.lateness() returns one whenever the lane can judge (enough parcels passed the stage);
    the parcel is running late for its route when `late` (quiet longer than `lane_p90`).
    """

    stage: Stage
    quiet: dt.timedelta
    # The lane's 90th percentile of time in this stage; None: judged by the fixed stall rules.
    lane_p90: dt.timedelta | None
    # Out of every 10 parcels of this lane that passed this stage, how many were quicker.
    quicker_out_of_ten: int | None

    @property
    def late(self) -> bool:
        """Quieter than 9 in 10 of the lane's parcels were in this stage."""
        return self.lane_p90 is not None and self.quiet > self.lane_p90


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
    # The precomputed survival tables per lane (eta.lane_stats builds them; empty: prior only).
    tables: Mapping[Lane, LaneTables] = dataclasses.field(default_factory=dict)
    # The same tables pooled over every destination of a service (for gaps between scans only).
    pooled: Mapping[str, LaneTables] = dataclasses.field(default_factory=dict)
    # Delivered parcels a lane needs before its own history replaces the prior.
    threshold: int = 10
    # Half-life of a parcel's weight in the lane's statistics, in days (recent parcels count more).
    half_life_days: float = 60.0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """One backtest point: the window that would have been shown at a stage-changing scan."""

    number: str
    lane: Lane
    at: dt.datetime
    stage: Stage
    window: Window | None
    delivered_on: dt.date
