"""The backtest on simulated histories with known truth: coverage, shown share, width, no look-ahead."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import statistics
from collections.abc import Sequence

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from notifier.core.eta import (
    Checkpoint,
    Journey,
    Lane,
    Scan,
    backtest,
    estimate,
    json_document,
    lane_stats,
    summarize,
    to_json,
    width_days,
)
from notifier.core.stages import Stage
from notifier.testing.histories import History, generate


@functools.cache
def history(seed: int, scale: float) -> History:
    return generate(seed, scale=scale)


@functools.cache
def replayed(seed: int, scale: float) -> tuple[Checkpoint, ...]:
    return backtest(history(seed, scale).journeys)


def empirical_band(found: History, checkpoint: Checkpoint) -> tuple[dt.date, dt.date] | None:
    """The plain per-lane band the model must beat: the 5th to 95th percentile (statistics.quantiles,
    inclusive method) of the total transit time, first scan to delivery, of the lane's parcels
    delivered by the checkpoint's moment, added to the parcel's first scan; None below 10 parcels
    (the model's own threshold)."""
    totals = [
        (journey.delivered_at - journey.scans[0].at).total_seconds() / 86400
        for journey in found.journeys
        if journey.lane == checkpoint.lane
        and journey.delivered_at is not None
        and journey.delivered_at <= checkpoint.at
    ]
    if len(totals) < 10:
        return None
    cuts = statistics.quantiles(totals, n=20, method="inclusive")
    first = found.truth[checkpoint.number].scans[0].at
    return (first + dt.timedelta(days=cuts[0])).date(), (first + dt.timedelta(days=cuts[18])).date()


@pytest.mark.parametrize(
    "seed", [1, pytest.param(2, marks=pytest.mark.slow), pytest.param(3, marks=pytest.mark.slow)]
)
def test_windows_cover_90_percent_are_shown_at_75_percent_and_beat_the_empirical_band(seed: int) -> None:
    found, checkpoints = history(seed, 0.5), replayed(seed, 0.5)
    lanes = {spec.lane for spec in found.lanes}
    summaries = {summary.lane: summary for summary in summarize(checkpoints)}
    assert set(summaries) == lanes | {None}
    for lane in lanes:
        summary = summaries[lane]
        assert summary.parcels >= 50, lane
        assert summary.coverage is not None
        assert summary.coverage >= 0.90, (lane, summary)
        assert summary.shown / summary.checkpoints >= 0.75, (lane, summary)
    ours: list[int] = []
    band: list[int] = []
    for checkpoint in checkpoints[::5]:  # every fifth: the band is recomputed from scratch each time
        plain = empirical_band(found, checkpoint)
        if checkpoint.window is None or plain is None:
            continue
        ours.append(width_days(checkpoint.window.earliest, checkpoint.window.latest))
        band.append(width_days(*plain))
    assert len(ours) > 500
    assert statistics.median(ours) < statistics.median(band)
    assert statistics.mean(ours) < statistics.mean(band)


def test_every_delivered_parcel_has_a_checkpoint_per_stage_change_in_time_order() -> None:
    found, checkpoints = history(1, 0.5), replayed(1, 0.5)
    assert [c.at for c in checkpoints] == sorted(c.at for c in checkpoints)
    delivered = [j for j in found.journeys if j.delivered_at is not None]
    assert {c.number for c in checkpoints} == {j.number for j in delivered}
    journey = delivered[0]
    changes = [s for i, s in enumerate(journey.scans) if i == 0 or journey.scans[i - 1].stage is not s.stage]
    assert [(c.at, c.stage) for c in checkpoints if c.number == journey.number] == [
        (s.at, s.stage) for s in changes if s.stage is not Stage.DELIVERED
    ]
    delivered_at = journey.delivered_at
    assert delivered_at is not None
    assert all(c.delivered_on == delivered_at.date() for c in checkpoints if c.number == journey.number)


def test_each_checkpoint_is_the_window_estimate_would_have_shown_then() -> None:
    found, checkpoints = history(1, 0.5), replayed(1, 0.5)
    for checkpoint in checkpoints[::400]:
        full = found.truth[checkpoint.number]
        known = dataclasses.replace(full, scans=tuple(s for s in full.scans if s.at <= checkpoint.at))
        shown = estimate(known, lane_stats(found.journeys, as_of=checkpoint.at), now=checkpoint.at)
        assert shown.window == checkpoint.window, checkpoint


def test_adding_later_history_never_changes_an_earlier_window() -> None:
    full = history(1, 0.5)
    cut = dt.datetime(2026, 11, 1)
    # The store as it was at the cut: parcels accepted by then, their scans up to then.
    early = [
        dataclasses.replace(j, scans=tuple(s for s in j.scans if s.at <= cut))
        for j in full.journeys
        if j.scans[0].at <= cut
    ]
    before = {(c.number, c.at): c.window for c in backtest(early)}
    after = {(c.number, c.at): c.window for c in replayed(1, 0.5)}
    assert len(before) > 1000
    assert all(after[key] == window for key, window in before.items())
    # A generator cut earlier is a prefix of the longer history, so the same holds for it.
    shorter = generate(1, scale=0.5, end=cut)
    assert {j.number: j.scans for j in shorter.journeys} == {j.number: j.scans for j in early}


def journeys_strategy() -> st.SearchStrategy[list[Journey]]:
    lanes = st.sampled_from([Lane("ems", "US"), Lane("epacket", "FR")])
    stages = st.sampled_from(
        [
            Stage.DEPARTED_ORIGIN,
            Stage.INWARD_EXCHANGE,
            Stage.CUSTOMS_CLEARED,
            Stage.OUT_FOR_DELIVERY,
            Stage.DELIVERED,
        ]
    )
    base = dt.datetime(2026, 10, 1)

    @st.composite
    def one(draw: st.DrawFn, index: int) -> Journey:
        start = base + dt.timedelta(hours=draw(st.integers(0, 24 * 60)))
        gaps = draw(st.lists(st.tuples(st.integers(1, 24 * 8), stages), min_size=0, max_size=6))
        scans = [Scan(at=start, stage=Stage.ACCEPTED)]
        for hours, stage in gaps:
            scans.append(Scan(at=scans[-1].at + dt.timedelta(hours=hours), stage=stage))
        return Journey(number=f"EA{index:09d}JP", lane=draw(lanes), scans=tuple(scans))

    return st.integers(1, 40).flatmap(lambda n: st.tuples(*(one(i) for i in range(n))).map(list))


@settings(max_examples=60, deadline=None)
@given(journeys=journeys_strategy(), cut_hours=st.integers(0, 24 * 80), extra=journeys_strategy())
def test_estimates_at_a_moment_ignore_everything_after_it(
    journeys: list[Journey], cut_hours: int, extra: list[Journey]
) -> None:
    at = dt.datetime(2026, 10, 1) + dt.timedelta(hours=cut_hours)

    def known(items: Sequence[Journey]) -> list[Journey]:
        return [dataclasses.replace(j, scans=tuple(s for s in j.scans if s.at <= at)) for j in items]

    # The later world: the same parcels with all their scans, plus parcels that start after `at`.
    later = [
        dataclasses.replace(
            j,
            number=f"X{j.number}",
            scans=tuple(dataclasses.replace(s, at=s.at + dt.timedelta(days=81)) for s in j.scans),
        )
        for j in extra
    ]
    then = lane_stats(known(journeys), as_of=at, threshold=3)
    now = lane_stats(journeys + later, as_of=at, threshold=3)
    for journey in known(journeys):
        if journey.scans:
            assert estimate(journey, then, now=at) == estimate(journey, now, now=at)


def test_the_json_document_has_the_issues_layout() -> None:
    checkpoints = replayed(1, 0.5)[:50]
    document = json_document(checkpoints)
    assert set(document) == {"checkpoints", "summary"}
    rows = document["checkpoints"]
    assert isinstance(rows, list)
    assert len(rows) == 50
    for row, checkpoint in zip(rows, checkpoints, strict=True):
        assert set(row) == {"number", "at", "stage", "earliest", "latest"}
        assert row["at"] == checkpoint.at.strftime("%Y-%m-%dT%H:%M")
        assert len(row["at"]) == 16
        if checkpoint.window is None:
            assert row["earliest"] is None
            assert row["latest"] is None
        else:
            assert dt.date.fromisoformat(row["earliest"]) == checkpoint.window.earliest
    assert json.loads(to_json(checkpoints)) == document
    summary = document["summary"]
    assert isinstance(summary, dict)
    assert summary["all"]["checkpoints"] == 50
    assert {lane["lane"] for lane in summary["lanes"]} == {str(c.lane) for c in checkpoints}
    assert json.loads(to_json(())) == {
        "checkpoints": [],
        "summary": {
            "lanes": [],
            "all": {
                "lane": "all",
                "parcels": 0,
                "checkpoints": 0,
                "shown": 0,
                "coverage": None,
                "median_width_days": None,
                "withheld_share": 0.0,
            },
        },
    }


def test_a_lane_without_prior_is_withheld_until_its_history_counts() -> None:
    found, checkpoints = history(1, 0.5), replayed(1, 0.5)
    lane = Lane("epacket", "FR")
    mine = [c for c in checkpoints if c.lane == lane]
    first_shown = next(c.at for c in mine if c.window is not None)
    delivered_by_then = sum(
        1
        for j in found.journeys
        if j.lane == lane and j.delivered_at is not None and j.delivered_at <= first_shown
    )
    assert delivered_by_then >= 10
    assert all(c.window is None for c in mine if c.at < first_shown)
    assert all(c.window is None or c.window.basis == "lane" for c in mine)


def test_a_busy_lane_keeps_its_latest_observations_the_same_way_in_both_paths() -> None:
    from notifier.core.eta.survival import LATEST, recent

    # Parcels handed in five at a time (the same minute): more than LATEST per stage.
    lane = Lane("ems", "US")
    base = dt.datetime(2026, 6, 1, 9, 0)
    journeys = []
    for index in range(LATEST + 300):
        accepted = base + dt.timedelta(hours=3 * (index // 5))
        flight = dt.timedelta(hours=20 + (index * 7) % 50)
        journeys.append(
            Journey(
                number=f"EA{index:09d}JP",
                lane=lane,
                scans=(
                    Scan(at=accepted, stage=Stage.ACCEPTED),
                    Scan(at=accepted + dt.timedelta(hours=10), stage=Stage.DEPARTED_ORIGIN),
                    Scan(at=accepted + dt.timedelta(hours=10) + flight, stage=Stage.DELIVERED),
                ),
            )
        )
    checkpoints = backtest(journeys)
    assert len(checkpoints) == 2 * len(journeys)
    for checkpoint in checkpoints[-400::100]:
        parcel = next(j for j in journeys if j.number == checkpoint.number)
        known = dataclasses.replace(parcel, scans=tuple(s for s in parcel.scans if s.at <= checkpoint.at))
        assert (
            estimate(known, lane_stats(journeys, as_of=checkpoint.at), now=checkpoint.at).window
            == checkpoint.window
        )
    # The oldest kept ties with others: all of them are kept, whatever their (later) ends.
    tied: list[tuple[float, float | None, float | None]] = [
        (float(i // 5), None, None) for i in range(LATEST + 7)
    ]
    kept = recent(tied)
    assert len(kept) == LATEST + 2
    assert min(start for start, _, _ in kept) == 1.0
