"""One polling cycle: claim due shipments, batch latest-status requests, fetch details only for changes.

One shipment's failure never blocks another's: a poll that fails for a reason of its own (its
data, a bug) is rolled back alone, handed back with back-off, alerted once (deduplicated) and
the cycle goes on. Only an error recording that failure (the database itself) ends the cycle.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from notifier.core.diff import AnomalyKind, Change, diff_latest
from notifier.core.eta import LaneStats
from notifier.core.model import Layout
from notifier.core.policy import NextPoll, PollingPolicy, next_poll
from notifier.core.stages import Stage
from notifier.core.views import PageCapture, ShipmentView
from notifier.errors import FetchError, LeaseLostError, TransientFetchError
from notifier.net.japanpost import MAX_BATCH, Fetched, JapanPostClient
from notifier.pipeline.lanes import LaneCache, chance_of
from notifier.pipeline.poll import Notifier, PollResult, poll_detail
from notifier.store import Store
from notifier.store.dbenv import is_disk_full

logger = logging.getLogger(__name__)

# A poll that failed for a reason of its own is retried after this, doubling per failure up to
# the policy's cap, whatever the polling interval: a poison shipment must not spin.
ERROR_BACKOFF = dt.timedelta(minutes=1)


@dataclass(slots=True)
class CircuitBreaker:
    """After `threshold` failed requests in a row, stop asking Japan Post for a while.

    The pause doubles each time it opens again, up to `cap`; one success closes it.
    """

    threshold: int = 5
    base: dt.timedelta = dt.timedelta(minutes=1)
    cap: dt.timedelta = dt.timedelta(minutes=30)
    failures: int = 0
    opened: int = 0
    open_until: dt.datetime | None = None

    def allows(self, now: dt.datetime) -> bool:
        return self.open_until is None or now >= self.open_until

    def success(self) -> None:
        self.failures = 0
        self.opened = 0
        self.open_until = None

    def failure(self, now: dt.datetime, retry_after: float | None = None) -> None:
        self.failures += 1
        if self.failures >= self.threshold or retry_after is not None:
            pause = min(self.cap, self.base * 2**self.opened)
            if retry_after is not None:
                pause = max(pause, dt.timedelta(seconds=retry_after))
            self.open_until = now + pause
            self.opened += 1
            self.failures = 0

    @property
    def state(self) -> str:
        return "closed" if self.open_until is None else "open"


@dataclass(slots=True)
class CycleStats:
    claimed: int = 0
    list_requests: int = 0
    detail_requests: int = 0
    # Detail pages in the customers' other languages, fetched only for messages (poll.other_wording).
    wording_requests: int = 0
    changed: int = 0
    failed: int = 0
    queued: int = 0
    unrecognized: int = 0
    skipped_open_circuit: int = 0
    errors: int = 0
    lost_leases: int = 0
    held: int = 0
    released: int = 0
    handed_back_on_stop: int = 0
    gave_up: list[str] = field(default_factory=list)


def schedule(
    view: ShipmentView,
    stage: Stage,
    changed: bool,
    failed: bool,
    now: dt.datetime,
    policy: PollingPolicy,
    rng: random.Random,
    lanes: LaneStats | None = None,
) -> NextPoll:
    """The next poll after this one; with `lanes`, placed by the lane's history when it has any
    (a failed poll backs off on the fixed schedule)."""
    chance = chance_of(view, stage, changed, now, lanes) if lanes is not None and not failed else None
    return next_poll(
        stage=stage,
        now=now,
        created_at=view.created_at,
        last_changed_at=now if changed else view.last_changed_at,
        stage_entered_at=now if stage is not view.stage else view.stage_entered_at,
        consecutive_failures=view.consecutive_failures + 1 if failed else 0,
        policy=policy,
        rng=rng,
        chance=chance,
    )


async def adaptive_stats(
    lanes: LaneCache | None, policy: PollingPolicy, now: dt.datetime
) -> LaneStats | None:
    """The lanes' statistics when the policy places polls by them (rebuilt at most hourly)."""
    if lanes is None or not policy.adaptive.enabled or policy.fixed_interval is not None:
        return None
    return await lanes.stats(now)


async def run_cycle(
    store: Store,
    client: JapanPostClient,
    notifier: Notifier,
    *,
    owner: str,
    policy: PollingPolicy,
    breaker: CircuitBreaker,
    clock: Callable[[], dt.datetime],
    rng: random.Random,
    limit: int = 500,
    lease: dt.timedelta = dt.timedelta(minutes=10),
    stopping: Callable[[], bool] = lambda: False,
    due_within: dt.timedelta = dt.timedelta(0),
    lanes: LaneCache | None = None,
) -> CycleStats:
    """Poll everything due, politely: up to ten numbers per latest-status request, and the full
    detail page only for numbers whose latest status changed or that were never seen.

    `due_within` also takes what falls due that much later: the daemon passes its tick, the
    resolution of its polling, so a shipment due just after a tick is polled at it rather
    than a whole tick late.

    When `stopping()` turns true, no new request starts: what is not polled yet is handed back,
    still due, so a stop waits for one request at most, not for the rest of the cycle's pace.

    With `lanes`, polls are placed by the lanes' history (`[polling] adaptive`)."""
    stats = CycleStats()
    now = clock()
    if not breaker.allows(now):
        return stats
    history = await adaptive_stats(lanes, policy, now)
    due = await store.claim_due(owner=owner, now=now, limit=limit, lease=lease, due_by=now + due_within)
    stats.claimed = len(due)
    await poll_claimed(
        store,
        client,
        notifier,
        due,
        owner=owner,
        policy=policy,
        clock=clock,
        rng=rng,
        stats=stats,
        breaker=breaker,
        stopping=stopping,
        lanes=history,
    )
    return stats


# Told each shipment's outcome as it is settled: a `PollResult` with its change (and the
# messages queued), or its error; `failures` is set where the poll counted as a failed one.
Report = Callable[[ShipmentView, PollResult], None]


async def poll_claimed(
    store: Store,
    client: JapanPostClient,
    notifier: Notifier,
    claimed: Sequence[ShipmentView],
    *,
    owner: str,
    policy: PollingPolicy,
    clock: Callable[[], dt.datetime],
    rng: random.Random,
    stats: CycleStats,
    breaker: CircuitBreaker | None = None,
    stopping: Callable[[], bool] = lambda: False,
    list_fallback: bool = False,
    report: Report | None = None,
    lanes: LaneStats | None = None,
) -> None:
    """Poll shipments leased to `owner`: the cycle's work once it has claimed them, and the
    `poll` command's for the numbers it was given.

    `list_fallback`: a list page that cannot be had or read is not recorded as a failure of
    its ten numbers: each gets a detail request of its own instead, so each gets its own
    answer and failure count (the `poll` command, asked about these numbers by a person).
    Without a `breaker`, requests are never held back for the site's sake. `report` hears of
    every shipment polled; those handed back unpolled (a stop, an open circuit) it does not.
    With `lanes`, next polls are placed by the lanes' history (`[polling] adaptive`)."""
    history = lanes
    seen = [v for v in claimed if v.last_event_time is not None]
    needs_detail: list[ShipmentView] = [v for v in claimed if v.last_event_time is None]
    read_a_page = False

    for start in range(0, len(seen), MAX_BATCH):
        chunk = seen[start : start + MAX_BATCH]
        if stopping():
            stats.handed_back_on_stop += await _hand_back_on_stop(
                store, [*seen[start:], *needs_detail], owner, clock()
            )
            return
        now = clock()
        if breaker is not None and not breaker.allows(now):
            stats.skipped_open_circuit += await _hand_back(store, chunk, owner, now, breaker)
            continue
        try:
            fetched = await client.fetch_latest([v.number for v in chunk])
        except FetchError as exc:
            stats.list_requests += 1
            if list_fallback:
                needs_detail.extend(chunk)
                continue
            stats.failed += len(chunk)
            await _failed(store, chunk, str(exc), owner, clock(), policy, rng, report)
            if breaker is not None:
                breaker.failure(clock(), exc.retry_after if isinstance(exc, TransientFetchError) else None)
            continue
        stats.list_requests += 1
        page = fetched.page
        if page.layout is Layout.UNRECOGNIZED:
            if list_fallback:
                needs_detail.extend(chunk)
                continue
            stats.unrecognized += len(chunk)
            await _unrecognized(
                store, notifier, chunk, page.reason, fetched.body, owner, clock(), policy, rng, report
            )
            continue
        if breaker is not None:
            breaker.success()
        read_a_page = True
        await _resume(store, notifier, clock(), stats)
        recorded = await record_list_page(
            store,
            chunk,
            fetched,
            owner=owner,
            policy=policy,
            clock=clock,
            rng=rng,
            stats=stats,
            lanes=history,
        )
        needs_detail.extend(recorded.needs_detail)
        if report is not None:
            for view, change in recorded.recorded:
                report(view, PollResult(number=view.number, change=change))
            for view, error in recorded.failed:
                report(view, PollResult(number=view.number, error=error))

    for index, view in enumerate(needs_detail):
        now = clock()
        if stopping():
            stats.handed_back_on_stop += await _hand_back_on_stop(store, needs_detail[index:], owner, now)
            break
        if breaker is not None and not breaker.allows(now):
            stats.skipped_open_circuit += await _hand_back(store, [view], owner, now, breaker)
            continue
        stats.detail_requests += 1

        def decide(
            stage: Stage, changed: bool, failed: bool, view: ShipmentView = view
        ) -> dt.datetime | None:
            when = schedule(view, stage, changed, failed, clock(), policy, rng, history)
            return when.at

        try:
            result = await poll_detail(
                store, client, view, now=now, next_poll_at=decide, owner=owner, notifier=notifier
            )
        except LeaseLostError as exc:
            _lease_lost(view, exc, stats)
            if report is not None:
                report(view, PollResult(number=view.number, error=str(exc)))
            continue
        except Exception as exc:
            error, failures = await _poll_error(store, view, exc, owner, clock(), policy, rng, stats)
            if report is not None:
                report(view, PollResult(number=view.number, error=error, failures=failures))
            continue
        stats.wording_requests += result.wording_requests
        if report is not None:
            report(view, result)
        if result.change is None:
            stats.failed += 1
            if breaker is not None:
                breaker.failure(clock(), result.retry_after)
            continue
        if any(a.kind is AnomalyKind.UNRECOGNIZED_PAGE for a in result.change.anomalies):
            stats.unrecognized += 1
            await _kill_switch(store, notifier, result.error or "", clock())
            continue
        if breaker is not None:
            breaker.success()
        stats.changed += int(result.change.changed)
        stats.queued += result.queued
        stats.held += result.queued if result.held else 0
        read_a_page = True
        await _resume(store, notifier, clock(), stats)
    if read_a_page and not notifier.paused:
        # Also what another instance, or this one before a restart, held: pages read here.
        stats.released += await store.release_held(now=clock())


@dataclass(frozen=True, slots=True)
class ListPageResult:
    """What one readable list page did for the shipments it covered."""

    # Their latest event is not the stored one (or they were never seen): a detail page each.
    needs_detail: list[ShipmentView]
    # Recorded from the list page alone: nothing new (an anomaly perhaps), no transition.
    recorded: list[tuple[ShipmentView, Change]]
    # Their poll failed and was rolled back alone (a lost lease, an error of their own).
    failed: list[tuple[ShipmentView, str]]


async def record_list_page(
    store: Store,
    chunk: Sequence[ShipmentView],
    fetched: Fetched,
    *,
    owner: str,
    policy: PollingPolicy,
    clock: Callable[[], dt.datetime],
    rng: random.Random,
    stats: CycleStats,
    lanes: LaneStats | None = None,
) -> ListPageResult:
    """Diff a readable list page against the stored histories of the shipments it covers and
    record what it settles: one history query for the page, and its unchanged polls in one
    statement (the common case by far). Shipments whose latest event moved need a detail page.

    A list page never yields a transition (it only asks for the detail page), so nothing
    recorded here has messages to decide."""
    page = fetched.page
    histories = await store.histories([v.id for v in chunk])
    needs_detail: list[ShipmentView] = []
    recorded: list[tuple[ShipmentView, Change]] = []
    failed: list[tuple[ShipmentView, str]] = []
    unchanged: list[tuple[int, dt.datetime | None]] = []
    quiet: list[tuple[ShipmentView, Change]] = []
    for view in chunk:
        try:
            change = diff_latest(histories[view.id], page, view.number)
            if change.needs_detail:
                needs_detail.append(view)
                continue
            when = schedule(view, change.current_stage, False, False, clock(), policy, rng, lanes)
            await _maybe_give_up(store, view, when, clock(), stats)
            if not change.anomalies:
                unchanged.append((view.id, when.at))
                quiet.append((view, change))
                continue
            await store.record_poll(
                view.id,
                change=change,
                item=None,
                now=clock(),
                next_poll_at=when.at,
                owner=owner,
                capture=PageCapture(body=fetched.body, url=fetched.url, layout=str(page.layout)),
            )
            recorded.append((view, change))
        except LeaseLostError as exc:
            _lease_lost(view, exc, stats)
            failed.append((view, str(exc)))
        except Exception as exc:
            error, _ = await _poll_error(store, view, exc, owner, clock(), policy, rng, stats)
            failed.append((view, error))
    await store.record_unchanged(unchanged, now=clock(), owner=owner)
    return ListPageResult(needs_detail=needs_detail, recorded=[*quiet, *recorded], failed=failed)


async def _hand_back_on_stop(store: Store, views: list[ShipmentView], owner: str, now: dt.datetime) -> int:
    for view in views:
        await store.release(view.id, owner=owner, next_poll_at=view.next_poll_at or now)
    if views:
        logger.info(
            "stopping: %d claimed shipment(s) handed back unpolled, still due",
            len(views),
            extra={"action": "handed_back"},
        )
    return len(views)


async def _resume(store: Store, notifier: Notifier, now: dt.datetime, stats: CycleStats) -> None:
    """A page read again: lift the kill switch and let what it held go out."""
    if not notifier.paused:
        return
    notifier.paused = False
    released = await store.release_held(now=now)
    stats.released += released
    logger.warning(
        "Japan Post pages read again; customer mail resumed, %d held message(s) released",
        released,
        extra={"action": "kill_switch_lifted"},
    )


def _lease_lost(view: ShipmentView, exc: LeaseLostError, stats: CycleStats) -> None:
    # Another instance owns the shipment now and polls it; ours rolled back whole.
    stats.lost_leases += 1
    logger.warning("%s", exc, extra={"action": "lease_lost", "number": view.number})


def describe_error(exc: BaseException) -> str:
    """One line for an unexpected error: its type and first line, the driver's for database ones."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    text = f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__
    return text[:300]


async def _poll_error(
    store: Store,
    view: ShipmentView,
    exc: Exception,
    owner: str,
    now: dt.datetime,
    policy: PollingPolicy,
    rng: random.Random,
    stats: CycleStats,
) -> tuple[str, int]:
    """This shipment's poll failed for a reason of its own and rolled back: hand it back with
    back-off and tell the operator (one open alert per number), then let the cycle go on.
    What to tell of it, and its failures in a row (0 when its lease was lost meanwhile)."""
    if is_disk_full(exc):
        # Not this shipment's own: every write fails alike. End the cycle; the daemon's disk
        # guard reports it once a minute and the shipments' leases run out unharmed.
        raise exc
    stats.errors += 1
    reason = describe_error(exc)
    logger.error(
        "poll of %s failed: %s; the other shipments go on",
        view.number,
        reason,
        exc_info=exc,
        extra={"action": "poll_error", "number": view.number},
    )
    when = schedule(view, view.stage, False, True, now, policy, rng)
    failures = view.consecutive_failures + 1
    backoff = min(policy.failure_backoff_cap, ERROR_BACKOFF * 2 ** min(failures - 1, 10))
    retry = max(when.at or now, now + backoff)
    try:
        failures = await store.record_failure(
            view.id, error=f"poll error: {reason}", now=now, next_poll_at=retry, owner=owner
        )
    except LeaseLostError as lost:
        _lease_lost(view, lost, stats)
        return str(lost), 0
    await store.raise_alert(
        "poll_error",
        f"{view.number}: polling failed ({reason}); nothing of this poll was recorded. Retrying "
        f"with back-off (next {retry:%Y-%m-%d %H:%M}Z); other shipments are unaffected.",
        now=now,
        subject=view.number,
        shipment_id=view.id,
    )
    return f"poll error: {reason}", failures


async def _hand_back(
    store: Store, views: list[ShipmentView], owner: str, now: dt.datetime, breaker: CircuitBreaker
) -> int:
    for view in views:
        await store.release(view.id, owner=owner, next_poll_at=breaker.open_until or now)
    return len(views)


async def _failed(
    store: Store,
    views: list[ShipmentView],
    error: str,
    owner: str,
    now: dt.datetime,
    policy: PollingPolicy,
    rng: random.Random,
    report: Report | None,
    capture: PageCapture | None = None,
) -> None:
    """Record a failed poll of each of `views` (one list page's), each retried on its own
    schedule; the page, if kept, is stored once, with the first."""
    for index, view in enumerate(views):
        when = schedule(view, view.stage, False, True, now, policy, rng)
        failures = await store.record_failure(
            view.id,
            error=error,
            now=now,
            next_poll_at=when.at or now,
            owner=owner,
            capture=capture if index == 0 else None,
        )
        if report is not None:
            report(view, PollResult(number=view.number, error=error, failures=failures))


async def _kill_switch(store: Store, notifier: Notifier, reason: str, now: dt.datetime) -> None:
    """Pages stopped being readable: stop customer mail and tell the operator, once."""
    if not notifier.paused:
        logger.error(
            "Japan Post pages are not recognised; customer mail paused", extra={"action": "kill_switch"}
        )
    notifier.paused = True
    await store.raise_alert(
        "site_unrecognized",
        f"Japan Post pages are not recognised ({reason}); unreadable pages change no history, and "
        "customer mail learnt meanwhile is held and sent when pages read again. If it lasts, the "
        "site may have been redesigned.",
        now=now,
    )


async def _unrecognized(
    store: Store,
    notifier: Notifier,
    views: list[ShipmentView],
    reason: str,
    body: bytes,
    owner: str,
    now: dt.datetime,
    policy: PollingPolicy,
    rng: random.Random,
    report: Report | None,
) -> None:
    await _kill_switch(store, notifier, reason, now)
    capture = PageCapture(body=body, layout=str(Layout.UNRECOGNIZED), note=reason)
    await _failed(store, views, f"unrecognized page: {reason}", owner, now, policy, rng, report, capture)


async def _maybe_give_up(
    store: Store, view: ShipmentView, when: NextPoll, now: dt.datetime, stats: CycleStats
) -> None:
    if when.at is None and when.give_up:
        await store.raise_alert(
            "gave_up",
            f"{view.number}: stopped polling: {when.give_up}",
            now=now,
            subject=view.number,
            shipment_id=view.id,
        )
        stats.gave_up.append(view.number)
