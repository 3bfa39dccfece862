"""The simulated histories the time model is judged on: seeded, censored, peaked, realistic in shape."""

from __future__ import annotations

import datetime as dt
import statistics

from notifier.core.eta import Lane
from notifier.core.stages import Stage
from notifier.testing.histories import END, ROUTE, generate, peak_factor


def test_the_same_seed_gives_the_same_history_and_another_seed_another() -> None:
    assert generate(7, scale=0.2) == generate(7, scale=0.2)
    assert generate(7, scale=0.2).journeys != generate(8, scale=0.2).journeys


def test_parcels_still_on_their_way_at_the_end_are_cut_there() -> None:
    found = generate(1, scale=0.5)
    waiting = [j for j in found.journeys if j.delivered_at is None]
    assert {j.lane for j in waiting} == {spec.lane for spec in found.lanes}
    for journey in waiting:
        truth = found.truth[journey.number]
        assert truth.delivered_at is not None
        assert truth.delivered_at > END
        assert journey.scans == tuple(s for s in truth.scans if s.at <= END)
    assert all(s.at <= END for j in found.journeys for s in j.scans)


def test_scans_follow_the_route_with_gaps_missing_and_repeated_scans() -> None:
    found = generate(1, scale=0.5)
    order = [Stage.ACCEPTED, *(stage for stage, _ in ROUTE)]
    missing = repeated = 0
    for journey in found.truth.values():
        stages = [s.stage for s in journey.scans]
        assert stages[0] is Stage.ACCEPTED
        assert stages[-1] is Stage.DELIVERED
        ranks = [order.index(stage) for stage in stages]
        assert ranks == sorted(ranks)
        assert [s.at for s in journey.scans] == sorted(s.at for s in journey.scans)
        missing += len(set(order) - set(stages)) > 0
        repeated += len(stages) != len(set(stages))
    assert missing > 50
    assert repeated > 50


def test_the_flight_is_silent_for_days_and_lanes_differ_in_spread() -> None:
    found = generate(1, scale=0.5)

    def flights(lane: Lane) -> list[float]:
        gaps = []
        for journey in found.truth.values():
            times = {s.stage: s.at for s in journey.scans}
            if journey.lane == lane and Stage.DEPARTED_ORIGIN in times and Stage.INWARD_EXCHANGE in times:
                gaps.append(
                    (times[Stage.INWARD_EXCHANGE] - times[Stage.DEPARTED_ORIGIN]).total_seconds() / 86400
                )
        return gaps

    assert statistics.median(flights(Lane("air", "TH"))) > 3
    assert statistics.median(flights(Lane("sal", "DE"))) > 10
    assert statistics.median(flights(Lane("ems", "SG"))) < 1

    def totals(lane: Lane) -> list[float]:
        return [
            (j.delivered_at - j.scans[0].at).total_seconds() / 86400
            for j in found.truth.values()
            if j.lane == lane and j.delivered_at is not None
        ]

    quick, slow = (
        statistics.quantiles(totals(Lane("ems", "SG")), n=10),
        statistics.quantiles(totals(Lane("sal", "DE")), n=10),
    )
    assert slow[8] - slow[0] > 3 * (quick[8] - quick[0])


def test_the_seasonal_peak_stretches_transit_around_christmas() -> None:
    assert peak_factor(dt.datetime(2026, 12, 20), 1.6) == 1.6
    assert peak_factor(dt.datetime(2026, 10, 1), 1.6) == 1.0
    found = generate(1, scale=1.0)
    lane = Lane("ems", "US")

    def median_total(first: dt.datetime, last: dt.datetime) -> float:
        return statistics.median(
            (j.delivered_at - j.scans[0].at).total_seconds() / 86400
            for j in found.truth.values()
            if j.lane == lane and j.delivered_at is not None and first <= j.scans[0].at < last
        )

    assert median_total(dt.datetime(2026, 12, 12), dt.datetime(2026, 12, 28)) > 1.3 * median_total(
        dt.datetime(2026, 9, 1), dt.datetime(2026, 10, 15)
    )
