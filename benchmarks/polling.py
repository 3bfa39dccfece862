"""Adaptive polling against today's fixed schedule on simulated fleets: requests per detected scan
and detection delay, swept to trace each schedule's Pareto curve.

    python benchmarks/polling.py [--scale X] [--seeds S ...]

The fleets are notifier.testing.histories' (the time model's own test generator: five lanes
with different spreads, a silent flight of one to twelve days, missing and repeated scans, a
seasonal peak around Christmas), one fleet per seed (default: two seeds). Per seed:

1. history: the parcels accepted from June to September 2026; the lanes' statistics are built
   from every scan known at the start of each week from October on (`lane_stats`, what the
   daemon's LaneCache rebuilds hourly), so the fleet's own delivered parcels count as they
   would;
2. the fleet: the parcels accepted from 1 October 2026 to 15 January 2027 (about 650 at
   scale 1), each watched from its acceptance scan until a poll sees its delivery; every
   later scan is an event to detect;
3. each schedule follows each parcel in simulated time through `core.policy.next_poll`, the
   daemon's own rule (jitter included, seeded); the adaptive schedules get `chance` from
   `change_probability` on the last scan seen, as `pipeline.lanes.chance_of` asks it; a poll
   sees every scan whose time has passed (Japan Post's own delay in printing a scan is not
   modelled: it adds the same to every schedule);
4. per schedule: polls per detected scan (shipment-polls; the daemon batches ten unchanged
   numbers per list request, alike for every schedule) and the delay from each scan to the
   poll that saw it, median and 90th percentile.

Fixed schedules: today's per-stage intervals times a scale (x1 is today's). Adaptive: both
rules (`adaptive_rule`, balanced and frugal), default bounds around today's intervals, each
swept over `adaptive_target`. The comparison reads the fixed curve, interpolated log-log
between its points, at each adaptive schedule's median delay (polls per scan) and at its polls
per scan (median and p90 delay). It also prints the CPU of the daemon's `schedule()` for an
unchanged poll with and without the lanes.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import datetime as dt
import math
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from zoneinfo import ZoneInfo

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from notifier.core.adaptive import AdaptivePolling, Rule
from notifier.core.eta import Journey, LaneStats, change_probability, lane_stats
from notifier.core.numbers import s10_check_digit
from notifier.core.policy import DEFAULT_INTERVALS, PollingPolicy, next_poll
from notifier.core.stages import Stage
from notifier.core.views import ShipmentView
from notifier.core.zones import country_zones
from notifier.pipeline.cycle import schedule
from notifier.pipeline.lanes import chance_of
from notifier.testing import histories
from notifier.testing.histories import generate

FIXED_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)
# Swept per rule: the defaults (0.2 balanced, 0.1 frugal) and either side.
TARGETS = {Rule.BALANCED: (0.05, 0.1, 0.2, 0.4, 0.7), Rule.FRUGAL: (0.05, 0.1, 0.2, 0.3)}
HOUR = 3600.0


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """One schedule over one fleet."""

    name: str
    polls: int
    events: int
    delays: tuple[float, ...]  # seconds, one per detected scan
    missed: int  # scans never seen (the schedule gave up first)

    @property
    def per_event(self) -> float:
        return self.polls / self.events if self.events else math.inf

    def delay(self, q: float) -> float:
        """The q-quantile of the detection delay, in hours."""
        ordered = sorted(self.delays)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / HOUR


def fixed(scale: float) -> PollingPolicy:
    return PollingPolicy(
        intervals={stage: every * scale for stage, every in DEFAULT_INTERVALS.items()},
        adaptive=AdaptivePolling(enabled=False),
    )


def adaptive(rule: Rule, target: float) -> PollingPolicy:
    return PollingPolicy(adaptive=AdaptivePolling(rule=rule, target=target))


def follow(
    journey: Journey, policy: PollingPolicy, stats: LaneStats | None, rng: random.Random
) -> tuple[int, list[float], int]:
    """Poll one parcel from its first scan until a poll sees its delivery (or the schedule
    gives up): (polls, detection delays in seconds, scans missed)."""
    scans = journey.scans
    start = scans[0].at
    now, known = start, 0
    last_changed = stage_entered = start
    polls, delays = 0, list[float]()
    fresh = False
    while True:
        stage = scans[known].stage
        # As the daemon asks (pipeline/lanes.chance_of): the lane and the last scan seen, quiet
        # since the poll that saw it when that is this one, else since its printed time.
        last = dataclasses.replace(scans[known], at=now) if fresh else scans[known]
        seen = dataclasses.replace(journey, scans=(last,))
        at = now

        def chance(within: dt.timedelta, seen: Journey = seen, at: dt.datetime = at) -> float | None:
            assert stats is not None
            return change_probability(seen, stats, now=at, within=within)

        step = next_poll(
            stage=stage,
            now=now,
            created_at=start,
            last_changed_at=last_changed,
            stage_entered_at=stage_entered,
            consecutive_failures=0,
            policy=policy,
            rng=rng,
            chance=chance if stats is not None else None,
        )
        if step.at is None:
            return polls, delays, len(scans) - 1 - known
        now = step.at
        polls += 1
        newest, fresh = known, False
        while newest + 1 < len(scans) and scans[newest + 1].at <= now:
            newest += 1
            delays.append((now - scans[newest].at).total_seconds())
        if newest != known:
            fresh = True
            last_changed = now
            if scans[newest].stage is not stage:
                stage_entered = now
            known = newest
            if scans[known].stage is Stage.DELIVERED:
                return polls, delays, 0


# --- the fleets ------------------------------------------------------------------------------

# The time model's simulated histories (five lanes from EMS to Singapore to SAL to Germany,
# missing and repeated scans, a seasonal peak around Christmas): four months of parcels build
# the lanes' statistics, and the parcels accepted in the next three and a half are the fleet.
START = dt.datetime(2026, 10, 1)
END = dt.datetime(2027, 1, 15)


def fleets(seed: int, scale: float) -> tuple[list[Journey], list[Journey]]:
    """(history, fleet): every scan of each parcel (the generator's truth), split at START."""
    made = generate(seed, start=histories.START, end=END, scale=scale)
    everything = sorted(made.truth.values(), key=lambda j: (j.scans[0].at, j.number))
    return [j for j in everything if j.scans[0].at < START], [j for j in everything if j.scans[0].at >= START]


# --- running and reporting -------------------------------------------------------------------

WEEK = dt.timedelta(days=7)


def weekly_stats(history: Sequence[Journey], fleet: Sequence[Journey]) -> list[LaneStats]:
    """The lanes' statistics as the daemon would have them at the start of each week from
    START on: every parcel's scans known by then (lane_stats drops later ones)."""
    everything = [*history, *fleet]
    end = max(j.scans[0].at for j in fleet)
    weeks = int((end - START) / WEEK) + 1
    return [lane_stats(everything, as_of=START + k * WEEK) for k in range(weeks)]


def run(
    name: str, fleet: Sequence[Journey], policy: PollingPolicy, stats: Sequence[LaneStats] | None, seed: int
) -> Outcome:
    rng = random.Random(seed)
    polls, delays, missed = 0, [], 0
    for journey in fleet:
        known = stats[int((journey.scans[0].at - START) / WEEK)] if stats is not None else None
        p, d, m = follow(journey, policy, known, rng)
        polls += p
        delays.extend(d)
        missed += m
    return Outcome(name=name, polls=polls, events=len(delays), delays=tuple(delays), missed=missed)


def _interpolate(points: list[tuple[float, float]], x: float) -> float | None:
    """y at x on the log-log polyline through `points` (x, y > 0); None outside them."""
    logs = sorted((math.log(a), math.log(b)) for a, b in points)
    lx = math.log(x)
    if not logs[0][0] <= lx <= logs[-1][0]:
        return None
    i = max(1, bisect.bisect_left([p[0] for p in logs], lx))
    (x0, y0), (x1, y1) = logs[i - 1], logs[i]
    return math.exp(y0 + (y1 - y0) * (lx - x0) / (x1 - x0)) if x1 > x0 else math.exp(y0)


def table(fixed_curve: Sequence[Outcome], adaptive_curve: Sequence[Outcome]) -> list[str]:
    """The Pareto table (Markdown): every schedule's figures, and for each adaptive one the fixed
    curve read at the same median delay (polls per scan, and the ratio) and at the same polls
    per scan (median and p90 delay)."""
    lines = [
        "| schedule | polls | scans seen | polls per scan | delay median | delay p90 "
        "| fixed, same median delay: polls per scan | adaptive / fixed | fixed, same polls: median / p90 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def h(hours: float | None) -> str:
        return "-" if hours is None else f"{hours:.2f} h"

    for o in fixed_curve:
        lines.append(
            f"| {o.name} | {o.polls:,} | {o.events:,} | {o.per_event:.2f} | {h(o.delay(0.5))} "
            f"| {h(o.delay(0.9))} | | | |"
        )
    for o in adaptive_curve:
        same = _interpolate([(f.delay(0.5), f.per_event) for f in fixed_curve], o.delay(0.5))
        ratio = "-" if same is None else f"{o.per_event / same:.2f}"
        median = _interpolate([(f.per_event, f.delay(0.5)) for f in fixed_curve], o.per_event)
        p90 = _interpolate([(f.per_event, f.delay(0.9)) for f in fixed_curve], o.per_event)
        lines.append(
            f"| {o.name} | {o.polls:,} | {o.events:,} | {o.per_event:.2f} | {h(o.delay(0.5))} "
            f"| {h(o.delay(0.9))} | {'-' if same is None else f'{same:.2f}'} | {ratio} | {h(median)} / {h(p90)} |"
        )
    return lines


def daemon_schedule_cpu(fleet: Sequence[Journey], stats: LaneStats, rounds: int = 20) -> tuple[float, float]:
    """CPU seconds of the daemon's own `pipeline.cycle.schedule` for an unchanged poll, without
    and with the lanes: each fleet parcel as a ShipmentView an hour after a scan in mid-journey."""
    views = []
    for n, journey in enumerate(fleet):
        scan = journey.scans[min(len(journey.scans) - 2, 1 + n % 6)]
        # Printed on the wall clock of where it happened, as chance_of reads it back.
        where = (
            "JP"
            if scan.stage in (Stage.ACCEPTED, Stage.OUTWARD_EXCHANGE, Stage.DEPARTED_ORIGIN)
            else journey.lane.destination
        )
        zone = ZoneInfo(country_zones()[where])
        polled = scan.at.replace(tzinfo=zone).astimezone(dt.UTC) + dt.timedelta(hours=1)
        number = f"EJ{n:08d}{s10_check_digit(f'{n:08d}')}JP"
        view = ShipmentView(
            id=n,
            number=number,
            incarnation=1,
            label="",
            item_type="EMS",
            origin="JP",
            destination=journey.lane.destination,
            tags=frozenset(),
            stage=scan.stage,
            stage_entered_at=polled - dt.timedelta(hours=1),
            last_event_time=scan.at.strftime("%Y-%m-%dT%H:%M"),
            active=True,
            next_poll_at=polled,
            last_polled_at=polled,
            last_changed_at=polled - dt.timedelta(hours=1),
            consecutive_failures=0,
            last_error=None,
            created_at=polled - dt.timedelta(days=3),
        )
        views.append((view, polled))
    policy, rng = PollingPolicy(), random.Random(1)
    out = []
    hour = dt.timedelta(hours=1)
    known = sum(chance_of(v, v.stage, False, now, stats)(hour) is not None for v, now in views)
    print(f"  ({known} of {len(views)} views have lane data for their stage)")
    for lanes in (None, stats):
        began = time.process_time()
        for _ in range(rounds):
            for view, now in views:
                schedule(view, view.stage, False, False, now, policy, rng, lanes)
        out.append((time.process_time() - began) / (rounds * len(views)))
    return out[0], out[1]


def one_seed(scale: float, seed: int) -> None:
    started = time.perf_counter()
    history, fleet = fleets(seed, scale)
    stats = weekly_stats(history, fleet)
    built = time.perf_counter() - started
    scans = sum(len(j.scans) - 1 for j in fleet)
    print(
        f"seed {seed}: {len(history):,} parcels of history, a fleet of {len(fleet):,} "
        f"({scans:,} scans after acceptance) in {len(histories.LANES)} lanes; {len(stats)} weekly lane "
        f"statistics built in {built:.1f} s",
        flush=True,
    )
    began = time.process_time()
    fixed_curve = [run(f"fixed x{scale:g}", fleet, fixed(scale), None, seed) for scale in FIXED_SCALES]
    fixed_cpu = (time.process_time() - began) / sum(o.polls for o in fixed_curve)
    began = time.process_time()
    adaptive_curve = [
        run(f"{rule} {target:g}", fleet, adaptive(rule, target), stats, seed)
        for rule, targets in TARGETS.items()
        for target in targets
    ]
    adaptive_cpu = (time.process_time() - began) / sum(o.polls for o in adaptive_curve)
    print(
        f"CPU per simulated poll: {fixed_cpu * 1e6:.1f} us fixed, {adaptive_cpu * 1e6:.1f} us adaptive "
        f"(next_poll asking the lanes' change_probability): {(adaptive_cpu - fixed_cpu) * 1e6:.1f} us more"
    )
    without, with_lanes = daemon_schedule_cpu(fleet, stats[-1])
    print(
        f"CPU of the daemon's schedule() per unchanged poll: {without * 1e6:.1f} us without the lanes, "
        f"{with_lanes * 1e6:.1f} us with them"
    )
    print("\n".join(table(fixed_curve, adaptive_curve)))
    missed = {o.name: o.missed for o in [*fixed_curve, *adaptive_curve] if o.missed}
    print(f"scans never seen (the schedule stopped first: no change for 60 days): {missed or 'none'}")
    print(f"seed {seed} took {time.perf_counter() - started:.0f} s\n", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="parcels per day, times the generator's (default 1: about 650 in the fleet)",
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[20261207, 7], help="the fleets' seeds (default: two)"
    )
    args = parser.parse_args(argv)
    for seed in args.seeds:
        one_seed(args.scale, seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
