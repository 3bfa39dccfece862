"""When to poll next: adaptive by stage, jittered, backing off on failures, and knowing when to stop."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from notifier.core.policy import DAY, HOUR, NextPoll, PollingPolicy, next_poll
from notifier.core.stages import Stage

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def when(
    stage: Stage,
    *,
    failures: int = 0,
    created_days: float = 1,
    changed_days: float = 0.5,
    entered_days: float = 0.5,
    policy: PollingPolicy | None = None,
    seed: int = 1,
) -> NextPoll:
    return next_poll(
        stage=stage,
        now=NOW,
        created_at=NOW - dt.timedelta(days=created_days),
        last_changed_at=NOW - dt.timedelta(days=changed_days),
        stage_entered_at=NOW - dt.timedelta(days=entered_days),
        consecutive_failures=failures,
        policy=policy or PollingPolicy(jitter=0),
        rng=random.Random(seed),
    )


def gap(
    stage: Stage,
    *,
    failures: int = 0,
    entered_days: float = 0.5,
    policy: PollingPolicy | None = None,
    seed: int = 1,
) -> dt.timedelta:
    result = when(stage, failures=failures, entered_days=entered_days, policy=policy, seed=seed)
    assert result.at is not None
    delta: dt.timedelta = result.at - NOW
    return delta


def test_polls_often_near_delivery_and_rarely_in_the_air() -> None:
    assert gap(Stage.OUT_FOR_DELIVERY) < gap(Stage.AT_DELIVERY_OFFICE) < gap(Stage.CUSTOMS_PRESENTED)
    assert gap(Stage.RETENTION) <= HOUR
    assert gap(Stage.DEPARTED_ORIGIN) >= 8 * HOUR
    assert gap(Stage.PENDING) >= 6 * HOUR


def test_fixed_interval_overrides_everything() -> None:
    policy = PollingPolicy(fixed_interval=dt.timedelta(seconds=1), jitter=0)
    assert {
        gap(stage, policy=policy) for stage in (Stage.PENDING, Stage.DELIVERED, Stage.OUT_FOR_DELIVERY)
    } == {dt.timedelta(seconds=1)}


def test_jitter_spreads_polls_within_bounds() -> None:
    policy = PollingPolicy(jitter=0.1)
    gaps = {gap(Stage.IN_TRANSIT, policy=policy, seed=seed) for seed in range(50)}
    assert len(gaps) > 40
    assert all(1.8 * HOUR <= g <= 2.2 * HOUR for g in gaps)


def test_failures_back_off_up_to_a_cap() -> None:
    assert gap(Stage.OUT_FOR_DELIVERY, failures=1) == HOUR
    assert gap(Stage.OUT_FOR_DELIVERY, failures=3) == 4 * HOUR
    assert gap(Stage.OUT_FOR_DELIVERY, failures=30) == 12 * HOUR


def test_not_found_too_long_gives_up_with_a_reason() -> None:
    result = when(Stage.PENDING, created_days=15)
    assert result.at is None
    assert result.give_up is not None
    assert "15 days" in result.give_up
    assert when(Stage.PENDING, created_days=13).at is not None


def test_delivered_keeps_a_grace_period_then_stops_quietly() -> None:
    assert gap(Stage.DELIVERED, entered_days=2) == 12 * HOUR
    done = when(Stage.DELIVERED, entered_days=8)
    assert done.at is None
    assert done.give_up is None  # an ending, not a problem


def test_no_change_for_too_long_gives_up() -> None:
    result = when(Stage.DEPARTED_ORIGIN, changed_days=61)
    assert result.at is None
    assert result.give_up == "no change for 61 days"


@pytest.mark.parametrize("stage", list(Stage))
def test_every_stage_has_an_interval(stage: Stage) -> None:
    assert DAY > gap(stage) > dt.timedelta(0)
