"""One poll of one shipment: fetch, parse, diff, record. The only module that joins the shells.

The invariant every path here keeps: **every stored transition has had its rules evaluated, in
the same transaction.** A poll's events, its stage and the messages its transitions call for
(or the decision that they call for none) are committed together by `Store.record_poll`, so
no later poll can see those events as new and nothing decides them afterwards. The kill
switch (`Notifier.paused`) never skips that decision: what is learnt while it is on is queued
`held` and becomes `pending` when it lifts (`Store.release_held`). Pages that cannot be read
store nothing; a list page only asks for the detail page and never stores a transition;
time-based messages (`queue_timed`) are not stored transitions and are simply evaluated again
once the switch is off, keyed so that each goes out at most once.

A change announced to a customer of another language than the polled one fetches that
language's detail page once, here, before the commit (`other_wording`); if it fails, only the
wording of the messages changes (the English page's, flagged), never what is recorded or decided.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from notifier import hints
from notifier.core.compose import POLL_LOCALE as POLL_LOCALE
from notifier.core.compose import (
    MailSettings,
    digest_context,
    display_number,
    draft_or_failure,
    drafts_for,
    shown_window,
)
from notifier.core.diff import Change, diff_detail
from notifier.core.eta import Estimate, Journey, LaneStats, Lateness, Scan, lane_of, lateness
from notifier.core.localize import PageWording, pair_events, wording_json
from notifier.core.messages import DigestLine, StallLine
from notifier.core.model import ItemResult, Layout, Locale, TrackingEvent
from notifier.core.render import Renderer
from notifier.core.rules import (
    RUNNING_LATE_ALERT,
    STALL_ALERT,
    MultiStage,
    Notification,
    Recipient,
    RulesConfig,
    ShipmentFacts,
    announces,
    notifications_for_change,
    notifications_for_time,
    old_news,
    poll_again_by,
    running_late_alert,
    send_after,
    stall_alert,
    stall_days,
)
from notifier.core.stages import Stage
from notifier.core.views import OutboxDraft, PageCapture, ShipmentView
from notifier.core.windows import WindowSettings
from notifier.core.zones import country_zones
from notifier.errors import FetchError, TransientFetchError
from notifier.net.japanpost import JapanPostClient
from notifier.pipeline.estimates import Estimator
from notifier.pipeline.faults import crashpoint
from notifier.pipeline.lanes import LaneCache
from notifier.store import Store

# Pinned to the pre-package name: operators filter journald on `notifier.poll` (see the README).
logger = logging.getLogger("notifier.poll")

# Identity of events includes the status wording, so every poll of a shipment must read the
# same language: English, the language the genuine captures and most status lists are in.
# A customer of another language reads that language's page, fetched only for their messages.
# POLL_LOCALE (English) is defined in compose, which decides per message whose wording it quotes.


# Given the stage after the poll, whether it changed, and whether it failed: when to poll next.
Scheduler = Callable[[Stage, bool, bool], dt.datetime | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class PollResult:
    number: str
    change: Change | None = None
    error: str | None = None
    failures: int = 0
    queued: int = 0
    held: bool = False
    retry_after: float | None = None
    # Detail pages fetched in another language for this poll's messages (see other_wording).
    wording_requests: int = 0


@dataclass(slots=True, kw_only=True)
class Notifier:
    """What turns changes into queued messages: the rules, the sender's identity, the templates."""

    rules: RulesConfig
    mail: MailSettings
    renderer: Renderer
    # Pages are unreadable site-wide (the daemon's kill switch): customer mail decided now is
    # held, not sent, until pages read again; time-based mail waits. Nothing is dropped.
    paused: bool = False
    # The lanes' history, for stalls judged against the route (None: the fixed day counts only).
    lanes: LaneCache | None = None
    # [estimates]: None sends no delivery windows (tests, previews without a model).
    windows: WindowSettings | None = None
    # Built at the first message, over the store it polls into (see `estimate_for`).
    estimator: Estimator | None = None


async def estimate_for(
    store: Store,
    notifier: Notifier,
    shipment: ShipmentFacts,
    history: Sequence[TrackingEvent],
    now: dt.datetime,
) -> Estimate | None:
    """The parcel's delivery estimate for the messages composed now; None without [estimates]."""
    if notifier.windows is None:
        return None
    if notifier.estimator is None:
        # One cache of the lanes' statistics for stalls and windows alike.
        notifier.estimator = Estimator(store, notifier.windows, lanes=notifier.lanes)
    return await notifier.estimator.estimate(
        number=shipment.number,
        item_type=shipment.item_type,
        origin=shipment.origin,
        destination=shipment.destination,
        history=history,
        now=now,
    )


def facts(view: ShipmentView, item: ItemResult | None = None) -> ShipmentFacts:
    return ShipmentFacts(
        id=view.id,
        number=view.number,
        label=view.label,
        item_type=(item.item_type if item is not None and item.item_type else view.item_type),
        origin=view.origin,
        destination=view.destination,
        tags=view.tags,
        stage=view.stage,
        stage_entered_at=view.stage_entered_at,
        last_changed_at=view.last_changed_at,
        created_at=view.created_at,
    )


async def recipients_of(store: Store, shipment_id: int) -> list[Recipient]:
    return [
        Recipient(subscription_id=sid, email=email, locale=locale, time_zone=zone)
        for sid, email, locale, zone in await store.recipients(shipment_id)
    ]


async def poll_detail(
    store: Store,
    client: JapanPostClient,
    shipment: ShipmentView,
    *,
    now: dt.datetime,
    next_poll_at: dt.datetime | Scheduler | None,
    owner: str | None = None,
    notifier: Notifier,
) -> PollResult:
    """Fetch one shipment's detail page and commit what changed, with the messages it calls
    for, in one transaction (held while `notifier.paused`)."""
    stored = await store.history(shipment.id)
    try:
        fetched = await client.fetch_detail(shipment.number, POLL_LOCALE)
    except FetchError as exc:
        retry = next_poll_at(shipment.stage, False, True) if callable(next_poll_at) else next_poll_at
        failures = await store.record_failure(
            shipment.id, error=str(exc), now=now, next_poll_at=retry, owner=owner
        )
        logger.warning(
            "poll failed",
            extra={
                "action": "poll_failed",
                "number": shipment.number,
                "error": str(exc),
                "failures": failures,
            },
        )
        retry_after = exc.retry_after if isinstance(exc, TransientFetchError) else None
        return PollResult(number=shipment.number, error=str(exc), failures=failures, retry_after=retry_after)
    page = fetched.page
    change = diff_detail(stored, page, shipment.number)
    item = page.item(shipment.number)
    outbox: list[OutboxDraft] = []
    held = notifier.paused
    wording_requests = 0
    wordings: dict[str, PageWording] = {}
    estimated: Estimate | None = None
    window = None
    if change.transitions:
        recipients = await recipients_of(store, shipment.id)
        shipment_facts = facts(shipment, item)
        notifications = notifications_for_change(change, shipment_facts, recipients, notifier.rules, now)
        contacts = item.offices if item is not None and item.offices else await store.contacts(shipment.id)
        waiting: dict[int, tuple[str, ...]] = {}
        names: dict[int, str] = {}
        if notifications:
            # Only now, and once per change, is the customer's language's page worth a request.
            wanted = {n.recipient.locale for n in notifications} if item is not None else set()
            locales = sorted(wanted - {str(POLL_LOCALE)})
            for locale in locales:
                wording_requests += 1
                found = await other_wording(client, shipment.number, item, locale)
                if found is not None:
                    wordings[locale] = found
            waiting = await store.waiting_stages(shipment.id)
            names = await store.subscription_names(shipment.id)
            if notifier.rules.multi_stage is MultiStage.LATEST:
                notifications = with_superseded(
                    notifications, waiting, change.history, shipment_facts, notifier.rules
                )
            estimated = await estimate_for(store, notifier, shipment_facts, change.history, now)
            window = shown_window(notifications, shipment_facts, estimated, notifier.windows, now=now)
        outbox = drafts_for(
            notifications,
            shipment_facts,
            change.history,
            contacts,
            mail=notifier.mail,
            renderer=notifier.renderer,
            now=now,
            wordings=wordings,
            waiting=waiting,
            names=names,
            # "latest": the customer hears where the parcel is now, so what still waits for them
            # is replaced; "each" promises a message per stage, so nothing is.
            supersede=notifier.rules.multi_stage is MultiStage.LATEST,
            estimate=estimated,
            windows=notifier.windows,
        )
        # Non-urgent news waits for the next scan, which supersedes it (see rules.send_after).
        due = {n.dedup_key: send_after(n, notifier.rules, now) for n in notifications}
        outbox = [dataclasses.replace(d, not_before=due.get(d.dedup_key)) for d in outbox]
    if callable(next_poll_at):
        unreadable = page.layout is Layout.UNRECOGNIZED
        next_poll_at = next_poll_at(change.current_stage, change.changed, unreadable)
    waiting_until = max((d.not_before for d in outbox if d.not_before and d.not_before > now), default=None)
    next_poll_at = poll_again_by(next_poll_at, waiting_until)
    crashpoint("poll:before-commit")
    await store.record_poll(
        shipment.id,
        change=change,
        item=item,
        now=now,
        next_poll_at=next_poll_at,
        capture=PageCapture(body=fetched.body, url=fetched.url, layout=str(page.layout), note=page.reason),
        owner=owner,
        outbox=outbox,
        held=held,
        # The parcel moved: the shop's promised inquiry into its silence is no longer needed.
        closes=(STALL_ALERT, RUNNING_LATE_ALERT),
    )
    crashpoint("poll:after-commit")
    if window is not None and outbox:
        # After the commit: a crash here loses only this sample of our accuracy, never a message.
        await store.record_window(shipment.id, window, now=now)
    # For the tracking page: the same words the messages just quoted (a crash before this
    # write only leaves the page on the English wording, which it then says).
    await store.save_wordings(shipment.id, {k: wording_json(w) for k, w in wordings.items()}, now=now)
    if change.transitions and not outbox:
        stale = old_news(change, facts(shipment, item), notifier.rules, now)
        if stale:
            # Else an operator trying old journeys (the simulator's) sees only queued=0.
            # Raising max_event_age afterwards announces nothing: the changes are recorded now.
            logger.info(
                "poll number=%s: %d stage change(s) not announced: older than max_event_age (%s); "
                "they are recorded, so raising it later does not announce them: to start a trial "
                "over, %s (and `notifier simulator --now` dates its journeys to this week)",
                shipment.number,
                stale,
                notifier.rules.max_event_age,
                hints.command("db reset --yes --discard-data"),
                extra={"action": "old_news", "number": shipment.number},
            )
    # One line per poll, key=value, for journald and grep.
    logger.info(
        "poll number=%s layout=%s new_events=%d stage=%s queued=%d%s anomalies=%s",
        shipment.number,
        page.layout,
        len(change.new_events),
        change.current_stage,
        len(outbox),
        " (held: mail paused)" if held and outbox else "",
        ",".join(str(a.kind) for a in change.anomalies) or "-",
        extra={"action": "poll_done", "number": shipment.number},
    )
    error = page.reason if page.layout is Layout.UNRECOGNIZED else None
    return PollResult(
        number=shipment.number,
        change=change,
        error=error,
        # An unreadable page counts as a failed poll (Store.record_poll).
        failures=shipment.consecutive_failures + 1 if error else 0,
        queued=len(outbox),
        held=held and bool(outbox),
        wording_requests=wording_requests,
    )


def with_superseded(
    notifications: Sequence[Notification],
    waiting: Mapping[int, Sequence[str]],
    history: Sequence[TrackingEvent],
    shipment: ShipmentFacts,
    rules: RulesConfig,
) -> list[Notification]:
    """Each message with the scans of the messages it supersedes among those it lists as passed
    ("Since our last message"): a message that replaces news still waiting (the settle window,
    quiet hours) tells all of it, not only this poll's part. From the entry into the oldest
    superseded stage on, each entry into a stage a rule announces, in the history's order."""
    out = []
    keys = [e.key for e in history]
    for n in notifications:
        stages = {s for s in waiting.get(n.recipient.subscription_id, ()) if s != str(n.stage)}
        if not stages or n.event is None or n.event.key not in keys:
            out.append(n)
            continue
        upto = keys.index(n.event.key)
        entries = [
            (i, e) for i, e in enumerate(history[:upto]) if i == 0 or history[i - 1].stage is not e.stage
        ]
        # The latest entry into each superseded stage (an earlier run was told already).
        last_entry = {str(e.stage): i for i, e in entries if str(e.stage) in stages}
        first = min(last_entry.values(), default=upto)
        told = {e.key for e in n.passed}
        extra = [
            e for i, e in entries if i >= first and e.key not in told and announces(rules, e.stage, shipment)
        ]
        merged = sorted([*extra, *n.passed], key=lambda e: keys.index(e.key) if e.key in keys else upto)
        out.append(dataclasses.replace(n, passed=tuple(merged)))
    return out


async def other_wording(
    client: JapanPostClient, number: str, polled: ItemResult | Sequence[TrackingEvent] | None, locale: str
) -> PageWording | None:
    """The detail page in `locale`, paired with the polled page's events (or the stored
    history's); None (and a log line) when it cannot be had or paired: the messages then say so
    and quote the English page."""
    if polled is None:
        return None
    events = polled.events if isinstance(polled, ItemResult) else tuple(polled)
    try:
        fetched = await client.fetch_detail(number, Locale(locale))
    except FetchError as exc:
        reason = f"not fetched: {exc}"
    else:
        other = fetched.page.item(number) if fetched.page.layout is not Layout.UNRECOGNIZED else None
        wording = pair_events(events, other, locale)
        if wording is not None:
            return wording
        reason = "its events do not pair with the English page's" if other else "not readable"
    logger.warning(
        "the %s page of %s is %s; its messages quote the English page's wording",
        locale,
        number,
        reason,
        extra={"action": "wording_unavailable", "number": number, "locale": locale},
    )
    return None


async def queue_timed(
    store: Store, notifier: Notifier, *, now: dt.datetime, client: JapanPostClient | None = None
) -> int:
    """Queue the messages due because time passed (stalls, retention reminders); returns how many were new.

    With a `client`, a customer who reads another language than the polled page's gets Japan
    Post's wording from that language's page, fetched once per shipment and language, and only
    for a message about to be queued; without one (or if it cannot be had), the message says so
    and quotes the English page.

    Each is keyed to the current stage's entry, so running this often sends each at most once.
    While the kill switch is on, and for a shipment whose last poll failed, nothing is queued:
    silence we could not read is not the parcel's silence. The next run after a good poll
    evaluates them again, so they are deferred, not dropped.
    """
    if notifier.paused:
        return 0
    queued = 0
    subscribed = await store.subscribed_shipment_ids()
    stats = await notifier.lanes.stats(now) if notifier.lanes is not None else None
    for view in await store.shipments():
        # Only a stall or a hold can make time-based news, and only for someone listening.
        timed = view.stage in notifier.rules.stalls or view.stage is Stage.RETENTION
        if view.last_event_time is None or view.id not in subscribed or not timed:
            continue
        if view.consecutive_failures:
            continue
        shipment_facts = facts(view)
        history = await store.history(view.id)
        latest = _entering_event(history, view)
        recipients = await recipients_of(store, view.id)
        late = lateness_of(view, history, stats, now) if stats is not None else None
        notifications = notifications_for_time(
            shipment_facts, latest, recipients, notifier.rules, now, lateness=late
        )
        known = await store.known_dedup_keys([n.dedup_key for n in notifications])
        fresh = [n for n in notifications if n.dedup_key not in known]
        if not fresh:
            continue
        wordings: dict[str, PageWording] = {}
        if client is not None:
            for locale in sorted({n.recipient.locale for n in fresh} - {str(POLL_LOCALE)}):
                found = await other_wording(client, view.number, history, locale)
                if found is not None:
                    wordings[locale] = found
        estimated = await estimate_for(store, notifier, shipment_facts, history, now)
        drafts = drafts_for(
            fresh,
            shipment_facts,
            history,
            await store.contacts(view.id),
            mail=notifier.mail,
            renderer=notifier.renderer,
            now=now,
            names=await store.subscription_names(view.id),
            wordings=wordings,
            estimate=estimated,
            windows=notifier.windows,
        )
        alerts = [stall_alert(shipment_facts, fresh), running_late_alert(shipment_facts, fresh)]
        new = await store.enqueue(
            drafts, now=now, alerts=[a for a in alerts if a is not None], shipment_id=view.id
        )
        queued += new
        window = shown_window(fresh, shipment_facts, estimated, notifier.windows, now=now)
        if new and window is not None:
            await store.record_window(view.id, window, now=now)
        await store.save_wordings(view.id, {k: wording_json(w) for k, w in wordings.items()}, now=now)
    return queued


async def queue_operator_digest(store: Store, notifier: Notifier, operator: str, *, now: dt.datetime) -> int:
    """Once a day, one message to the operator listing open alerts, messages that failed for
    good, numbers still unknown to Japan Post long after they were added, and stalled parcels."""
    pending_after = notifier.rules.pending_alert_after
    for view in await store.shipments():
        if (
            view.stage is Stage.PENDING
            and view.created_at is not None
            and now - view.created_at >= pending_after
        ):
            days = int((now - view.created_at) / dt.timedelta(days=1))
            await store.raise_alert(
                "pending_too_long",
                f"{view.number} ({view.label or 'no label'}) is still unknown to Japan Post {days} days after it was added",
                now=now,
                subject=view.number,
                shipment_id=view.id,
            )
    lines = tuple(
        DigestLine(kind=alert.kind, subject=alert.subject, message=alert.message, count=alert.count)
        for alert in await store.alerts()
    )
    stalls: list[StallLine] = []
    stats = await notifier.lanes.stats(now) if notifier.lanes is not None else None
    for view in await store.shipments():
        late = None
        if stats is not None and view.stage in notifier.rules.stalls and view.last_event_time is not None:
            late = lateness_of(view, await store.history(view.id), stats, now)
        silent = stall_days(facts(view), notifier.rules, now, late)
        if silent is not None:
            number = display_number(view.number)
            stalls.append(StallLine(number=number, label=view.label, stage=view.stage.value, days=silent))
    if not lines and not stalls:
        return 0
    context = digest_context(lines, notifier.mail, stalls=sorted(stalls, key=lambda s: -s.days))
    message = draft_or_failure(
        context,
        renderer=notifier.renderer,
        mail=notifier.mail,
        recipient=operator,
        dedup_key=f"digest:{operator}:{now.date().isoformat()}",
        rule="operator_digest",
        now=now,
    )
    return await store.enqueue([message], now=now)


def lateness_of(
    view: ShipmentView, history: Sequence[TrackingEvent], stats: LaneStats, now: dt.datetime
) -> Lateness | None:
    """The time model's judgement of a shipment's silence against its lane (None: the lane cannot
    judge its stage; else `Lateness.late` says whether it is running late). Scans are wall times where they happened; `now` is read on the same
    clock: the last scan's zone when the page gives one (Japan), else the destination's."""
    scans = tuple(
        Scan(at=dt.datetime.combine(e.when.date, e.when.time or dt.time(0)), stage=e.stage) for e in history
    )
    if not scans:
        return None
    lane = lane_of(
        number=view.number, item_type=view.item_type, origin=view.origin, destination=view.destination
    )
    zone = history[-1].when.zone or country_zones().get((view.destination or "").upper())
    local = now
    if zone is not None:
        from zoneinfo import ZoneInfo

        local = now.astimezone(ZoneInfo(zone))
    journey = Journey(number=view.number, lane=lane, scans=scans)
    return lateness(journey, stats, now=local.replace(tzinfo=None))


def _entering_event(history: tuple[TrackingEvent, ...], view: ShipmentView) -> TrackingEvent | None:
    """The event by which the shipment entered its current stage (the first of the final run)."""
    entering = None
    for event in reversed(history):
        if event.stage is view.stage:
            entering = event
        elif entering is not None:
            break
    return entering
