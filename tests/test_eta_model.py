"""The lane statistics: Kaplan–Meier with censoring and weights, lateness, the next scan's chance."""

from __future__ import annotations

import datetime as dt

import pytest

from notifier.core.eta import (
    Calibration,
    Journey,
    Lane,
    Scan,
    change_probability,
    estimate,
    lane_stats,
    lateness,
)
from notifier.core.eta.survival import build
from notifier.core.stages import Stage

T0 = dt.datetime(2026, 9, 1, 9, 0)
DAY = dt.timedelta(days=1)


def test_without_censoring_or_weights_kaplan_meier_is_the_empirical_distribution() -> None:
    durations = [1.0, 2.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0]
    table = build(((0.0, d, None) for d in durations), as_of=100.0, half_life=1e9)
    for t in (0.5, 1.0, 2.0, 4.0, 13.0, 30.0):
        assert table.survival(t) == pytest.approx(sum(d > t for d in durations) / len(durations))
    assert table.quantile_given(0.0, 0.5) == 3.0
    # Given it lasted past 4: the survivors are 5, 8, 13, 21.
    assert table.quantile_given(4.0, 0.5) == 8.0
    assert table.events_after(4.0) == 4


def test_a_parcel_still_on_its_way_is_censored_not_dropped_nor_counted_as_delivered() -> None:
    delivered: list[tuple[float, float | None, None]] = [(0.0, d, None) for d in (2.0, 3.0, 4.0, 5.0)]
    # Four parcels accepted at day 0, still on their way at day 10: each took more than 10 days.
    waiting: list[tuple[float, float | None, None]] = [(0.0, None, None)] * 4
    table = build(delivered + waiting, as_of=10.0, half_life=1e9)
    assert table.survival(5.0) == pytest.approx(0.5)
    # The median is no longer reached by what was seen: it is not invented either.
    assert table.quantile_given(0.0, 0.6) is None
    # Ignoring them would claim every parcel arrives within 5 days.
    dropped = build(delivered, as_of=10.0, half_life=1e9)
    assert dropped.survival(5.0) == 0.0
    # A parcel sent back stops being watched when it turns back, not at as_of.
    returned = build([(0.0, None, 1.0)], as_of=10.0, half_life=1e9)
    assert returned.observations == 1
    assert returned.events == 0


def test_recent_parcels_weigh_more() -> None:
    # Old parcels took 10 days, recent ones 2: with a short half-life the median follows the recent.
    old = [(0.0, 10.0, None)] * 10
    recent = [(88.0, 90.0, None)] * 5
    flat = build(old + recent, as_of=100.0, half_life=1e9)
    weighted = build(old + recent, as_of=100.0, half_life=10.0)
    assert flat.quantile_given(0.0, 0.5) == 10.0
    assert weighted.quantile_given(0.0, 0.5) == 2.0


def test_what_starts_after_as_of_is_unknown() -> None:
    table = build([(0.0, 1.0, None), (5.0, 6.0, None)], as_of=3.0, half_life=30.0)
    assert table.observations == 1


def route(number: str, lane: Lane, start: dt.datetime, waits: list[tuple[Stage, float]]) -> Journey:
    scans = [Scan(at=start, stage=Stage.ACCEPTED)]
    at = start
    for stage, days in waits:
        at += dt.timedelta(days=days)
        scans.append(Scan(at=at, stage=stage))
    return Journey(number=number, lane=lane, scans=tuple(scans))


LANE = Lane("ems", "US")


def delivered_fleet(count: int, *, lane: Lane = LANE) -> list[Journey]:
    """Parcels a day apart; the flight (departed -> inward exchange) takes 1 to 3 days."""
    return [
        route(
            f"EA{index:09d}JP",
            lane,
            T0 + index * DAY,
            [
                (Stage.DEPARTED_ORIGIN, 1.0),
                (Stage.INWARD_EXCHANGE, 1.0 + 2.0 * index / max(count - 1, 1)),
                (Stage.AT_DELIVERY_OFFICE, 1.0),
                (Stage.DELIVERED, 0.5),
            ],
        )
        for index in range(count)
    ]


def test_once_a_lane_has_enough_deliveries_its_history_replaces_the_prior() -> None:
    parcel = route("EA999999999JP", LANE, T0 + 40 * DAY, [(Stage.DEPARTED_ORIGIN, 1.0)])
    now = T0 + 41 * DAY
    thin = lane_stats([*delivered_fleet(9), parcel], as_of=now)
    enough = lane_stats([*delivered_fleet(30), parcel], as_of=now)
    on_prior, on_lane = estimate(parcel, thin, now=now), estimate(parcel, enough, now=now)
    assert on_prior.window is not None
    assert on_prior.window.basis == "prior"
    assert on_lane.window is not None
    assert on_lane.window.basis == "lane"
    # Departed: the lane's parcels arrived 2.5 to 4.5 days later; the prior is far wider.
    assert on_lane.window.earliest == (now + 2.5 * DAY).date()
    assert on_lane.window.latest == (now + 4.5 * DAY).date()
    width = on_lane.window.latest - on_lane.window.earliest
    assert width < on_prior.window.latest - on_prior.window.earliest


def test_a_lane_with_thin_history_and_no_prior_withholds_as_thin_data() -> None:
    lane = Lane("epacket", "FR")
    parcel = route("LX999999999JP", lane, T0 + 40 * DAY, [(Stage.DEPARTED_ORIGIN, 1.0)])
    stats = lane_stats([*delivered_fleet(5, lane=lane), parcel], as_of=T0 + 41 * DAY)
    shown = estimate(parcel, stats, now=T0 + 41 * DAY)
    assert shown.window is None
    assert shown.withheld == "thin_data"


def test_lateness_grows_with_the_quiet_and_is_late_past_the_lanes_p90() -> None:
    fleet = delivered_fleet(30)
    parcel = route("EA999999999JP", LANE, T0 + 40 * DAY, [(Stage.DEPARTED_ORIGIN, 1.0)])
    stats = lane_stats([*fleet, parcel], as_of=T0 + 41 * DAY)
    departed = T0 + 41 * DAY
    judged = [
        lateness(parcel, stats, now=departed + hours * dt.timedelta(hours=1)) for hours in range(0, 120, 6)
    ]
    assert all(item is not None for item in judged)
    tens = [
        item.quicker_out_of_ten for item in judged if item is not None and item.quicker_out_of_ten is not None
    ]
    assert len(tens) == len(judged)
    assert tens == sorted(tens)
    assert tens[0] == 0
    assert tens[-1] == 10
    first = judged[0]
    assert first is not None
    assert first.lane_p90 is not None
    # The flights took 1 to 3 days, evenly spread: p90 near 2.8 days.
    assert first.lane_p90 == pytest.approx(dt.timedelta(days=2.8), abs=dt.timedelta(hours=3))
    lates = [item.late for item in judged if item is not None]
    assert lates == sorted(lates)
    assert lates[0] is False
    assert lates[-1] is True
    for item in judged:
        assert item is not None
        assert item.late == (item.quiet > first.lane_p90)
        if item.late:
            assert item.quicker_out_of_ten is not None
            assert item.quicker_out_of_ten >= 9


def test_lateness_is_none_when_the_lane_cannot_judge() -> None:
    parcel = route("EA999999999JP", LANE, T0 + 40 * DAY, [(Stage.DEPARTED_ORIGIN, 1.0)])
    thin = lane_stats([*delivered_fleet(5), parcel], as_of=T0 + 41 * DAY)
    assert lateness(parcel, thin, now=T0 + 50 * DAY) is None
    # A stage no parcel of the lane ever left: no judgement either.
    odd = route("EA999999998JP", LANE, T0 + 40 * DAY, [(Stage.INVESTIGATION, 1.0)])
    stats = lane_stats([*delivered_fleet(30), odd], as_of=T0 + 41 * DAY)
    assert lateness(odd, stats, now=T0 + 50 * DAY) is None


def test_the_chance_of_a_scan_grows_with_the_horizon_and_follows_the_gaps() -> None:
    fleet = delivered_fleet(30)
    parcel = route("EA999999999JP", LANE, T0 + 40 * DAY, [(Stage.DEPARTED_ORIGIN, 1.0)])
    departed = T0 + 41 * DAY
    stats = lane_stats([*fleet, parcel], as_of=departed)
    chances = [
        change_probability(parcel, stats, now=departed, within=hours * dt.timedelta(hours=1))
        for hours in range(0, 96, 4)
    ]
    values = [chance for chance in chances if chance is not None]
    assert len(values) == len(chances)
    assert values == sorted(values)
    assert values[0] == 0.0
    assert values[-1] == 1.0
    # The flights took 1-3 days: the chance within one day is small, within two about half.
    assert change_probability(parcel, stats, now=departed, within=DAY) == pytest.approx(0.0, abs=0.05)
    within_two = change_probability(parcel, stats, now=departed, within=2 * DAY)
    assert within_two == pytest.approx(0.5, abs=0.1)
    # Already quiet for two days: the next scan within a day is now likely.
    later = change_probability(parcel, stats, now=departed + 2 * DAY, within=DAY)
    assert later is not None
    assert later > 0.9


def test_the_chance_falls_back_to_the_service_then_to_none() -> None:
    fleet = delivered_fleet(30)
    elsewhere = Lane("ems", "GB")
    parcel = route("EA999999999JP", elsewhere, T0 + 40 * DAY, [(Stage.DEPARTED_ORIGIN, 1.0)])
    departed = T0 + 41 * DAY
    stats = lane_stats([*fleet, parcel], as_of=departed)
    pooled = change_probability(parcel, stats, now=departed, within=2 * DAY)
    assert pooled == pytest.approx(0.5, abs=0.1)
    stranger = route("RR999999999JP", Lane("registered", "GB"), T0 + 40 * DAY, [(Stage.DEPARTED_ORIGIN, 1.0)])
    assert change_probability(stranger, stats, now=departed, within=2 * DAY) is None
    assert change_probability(fleet[0], stats, now=departed, within=DAY) is None  # delivered


def test_lane_stats_sees_only_what_was_known_at_as_of() -> None:
    fleet = delivered_fleet(30)
    at = T0 + 12 * DAY
    stats = lane_stats(fleet, as_of=at)
    known = stats.journeys[LANE]
    assert all(scan.at <= at for journey in known for scan in journey.scans)
    assert len(known) == 13
    assert stats.tables[LANE].delivered == sum(
        1 for j in fleet if j.delivered_at is not None and j.delivered_at <= at
    )


def test_on_lane_history_the_calibrations_nest_too() -> None:
    parcel = route("EA999999999JP", LANE, T0 + 40 * DAY, [(Stage.DEPARTED_ORIGIN, 1.0)])
    now = T0 + 41 * DAY
    stats = lane_stats([*delivered_fleet(60), parcel], as_of=now)
    windows = [estimate(parcel, stats, now=now, calibration=c).window for c in Calibration]
    assert all(window is not None and window.basis == "lane" for window in windows)
    conservative, balanced, aggressive = (w for w in windows if w is not None)
    assert conservative.earliest <= balanced.earliest <= aggressive.earliest
    assert conservative.latest >= balanced.latest >= aggressive.latest


def test_censoring_early_credits_no_parcel_with_a_wait_not_yet_seen() -> None:
    # Thirty parcels departed two hours ago; as_of runs a day ahead (as the daemon's cache does,
    # to take in scans printed in zones ahead of UTC).
    now = T0 + 60 * DAY
    fleet = delivered_fleet(30)
    waiting = [
        route(f"EA8{i:08d}JP", LANE, now - 3 * DAY, [(Stage.DEPARTED_ORIGIN, 3.0 - 1 / 12)])
        for i in range(30)
    ]
    ahead = lane_stats([*fleet, *waiting], as_of=now + DAY)
    honest = lane_stats([*fleet, *waiting], as_of=now + DAY, censor_at=now)
    # Censored a day ahead, the thirty look like flights of at least 26 hours that have not come
    # in; censored now, they have waited 2 hours, which says almost nothing.
    flights = ahead.tables[LANE].gaps[Stage.DEPARTED_ORIGIN]
    assert flights.survival(1.05) > honest.tables[LANE].gaps[Stage.DEPARTED_ORIGIN].survival(1.05)
    parcel = waiting[0]
    biased = change_probability(parcel, ahead, now=now, within=DAY)
    fair = change_probability(parcel, honest, now=now, within=DAY)
    assert biased is not None
    assert fair is not None
    assert fair >= biased
    # A censoring time after as_of changes nothing.
    later = lane_stats([*fleet, *waiting], as_of=now, censor_at=now + DAY)
    assert later.tables == lane_stats([*fleet, *waiting], as_of=now).tables
