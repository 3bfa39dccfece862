"""The backtest: the windows history would have shown, each from what was known at its scan."""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import json
import statistics
from collections.abc import Iterable, Mapping, Sequence

from notifier.core.eta import survival
from notifier.core.eta.model import HALF_LIFE_DAYS, THRESHOLD, Facts, estimate_with, facts, timeline
from notifier.core.eta.survival import Survival
from notifier.core.eta.types import Calibration, Checkpoint, Journey, Lane
from notifier.core.stages import Stage


@dataclasses.dataclass(slots=True)
class _Observed:
    """Observations sorted by start, so that those known at a moment are a prefix."""

    starts: list[float] = dataclasses.field(default_factory=list)
    items: list[survival.Observation] = dataclasses.field(default_factory=list)

    def add(self, item: survival.Observation) -> None:
        self.starts.append(item[0])
        self.items.append(item)

    def sort(self) -> None:
        order = sorted(range(len(self.items)), key=lambda i: self.starts[i])
        self.starts = [self.starts[i] for i in order]
        self.items = [self.items[i] for i in order]

    def known(self, as_of: float) -> list[survival.Observation]:
        """Those survival.build would keep at `as_of` (started by then, the most recent), cheaply."""
        end = bisect.bisect_right(self.starts, as_of)
        begin = 0
        if end > survival.LATEST:
            begin = bisect.bisect_left(self.starts, self.starts[end - survival.LATEST])
        return self.items[begin:end]


@dataclasses.dataclass(slots=True)
class _LaneHistory:
    delivered: list[float] = dataclasses.field(default_factory=list)
    total: _Observed = dataclasses.field(default_factory=_Observed)
    remaining: dict[Stage, _Observed] = dataclasses.field(default_factory=dict)


class _AtMoment:
    """A TableSource that builds, at one moment, only the tables an estimate asks for.

    It gives the same tables eta.lane_stats(journeys, as_of=moment) would (both go through
    survival.build with the same observations), at a fraction of the cost per checkpoint.
    """

    def __init__(self, lanes: Mapping[Lane, _LaneHistory], *, as_of: float, half_life: float) -> None:
        self._lanes = lanes
        self._as_of = as_of
        self._half_life = half_life

    def delivered(self, lane: Lane) -> int:
        found = self._lanes.get(lane)
        return bisect.bisect_right(found.delivered, self._as_of) if found else 0

    def remaining(self, lane: Lane, stage: Stage) -> Survival | None:
        found = self._lanes.get(lane)
        observed = found.remaining.get(stage) if found else None
        if observed is None:
            return None
        return survival.build(observed.known(self._as_of), as_of=self._as_of, half_life=self._half_life)

    def total(self, lane: Lane) -> Survival | None:
        found = self._lanes.get(lane)
        if found is None:
            return None
        return survival.build(found.total.known(self._as_of), as_of=self._as_of, half_life=self._half_life)


def _histories(items: Iterable[Facts]) -> dict[Lane, _LaneHistory]:
    lanes: dict[Lane, _LaneHistory] = {}
    for item in items:
        lane = lanes.setdefault(item.lane, _LaneHistory())
        if item.delivered is not None:
            lane.delivered.append(item.delivered)
        lane.total.add((item.first, item.delivered, item.stop))
        for stage, start in item.runs:
            lane.remaining.setdefault(stage, _Observed()).add((start, item.delivered, item.stop))
    for lane in lanes.values():
        lane.delivered.sort()
        lane.total.sort()
        for observed in lane.remaining.values():
            observed.sort()
    return lanes


def backtest(
    journeys: Sequence[Journey],
    *,
    since: dt.datetime | None = None,
    calibration: Calibration = Calibration.BALANCED,
    threshold: int = THRESHOLD,
    half_life_days: float = HALF_LIFE_DAYS,
) -> tuple[Checkpoint, ...]:
    """Replay history in time order: one checkpoint per stage-changing scan of every delivered
    journey (the delivery scan itself excepted), each window computed only from what was known
    at that scan: every journey's scans up to then, plus the prior. `since` leaves out
    checkpoints before it (history before it still counts)."""
    found = [item for item in (facts(journey) for journey in journeys) if item is not None]
    lanes = _histories(found)
    checkpoints: list[Checkpoint] = []
    for journey in journeys:
        points = timeline(journey)
        if not points or points[-1].stage is not Stage.DELIVERED:
            continue
        delivered_on = journey.scans[len(points) - 1].at.date()
        for index, point in enumerate(points[:-1]):
            if index and points[index - 1].stage is point.stage:
                continue
            printed = journey.scans[index].at
            if since is not None and printed < since:
                continue
            known = dataclasses.replace(journey, scans=journey.scans[: index + 1])
            source = _AtMoment(lanes, as_of=point.t, half_life=half_life_days)
            shown = estimate_with(known, source, now=point.at, threshold=threshold, calibration=calibration)
            checkpoints.append(
                Checkpoint(
                    number=journey.number,
                    lane=journey.lane,
                    at=printed,
                    stage=point.stage,
                    window=shown.window,
                    delivered_on=delivered_on,
                )
            )
    checkpoints.sort(key=lambda c: (c.at, c.number))
    return tuple(checkpoints)


def width_days(earliest: dt.date, latest: dt.date) -> int:
    """A window's width in calendar days, both ends counted: Tue 14 to Fri 17 is 4 days."""
    return (latest - earliest).days + 1


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LaneSummary:
    """How good the windows of one lane (or of all, lane None) would have been."""

    lane: Lane | None
    parcels: int
    checkpoints: int
    shown: int
    # Share of shown windows that contained the delivery date; None when none was shown.
    coverage: float | None
    median_width_days: float | None
    withheld_share: float

    def as_dict(self) -> dict[str, object]:
        return {
            "lane": str(self.lane) if self.lane is not None else "all",
            "parcels": self.parcels,
            "checkpoints": self.checkpoints,
            "shown": self.shown,
            "coverage": None if self.coverage is None else round(self.coverage, 4),
            "median_width_days": self.median_width_days,
            "withheld_share": round(self.withheld_share, 4),
        }


def _summary(lane: Lane | None, checkpoints: Sequence[Checkpoint]) -> LaneSummary:
    windows = [c for c in checkpoints if c.window is not None]
    inside = sum(1 for c in windows if c.window and c.window.earliest <= c.delivered_on <= c.window.latest)
    widths = [width_days(c.window.earliest, c.window.latest) for c in windows if c.window]
    return LaneSummary(
        lane=lane,
        parcels=len({c.number for c in checkpoints}),
        checkpoints=len(checkpoints),
        shown=len(windows),
        coverage=inside / len(windows) if windows else None,
        median_width_days=float(statistics.median(widths)) if widths else None,
        withheld_share=1 - len(windows) / len(checkpoints) if checkpoints else 0.0,
    )


def summarize(checkpoints: Sequence[Checkpoint]) -> tuple[LaneSummary, ...]:
    """One summary per lane (sorted), then one over every lane (lane None)."""
    by_lane: dict[Lane, list[Checkpoint]] = {}
    for checkpoint in checkpoints:
        by_lane.setdefault(checkpoint.lane, []).append(checkpoint)
    lanes = tuple(_summary(lane, items) for lane, items in sorted(by_lane.items()))
    return (*lanes, _summary(None, checkpoints))


def _row(checkpoint: Checkpoint) -> dict[str, str | None]:
    window = checkpoint.window
    return {
        "number": checkpoint.number,
        "at": checkpoint.at.strftime("%Y-%m-%dT%H:%M"),
        "stage": checkpoint.stage.value,
        "earliest": window.earliest.isoformat() if window else None,
        "latest": window.latest.isoformat() if window else None,
    }


def _summary_document(checkpoints: Sequence[Checkpoint]) -> dict[str, object]:
    summaries = summarize(checkpoints)
    return {"lanes": [s.as_dict() for s in summaries[:-1]], "all": summaries[-1].as_dict()}


def json_document(checkpoints: Sequence[Checkpoint]) -> dict[str, object]:
    """The `notifier backtest --json` document: checkpoints in time order and the summary.

    `at` is the scan's time as Japan Post printed it; `earliest`/`latest` are dates in that
    calendar, or null when no window would have been shown.
    """
    return {"checkpoints": [_row(c) for c in checkpoints], "summary": _summary_document(checkpoints)}


def to_json(checkpoints: Sequence[Checkpoint]) -> str:
    """json_document() as text, one checkpoint per line (diffable, greppable)."""
    rows = ",\n".join("    " + json.dumps(_row(c), ensure_ascii=False) for c in checkpoints)
    summary = json.dumps(_summary_document(checkpoints), ensure_ascii=False, indent=2).replace("\n", "\n  ")
    body = f"[\n{rows}\n  ]" if rows else "[]"
    return f'{{\n  "checkpoints": {body},\n  "summary": {summary}\n}}\n'
