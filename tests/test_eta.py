"""The time model's prior, lanes and withholding rules, on hand-made journeys."""

from __future__ import annotations

import datetime as dt

import pytest

from notifier.core.eta import (
    Calibration,
    Journey,
    Lane,
    Scan,
    estimate,
    lane_of,
    lane_stats,
    prior_for,
)
from notifier.core.eta.prior import prior_rows
from notifier.core.stages import Stage

T0 = dt.datetime(2026, 10, 1, 10, 0)


def journey(lane: Lane, *stages: tuple[float, Stage], number: str = "EA000000001JP") -> Journey:
    return Journey(
        number=number,
        lane=lane,
        scans=tuple(Scan(at=T0 + dt.timedelta(days=day), stage=stage) for day, stage in stages),
    )


@pytest.mark.parametrize(
    ("number", "item_type", "destination", "expected"),
    [
        ("EA123456789JP", "EMS", "us", Lane("ems", "US")),
        ("EA123456789JP", None, "GB", Lane("ems", "GB")),
        ("CA123456789JP", "Parcel", "DE", Lane("parcel", "DE")),
        ("CA123456789JP", "国際小包（SAL）", "DE", Lane("sal", "DE")),
        ("CA123456789JP", "Air parcel", "SG", Lane("air", "SG")),
        ("CA123456789JP", "船便", "BR", Lane("surface", "BR")),
        ("LX123456789JP", None, "FR", Lane("epacket", "FR")),
        ("RR123456789JP", "Small items", "FR", Lane("registered", "FR")),
        ("RR123456789JP", "Registered airmail", "FR", Lane("registered", "FR")),
        ("123456789012", None, None, Lane("domestic", "JP")),
        ("EA123456789JP", "EMS", None, Lane("ems", "??")),
    ],
)
def test_lane_of_reads_the_class_of_goods_then_the_number(
    number: str, item_type: str | None, destination: str | None, expected: Lane
) -> None:
    assert lane_of(number=number, item_type=item_type, origin="JP", destination=destination) == expected


def test_every_prior_row_names_its_source_date_and_quality() -> None:
    rows = prior_rows()
    assert len(rows) >= 30
    for row in rows:
        assert row.source.startswith("https://")
        assert row.retrieved == "2026-12"
        assert row.quality in ("official", "second-hand")
    # EMS figures are second-hand copies of Japan Post's table; the parcel tables are official.
    assert {row.quality for row in rows if row.service == "ems"} == {"second-hand"}
    assert {row.quality for row in rows if row.service == "air" and row.destination == "IN"} == {"official"}


def test_the_prior_is_japan_posts_figure_widened_with_a_right_tail() -> None:
    prior = prior_for(Lane("air", "IN"))  # standard days 7
    assert prior is not None
    low, median, high = (prior.quantile_given(0.0, q) for q in (0.05, 0.5, 0.95))
    assert median == pytest.approx(7 * 1.75)
    assert low < 7 < median < high
    assert high - median > median - low  # long right tail
    # SAL has no country rows but a service-wide figure: 2-3 weeks, margin a week.
    sal = prior_for(Lane("sal", "DE"))
    assert sal is not None
    assert sal.quantile_given(0.0, 0.05) == pytest.approx(14)
    # No figure for ePacket to France, nor for parcels of unknown carriage.
    assert prior_for(Lane("epacket", "FR")) is None
    assert prior_for(Lane("parcel", "DE")) is None


def test_a_lane_without_history_uses_the_prior_and_the_prior_conditions_on_the_wait() -> None:
    lane = Lane("air", "IN")
    fresh = journey(lane, (0, Stage.ACCEPTED))
    stats = lane_stats([fresh], as_of=T0)
    shown = estimate(fresh, stats, now=T0)
    assert shown.window is not None
    assert shown.window.basis == "prior"
    assert shown.withheld is None
    assert not shown.running_late
    # Ten days on with a new scan: the window starts later and never before the last scan.
    later = journey(lane, (0, Stage.ACCEPTED), (10, Stage.DEPARTED_ORIGIN))
    moved = estimate(
        later, lane_stats([later], as_of=T0 + dt.timedelta(days=10)), now=T0 + dt.timedelta(days=10)
    )
    assert moved.window is not None
    assert moved.window.earliest >= (T0 + dt.timedelta(days=10)).date()
    assert moved.window.latest > shown.window.latest


def test_no_prior_and_no_history_withholds() -> None:
    lane = Lane("epacket", "FR")
    parcel = journey(lane, (0, Stage.ACCEPTED))
    shown = estimate(parcel, lane_stats([parcel], as_of=T0), now=T0)
    assert shown.window is None
    assert shown.withheld == "no_prior"


def test_a_window_whose_latest_date_passed_is_withheld_and_the_parcel_runs_late() -> None:
    lane = Lane("ems", "GB")
    parcel = journey(lane, (0, Stage.ACCEPTED))
    stats = lane_stats([parcel], as_of=T0)
    shown = estimate(parcel, stats, now=T0)
    assert shown.window is not None
    on_last_day = dt.datetime.combine(shown.window.latest, dt.time(23, 59))
    assert estimate(parcel, stats, now=on_last_day).window == shown.window
    after = estimate(parcel, stats, now=on_last_day + dt.timedelta(minutes=2))
    assert after.window is None
    assert after.withheld == "passed"
    assert after.running_late


def test_delivered_and_returning_parcels_get_no_window() -> None:
    lane = Lane("ems", "GB")
    done = journey(lane, (0, Stage.ACCEPTED), (3, Stage.DELIVERED))
    back = journey(lane, (0, Stage.ACCEPTED), (3, Stage.RETURNING))
    stats = lane_stats([done, back], as_of=T0 + dt.timedelta(days=3))
    assert estimate(done, stats, now=T0).withheld == "delivered"
    assert estimate(back, stats, now=T0).withheld == "not_in_transit"
    assert estimate(Journey(number="x", lane=lane, scans=()), stats, now=T0).withheld == "not_in_transit"


def test_calibrations_nest() -> None:
    parcel = journey(Lane("air", "TH"), (0, Stage.ACCEPTED))
    stats = lane_stats([parcel], as_of=T0)
    windows = [estimate(parcel, stats, now=T0, calibration=c).window for c in Calibration]
    conservative, balanced, aggressive = windows
    assert conservative
    assert balanced
    assert aggressive
    assert conservative.earliest <= balanced.earliest <= aggressive.earliest
    assert conservative.latest >= balanced.latest >= aggressive.latest


def test_a_bad_prior_row_is_named_by_its_line() -> None:
    from notifier.core.eta.prior import _rows

    header = "service,destination,days_low,days_high,kind,margin_days,quality,retrieved,source,note\n"
    good = "ems,US,2,3,standard,0,second-hand,2026-12,https://example.org,x\n"
    assert len(_rows("# comment\n" + header + good)) == 1
    with pytest.raises(ValueError, match=r"standard_days.csv line 4: could not convert"):
        _rows(
            "# comment\n"
            + header
            + good
            + "ems,GB,two,3,standard,0,second-hand,2026-12,https://example.org,x\n"
        )
    with pytest.raises(ValueError, match=r"line 2: days_low, days_high"):
        _rows(header + "ems,GB,3,2,standard,0,second-hand,2026-12,https://example.org,x\n")
    with pytest.raises(ValueError, match=r"line 2: kind 'average'"):
        _rows(header + "ems,GB,3,2,average,0,second-hand,2026-12,https://example.org,x\n")
