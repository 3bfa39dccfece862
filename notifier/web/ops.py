"""The web face's operations routes: /healthz for load balancers and supervisors, /metrics for Prometheus."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from notifier.core.sending import SendingPause
from notifier.core.stages import Stage
from notifier.core.views import OpsCounts, OutboxState
from notifier.pipeline.activity import CYCLE_OUTCOMES, EMAIL_OUTCOMES, POLL_OUTCOMES, REQUEST_KINDS
from notifier.pipeline.outbox import sending_paused
from notifier.store.windows import LaneAccuracy
from notifier.web.state import DaemonView

logger = logging.getLogger(__name__)

# The database must answer a `SELECT 1` (or the /metrics counts) within this.
DATABASE_TIMEOUT = 2.0
# The scheduler starts a poll job every poll tick (5 s by default). The tick is stale when the
# last one started more than STALE_TICKS ticks ago, and at least STALE_FLOOR: on a loaded
# machine a tick can be late by seconds, and a check that flaps is worse than none. A cycle
# still running is no stale tick while it is younger than its lease (its claim is sized to be
# polled within half of it), so a long cycle at a slow request pace does not fail the check.
STALE_TICKS = 5
STALE_FLOOR = dt.timedelta(seconds=30)
# The classic text format (our metric names are all legacy-valid): every Prometheus reads it,
# where prometheus_client's CONTENT_TYPE_LATEST now says version=1.0.0, which Prometheus 2 does not know.
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
# A shipment due for longer than this is overdue: the daemon is not keeping up (a backlog at the
# request pace, an open circuit, or no daemon polling at all).
OVERDUE_AFTER = dt.timedelta(minutes=10)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def stale_after(poll_tick: float) -> dt.timedelta:
    return max(STALE_FLOOR, dt.timedelta(seconds=STALE_TICKS * poll_tick))


def circuit_open(open_until: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether the circuit breaker holds requests to Japan Post back at `now` (for /metrics
    and the operator board's banner alike)."""
    return open_until is not None and now < open_until


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthSnapshot:
    """What the health check decides on, gathered at `now`."""

    now: dt.datetime
    poll_tick: float
    last_tick: dt.datetime | None
    last_good_cycle: dt.datetime | None
    cycle_started_at: dt.datetime | None
    cycle_lease: dt.timedelta
    database_error: str | None
    customer_mail_paused: bool
    sending_pause: SendingPause | None


def health(snapshot: HealthSnapshot) -> tuple[int, dict[str, Any]]:
    """200 and {"status": "ok"} when all is well, else 503 with every reason it is not."""
    now = snapshot.now
    problems: list[dict[str, str]] = []
    running = snapshot.cycle_started_at
    if running is not None and now - running <= snapshot.cycle_lease:
        pass  # a cycle under way, within its lease: the scheduler is alive
    elif snapshot.last_tick is None:
        problems.append(
            {"check": "scheduler", "reason": "no poll tick yet (starting, or the scheduler is stuck)"}
        )
    elif now - snapshot.last_tick > stale_after(snapshot.poll_tick):
        age = int((now - snapshot.last_tick).total_seconds())
        problems.append(
            {
                "check": "scheduler",
                "reason": f"stale tick: the last poll tick was {age} s ago "
                f"(more than {int(stale_after(snapshot.poll_tick).total_seconds())} s)",
            }
        )
    if snapshot.database_error is not None:
        problems.append({"check": "database", "reason": f"database not answering: {snapshot.database_error}"})
    if snapshot.customer_mail_paused:
        problems.append(
            {
                "check": "customer_mail",
                "reason": "kill switch on: Japan Post pages are not recognised; customer mail is held",
            }
        )
    if snapshot.sending_pause is not None:
        problems.append({"check": "smtp", "reason": snapshot.sending_pause.summary()})
    body: dict[str, Any] = {
        "status": "unhealthy" if problems else "ok",
        "now": _iso(now),
        "last_tick": _iso(snapshot.last_tick),
        "last_good_cycle": _iso(snapshot.last_good_cycle),
    }
    if problems:
        body["problems"] = problems
        body["reasons"] = [p["reason"] for p in problems]
    return (503 if problems else 200), body


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {DATABASE_TIMEOUT:g} s"
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return (f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__)[:200]


async def health_snapshot(view: DaemonView, now: dt.datetime) -> HealthSnapshot:
    error = None
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT):
            await view.store.ping()
    except Exception as exc:
        error = _describe(exc)
    return HealthSnapshot(
        now=now,
        poll_tick=view.settings.poll_tick,
        last_tick=view.last_tick,
        last_good_cycle=view.last_good_cycle,
        cycle_started_at=view.activity.cycle_started_at,
        cycle_lease=view.activity.cycle_lease,
        database_error=error,
        customer_mail_paused=view.notifier.paused,
        sending_pause=sending_paused(view.store),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsSnapshot:
    """What one /metrics scrape reports, gathered at `now`. `counts` is None when the
    database did not answer (then notifier_database_up is 0 and its figures are left out)."""

    now: dt.datetime
    counts: OpsCounts | None
    cycles: Mapping[str, int]
    polls: Mapping[str, int]
    requests: Mapping[str, int]
    emails: Mapping[str, int]
    webhook_posts: Mapping[str, int]
    heartbeat_pings: Mapping[str, int]
    circuit_open: bool
    circuit_failures: int
    circuit_open_until: dt.datetime | None
    customer_mail_paused: bool
    sending_paused: bool
    last_tick: dt.datetime | None
    last_good_cycle: dt.datetime | None
    started_at: dt.datetime | None
    # Per lane, the delivered parcels that were shown a window and how many arrived inside it.
    accuracy: Sequence[LaneAccuracy] = ()
    # Sends to the Apprise operator channels by (channel, result).
    channel_sends: Mapping[tuple[str, str], int] | None = None


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _labelled(
    family: GaugeMetricFamily | CounterMetricFamily, values: Mapping[str, int], keys: Iterable[str]
) -> GaugeMetricFamily | CounterMetricFamily:
    # Every label value is always there (zeros included): a series that appears only once it
    # is non-zero breaks rate() and absent() alerts.
    for key in dict.fromkeys([*keys, *sorted(values)]):
        family.add_metric([key], values.get(key, 0))
    return family


def _channel_sends(values: Mapping[tuple[str, str], int]) -> CounterMetricFamily:
    family = CounterMetricFamily(
        "notifier_operator_channel_sends",
        "Sends to the Apprise operator channels ([notifications] operator_urls) since start, by "
        "channel (its place in the list and its scheme, never the URL) and result (ok, failed: "
        "each failed try, retried with back-off)",
        labels=["channel", "result"],
    )
    for (channel, result), count in sorted(values.items()):
        family.add_metric([channel, result], count)
    return family


def metric_families(snapshot: MetricsSnapshot) -> list[Metric]:
    """The metrics of one scrape; pure."""
    s = snapshot
    families: list[Metric] = [
        _labelled(
            CounterMetricFamily(
                "notifier_poll_cycles",
                "Poll cycles since start, by outcome (failing: circuit open, unrecognised page or "
                "a poll error; error: the cycle raised)",
                labels=["outcome"],
            ),
            s.cycles,
            CYCLE_OUTCOMES,
        ),
        _labelled(
            CounterMetricFamily(
                "notifier_polls", "Shipment polls since start, by outcome", labels=["outcome"]
            ),
            s.polls,
            POLL_OUTCOMES,
        ),
        _labelled(
            CounterMetricFamily(
                "notifier_japanpost_requests",
                "Requests to Japan Post since start, by page kind (list: latest status of up to 10 "
                "numbers; detail: one number's history; wording: the other language's detail page)",
                labels=["kind"],
            ),
            s.requests,
            REQUEST_KINDS,
        ),
        CounterMetricFamily(
            "notifier_pages_unrecognized",
            "Shipment polls whose Japan Post page was not recognised, since start",
            value=s.polls.get("unrecognized", 0),
        ),
        _labelled(
            CounterMetricFamily(
                "notifier_emails",
                "Outbox outcomes since start (sent; retried after a temporary failure; failed for "
                "good; deferred by quiet hours; suppressed: unsubscribed; held while SMTP is paused)",
                labels=["outcome"],
            ),
            s.emails,
            EMAIL_OUTCOMES,
        ),
        _labelled(
            CounterMetricFamily(
                "notifier_webhook_posts", "Operator webhook posts since start, by result", labels=["result"]
            ),
            s.webhook_posts,
            ("ok", "failed"),
        ),
        _channel_sends(s.channel_sends or {}),
        _labelled(
            CounterMetricFamily(
                "notifier_heartbeat_pings",
                "Heartbeat pings since start (ok, fail: the /fail ping went through; error: the ping did not)",
                labels=["kind"],
            ),
            s.heartbeat_pings,
            ("ok", "fail", "error"),
        ),
        _gauge(
            "notifier_database_up", "1 when the database answered this scrape", 0 if s.counts is None else 1
        ),
        _gauge(
            "notifier_japanpost_circuit_open",
            "1 while the circuit breaker holds requests back",
            int(s.circuit_open),
        ),
        _gauge(
            "notifier_japanpost_consecutive_failures",
            "Failed Japan Post requests since the last success (the breaker opens at circuit_failures)",
            s.circuit_failures,
        ),
        _gauge(
            "notifier_customer_mail_paused",
            "1 while the kill switch holds customer mail (Japan Post pages not recognised)",
            int(s.customer_mail_paused),
        ),
        _gauge(
            "notifier_smtp_sending_paused",
            "1 while the outbox is paused by SMTP trouble",
            int(s.sending_paused),
        ),
    ]
    for name, doc, when in (
        (
            "notifier_last_good_cycle_timestamp_seconds",
            "When a poll cycle last ended without an error",
            s.last_good_cycle,
        ),
        ("notifier_last_tick_timestamp_seconds", "When the scheduler last started a poll job", s.last_tick),
        (
            "notifier_japanpost_circuit_open_until_timestamp_seconds",
            "When the open circuit lets requests through again",
            s.circuit_open_until,
        ),
        ("notifier_start_timestamp_seconds", "When this daemon process started", s.started_at),
    ):
        if when is not None:  # absent until it happened: 0 would read as 1970
            families.append(_gauge(name, doc, when.timestamp()))
    counts = s.counts
    if counts is not None:
        families.extend(
            [
                _labelled(
                    GaugeMetricFamily("notifier_shipments", "Watched shipments by stage", labels=["stage"]),
                    counts.stages,
                    [str(stage) for stage in Stage],
                ),
                _gauge(
                    "notifier_shipments_due", "Watched shipments whose next poll time has come", counts.due
                ),
                _gauge(
                    "notifier_shipments_overdue",
                    f"Watched shipments due for more than {int(OVERDUE_AFTER.total_seconds())} s",
                    counts.overdue,
                ),
                _labelled(
                    GaugeMetricFamily(
                        "notifier_outbox_messages",
                        "Outbox messages by state (pending and held are queued)",
                        labels=["state"],
                    ),
                    counts.outbox,
                    [str(state) for state in OutboxState],
                ),
                _gauge(
                    "notifier_outbox_oldest_waiting_age_seconds",
                    "Age of the oldest message not yet sent (pending, held or sending); 0 when none",
                    0
                    if counts.oldest_waiting is None
                    else max(0.0, (s.now - counts.oldest_waiting).total_seconds()),
                ),
                _gauge("notifier_alerts_open", "Operator alerts not acknowledged", counts.open_alerts),
            ]
        )
        families.extend(_accuracy_families(s.accuracy))
    return families


def _accuracy_families(accuracy: Sequence[LaneAccuracy]) -> list[Metric]:
    """Our own published accuracy: of the deliveries whose customer was shown a window, the
    share that fell inside the window last shown, by lane (service:destination)."""
    delivered = GaugeMetricFamily(
        "notifier_window_deliveries",
        "Delivered parcels whose customer was shown a delivery window, by lane (service:country)",
        labels=["lane"],
    )
    inside = GaugeMetricFamily(
        "notifier_window_deliveries_inside",
        "Of those, delivered on a date inside the window last shown, by lane",
        labels=["lane"],
    )
    share = GaugeMetricFamily(
        "notifier_window_accuracy_ratio",
        "Share of those deliveries inside the window last shown, by lane (0-1)",
        labels=["lane"],
    )
    for lane in accuracy:
        delivered.add_metric([str(lane.lane)], lane.delivered)
        inside.add_metric([str(lane.lane)], lane.inside)
        share.add_metric([str(lane.lane)], lane.inside / lane.delivered if lane.delivered else 0.0)
    return [delivered, inside, share]


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def render_metrics(snapshot: MetricsSnapshot) -> bytes:
    """The Prometheus text exposition of one scrape.

    A fresh registry per scrape: the figures come from an async database read made before
    rendering, which a collector called inside generate_latest could not await; and a
    registry of our own never clashes with another daemon's in the same process (tests)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(metric_families(snapshot)))
    return generate_latest(registry)


async def metrics_snapshot(view: DaemonView, now: dt.datetime) -> MetricsSnapshot:
    counts: OpsCounts | None = None
    accuracy: list[LaneAccuracy] = []
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT):
            counts = await view.store.ops_counts(now=now, overdue_before=now - OVERDUE_AFTER)
            accuracy = await view.store.window_accuracy()
    except Exception as exc:
        logger.warning(
            "/metrics: the database did not answer: %s", _describe(exc), extra={"action": "metrics"}
        )
    activity = view.activity
    breaker = view.breaker
    return MetricsSnapshot(
        now=now,
        counts=counts,
        cycles=dict(activity.cycles),
        polls=dict(activity.polls),
        requests=dict(activity.requests),
        emails=dict(activity.emails),
        webhook_posts=dict(activity.webhook_posts),
        heartbeat_pings=dict(activity.heartbeat_pings),
        channel_sends=dict(activity.channel_sends),
        circuit_open=circuit_open(breaker.open_until, now),
        circuit_failures=breaker.failures,
        circuit_open_until=breaker.open_until,
        customer_mail_paused=view.notifier.paused,
        sending_paused=sending_paused(view.store) is not None,
        last_tick=view.last_tick,
        last_good_cycle=view.last_good_cycle,
        started_at=activity.started_at,
        accuracy=accuracy,
    )


_NO_CACHE = {"Cache-Control": "no-store"}


def ops_routes(view: DaemonView) -> list[Route]:
    """GET /healthz and GET /metrics over `view` (read at each request: a reload's settings count)."""

    async def healthz(request: Request) -> Response:
        status, body = health(await health_snapshot(view, utcnow()))
        return JSONResponse(body, status_code=status, headers=_NO_CACHE)

    async def metrics(request: Request) -> Response:
        body = render_metrics(await metrics_snapshot(view, utcnow()))
        return Response(body, media_type=TEXT_FORMAT, headers=_NO_CACHE)

    return [
        Route("/healthz", healthz, methods=["GET"], name="healthz"),
        Route("/metrics", metrics, methods=["GET"], name="metrics"),
    ]


__all__ = [
    "HealthSnapshot",
    "MetricsSnapshot",
    "circuit_open",
    "health",
    "health_snapshot",
    "metric_families",
    "metrics_snapshot",
    "ops_routes",
    "render_metrics",
    "stale_after",
]
