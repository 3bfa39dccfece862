"""Stored history against a freshly parsed page: exactly which events, stages and oddities are new."""

from __future__ import annotations

import datetime as dt
import enum
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from notifier.core.model import ItemResult, Layout, Outcome, Page, TrackingEvent
from notifier.core.stages import Stage, stage_info


class AnomalyKind(enum.StrEnum):
    """Something about a page that an operator should see; the rules engine decides what to send."""

    HISTORY_SHORTER = "history_shorter"
    NOT_FOUND_AFTER_EVENTS = "not_found_after_events"
    STAGE_BACKWARDS = "stage_backwards"
    EVENT_EDITED = "event_edited"
    UNRECOGNIZED_PAGE = "unrecognized_page"
    UNKNOWN_STATUS = "unknown_status"
    NUMBER_MISMATCH = "number_mismatch"
    NUMBER_REUSED = "number_reused"


@dataclass(frozen=True, slots=True, kw_only=True)
class Anomaly:
    """One oddity of a page, with the keys of the events it concerns."""

    kind: AnomalyKind
    message: str
    event_keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """The shipment entered `to_stage` by `event`."""

    from_stage: Stage
    to_stage: Stage
    event: TrackingEvent


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """What one poll learnt about one shipment.

    `history` holds every stored event, in the stored order, with the new ones placed where
    the page shows them; storing it and diffing the same page again yields no change.
    """

    new_events: tuple[TrackingEvent, ...]
    history: tuple[TrackingEvent, ...]
    transitions: tuple[Transition, ...]
    anomalies: tuple[Anomaly, ...]
    previous_stage: Stage
    current_stage: Stage
    first_sight: bool
    needs_detail: bool = False
    outcome: Outcome | None = None

    @property
    def changed(self) -> bool:
        return bool(self.new_events or self.transitions)


# The journey is ranks 0..DELIVERED; see the comment above the rank table in stages.py.
_JOURNEY_END = stage_info(Stage.DELIVERED).rank
_ATTEMPT_BAND = stage_info(Stage.ATTEMPTED_DELIVERY).rank
_DEPARTED = stage_info(Stage.DEPARTED_ORIGIN).rank


def current_stage(events: Sequence[TrackingEvent]) -> Stage:
    """Stage of the last event whose stage is known; `pending` when there is none."""
    for event in reversed(events):
        if event.stage is not Stage.UNKNOWN:
            return event.stage
    return Stage.PENDING


def went_backwards(previous: Stage, new: Stage) -> bool:
    """Whether moving from `previous` to `new` is a regression of the forward journey."""
    before, after = stage_info(previous).rank, stage_info(new).rank
    if not (0 <= before <= _JOURNEY_END and 0 <= after <= _JOURNEY_END):
        return False
    if after >= before:
        return False
    if before == _ATTEMPT_BAND and new is Stage.OUT_FOR_DELIVERY:
        return False  # the redelivery loop
    # Imports reuse the domestic relay wordings between leaving the origin country and reaching
    # the delivery office; a relay scan after that (even after delivery) is a real regression.
    return not (new is Stage.IN_TRANSIT and _DEPARTED <= before < stage_info(Stage.AT_DELIVERY_OFFICE).rank)


def _describe(event: TrackingEvent) -> str:
    where = f" at {event.office}" if event.office else ""
    return f"{event.when.iso_local()} {event.status!r}{where}"


def _unchanged(
    stored: tuple[TrackingEvent, ...],
    *anomalies: Anomaly,
    outcome: Outcome | None = None,
    needs_detail: bool = False,
) -> Change:
    stage = current_stage(stored)
    return Change(
        new_events=(),
        history=stored,
        transitions=(),
        anomalies=anomalies,
        previous_stage=stage,
        current_stage=stage,
        first_sight=False,
        needs_detail=needs_detail,
        outcome=outcome,
    )


def _screen(stored: tuple[TrackingEvent, ...], page: Page, number: str) -> Change | ItemResult:
    """The answer for pages that carry no events for the item, else the item to diff."""
    if page.layout is Layout.UNRECOGNIZED:
        return _unchanged(
            stored,
            Anomaly(kind=AnomalyKind.UNRECOGNIZED_PAGE, message=f"unrecognized page: {page.reason}"),
        )
    item = page.item(number)
    if item is None:
        shown = ", ".join(i.number for i in page.items) or "no items"
        return _unchanged(
            stored,
            Anomaly(
                kind=AnomalyKind.NUMBER_MISMATCH, message=f"page has no item {number} (it shows {shown})"
            ),
        )
    if item.outcome is not Outcome.FOUND:
        if not stored:
            return _unchanged(stored, outcome=item.outcome)
        return _unchanged(
            stored,
            Anomaly(
                kind=AnomalyKind.NOT_FOUND_AFTER_EVENTS,
                message=f"page says {item.outcome} for {number}, which has {len(stored)} stored events"
                + (f": {item.message}" if item.message else ""),
                event_keys=tuple(e.key for e in stored),
            ),
            outcome=item.outcome,
        )
    return item


# Japan Post keeps histories for about 100 days (domestic) to a year (international), and
# numbers come round again after that: a page sharing no event with the stored history and
# starting this long after it ended is another parcel, not news about ours.
REUSE_GAP = dt.timedelta(days=60)


def _reuse(stored: Sequence[TrackingEvent], shown: Sequence[TrackingEvent]) -> Anomaly | None:
    if not stored or not shown or {e.key for e in stored} & {e.key for e in shown}:
        return None
    if shown[0].when.date - stored[-1].when.date < REUSE_GAP:
        return None
    return Anomaly(
        kind=AnomalyKind.NUMBER_REUSED,
        message=(
            f"the page shows a new parcel under this number (first event {shown[0].when.iso_local()}, "
            f"stored history ended {stored[-1].when.iso_local()}); the old shipment is retired"
        ),
        event_keys=tuple(e.key for e in shown),
    )


def _shorter(events: Sequence[TrackingEvent], why: str) -> Anomaly:
    return Anomaly(
        kind=AnomalyKind.HISTORY_SHORTER,
        message=f"{why}: " + "; ".join(_describe(e) for e in events),
        event_keys=tuple(e.key for e in events),
    )


def _longest_increasing(values: Sequence[int]) -> set[int]:
    """Positions in `values` of one longest strictly increasing subsequence."""
    if all(a < b for a, b in itertools.pairwise(values)):
        return set(range(len(values)))
    length = [1] * len(values)
    before = [-1] * len(values)
    for i, value in enumerate(values):
        for j in range(i):
            if values[j] < value and length[j] + 1 > length[i]:
                length[i], before[i] = length[j] + 1, j
    best = max(range(len(values)), key=length.__getitem__)
    chosen: set[int] = set()
    while best != -1:
        chosen.add(best)
        best = before[best]
    return chosen


@dataclass(frozen=True, slots=True, kw_only=True)
class _Gap:
    """Between two consecutive anchors: stored events the page does not anchor, and new events."""

    old: tuple[int, ...]  # stored indexes
    new: tuple[TrackingEvent, ...]


def _superseded(stored: tuple[TrackingEvent, ...], index: int, shown: set[str]) -> bool:
    # An edit stores the new version right after the old one, which the page then no longer
    # shows; without this every later poll would report the edited event as missing again.
    when = stored[index].when
    for later in stored[index + 1 :]:
        if later.when != when:
            return False
        if later.key in shown:
            return True
    return False


def diff_detail(stored: Sequence[TrackingEvent], page: Page, number: str) -> Change:
    """Compare the stored history of `number` with a page that shows its full history.

    A list-layout page shows only the latest event, so it is handed to `diff_latest`.
    """
    known = tuple(stored)
    screened = _screen(known, page, number)
    if isinstance(screened, Change):
        return screened
    if page.layout is Layout.LIST:
        return diff_latest(known, page, number)
    reused = _reuse(known, screened.events)
    if reused is not None:
        return _unchanged(known, reused, outcome=screened.outcome)

    # A key is one scan; a row printed twice is still one event.
    shown: list[TrackingEvent] = []
    position: dict[str, int] = {}
    for event in screened.events:
        if event.key not in position:
            position[event.key] = len(shown)
            shown.append(event)

    stored_keys: set[str] = set()
    common: list[int] = []
    for index, event in enumerate(known):
        if event.key not in stored_keys:
            stored_keys.add(event.key)
            if event.key in position:
                common.append(index)
    # Stored events the page shows in the same relative order anchor the merge; any others
    # keep their stored place, so stored history is never reordered, only added to.
    in_order = _longest_increasing([position[known[i].key] for i in common])
    anchors = [index for n, index in enumerate(common) if n in in_order]
    reordered = [known[index] for n, index in enumerate(common) if n not in in_order]

    merged: list[tuple[TrackingEvent, bool]] = []
    gaps: list[_Gap] = []
    last_stored, last_shown = -1, -1
    for anchor in [*anchors, len(known)]:
        at = position[known[anchor].key] if anchor < len(known) else len(shown)
        # Missing stored events go right after the stored event that preceded them, before
        # what the page adds there: they were seen first.
        old = tuple(range(last_stored + 1, anchor))
        new = tuple(e for e in shown[last_shown + 1 : at] if e.key not in stored_keys)
        merged.extend((known[i], False) for i in old)
        merged.extend((e, True) for e in new)
        if anchor < len(known):
            merged.append((known[anchor], False))
        gaps.append(_Gap(old=old, new=new))
        last_stored, last_shown = anchor, at

    anomalies: list[Anomaly] = []
    missing: list[TrackingEvent] = []
    seen: set[str] = set()
    for gap in gaps:
        replacements = list(gap.new)
        for index in gap.old:
            event = known[index]
            if event.key in seen or event.key in position:
                continue  # a repeated stored key, or a stored event the page shows elsewhere
            seen.add(event.key)
            edit = next((e for e in replacements if e.when == event.when), None)
            if edit is not None:
                replacements.remove(edit)
                anomalies.append(
                    Anomaly(
                        kind=AnomalyKind.EVENT_EDITED,
                        message=f"event {_describe(event)} now reads {_describe(edit)}",
                        event_keys=(event.key, edit.key),
                    )
                )
            elif not _superseded(known, index, set(position)):
                missing.append(event)
    if missing:
        anomalies.append(_shorter(missing, "stored events missing from the page"))
    if reordered:
        anomalies.append(_shorter(reordered, "page shows stored events in another order"))

    new_events = tuple(e for e, is_new in merged if is_new)
    unknown = [e for e in new_events if e.stage is Stage.UNKNOWN]
    if unknown:
        wordings = ", ".join(repr(w) for w in dict.fromkeys(e.status for e in unknown))
        anomalies.append(
            Anomaly(
                kind=AnomalyKind.UNKNOWN_STATUS,
                message=f"status wording not in the stage table: {wordings}",
                event_keys=tuple(e.key for e in unknown),
            )
        )

    previous = current_stage(known)
    # Only events after the stored event that set `previous` can move the stage: one the
    # carrier backfilled earlier in the history tells of a stage the shipment has already left.
    decisive = max((i for i, e in enumerate(known) if e.stage is not Stage.UNKNOWN), default=-1)
    transitions: list[Transition] = []
    running = previous
    stored_seen = 0
    for event, is_new in merged:
        if not is_new:
            stored_seen += 1
        elif stored_seen > decisive and event.stage is not Stage.UNKNOWN and event.stage is not running:
            transitions.append(Transition(from_stage=running, to_stage=event.stage, event=event))
            running = event.stage

    history = tuple(e for e, _ in merged)
    current = current_stage(history)
    # On its way back to the sender a parcel passes the exchange offices again: the journey's
    # order no longer applies once a return has begun.
    returning = any(e.stage in (Stage.RETURNING, Stage.RETURNED) for e in history)
    if not returning and went_backwards(previous, current):
        anomalies.append(
            Anomaly(
                kind=AnomalyKind.STAGE_BACKWARDS,
                message=f"stage went back from {previous} to {current}",
                event_keys=tuple(t.event.key for t in transitions[-1:]),
            )
        )
    return Change(
        new_events=new_events,
        history=history,
        transitions=tuple(transitions),
        anomalies=tuple(anomalies),
        previous_stage=previous,
        current_stage=current,
        first_sight=not known and bool(new_events),
        outcome=Outcome.FOUND,
    )


def diff_latest(stored: Sequence[TrackingEvent], page: Page, number: str) -> Change:
    """Compare the stored history of `number` with a page that shows only its latest event.

    A different latest event only asks for the detail page (`needs_detail`): a list row
    cannot tell how many events came in between, so it never yields events or transitions.
    """
    known = tuple(stored)
    screened = _screen(known, page, number)
    if isinstance(screened, Change):
        return screened
    latest = screened.latest
    if latest is None:
        if not known:
            return _unchanged(known, outcome=Outcome.FOUND)
        return _unchanged(known, _shorter(known, "page shows no events for the item"), outcome=Outcome.FOUND)
    if known and latest.key == known[-1].key:
        return _unchanged(known, outcome=Outcome.FOUND)
    for index, event in enumerate(known):
        if event.key == latest.key:
            return _unchanged(
                known,
                _shorter(known[index + 1 :], "list page shows an earlier event as the latest; not shown"),
                outcome=Outcome.FOUND,
            )
    return _unchanged(known, outcome=Outcome.FOUND, needs_detail=True)
