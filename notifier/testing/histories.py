"""Simulated shipping histories with known truth, for the time model's tests and benchmarks.

Seeded and pure: the same seed gives the same parcels. Each lane has its own per-stage waits
(lognormal, the departure-to-arrival wait silent for days), a seasonal peak that stretches the
waits abroad around Christmas, missing and repeated scans, and a history that ends while
parcels are still on their way (censoring). The timings are invented for testing, loosely
shaped on the research note's figures (real transit 1.5-2x Japan Post's standard days); they
are never shown to a customer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import random
from collections.abc import Mapping, Sequence

from notifier.core.eta import Journey, Lane, Scan
from notifier.core.stages import Stage

# The stages a parcel abroad passes, in order, and whether the wait before each is abroad
# (stretched by the seasonal peak).
ROUTE: tuple[tuple[Stage, bool], ...] = (
    (Stage.OUTWARD_EXCHANGE, False),
    (Stage.DEPARTED_ORIGIN, False),
    (Stage.INWARD_EXCHANGE, True),
    (Stage.CUSTOMS_PRESENTED, True),
    (Stage.CUSTOMS_CLEARED, True),
    (Stage.AT_DELIVERY_OFFICE, True),
    (Stage.OUT_FOR_DELIVERY, True),
    (Stage.DELIVERED, True),
)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LaneSpec:
    """How one lane's parcels behave."""

    lane: Lane
    per_day: float  # mean parcels accepted per day
    # Median hours and lognormal sigma of the wait before each stage of ROUTE (8 pairs).
    waits: tuple[tuple[float, float], ...]
    peak: float = 1.6  # the waits abroad at the height of the peak, as a multiple
    missing: float = 0.08  # chance a scan other than acceptance and delivery is not printed
    repeated: float = 0.15  # chance a customs or delivery-office scan is printed twice


# Five lanes with different spreads: fast and tight, moderate, a long silent flight, SAL's
# weeks, and one (ePacket to France) Japan Post publishes no figure for.
LANES: tuple[LaneSpec, ...] = (
    LaneSpec(
        lane=Lane("ems", "SG"),
        per_day=1.5,
        waits=((8, 0.4), (14, 0.5), (14, 0.5), (3, 0.6), (8, 0.8), (12, 0.5), (6, 0.3), (4, 0.3)),
        peak=1.4,
    ),
    LaneSpec(
        lane=Lane("ems", "US"),
        per_day=2.0,
        waits=((10, 0.5), (20, 0.6), (30, 0.6), (4, 0.8), (14, 1.0), (18, 0.6), (8, 0.4), (5, 0.4)),
    ),
    LaneSpec(
        lane=Lane("air", "TH"),
        per_day=1.0,
        waits=((20, 0.5), (30, 0.6), (96, 0.7), (8, 0.8), (30, 1.0), (24, 0.6), (10, 0.4), (6, 0.4)),
    ),
    LaneSpec(
        lane=Lane("sal", "DE"),
        per_day=0.6,
        waits=((24, 0.5), (48, 0.6), (300, 0.35), (8, 0.8), (36, 0.9), (30, 0.6), (10, 0.4), (6, 0.4)),
        peak=1.3,
    ),
    LaneSpec(
        lane=Lane("epacket", "FR"),
        per_day=1.0,
        waits=((12, 0.5), (24, 0.6), (60, 0.7), (6, 0.8), (24, 1.1), (24, 0.6), (8, 0.4), (5, 0.4)),
    ),
)
START = dt.datetime(2026, 6, 1)
END = dt.datetime(2027, 2, 15)
PEAK = dt.datetime(2026, 12, 20)  # the height of the seasonal peak
PEAK_HALF_WIDTH = dt.timedelta(days=21)  # the stretch fades linearly to nothing either side


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class History:
    """What a shop's store would hold at `end`, and the truth behind it."""

    journeys: tuple[Journey, ...]  # as known at `end`: parcels still on their way are cut there
    truth: Mapping[str, Journey]  # number -> every scan, including those after `end`
    end: dt.datetime
    lanes: tuple[LaneSpec, ...]


def peak_factor(at: dt.datetime, height: float) -> float:
    """The stretch of the waits abroad for a wait starting at `at`."""
    distance = abs((at - PEAK).total_seconds()) / PEAK_HALF_WIDTH.total_seconds()
    return 1.0 + (height - 1.0) * max(0.0, 1.0 - distance)


def _journey(spec: LaneSpec, number: str, accepted: dt.datetime, rng: random.Random) -> Journey:
    scans = [Scan(at=accepted, stage=Stage.ACCEPTED)]
    at = accepted
    for (stage, abroad), (median, sigma) in zip(ROUTE, spec.waits, strict=True):
        hours = rng.lognormvariate(math.log(median), sigma)
        if abroad:
            hours *= peak_factor(at, spec.peak)
        at += dt.timedelta(hours=hours)
        if stage is not Stage.DELIVERED and rng.random() < spec.missing:
            continue
        scans.append(Scan(at=at, stage=stage))
        if stage in (Stage.CUSTOMS_PRESENTED, Stage.AT_DELIVERY_OFFICE) and rng.random() < spec.repeated:
            # A second scan of the same stage before the next one: the stage's runs stay one.
            at += dt.timedelta(hours=rng.uniform(0.5, 0.8) * median)
            scans.append(Scan(at=at, stage=stage))
    # Japan Post prints minutes: the model must cope with times on the minute.
    return Journey(
        number=number,
        lane=spec.lane,
        scans=tuple(dataclasses.replace(s, at=s.at.replace(second=0, microsecond=0)) for s in scans),
    )


def generate(
    seed: int = 1,
    *,
    lanes: Sequence[LaneSpec] = LANES,
    start: dt.datetime = START,
    end: dt.datetime = END,
    scale: float = 1.0,
) -> History:
    """Parcels accepted between `start` and `end` on every lane (Poisson arrivals, `scale` times
    the lane's rate), with their full truth and the history as known at `end`."""
    truth: dict[str, Journey] = {}
    known: list[Journey] = []
    for index, spec in enumerate(lanes):
        # One stream per lane: a history cut earlier is a prefix of a longer one, lane by lane.
        rng = random.Random(f"{seed}:{spec.lane}")
        at = start
        serial = 0
        rate = spec.per_day * scale
        while True:
            at += dt.timedelta(days=rng.expovariate(rate))
            if at >= end:
                break
            serial += 1
            prefix = {"ems": "E", "air": "C", "sal": "C", "surface": "C", "epacket": "L"}.get(
                spec.lane.service, "R"
            )
            number = f"{prefix}{chr(ord('A') + index)}{serial:08d}{index}JP"
            # Acceptance in office hours.
            accepted = at.replace(hour=rng.randint(9, 18), minute=rng.randint(0, 59))
            full = _journey(spec, number, accepted, rng)
            truth[number] = full
            cut = tuple(scan for scan in full.scans if scan.at <= end)
            known.append(dataclasses.replace(full, scans=cut))
    known.sort(key=lambda journey: (journey.scans[0].at, journey.number))
    return History(journeys=tuple(known), truth=truth, end=end, lanes=tuple(lanes))
