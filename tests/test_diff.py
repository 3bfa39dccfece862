"""History diff: what is new, merge order, transitions, anomalies, and replay properties."""

from __future__ import annotations

import collections
import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.core.diff import (
    AnomalyKind,
    Change,
    Transition,
    current_stage,
    diff_detail,
    diff_latest,
    went_backwards,
)
from notifier.core.model import EventTime, ItemResult, Layout, Locale, Outcome, Page, TrackingEvent
from notifier.core.parser import parse_page
from notifier.core.stages import Stage

PAGES = Path(__file__).parent / "data" / "pages"
NUMBER = "EL015307999JP"
DAY = dt.date(2024, 5, 1)


def ev(
    minute: int, stage: Stage, status: str | None = None, office: str = "TOKYO", day: int = 0
) -> TrackingEvent:
    """An event `minute` minutes after 08:00 on DAY (+`day`)."""
    at = dt.datetime.combine(DAY, dt.time(8, 0)) + dt.timedelta(days=day, minutes=minute)
    return TrackingEvent(
        when=EventTime(date=at.date(), time=at.time()),
        status=status if status is not None else f"{stage} {minute}",
        stage=stage,
        office=office,
    )


def page_of(*events: TrackingEvent, number: str = NUMBER, layout: Layout = Layout.DETAIL) -> Page:
    return Page(
        layout=layout,
        locale=Locale.EN,
        items=(ItemResult(number=number, outcome=Outcome.FOUND, events=events),),
    )


def kinds(change: Change) -> list[AnomalyKind]:
    return [a.kind for a in change.anomalies]


def keys(events: tuple[TrackingEvent, ...] | list[TrackingEvent]) -> list[str]:
    return [e.key for e in events]


def chain(change: Change) -> list[Stage]:
    return [t.to_stage for t in change.transitions]


A = ev(0, Stage.ACCEPTED)
B = ev(60, Stage.IN_TRANSIT)
C = ev(120, Stage.OUTWARD_EXCHANGE)
D = ev(180, Stage.DEPARTED_ORIGIN)
E = ev(240, Stage.INWARD_EXCHANGE)
F = ev(300, Stage.CUSTOMS_PRESENTED)


# current_stage and went_backwards


def test_current_stage_skips_unknown_and_defaults_to_pending() -> None:
    assert current_stage([]) is Stage.PENDING
    assert current_stage([ev(0, Stage.UNKNOWN)]) is Stage.PENDING
    assert current_stage([A, B, ev(90, Stage.UNKNOWN)]) is Stage.IN_TRANSIT
    assert current_stage([B, A]) is Stage.ACCEPTED


@pytest.mark.parametrize(
    ("previous", "new", "expected"),
    [
        (Stage.ACCEPTED, Stage.IN_TRANSIT, False),
        (Stage.INLAND_TRANSIT, Stage.DELIVERED, False),
        (Stage.PENDING, Stage.DELIVERED, False),
        (Stage.DELIVERED, Stage.DELIVERED, False),
        (Stage.INLAND_TRANSIT, Stage.ACCEPTED, True),
        (Stage.CUSTOMS_CLEARED, Stage.CUSTOMS_PRESENTED, True),
        (Stage.DELIVERED, Stage.OUT_FOR_DELIVERY, True),
        (Stage.DELIVERED, Stage.ATTEMPTED_DELIVERY, True),
        (Stage.OUT_FOR_DELIVERY, Stage.AT_DELIVERY_OFFICE, True),
        (Stage.ACCEPTED, Stage.PENDING, True),
        # within the delivery-attempt band, order is free
        (Stage.ATTEMPTED_DELIVERY, Stage.RETENTION, False),
        (Stage.RETENTION, Stage.ATTEMPTED_DELIVERY, False),
        (Stage.READY_FOR_PICKUP, Stage.REDELIVERY_REQUESTED, False),
        # the redelivery loop
        (Stage.ATTEMPTED_DELIVERY, Stage.OUT_FOR_DELIVERY, False),
        (Stage.REDELIVERY_REQUESTED, Stage.OUT_FOR_DELIVERY, False),
        (Stage.RETENTION, Stage.OUT_FOR_DELIVERY, False),
        (Stage.READY_FOR_PICKUP, Stage.OUT_FOR_DELIVERY, False),
        (Stage.ATTEMPTED_DELIVERY, Stage.AT_DELIVERY_OFFICE, True),
        # imports relay with the domestic wordings after leaving the origin
        (Stage.DEPARTED_ORIGIN, Stage.IN_TRANSIT, False),
        (Stage.INWARD_EXCHANGE, Stage.IN_TRANSIT, False),
        (Stage.CUSTOMS_CLEARED, Stage.IN_TRANSIT, False),
        (Stage.OUTWARD_EXCHANGE, Stage.IN_TRANSIT, True),
        (Stage.DEPARTED_ORIGIN, Stage.ACCEPTED, True),
        # exceptions and UNKNOWN are outside the journey
        (Stage.DELIVERED, Stage.RETURNING, False),
        (Stage.RETURNING, Stage.ACCEPTED, False),
        (Stage.RETURNED, Stage.RETURNING, False),
        (Stage.INVESTIGATION, Stage.IN_TRANSIT, False),
        (Stage.DELIVERED, Stage.UNKNOWN, False),
        (Stage.UNKNOWN, Stage.ACCEPTED, False),
    ],
)
def test_went_backwards(previous: Stage, new: Stage, expected: bool) -> None:
    assert went_backwards(previous, new) is expected


def test_moving_forward_or_staying_is_never_backwards() -> None:
    journey = [s for s in Stage if s not in (Stage.UNKNOWN,)]
    for previous in journey:
        assert not went_backwards(previous, previous)
        assert not went_backwards(Stage.PENDING, previous)


# diff_detail: events, merge, idempotency


def test_same_page_twice_is_idempotent() -> None:
    first = diff_detail([A, B], page_of(A, B, C, D), NUMBER)
    assert first.changed
    again = diff_detail(first.history, page_of(A, B, C, D), NUMBER)
    assert not again.changed
    assert again.new_events == ()
    assert again.transitions == ()
    assert again.anomalies == ()
    assert again.history == first.history
    assert again.previous_stage is again.current_stage is Stage.DEPARTED_ORIGIN


def test_new_events_are_appended_in_page_order() -> None:
    change = diff_detail([A, B], page_of(A, B, C, D), NUMBER)
    assert change.new_events == (C, D)
    assert change.history == (A, B, C, D)
    assert change.previous_stage is Stage.IN_TRANSIT
    assert change.current_stage is Stage.DEPARTED_ORIGIN
    assert change.outcome is Outcome.FOUND
    assert change.anomalies == ()
    assert not change.first_sight
    assert not change.needs_detail


def test_several_stages_between_two_polls_all_yield_transitions_in_order() -> None:
    change = diff_detail([A], page_of(A, B, C, D, E, F), NUMBER)
    assert change.transitions == (
        Transition(from_stage=Stage.ACCEPTED, to_stage=Stage.IN_TRANSIT, event=B),
        Transition(from_stage=Stage.IN_TRANSIT, to_stage=Stage.OUTWARD_EXCHANGE, event=C),
        Transition(from_stage=Stage.OUTWARD_EXCHANGE, to_stage=Stage.DEPARTED_ORIGIN, event=D),
        Transition(from_stage=Stage.DEPARTED_ORIGIN, to_stage=Stage.INWARD_EXCHANGE, event=E),
        Transition(from_stage=Stage.INWARD_EXCHANGE, to_stage=Stage.CUSTOMS_PRESENTED, event=F),
    )


def test_a_repeated_stage_is_entered_once() -> None:
    relay = [ev(60 * i, Stage.IN_TRANSIT) for i in range(1, 4)]
    change = diff_detail([A], page_of(A, *relay), NUMBER)
    assert change.new_events == tuple(relay)
    assert change.transitions == (
        Transition(from_stage=Stage.ACCEPTED, to_stage=Stage.IN_TRANSIT, event=relay[0]),
    )
    # a new event in the stage the shipment is already in is a change without a transition
    more = diff_detail(change.history, page_of(A, *relay, ev(400, Stage.IN_TRANSIT)), NUMBER)
    assert more.changed
    assert more.transitions == ()
    assert more.previous_stage is more.current_stage is Stage.IN_TRANSIT


def test_first_sight_starts_from_pending() -> None:
    change = diff_detail([], page_of(A, B), NUMBER)
    assert change.first_sight
    assert change.previous_stage is Stage.PENDING
    assert chain(change) == [Stage.ACCEPTED, Stage.IN_TRANSIT]
    assert change.transitions[0].from_stage is Stage.PENDING
    assert not diff_detail([A], page_of(A, B), NUMBER).first_sight
    assert not diff_detail([], page_of(), NUMBER).first_sight


def test_found_without_events_and_nothing_stored_is_no_change() -> None:
    change = diff_detail([], page_of(), NUMBER)
    assert not change.changed
    assert change.anomalies == ()
    assert change.current_stage is Stage.PENDING
    assert change.outcome is Outcome.FOUND


@pytest.mark.parametrize(
    "shown", [(A, B), (A,), (A, C), (B, C), ()], ids=["prefix", "first", "gap", "tail", "empty"]
)
def test_page_showing_less_reports_history_shorter(shown: tuple[TrackingEvent, ...]) -> None:
    stored = (A, B, C)
    change = diff_detail(stored, page_of(*shown), NUMBER)
    missing = [e.key for e in stored if e not in shown]
    assert kinds(change) == [AnomalyKind.HISTORY_SHORTER]
    assert list(change.anomalies[0].event_keys) == missing
    assert not change.changed
    assert change.new_events == ()
    assert change.transitions == ()
    assert change.history == stored
    assert change.previous_stage is change.current_stage is Stage.OUTWARD_EXCHANGE


def test_missing_stored_events_stay_after_their_stored_predecessor() -> None:
    change = diff_detail([A, B, C], page_of(A, C, D), NUMBER)
    assert change.history == (A, B, C, D)
    assert change.new_events == (D,)
    assert kinds(change) == [AnomalyKind.HISTORY_SHORTER]
    assert change.anomalies[0].event_keys == (B.key,)
    assert chain(change) == [Stage.DEPARTED_ORIGIN]
    # and before anything the page adds in the same place
    change = diff_detail([A, B], page_of(A, D), NUMBER)
    assert change.history == (A, B, D)
    # a missing first event goes first
    change = diff_detail([A, B], page_of(D, B), NUMBER)
    assert change.history == (A, D, B)


def test_page_in_another_order_keeps_the_stored_order() -> None:
    change = diff_detail([A, B, C], page_of(A, C, B), NUMBER)
    assert change.history == (A, B, C)
    assert not change.changed
    assert kinds(change) == [AnomalyKind.HISTORY_SHORTER]
    assert change.anomalies[0].event_keys in ((B.key,), (C.key,))
    assert change.current_stage is Stage.OUTWARD_EXCHANGE


def test_a_row_printed_twice_is_one_event() -> None:
    change = diff_detail([A], page_of(A, B, B, C), NUMBER)
    assert change.new_events == (B, C)
    assert change.history == (A, B, C)
    assert not diff_detail(change.history, page_of(A, B, B, C), NUMBER).changed


def test_stored_versions_of_known_events_are_kept() -> None:
    # The key leaves the stage out: a page mapping a stored event differently changes nothing.
    remapped = ev(60, Stage.AT_DELIVERY_OFFICE, status=B.status)
    assert remapped.key == B.key
    change = diff_detail([A, B], page_of(A, remapped), NUMBER)
    assert change.history == (A, B)
    assert not change.changed
    assert change.anomalies == ()


def test_backfilled_event_is_new_but_enters_no_stage() -> None:
    # The shipment was already past outward exchange; an older scan appearing now is history.
    change = diff_detail([A, D], page_of(A, C, D), NUMBER)
    assert change.new_events == (C,)
    assert change.history == (A, C, D)
    assert change.transitions == ()
    assert change.changed
    assert change.previous_stage is change.current_stage is Stage.DEPARTED_ORIGIN
    assert change.anomalies == ()


# Edits


@pytest.mark.parametrize("where", ["middle", "last"])
def test_event_edited_in_place(where: str) -> None:
    edited = ev(60, Stage.AT_DELIVERY_OFFICE, status="Arrival")
    stored, shown = ((A, B, C), (A, edited, C)) if where == "middle" else ((A, B), (A, edited))
    change = diff_detail(stored, page_of(*shown), NUMBER)
    assert kinds(change) == [AnomalyKind.EVENT_EDITED]
    assert change.anomalies[0].event_keys == (B.key, edited.key)
    assert change.new_events == (edited,)
    assert change.history == ((A, B, edited, C) if where == "middle" else (A, B, edited))
    if where == "last":
        assert chain(change) == [Stage.AT_DELIVERY_OFFICE]
    else:
        assert change.transitions == ()  # C still decides the stage
    again = diff_detail(change.history, page_of(*shown), NUMBER)
    assert not again.changed
    assert again.anomalies == ()


def test_different_time_is_not_an_edit() -> None:
    other = ev(61, Stage.IN_TRANSIT, status="En route")
    change = diff_detail([A, B], page_of(A, other), NUMBER)
    assert kinds(change) == [AnomalyKind.HISTORY_SHORTER]
    assert change.anomalies[0].event_keys == (B.key,)
    assert change.new_events == (other,)
    assert change.history == (A, B, other)


def test_only_what_looks_like_the_old_version_of_an_edit_is_excused() -> None:
    # B is followed by a shown event of the same time, as an edit leaves it; C is just gone.
    same_time = ev(60, Stage.OUTWARD_EXCHANGE)
    change = diff_detail([A, B, same_time, C], page_of(A, same_time), NUMBER)
    assert kinds(change) == [AnomalyKind.HISTORY_SHORTER]
    assert change.anomalies[0].event_keys == (C.key,)
    # the same gap with different times is reported in full
    change = diff_detail([A, B, C, D], page_of(A, C), NUMBER)
    assert change.anomalies[0].event_keys == (B.key, D.key)


# Stage direction and unknown wordings


def test_stage_backwards_is_reported_with_the_transition() -> None:
    back = ev(400, Stage.CUSTOMS_PRESENTED)
    stored = (A, D, E, ev(300, Stage.CUSTOMS_CLEARED))
    change = diff_detail(stored, page_of(*stored, back), NUMBER)
    assert chain(change) == [Stage.CUSTOMS_PRESENTED]
    assert kinds(change) == [AnomalyKind.STAGE_BACKWARDS]
    assert change.anomalies[0].event_keys == (back.key,)
    assert change.previous_stage is Stage.CUSTOMS_CLEARED
    assert change.current_stage is Stage.CUSTOMS_PRESENTED


def test_redelivery_loop_is_not_backwards() -> None:
    stored = (ev(0, Stage.OUT_FOR_DELIVERY), ev(60, Stage.ATTEMPTED_DELIVERY))
    out_again = ev(0, Stage.OUT_FOR_DELIVERY, day=1)
    change = diff_detail(stored, page_of(*stored, out_again), NUMBER)
    assert chain(change) == [Stage.OUT_FOR_DELIVERY]
    assert change.anomalies == ()


def test_passing_through_a_lower_stage_is_judged_on_the_final_stage() -> None:
    stored = (A, D)
    shown = (A, D, ev(200, Stage.ACCEPTED), ev(240, Stage.INWARD_EXCHANGE))
    change = diff_detail(stored, page_of(*shown), NUMBER)
    assert chain(change) == [Stage.ACCEPTED, Stage.INWARD_EXCHANGE]
    assert AnomalyKind.STAGE_BACKWARDS not in kinds(change)


def test_unknown_status_is_stored_and_reported_once() -> None:
    odd1 = ev(60, Stage.UNKNOWN, status="Mystery scan")
    odd2 = ev(90, Stage.UNKNOWN, status="Other mystery")
    odd3 = ev(100, Stage.UNKNOWN, status="Mystery scan", office="OSAKA")
    change = diff_detail([A], page_of(A, odd1, odd2, odd3, C), NUMBER)
    assert change.new_events == (odd1, odd2, odd3, C)
    assert change.history == (A, odd1, odd2, odd3, C)
    assert kinds(change) == [AnomalyKind.UNKNOWN_STATUS]
    (anomaly,) = change.anomalies
    assert "'Mystery scan'" in anomaly.message
    assert "'Other mystery'" in anomaly.message
    assert anomaly.message.count("Mystery scan") == 1
    assert anomaly.event_keys == (odd1.key, odd2.key, odd3.key)
    # UNKNOWN enters no stage
    assert change.transitions == (
        Transition(from_stage=Stage.ACCEPTED, to_stage=Stage.OUTWARD_EXCHANGE, event=C),
    )


def test_only_unknown_news_is_a_change_without_transition() -> None:
    odd = ev(60, Stage.UNKNOWN, status="Mystery scan")
    change = diff_detail([A], page_of(A, odd), NUMBER)
    assert change.changed
    assert change.transitions == ()
    assert change.current_stage is Stage.ACCEPTED


# Pages without events for the item


def test_unrecognized_page() -> None:
    page = Page(layout=Layout.UNRECOGNIZED, locale=Locale.JA, reason="maintenance banner")
    for diff in (diff_detail, diff_latest):
        change = diff([A, B], page, NUMBER)
        assert kinds(change) == [AnomalyKind.UNRECOGNIZED_PAGE]
        assert "maintenance banner" in change.anomalies[0].message
        assert change.history == (A, B)
        assert change.new_events == ()
        assert not change.changed
        assert change.outcome is None
        assert change.current_stage is Stage.IN_TRANSIT


def test_page_without_the_number() -> None:
    for diff in (diff_detail, diff_latest):
        change = diff([A], page_of(A, B, number="EE123456789JP"), NUMBER)
        assert kinds(change) == [AnomalyKind.NUMBER_MISMATCH]
        assert NUMBER in change.anomalies[0].message
        assert change.history == (A,)
        assert not change.changed
        assert not change.needs_detail


@pytest.mark.parametrize("outcome", [Outcome.NOT_FOUND, Outcome.INVALID_NUMBER])
def test_not_found_after_events(outcome: Outcome) -> None:
    page = Page(layout=Layout.LIST, locale=Locale.EN, items=(ItemResult(number=NUMBER, outcome=outcome),))
    for diff in (diff_detail, diff_latest):
        change = diff([A, B], page, NUMBER)
        assert kinds(change) == [AnomalyKind.NOT_FOUND_AFTER_EVENTS]
        assert change.history == (A, B)
        assert not change.changed
        assert change.outcome is outcome
        assert change.current_stage is Stage.IN_TRANSIT
        fresh = diff([], page, NUMBER)
        assert fresh.anomalies == ()
        assert not fresh.changed
        assert fresh.current_stage is Stage.PENDING
        assert fresh.outcome is outcome


def test_genuine_invalid_number_capture() -> None:
    page = parse_page((PAGES / "en_invalid_digits_list_2014.html").read_bytes())
    number = "EL015307999123JP"
    assert kinds(diff_detail([A], page, number)) == [AnomalyKind.NOT_FOUND_AFTER_EVENTS]
    assert diff_detail([], page, number).anomalies == ()


# The genuine EMS capture


def test_genuine_capture_from_two_events_to_five() -> None:
    page = parse_page((PAGES / "en_ems_detail_intransit_2014.html").read_bytes())
    (item,) = page.items
    change = diff_detail(item.events[:2], page, item.number)
    assert change.new_events == item.events[2:]
    assert len(change.new_events) == 3
    assert change.history == item.events
    assert [(t.from_stage, t.to_stage) for t in change.transitions] == [
        (Stage.OUTWARD_EXCHANGE, Stage.DEPARTED_ORIGIN),
        (Stage.DEPARTED_ORIGIN, Stage.INWARD_EXCHANGE),
        (Stage.INWARD_EXCHANGE, Stage.INLAND_TRANSIT),
    ]
    assert [t.event for t in change.transitions] == list(item.events[2:])
    assert change.anomalies == ()
    assert change.previous_stage is Stage.OUTWARD_EXCHANGE
    assert change.current_stage is Stage.INLAND_TRANSIT
    assert not diff_detail(change.history, page, item.number).changed

    first = diff_detail([], page, item.number)
    assert first.first_sight
    assert chain(first)[0] is Stage.ACCEPTED
    assert chain(first)[-1] is Stage.INLAND_TRANSIT

    # the list row of the same item shows only its latest event
    latest = page_of(item.events[-1], number=item.number, layout=Layout.LIST)
    assert diff_latest(change.history, latest, item.number).needs_detail is False
    assert diff_latest(item.events[:2], latest, item.number).needs_detail is True


# diff_latest


def test_latest_unchanged() -> None:
    change = diff_latest([A, B], page_of(B, layout=Layout.LIST), NUMBER)
    assert not change.changed
    assert not change.needs_detail
    assert change.anomalies == ()
    assert change.history == (A, B)
    assert change.outcome is Outcome.FOUND


def test_latest_differs_asks_for_the_detail_page() -> None:
    for stored in ([A, B], []):
        change = diff_latest(stored, page_of(D, layout=Layout.LIST), NUMBER)
        assert change.needs_detail
        assert change.new_events == ()
        assert change.transitions == ()
        assert not change.changed
        assert not change.first_sight
        assert change.history == tuple(stored)
        assert change.anomalies == ()


def test_latest_is_an_older_stored_event() -> None:
    change = diff_latest([A, B, C], page_of(A, layout=Layout.LIST), NUMBER)
    assert not change.needs_detail
    assert kinds(change) == [AnomalyKind.HISTORY_SHORTER]
    assert change.anomalies[0].event_keys == (B.key, C.key)
    assert change.history == (A, B, C)


def test_latest_uses_the_last_event_of_a_detail_page() -> None:
    assert not diff_latest([A, B], page_of(A, B), NUMBER).needs_detail
    assert diff_latest([A], page_of(A, B), NUMBER).needs_detail


def test_detail_diff_of_a_list_page_only_asks_for_the_detail() -> None:
    change = diff_detail([A], page_of(C, layout=Layout.LIST), NUMBER)
    assert change.needs_detail
    assert change.new_events == ()
    assert change.history == (A,)
    assert change.anomalies == ()


# Properties

_STAGES = [s for s in Stage if s is not Stage.UNKNOWN]
# UNKNOWN is rare on real pages; weight it accordingly.
stages = st.sampled_from([*_STAGES, Stage.UNKNOWN])


@st.composite
def histories(draw: st.DrawFn, min_size: int = 2, max_size: int = 15) -> list[TrackingEvent]:
    """Events with distinct keys and non-decreasing times (several may share a minute)."""
    size = draw(st.integers(min_size, max_size))
    steps = draw(st.lists(st.integers(0, 3), min_size=size, max_size=size))
    events = []
    minute = 0
    for index, step in enumerate(steps):
        minute += step
        events.append(ev(minute, draw(stages), status=f"scan {index}"))
    return events


def transitions_of(events: list[TrackingEvent]) -> list[tuple[Stage, TrackingEvent]]:
    entered: list[tuple[Stage, TrackingEvent]] = []
    running = Stage.PENDING
    for event in events:
        if event.stage is not Stage.UNKNOWN and event.stage is not running:
            entered.append((event.stage, event))
            running = event.stage
    return entered


def assert_consistent(stored: list[TrackingEvent] | tuple[TrackingEvent, ...], change: Change) -> None:
    stored_keys = {e.key for e in stored}
    # stored events are never dropped nor reordered; the rest of history is the new events
    assert [e for e in change.history if e.key in stored_keys] == list(stored)
    assert [e for e in change.history if e.key not in stored_keys] == list(change.new_events)
    assert change.changed == bool(change.new_events or change.transitions)
    assert change.previous_stage is current_stage(stored)
    assert change.current_stage is current_stage(change.history)
    running = change.previous_stage
    for transition in change.transitions:
        assert transition.from_stage is running
        assert transition.to_stage is not running
        assert transition.to_stage is transition.event.stage
        assert transition.event in change.new_events
        running = transition.to_stage
    assert running is change.current_stage


@settings(max_examples=150, deadline=None)
@given(st.data(), histories())
def test_replaying_prefixes_in_any_order_rebuilds_the_history(
    data: st.DataObject, truth: list[TrackingEvent]
) -> None:
    lengths = data.draw(st.lists(st.integers(0, len(truth)), max_size=8))
    lengths = data.draw(st.permutations([*lengths, len(truth)]))
    stored: tuple[TrackingEvent, ...] = ()
    seen: set[int] = set()
    delivered: collections.Counter[str] = collections.Counter()
    entered: list[tuple[Stage, TrackingEvent]] = []
    for length in lengths:
        change = diff_detail(stored, page_of(*truth[:length]), NUMBER)
        assert_consistent(stored, change)
        if length in seen:
            assert not change.changed
        assert all(a.kind is not AnomalyKind.EVENT_EDITED for a in change.anomalies)
        seen.add(length)
        delivered.update(e.key for e in change.new_events)
        entered.extend((t.to_stage, t.event) for t in change.transitions)
        stored = change.history
        assert list(stored) == truth[: max(seen)]
    assert list(stored) == truth
    assert delivered == collections.Counter(e.key for e in truth)
    # every stage of the true history is announced once, in order, whatever the page order
    assert entered == transitions_of(truth)


@st.composite
def stored_and_page(draw: st.DrawFn) -> tuple[list[TrackingEvent], list[TrackingEvent]]:
    """Any stored history and any page drawn from one pool: subsets, reorders, repeats, edits."""
    pool = draw(histories(min_size=1, max_size=12))
    stored = draw(st.lists(st.sampled_from(pool), unique_by=lambda e: e.key, max_size=len(pool)))
    if draw(st.booleans()):
        stored.sort(key=pool.index)
    shown = draw(st.lists(st.sampled_from(pool), max_size=15))
    if draw(st.booleans()):
        shown.sort(key=pool.index)
    return stored, shown


@settings(max_examples=300, deadline=None)
@given(stored_and_page())
def test_stored_events_are_never_dropped(case: tuple[list[TrackingEvent], list[TrackingEvent]]) -> None:
    stored, shown = case
    change = diff_detail(stored, page_of(*shown), NUMBER)
    assert {e.key for e in stored} <= {e.key for e in change.history}
    assert_consistent(stored, change)
    assert {e.key for e in change.new_events} == {e.key for e in shown} - {e.key for e in stored}


@settings(max_examples=300, deadline=None)
@given(stored_and_page())
def test_the_same_page_twice_never_yields_a_change(
    case: tuple[list[TrackingEvent], list[TrackingEvent]],
) -> None:
    stored, shown = case
    first = diff_detail(stored, page_of(*shown), NUMBER)
    second = diff_detail(first.history, page_of(*shown), NUMBER)
    assert not second.changed
    assert second.new_events == ()
    assert second.transitions == ()
    assert second.history == first.history
    assert second.previous_stage is second.current_stage is first.current_stage
    # only the standing "page shows less or out of order" report may repeat
    assert {a.kind for a in second.anomalies} <= {AnomalyKind.HISTORY_SHORTER}
    if [e.key for e in first.history] == list(dict.fromkeys(e.key for e in shown)):
        assert second.anomalies == ()
    # every shown event is stored now, so a list row of the page never asks for the detail
    latest = diff_latest(first.history, page_of(*shown[-1:], layout=Layout.LIST), NUMBER)
    assert not latest.changed
    assert not latest.needs_detail


def test_relay_wording_is_only_excused_between_departure_and_the_delivery_office() -> None:
    assert not went_backwards(Stage.INLAND_TRANSIT, Stage.IN_TRANSIT)
    assert not went_backwards(Stage.CUSTOMS_CLEARED, Stage.IN_TRANSIT)
    assert went_backwards(Stage.AT_DELIVERY_OFFICE, Stage.IN_TRANSIT)
    assert went_backwards(Stage.DELIVERED, Stage.IN_TRANSIT)
    assert went_backwards(Stage.OUTWARD_EXCHANGE, Stage.IN_TRANSIT)


def test_a_new_parcel_under_a_reused_number_is_not_merged() -> None:
    later = [ev(0, Stage.ACCEPTED, day=d) for d in (59, 60, 200)]
    stored = (A, B, C)
    # 59 days after the last stored event: could still be ours (a late scan), so it merges.
    close = diff_detail(stored, page_of(later[0]), NUMBER)
    assert AnomalyKind.NUMBER_REUSED not in kinds(close)
    for event in later[1:]:
        change = diff_detail(stored, page_of(event), NUMBER)
        assert kinds(change) == [AnomalyKind.NUMBER_REUSED]
        assert not change.changed
        assert change.history == stored
    # Any shared event means it is the same parcel, however long the gap.
    much_later = ev(0, Stage.DEPARTED_ORIGIN, day=200)
    shared = diff_detail(stored, page_of(A, B, C, much_later), NUMBER)
    assert kinds(shared) == []
    assert shared.new_events == (much_later,)


def test_the_return_leg_is_not_going_backwards() -> None:
    back = ev(400, Stage.RETURNING)
    again = ev(460, Stage.INWARD_EXCHANGE)
    change = diff_detail((A, B, C, D, E, F), page_of(A, B, C, D, E, F, back, again), NUMBER)
    assert kinds(change) == []
    assert chain(change) == [Stage.RETURNING, Stage.INWARD_EXCHANGE]
