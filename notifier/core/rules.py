"""The rules engine: from a change (or the passing of time) to the notifications to create, as data."""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from notifier.core.diff import AnomalyKind, Change, Transition
from notifier.core.eta import Lateness, lane_of
from notifier.core.messages import Template
from notifier.core.model import TrackingEvent
from notifier.core.retention import HoldingPeriod, holding_period
from notifier.core.stages import Stage

OPERATOR = "operator"
CUSTOMER = "customer"


class Baseline(enum.StrEnum):
    """What the first sight of a shipment announces."""

    CURRENT = "current"  # at most the current stage
    NONE = "none"  # nothing: only later changes are news
    ALL = "all"  # every stage passed so far (noisy; for shops that add numbers right after posting)


class MultiStage(enum.StrEnum):
    """What to send when several stages pass between two polls."""

    LATEST = "latest"  # one message for the newest stage, listing the ones passed on the way
    EACH = "each"  # one message per stage, in order


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """Send `template` to the shipment's subscribers when it enters one of `stages`.

    Optional filters narrow a rule: item types (as Japan Post prints them, case-insensitive),
    destination countries (ISO codes), and tags (any one of them must be on the watch).
    """

    name: str
    template: Template
    stages: frozenset[Stage]
    enabled: bool = True
    item_types: frozenset[str] = frozenset()
    destinations: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    min_days_in_stage: float | None = None

    def matches(self, stage: Stage, shipment: ShipmentFacts) -> bool:
        if not self.enabled or stage not in self.stages:
            return False
        if self.item_types and (shipment.item_type or "").strip().casefold() not in self.item_types:
            return False
        if self.destinations and (shipment.destination or "").upper() not in self.destinations:
            return False
        return not (self.tags and not self.tags & shipment.tags)


@dataclass(frozen=True, slots=True, kw_only=True)
class StallRule:
    """No new event for `after` while in a stage: tell the customer, and whether that is normal."""

    after: dt.timedelta
    normal: bool


# Silence is expected in some stages (an EMS in the air, a parcel in customs) and alarming in
# others (out for delivery for two days). The thresholds follow the seed FAQs and the
# tracker survey: customers are told about silence once, with the right tone.
DEFAULT_STALLS: Mapping[Stage, StallRule] = {
    Stage.ACCEPTED: StallRule(after=dt.timedelta(days=7), normal=False),
    Stage.IN_TRANSIT: StallRule(after=dt.timedelta(days=5), normal=False),
    Stage.OUTWARD_EXCHANGE: StallRule(after=dt.timedelta(days=7), normal=False),
    Stage.DEPARTED_ORIGIN: StallRule(after=dt.timedelta(days=10), normal=True),
    Stage.INWARD_EXCHANGE: StallRule(after=dt.timedelta(days=7), normal=True),
    Stage.CUSTOMS_PRESENTED: StallRule(after=dt.timedelta(days=7), normal=True),
    Stage.CUSTOMS_CLEARED: StallRule(after=dt.timedelta(days=7), normal=False),
    Stage.INLAND_TRANSIT: StallRule(after=dt.timedelta(days=7), normal=False),
    Stage.AT_DELIVERY_OFFICE: StallRule(after=dt.timedelta(days=4), normal=False),
    Stage.OUT_FOR_DELIVERY: StallRule(after=dt.timedelta(days=2), normal=False),
}


# While the parcel is still in Japan only the sender can ask Japan Post about it, so the stall
# message promises that the shop will ("We will ask Japan Post about it", 「当店から日本郵便に確認
# いたします」): the stages of the templates' `in_japan()`. Such a stall is an operator alert too.
SHOP_FOLLOWS_UP: frozenset[Stage] = frozenset(
    {Stage.PENDING, Stage.ACCEPTED, Stage.IN_TRANSIT, Stage.OUTWARD_EXCHANGE}
)
STALL_ALERT = "stalled_in_japan"
# A stall judged by the lane's history (quieter than 9 in 10 of its parcels were in this stage).
RUNNING_LATE_ALERT = "running_late"


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorAlert:
    """An alert to raise with the messages it belongs to (kind and subject as `Store.raise_alert`)."""

    kind: str
    subject: str
    message: str


def _rule(stage: Stage, template: Template | None = None, enabled: bool = True) -> Rule:
    return Rule(
        name=str(stage), template=template or Template(str(stage)), stages=frozenset({stage}), enabled=enabled
    )


# Names equal the stage they announce, so `[[rule]] name = "delivered"` overrides that default.
# `accepted` and `at_delivery_office` are off: shops send their own shipping confirmation, and
# "at the delivery office" is rarely news a day before "out for delivery".
DEFAULT_RULES: tuple[Rule, ...] = (
    _rule(Stage.ACCEPTED, enabled=False),
    _rule(Stage.DEPARTED_ORIGIN),
    _rule(Stage.INWARD_EXCHANGE),
    _rule(Stage.CUSTOMS_PRESENTED),
    _rule(Stage.CUSTOMS_CLEARED),
    _rule(Stage.AT_DELIVERY_OFFICE, enabled=False),
    _rule(Stage.OUT_FOR_DELIVERY),
    _rule(Stage.ATTEMPTED_DELIVERY),
    _rule(Stage.RETENTION),
    _rule(Stage.READY_FOR_PICKUP),
    _rule(Stage.DELIVERED),
    _rule(Stage.RETURNING),
    _rule(Stage.RETURNED),
    _rule(Stage.INVESTIGATION),
)


# News that goes at once, whatever `settle` says: the parcel is at the door or was, the customer
# has to act (be in, arrange a redelivery, collect it, answer the post office about the address),
# or it will not arrive (on its way back, back). Each could be out of date within hours if it
# waited; the in-transit news before them never calls for anything but patience.
URGENT_STAGES: frozenset[Stage] = frozenset(
    {
        Stage.OUT_FOR_DELIVERY,
        Stage.ATTEMPTED_DELIVERY,
        Stage.RETENTION,
        Stage.READY_FOR_PICKUP,
        Stage.DELIVERED,
        Stage.RETURNING,
        Stage.RETURNED,
        Stage.INVESTIGATION,
    }
)
# The messages that ask the customer to arrange a redelivery or a collection.
REDELIVERY_REQUESTS: frozenset[Stage] = frozenset({Stage.ATTEMPTED_DELIVERY, Stage.RETENTION})
# How long before a waiting message goes its shipment is polled once more (poll_again_by).
LOOK_BEFORE_SENDING = dt.timedelta(minutes=10)


@dataclass(frozen=True, slots=True, kw_only=True)
class RulesConfig:
    rules: tuple[Rule, ...] = DEFAULT_RULES
    baseline: Baseline = Baseline.CURRENT
    multi_stage: MultiStage = MultiStage.LATEST
    max_event_age: dt.timedelta = dt.timedelta(days=14)
    # Non-urgent news waits this long for the next scan, which replaces it (see send_after).
    settle: dt.timedelta = dt.timedelta(hours=6)
    stalls: Mapping[Stage, StallRule] = field(default_factory=lambda: dict(DEFAULT_STALLS))
    # The holding period comes from Japan Post's rule at home and the country table abroad
    # (notifier.core.retention); this is the operator's own figure for parcels abroad the table
    # has none for: it times the reminder only, and no message states it. None: no reminder then.
    retention_hold: dt.timedelta | None = None
    retention_remind_before: dt.timedelta = dt.timedelta(days=2)
    pending_alert_after: dt.timedelta = dt.timedelta(days=7)


@dataclass(frozen=True, slots=True, kw_only=True)
class ShipmentFacts:
    id: int
    number: str
    label: str = ""
    item_type: str | None = None
    origin: str = "JP"
    destination: str | None = None
    tags: frozenset[str] = frozenset()
    stage: Stage = Stage.PENDING
    stage_entered_at: dt.datetime | None = None
    last_changed_at: dt.datetime | None = None
    last_event_key: str | None = None
    created_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Recipient:
    subscription_id: int
    email: str
    locale: str = "en"
    time_zone: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    """A message to create. `dedup_key` can exist only once, ever: the outbox enforces it."""

    dedup_key: str
    template: Template
    rule: str
    stage: Stage
    recipient: Recipient
    event: TrackingEvent | None = None
    passed: tuple[TrackingEvent, ...] = ()
    stalled_days: int | None = None
    stall_is_normal: bool | None = None
    # Set when the stall was judged by the lane's history rather than the fixed day count.
    lateness: Lateness | None = None
    retention_deadline: dt.date | None = None
    # The destination's holding period when a source gives it (None: the messages state none).
    holding: HoldingPeriod | None = None


def dedup_key(recipient: Recipient, shipment: ShipmentFacts, rule: str, entry: str) -> str:
    """Subscription, shipment, rule and this entry into the stage (the key of the event that
    entered it): a replayed poll or a restarted daemon can never create a second copy."""
    return f"{recipient.subscription_id}:{shipment.id}:{rule}:{entry}"


def _too_old(event: TrackingEvent, now: dt.datetime, max_age: dt.timedelta) -> bool:
    aware = event.when.aware()
    if aware is not None:
        return now - aware > max_age
    # Abroad the page gives a wall time without a zone; a day's slack covers any zone.
    return now.date() - event.when.date > max_age + dt.timedelta(days=1)


def _first_rule(rules: Sequence[Rule], stage: Stage, shipment: ShipmentFacts) -> Rule | None:
    # Operators' rules come after the defaults they override; a later rule with the same name
    # replaces the default, and for one stage the last matching rule wins.
    chosen = None
    for rule in rules:
        if rule.matches(stage, shipment):
            chosen = rule
    return chosen


def announces(config: RulesConfig, stage: Stage, shipment: ShipmentFacts) -> bool:
    """Whether a rule sends a message when this shipment enters `stage`."""
    return _first_rule(config.rules, stage, shipment) is not None


def merge_rules(defaults: Iterable[Rule], overrides: Iterable[Rule]) -> tuple[Rule, ...]:
    """Operator rules replace defaults of the same name; new names are added after them."""
    by_name = {rule.name: rule for rule in defaults}
    for rule in overrides:
        by_name[rule.name] = rule
    return tuple(by_name.values())


def old_news(change: Change, shipment: ShipmentFacts, config: RulesConfig, now: dt.datetime) -> int:
    """How many of the change's stage entries a rule would announce but are older than
    `max_event_age`: old news, never sent, and worth saying so in the poll's log line."""
    return sum(
        1
        for t in change.transitions
        if _first_rule(config.rules, t.to_stage, shipment) is not None
        and _too_old(t.event, now, config.max_event_age)
    )


def notifications_for_change(
    change: Change,
    shipment: ShipmentFacts,
    recipients: Sequence[Recipient],
    config: RulesConfig,
    now: dt.datetime,
) -> list[Notification]:
    """The customer messages a poll's change calls for.

    Nothing is sent for a change that moved the shipment backwards, for unknown wordings
    (the diff never makes them transitions) or for unreadable pages (no transitions): those
    are operator alerts, recorded by the store.
    """
    if not change.transitions or not recipients:
        return []
    if any(a.kind is AnomalyKind.STAGE_BACKWARDS for a in change.anomalies):
        return []
    # Once a parcel is on its way back, its exchange and transit scans are the return leg: "it has
    # arrived in your country" would be false. Only the return stages speak from then on.
    returning_from = next(
        (i for i, e in enumerate(change.history) if e.stage in (Stage.RETURNING, Stage.RETURNED)), None
    )
    positions = {e.key: i for i, e in enumerate(change.history)}
    candidates: list[tuple[Transition, Rule]] = []
    for transition in change.transitions:
        on_return_leg = returning_from is not None and positions.get(transition.event.key, 0) > returning_from
        if on_return_leg and transition.to_stage not in (Stage.RETURNING, Stage.RETURNED):
            continue
        # "each" promises a message per stage; "latest" lets a repeated request go.
        merging = config.settle and config.multi_stage is MultiStage.LATEST
        if merging and _asked_already(change, transition, shipment, config, now):
            continue
        rule = _first_rule(config.rules, transition.to_stage, shipment)
        if rule is not None and not _too_old(transition.event, now, config.max_event_age):
            candidates.append((transition, rule))
    if not candidates:
        return []
    if change.first_sight:
        if config.baseline is Baseline.NONE:
            return []
        if config.baseline is Baseline.CURRENT:
            latest = candidates[-1]
            # Only if the announced stage is still the current one: a first sight that already
            # passed it has nothing current to say about it.
            candidates = [latest] if latest[0].to_stage is change.current_stage else []
    if config.multi_stage is MultiStage.LATEST and len(candidates) > 1:
        passed = tuple(t.event for t, _ in candidates[:-1])
        chosen = [(candidates[-1], passed)]
    else:
        chosen = [(candidate, ()) for candidate in candidates]
    out = []
    holding = holding_of(shipment)
    for (transition, rule), passed_events in chosen:
        held = transition.to_stage is Stage.RETENTION
        for recipient in recipients:
            out.append(
                Notification(
                    dedup_key=dedup_key(recipient, shipment, rule.name, transition.event.key),
                    template=rule.template,
                    rule=rule.name,
                    stage=transition.to_stage,
                    recipient=recipient,
                    event=transition.event,
                    passed=passed_events,
                    retention_deadline=retention_deadline(transition.event, holding) if held else None,
                    holding=holding if held else None,
                )
            )
    return out


def _asked_already(
    change: Change, transition: Transition, shipment: ShipmentFacts, config: RulesConfig, now: dt.datetime
) -> bool:
    """Whether an earlier poll's message already asked for a redelivery after the same delivery
    attempt (no new "out for delivery" since): a second request says nothing new ("held at the
    post office" after "taken back to the post office"), and the retention reminder still comes
    before the parcel would be sent back. `settle = "0s"` or `multi_stage = "each"` sends it."""
    if transition.to_stage not in REDELIVERY_REQUESTS:
        return False
    announced_now = {t.event.key for t in change.transitions}
    keys = [event.key for event in change.history]
    before = keys.index(transition.event.key) if transition.event.key in keys else 0
    for event in reversed(change.history[:before]):
        if event.stage is Stage.OUT_FOR_DELIVERY or event.stage is Stage.DELIVERED:
            return False
        if (
            event.stage in REDELIVERY_REQUESTS
            and event.key not in announced_now
            and _first_rule(config.rules, event.stage, shipment) is not None
            and not _too_old(event, now, config.max_event_age)
        ):
            return True
    return False


def send_after(notification: Notification, config: RulesConfig, now: dt.datetime) -> dt.datetime:
    """When a message about a scan may go: at once for urgent news (URGENT_STAGES), else after
    `settle`, so that the next scan's message, if one comes, replaces it (`multi_stage =
    "latest"` supersedes what still waits) and the customer gets one message where there were
    several. With `multi_stage = "each"` every stage is promised its own message: nothing waits."""
    if notification.stage in URGENT_STAGES or config.multi_stage is not MultiStage.LATEST:
        return now
    return now + config.settle


def poll_again_by(next_poll: dt.datetime | None, waiting_until: dt.datetime | None) -> dt.datetime | None:
    """A message that waits for the next scan needs a look at the page before it goes: the next
    poll, brought forward to a little before the message's time if it would come later."""
    if next_poll is None or waiting_until is None:
        return next_poll
    return min(next_poll, waiting_until - LOOK_BEFORE_SENDING)


def holding_of(shipment: ShipmentFacts) -> HoldingPeriod | None:
    """The holding period a source gives for this shipment's destination and class, if any."""
    return holding_period(
        number=shipment.number,
        item_type=shipment.item_type,
        origin=shipment.origin,
        destination=shipment.destination,
    )


def retention_deadline(event: TrackingEvent, holding: HoldingPeriod | None) -> dt.date | None:
    """When the post office sends a held parcel back, counted from the day it was held; None
    when no source gives the period."""
    return holding.until(event.when.date) if holding is not None else None


def notifications_for_time(
    shipment: ShipmentFacts,
    latest: TrackingEvent | None,
    recipients: Sequence[Recipient],
    config: RulesConfig,
    now: dt.datetime,
    lateness: Lateness | None = None,
) -> list[Notification]:
    """Messages due because time passed: a stall in the current stage, or a retention reminder.

    `latest` is the event that entered the current stage; its key makes each message once per
    entry into the stage, however often this runs. `lateness` is the time model's judgement
    (notifier.core.eta.lateness, computed by the pipeline): where the lane has history for this
    stage it decides (a stall is quieter than the lane's p90), earlier or later than the stage's
    fixed day count; the fixed count stays the rule where it has none (None, or no p90). An
    operator's `off` for a stage silences both. Both judgements share the rule name and so the
    dedup key: a parcel that was told by one is never told again by the other.
    """
    if latest is None or not recipients:
        return []
    out: list[Notification] = []
    stall = config.stalls.get(shipment.stage)
    stalled = _stalled(shipment, config, now, lateness)
    if stall is not None and stalled is not None:
        days, late = stalled
        for recipient in recipients:
            out.append(
                Notification(
                    dedup_key=dedup_key(recipient, shipment, f"stalled:{shipment.stage}", latest.key),
                    template=Template.STALLED,
                    rule=f"stalled:{shipment.stage}",
                    stage=shipment.stage,
                    recipient=recipient,
                    event=latest,
                    stalled_days=days,
                    # Quieter than 9 in 10 of the lane's parcels is never "normal" silence.
                    stall_is_normal=stall.normal and late is None,
                    lateness=late,
                )
            )
    if shipment.stage is Stage.RETENTION:
        holding = holding_of(shipment)
        deadline = retention_deadline(latest, holding)
        if deadline is None and config.retention_hold is not None:
            deadline = latest.when.date + config.retention_hold
        remind_on = None if deadline is None else deadline - config.retention_remind_before
        if deadline is not None and remind_on is not None and remind_on <= now.date() <= deadline:
            for recipient in recipients:
                out.append(
                    Notification(
                        dedup_key=dedup_key(recipient, shipment, "retention_reminder", latest.key),
                        template=Template.RETENTION_REMINDER,
                        rule="retention_reminder",
                        stage=Stage.RETENTION,
                        recipient=recipient,
                        event=latest,
                        retention_deadline=deadline,
                        holding=holding,
                    )
                )
    return out


def recipient_zone(own: str | None, destination: str | None, countries: Mapping[str, str]) -> str | None:
    """The zone a recipient's quiet hours follow: their own, else their parcel's destination
    country's (`countries`, see notifier.core.zones); None leaves it to the shop's default_time_zone,
    applied when sending (a domestic parcel has no destination)."""
    return own or countries.get((destination or "").upper()) or None


def stall_alert(shipment: ShipmentFacts, notifications: Sequence[Notification]) -> OperatorAlert | None:
    """The operator alert owed for these time-based messages: a stall whose email tells the
    customer that the shop will ask Japan Post (see SHOP_FOLLOWS_UP); None for silences that
    are normal or that only the destination's post office can explain."""
    promised = [n for n in notifications if n.template is Template.STALLED and n.stage in SHOP_FOLLOWS_UP]
    if not promised:
        return None
    first = promised[0]
    days = f"{first.stalled_days} day{'' if first.stalled_days == 1 else 's'}"
    told = len({n.recipient.subscription_id for n in promised})
    label = f" ({shipment.label})" if shipment.label else ""
    return OperatorAlert(
        kind=STALL_ALERT,
        subject=shipment.number,
        message=(
            f"{shipment.number}{label} has had no new scan for {days} while still "
            f"in Japan (stage: {first.stage}). {told} customer(s) were told that the shop will ask "
            "Japan Post about it: please make that inquiry. This alert closes when the parcel moves."
        ),
    )


def running_late_alert(
    shipment: ShipmentFacts, notifications: Sequence[Notification]
) -> OperatorAlert | None:
    """The operator alert owed for a stall judged by the lane's history: how unusual it is, in
    figures; None when no such stall message is among these."""
    judged = [n for n in notifications if n.template is Template.STALLED and n.lateness is not None]
    if not judged:
        return None
    first = judged[0]
    late = first.lateness
    assert late is not None
    assert late.lane_p90 is not None
    lane = lane_of(
        number=shipment.number,
        item_type=shipment.item_type,
        origin=shipment.origin,
        destination=shipment.destination,
    )
    told = len({n.recipient.subscription_id for n in judged})
    label = f" ({shipment.label})" if shipment.label else ""
    quicker = (
        f"; {late.quicker_out_of_ten} in 10 of them moved on sooner than this parcel has waited"
        if late.quicker_out_of_ten is not None
        else ""
    )
    return OperatorAlert(
        kind=RUNNING_LATE_ALERT,
        subject=shipment.number,
        message=(
            f"{shipment.number}{label} is running late for its route: no new scan for "
            f"{days_text(late.quiet)} in {late.stage}, where 9 in 10 parcels on lane {lane} moved on "
            f"within {days_text(late.lane_p90)}{quicker}. {told} customer(s) were told. "
            "This alert closes when the parcel moves."
        ),
    )


def days_text(span: dt.timedelta) -> str:
    """A duration in days for an operator: one decimal below ten days, whole days above."""
    days = span / dt.timedelta(days=1)
    shown = f"{days:.1f}" if days < 10 else f"{days:.0f}"
    return f"{shown} day{'' if shown == '1.0' else 's'}"


def within_days(span: dt.timedelta) -> int:
    """The whole days a customer is told "within": rounded up, so the sentence stays true."""
    return max(1, math.ceil(span / dt.timedelta(days=1) - 1e-9))


def quiet_until(
    now: dt.datetime, time_zone: str | None, window: tuple[dt.time, dt.time] | None
) -> dt.datetime | None:
    """When quiet hours in the recipient's zone end, if `now` falls inside them; else None.

    Quiet hours defer a message, never drop it. A window may cross midnight (21:00-08:00).
    """
    if window is None:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        zone = ZoneInfo(time_zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        # A zone that slipped past validation must not jam the outbox: fall back to UTC.
        zone = ZoneInfo("UTC")
    local = now.astimezone(zone)
    start, end = window
    clock = local.time().replace(tzinfo=None)
    inside = start <= clock < end if start < end else clock >= start or clock < end
    if not inside:
        return None
    end_day = local.date() if clock < end else local.date() + dt.timedelta(days=1)
    return dt.datetime.combine(end_day, end, tzinfo=zone).astimezone(dt.UTC)


def _stalled(
    shipment: ShipmentFacts, config: RulesConfig, now: dt.datetime, lateness: Lateness | None
) -> tuple[int, Lateness | None] | None:
    """Whole days of silence and the lane's verdict when it decided, if the shipment is stalled.

    Where the lane can judge the stage (a Lateness with a p90, about the current stage) it
    decides; else the stage's fixed day count. A stage switched off is never stalled."""
    stall = config.stalls.get(shipment.stage)
    quiet_since = shipment.last_changed_at or shipment.stage_entered_at
    if stall is None or quiet_since is None:
        return None
    judged = lateness if lateness is not None and lateness.lane_p90 is not None else None
    if judged is not None and judged.stage is not shipment.stage:
        judged = None  # judged on an older view of the shipment
    if judged is not None:
        # Judged by the lane, the quiet counts from the scan itself, as the operator's alert says.
        return (int(judged.quiet / dt.timedelta(days=1)), judged) if judged.late else None
    if now - quiet_since < stall.after:
        return None
    return int((now - quiet_since) / dt.timedelta(days=1)), None


def stall_days(
    shipment: ShipmentFacts, config: RulesConfig, now: dt.datetime, lateness: Lateness | None = None
) -> int | None:
    """Whole days a shipment has been silent when it is stalled (the same test
    notifications_for_time applies, with the lane's verdict when given), else None: for the
    operator's digest."""
    stalled = _stalled(shipment, config, now, lateness)
    return None if stalled is None else stalled[0]
