"""Adaptive polling, the pure rule: within the stage's bounds, sooner when news is likelier, and
exactly today's fixed schedule without lane data."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.config import parse_settings
from notifier.core.adaptive import DEFAULT_TARGETS, AdaptivePolling, Chance, Rule, adaptive_interval, bounds
from notifier.core.policy import DEFAULT_INTERVALS, HOUR, MINUTE, PollingPolicy, next_poll
from notifier.core.reschedule import moves, window
from notifier.core.stages import Stage
from notifier.core.views import ScheduledRow
from notifier.errors import ConfigError

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
STAGES = list(Stage)


def exponential(per_hour: float) -> Chance:
    """Scans at a steady rate (memoryless): the chance of one within `w`."""
    return lambda w: 1 - math.exp(-per_hour * w.total_seconds() / 3600)


def after(delay: dt.timedelta, per_hour: float) -> Chance:
    """Silent for `delay` (a flight), then scans at a steady rate."""
    return lambda w: 0.0 if w <= delay else 1 - math.exp(-per_hour * (w - delay).total_seconds() / 3600)


def no_data(w: dt.timedelta) -> float | None:
    return None


def poll(
    stage: Stage, chance: Chance | None, policy: PollingPolicy, seed: int = 1, failures: int = 0
) -> dt.timedelta:
    result = next_poll(
        stage=stage,
        now=NOW,
        created_at=NOW - dt.timedelta(days=3),
        last_changed_at=NOW - dt.timedelta(hours=5),
        stage_entered_at=NOW - dt.timedelta(hours=5),
        consecutive_failures=failures,
        policy=policy,
        rng=random.Random(seed),
        chance=chance,
    )
    assert result.at is not None
    return result.at - NOW


@pytest.mark.parametrize("stage", STAGES)
def test_without_lane_data_the_schedule_is_exactly_todays(stage: Stage) -> None:
    policy = PollingPolicy()
    for seed in range(5):
        today = poll(stage, None, policy, seed)
        assert poll(stage, no_data, policy, seed) == today
        # And the rule itself says so, leaving the fixed interval to its caller.
        assert adaptive_interval(stage, DEFAULT_INTERVALS[stage], no_data, policy.adaptive) is None


def test_adaptive_off_fixed_interval_or_failures_keep_the_fixed_schedule() -> None:
    soon = exponential(10.0)
    off = PollingPolicy(adaptive=AdaptivePolling(enabled=False))
    assert poll(Stage.DEPARTED_ORIGIN, soon, off) == poll(Stage.DEPARTED_ORIGIN, None, off)
    fixed = PollingPolicy(fixed_interval=dt.timedelta(seconds=1), jitter=0)
    assert poll(Stage.DEPARTED_ORIGIN, soon, fixed) == dt.timedelta(seconds=1)
    # A failing number backs off on the fixed intervals: its history says nothing of the error.
    policy = PollingPolicy(jitter=0)
    assert poll(Stage.OUT_FOR_DELIVERY, exponential(1e-3), policy, failures=1) == HOUR  # 30 min doubled


@given(
    stage=st.sampled_from(STAGES),
    rule=st.sampled_from(list(Rule)),
    per_hour=st.floats(min_value=1e-4, max_value=100),
    delay_hours=st.floats(min_value=0, max_value=200),
    target=st.floats(min_value=0.01, max_value=0.99),
    seed=st.integers(0, 1000),
)
def test_the_interval_stays_within_the_stage_bounds(
    stage: Stage, rule: Rule, per_hour: float, delay_hours: float, target: float, seed: int
) -> None:
    policy = PollingPolicy(adaptive=AdaptivePolling(rule=rule, target=target))
    low, high = bounds(stage, DEFAULT_INTERVALS[stage], policy.adaptive)
    gap = poll(stage, after(dt.timedelta(hours=delay_hours), per_hour), policy, seed)
    assert low <= gap <= high


def test_default_bounds_surround_the_fixed_interval_and_settings_replace_them() -> None:
    default = AdaptivePolling()
    assert bounds(Stage.DEPARTED_ORIGIN, 8 * HOUR, default) == (2 * HOUR, 24 * HOUR)
    assert bounds(Stage.OUT_FOR_DELIVERY, 30 * MINUTE, default) == (15 * MINUTE, 2 * HOUR)
    # An interval shorter than the 15-minute floor is itself the lower bound.
    assert bounds(Stage.OUT_FOR_DELIVERY, 5 * MINUTE, default) == (5 * MINUTE, 20 * MINUTE)
    shop = AdaptivePolling(
        minimum={Stage.DEPARTED_ORIGIN: 4 * HOUR}, maximum={Stage.DEPARTED_ORIGIN: 2 * 24 * HOUR}
    )
    assert bounds(Stage.DEPARTED_ORIGIN, 8 * HOUR, shop) == (4 * HOUR, 48 * HOUR)
    policy = PollingPolicy(adaptive=shop, jitter=0)
    assert poll(Stage.DEPARTED_ORIGIN, exponential(100.0), policy) == 4 * HOUR
    assert poll(Stage.DEPARTED_ORIGIN, exponential(1e-4), policy) == 48 * HOUR


def test_likely_soon_polls_sooner_and_a_silent_lane_rarely() -> None:
    policy = PollingPolicy(jitter=0)
    fixed = DEFAULT_INTERVALS[Stage.DEPARTED_ORIGIN]
    # Just left Japan, the lane's parcels are silent for two days: wait long.
    assert poll(Stage.DEPARTED_ORIGIN, after(48 * HOUR, 0.5), policy) == 24 * HOUR > fixed
    # Two days later the arrival scan is due any hour: look often.
    assert poll(Stage.DEPARTED_ORIGIN, exponential(0.5), policy) < fixed


@given(
    stage=st.sampled_from(STAGES),
    rule=st.sampled_from(list(Rule)),
    rates=st.lists(st.floats(min_value=1e-3, max_value=50), min_size=2, max_size=2, unique=True),
    target=st.floats(min_value=0.05, max_value=0.95),
)
def test_monotonic_likelier_news_never_later_and_a_higher_target_never_sooner(
    stage: Stage, rule: Rule, rates: list[float], target: float
) -> None:
    slow, fast = sorted(rates)
    adaptive = AdaptivePolling(rule=rule, target=target)
    fixed = DEFAULT_INTERVALS[stage]
    late, soon = (adaptive_interval(stage, fixed, exponential(r), adaptive) for r in (slow, fast))
    assert late is not None
    assert soon is not None
    assert soon <= late
    higher = adaptive_interval(
        stage, fixed, exponential(slow), AdaptivePolling(rule=rule, target=min(0.99, target + 0.2))
    )
    assert higher is not None
    assert higher >= late


def test_the_interval_is_where_the_rules_score_reaches_the_target() -> None:
    # A zero lower bound (a stage polled at every tick) still ends the search.
    zero = AdaptivePolling(minimum={Stage.INLAND_TRANSIT: dt.timedelta(0)})
    assert adaptive_interval(Stage.INLAND_TRANSIT, 2 * HOUR, exponential(0.1), zero) is not None
    chance = exponential(0.1)  # one scan per 10 h
    # Frugal: each poll has a 30% chance of news, reached at 3.57 h.
    found = adaptive_interval(
        Stage.INLAND_TRANSIT, 2 * HOUR, chance, AdaptivePolling(rule=Rule.FRUGAL, target=0.3)
    )
    assert found is not None
    exact = dt.timedelta(hours=-math.log(0.7) / 0.1)
    # Found to within the search's resolution (10%, below the jitter), never before the target.
    assert exact <= found <= exact * 1.1
    # Balanced: chance x hours reaches 0.3 where sqrt(0.3 / 0.1) h would at a small chance;
    # (1 - e^-0.1w) w = 0.3 at w = 1.81 h.
    found = adaptive_interval(Stage.INLAND_TRANSIT, 2 * HOUR, chance, AdaptivePolling(target=0.3))
    assert found is not None
    assert 1.80 * HOUR <= found <= 1.81 * HOUR * 1.1
    # The defaults: the benchmark's choices.
    assert AdaptivePolling().wanted == DEFAULT_TARGETS[Rule.BALANCED] == 0.2
    assert AdaptivePolling(rule=Rule.FRUGAL).wanted == 0.1


def test_balanced_polls_a_silent_stretch_more_than_frugal_and_a_busy_one_less() -> None:
    """Frugal's interval is inversely proportional to the rate of scans, balanced's to its
    square root: longer in a busy stretch, shorter in a quiet one, where an early scan would
    otherwise wait."""
    frugal, balanced = AdaptivePolling(rule=Rule.FRUGAL, target=0.1), AdaptivePolling(target=0.2)

    def interval(per_hour: float, adaptive: AdaptivePolling) -> dt.timedelta:
        found = adaptive_interval(Stage.DEPARTED_ORIGIN, 8 * HOUR, exponential(per_hour), adaptive)
        assert found is not None
        return found

    assert interval(0.01, balanced) < interval(0.01, frugal)
    assert interval(1.0, balanced) >= interval(1.0, frugal)


def test_rescheduling_leaves_an_adaptively_placed_poll_where_it_is() -> None:
    policy = PollingPolicy()
    row = ScheduledRow(
        id=1,
        stage=Stage.DEPARTED_ORIGIN,
        next_poll_at=NOW + 20 * HOUR,
        last_polled_at=NOW,
        created_at=NOW - 24 * HOUR,
        last_changed_at=NOW - 5 * HOUR,
        stage_entered_at=NOW - 5 * HOUR,
        consecutive_failures=0,
    )
    # Outside the fixed window (8 h +-10%), inside the adaptive bounds (2 h to 24 h): kept.
    assert window(row, policy) == (NOW + 8 * HOUR * 0.9, NOW + 8 * HOUR * 1.1)
    assert moves([row], policy, now=NOW, rng=random.Random(1)) == []
    # Beyond them, it is moved into the fixed window.
    beyond = dataclasses.replace(row, next_poll_at=NOW + 30 * HOUR)
    [(_, due)] = moves([beyond], policy, now=NOW, rng=random.Random(1))
    assert NOW + 8 * HOUR * 0.9 <= due <= NOW + 8 * HOUR * 1.1
    # Adaptive off, the fixed window applies again and the poll is moved into it.
    off = PollingPolicy(adaptive=AdaptivePolling(enabled=False))
    [(_, due)] = moves([row], off, now=NOW, rng=random.Random(1))
    assert NOW + 8 * HOUR * 0.9 <= due <= NOW + 8 * HOUR * 1.1


def test_settings_parse_and_bad_values_name_their_key_and_line(tmp_path: Path) -> None:
    text = (
        "[polling]\n"
        "adaptive = true\n"
        'adaptive_rule = "frugal"\n'
        "adaptive_target = 0.2\n"
        "[polling.adaptive_min]\n"
        'departed_origin = "4h"\n'
        "[polling.adaptive_max]\n"
        'departed_origin = "2d"\n'
    )
    adaptive = parse_settings(text, tmp_path / "c.toml").polling.adaptive
    assert adaptive == AdaptivePolling(
        rule=Rule.FRUGAL,
        target=0.2,
        minimum={Stage.DEPARTED_ORIGIN: 4 * HOUR},
        maximum={Stage.DEPARTED_ORIGIN: 48 * HOUR},
    )
    bad = (
        "[polling]\n"
        'adaptive = "yes"\n'
        "adaptive_target = 1\n"
        'adaptive_rule = "fast"\n'
        "[polling.adaptive_min]\n"
        'departed_origin = "3d"\n'
        'flying = "1h"\n'
        'customs_presented = "0s"\n'
        "[polling.adaptive_max]\n"
        'departed_origin = "2d"\n'
    )
    with pytest.raises(ConfigError) as info:
        parse_settings(bad, tmp_path / "c.toml")
    message = str(info.value)
    where = tmp_path / "c.toml"
    for expected in (
        f"{where}:2: polling.adaptive: must be true or false",
        f"{where}:3: polling.adaptive_target: must be a fraction above 0 and below 1",
        f"{where}:4: polling.adaptive_rule: must be balanced or frugal",
        f"{where}:7: polling.adaptive_min.flying: not a stage name",
        f"{where}:8: polling.adaptive_min.customs_presented: must be longer than 0s",
    ):
        assert expected in message, message
    # Bounds are compared once each table reads well.
    crossed = (
        '[polling.adaptive_min]\ndeparted_origin = "3d"\n[polling.adaptive_max]\ndeparted_origin = "2d"\n'
    )
    with pytest.raises(ConfigError) as info:
        parse_settings(crossed, tmp_path / "c.toml")
    assert (
        f"{where}:4: polling.adaptive_max.departed_origin: is shorter than adaptive_min.departed_origin (3d)"
        in str(info.value)
    )
