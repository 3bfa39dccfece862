"""The model of time: delivery windows, lane statistics, running late, when a change is likely.

Times are the wall-clock times Japan Post prints (naive datetimes, local to where the scan
happened); windows are dates in that same calendar. Submodules: types (the interface),
lanes (lane_of), prior (Japan Post's published transit times), survival (weighted
Kaplan–Meier tables), model (lane_stats, estimate, lateness, change_probability) and
backtest. docs/explanation/time-model.md explains the choices.
"""

from __future__ import annotations

from notifier.core.eta.backtest import LaneSummary, backtest, json_document, summarize, to_json, width_days
from notifier.core.eta.lanes import lane_of
from notifier.core.eta.model import (
    PERCENTILES,
    THRESHOLD,
    change_probability,
    estimate,
    lane_stats,
    lateness,
)
from notifier.core.eta.prior import Prior, prior_for
from notifier.core.eta.types import (
    Calibration,
    Checkpoint,
    Estimate,
    Journey,
    Lane,
    LaneStats,
    Lateness,
    Scan,
    Window,
)

__all__ = [
    "PERCENTILES",
    "THRESHOLD",
    "Calibration",
    "Checkpoint",
    "Estimate",
    "Journey",
    "Lane",
    "LaneStats",
    "LaneSummary",
    "Lateness",
    "Prior",
    "Scan",
    "Window",
    "backtest",
    "change_probability",
    "estimate",
    "json_document",
    "lane_of",
    "lane_stats",
    "lateness",
    "prior_for",
    "summarize",
    "to_json",
    "width_days",
]
