"""The time model's cost: lane_stats() for 10,000 journeys, and estimate() etc. per call.

Also prints the backtest figures per simulated lane (coverage, shown share, median width, the
plain empirical 5-95% band's median width) for docs/explanation/time-model.md.
"""

from __future__ import annotations

import datetime as dt
import statistics
import sys
import time
from collections.abc import Callable

from notifier.core.eta import (
    Checkpoint,
    backtest,
    change_probability,
    estimate,
    lane_stats,
    lateness,
    summarize,
    width_days,
)
from notifier.testing.histories import History, generate


def timed(label: str, rounds: int, action: Callable[[], object], calls: int = 1) -> float:
    """Median time of one call, `action` making `calls` calls per round."""
    samples, cpu = [], []
    for _ in range(rounds):
        started, started_cpu = time.perf_counter(), time.process_time()
        action()
        samples.append((time.perf_counter() - started) / calls)
        cpu.append((time.process_time() - started_cpu) / calls)
    median = statistics.median(samples)
    unit, scale = ("ms", 1e3) if median >= 1e-3 else ("us", 1e6)
    # CPU time too: on a shared machine the wall clock also counts other processes' turns.
    print(
        f"{label:<40} median {median * scale:8.1f} {unit}  best {min(samples) * scale:8.1f} {unit}  "
        f"cpu median {statistics.median(cpu) * scale:8.1f} {unit}"
    )
    return median


def band_widths(found: History, checkpoints: tuple[Checkpoint, ...], lane: object) -> tuple[float, float]:
    """Median widths (ours, the plain empirical 5-95% band) over checkpoints where both show one."""
    delivered = sorted(
        (j.delivered_at, (j.delivered_at - j.scans[0].at).total_seconds() / 86400)
        for j in found.journeys
        if j.lane == lane and j.delivered_at is not None
    )
    ours, band = [], []
    for checkpoint in checkpoints:
        if checkpoint.lane != lane or checkpoint.window is None:
            continue
        totals = [days for when, days in delivered if when <= checkpoint.at]
        if len(totals) < 10:
            continue
        cuts = statistics.quantiles(totals, n=20, method="inclusive")
        first = found.truth[checkpoint.number].scans[0].at
        ours.append(width_days(checkpoint.window.earliest, checkpoint.window.latest))
        band.append(
            width_days(
                (first + dt.timedelta(days=cuts[0])).date(), (first + dt.timedelta(days=cuts[18])).date()
            )
        )
    return statistics.median(ours), statistics.median(band)


def main() -> int:
    print(f"python {sys.version.split()[0]}")
    big = generate(1, scale=6.4)
    journeys = list(big.journeys)[:10_000]
    print(f"{len(journeys)} journeys, {sum(len(j.scans) for j in journeys)} scans, {len(big.lanes)} lanes")
    timed("lane_stats, 10,000 journeys", 5, lambda: lane_stats(journeys, as_of=big.end))
    stats = lane_stats(journeys, as_of=big.end)
    # Parcels in transit at different stages, asked about 1 hour to 20 days after their last scan.
    waiting = [j for j in journeys if j.delivered_at is None]
    moments = [j.scans[-1].at + dt.timedelta(hours=1 + (i * 37) % 480) for i, j in enumerate(waiting)]
    asks = list(zip(waiting, moments, strict=True))
    print(f"{len(asks)} parcels in transit asked about, per call:")
    timed("  estimate", 5, lambda: [estimate(j, stats, now=at) for j, at in asks], len(asks))
    six = dt.timedelta(hours=6)
    timed(
        "  change_probability",
        5,
        lambda: [change_probability(j, stats, now=at, within=six) for j, at in asks],
        len(asks),
    )
    timed("  lateness", 5, lambda: [lateness(j, stats, now=at) for j, at in asks], len(asks))

    started, started_cpu = time.perf_counter(), time.process_time()
    checkpoints = backtest(journeys)
    took, cpu = time.perf_counter() - started, time.process_time() - started_cpu
    print(
        f"backtest: {len(journeys)} journeys, {len(checkpoints)} checkpoints in {took:.1f} s (cpu {cpu:.1f} s)"
    )
    for seed in (1, 2, 3):
        found = generate(seed)
        checkpoints = backtest(found.journeys)
        print(f"seed {seed}")
        for summary in summarize(checkpoints):
            if summary.lane is None:
                continue
            ours, band = band_widths(found, checkpoints, summary.lane)
            print(
                f"  {summary.lane!s:<12} parcels {summary.parcels:4d}  checkpoints {summary.checkpoints:5d}  "
                f"coverage {summary.coverage or 0:.3f}  shown {summary.shown / summary.checkpoints:.3f}  "
                f"median width {summary.median_width_days} d  (both shown: ours {ours} d, band {band} d)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
